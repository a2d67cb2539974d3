package pop2

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/postoffice-mail/postoffice/internal/legacy/listen"
	"github.com/postoffice-mail/postoffice/internal/store"
	"github.com/postoffice-mail/postoffice/pop3server"
)

// Defaults of Options.
const (
	DefaultIdleTimeout     = 10 * time.Minute
	DefaultPreLoginTimeout = time.Minute
	DefaultWriteTimeout    = 2 * time.Minute
	DefaultMaxBadCommands  = 20
	maxAuthFailures        = 3
	maxLine                = 512
)

// Options configure New. Backend is required.
type Options struct {
	// Backend checks logins and opens INBOX, as for POP3 (internal/backend:
	// the user's restrictions, LOGIN-DELAY and the maildrop lock apply).
	// The Mailbox it returns must have a User() string method naming the
	// user for Folders.
	Backend pop3server.Backend
	// Folders, if set, serves FOLD and POP1 mailbox names other than
	// INBOX; nil offers INBOX only.
	Folders store.Folders
	Logger  *slog.Logger
	// Hostname goes into the greeting; default "localhost".
	Hostname string
	// AllowPlaintextAuth permits logins from addresses other than
	// loopback; both protocols send the password in the clear.
	AllowPlaintextAuth bool
	// Timeouts; zero means the default.
	IdleTimeout, PreLoginTimeout, WriteTimeout time.Duration
	// AuthFailDelay is waited before answering a failed login; default
	// 1s, negative none.
	AuthFailDelay time.Duration
	// MaxBadCommands ends a session after this many bad commands;
	// default DefaultMaxBadCommands.
	MaxBadCommands int
	// Now is the clock of POP1's "From " lines; default time.Now.
	Now func() time.Time
}

// Server serves POP2 and POP1.
type Server struct {
	opts   Options
	log    *slog.Logger
	nextID atomic.Uint64

	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	conns     map[net.Conn]struct{}
	closed    bool
	wg        sync.WaitGroup
}

// New returns a Server.
func New(opts Options) (*Server, error) {
	if opts.Backend == nil {
		return nil, errors.New("pop2: Options.Backend is required")
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Hostname == "" {
		opts.Hostname = "localhost"
	}
	if opts.IdleTimeout <= 0 {
		opts.IdleTimeout = DefaultIdleTimeout
	}
	if opts.PreLoginTimeout <= 0 {
		opts.PreLoginTimeout = DefaultPreLoginTimeout
	}
	if opts.WriteTimeout <= 0 {
		opts.WriteTimeout = DefaultWriteTimeout
	}
	if opts.AuthFailDelay == 0 {
		opts.AuthFailDelay = time.Second
	}
	if opts.MaxBadCommands <= 0 {
		opts.MaxBadCommands = DefaultMaxBadCommands
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Server{opts: opts, log: opts.Logger, listeners: map[net.Listener]struct{}{}, conns: map[net.Conn]struct{}{}}, nil
}

// Serve accepts connections on l until Close or Shutdown.
func (s *Server) Serve(l net.Listener) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		l.Close()
		return errors.New("pop2: server closed")
	}
	s.listeners[l] = struct{}{}
	s.mu.Unlock()
	return listen.Loop(l, s.isClosed, s.log, "pop2", s.ServeConn)
}

// isClosed reports whether Close or Shutdown has begun.
func (s *Server) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// ServeConn serves one connection in a new goroutine.
func (s *Server) ServeConn(nc net.Conn) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		nc.Close()
		return
	}
	s.conns[nc] = struct{}{}
	s.wg.Add(1)
	s.mu.Unlock()
	id := "p2-" + strconv.FormatUint(s.nextID.Add(1), 36)
	go func() {
		defer s.wg.Done()
		defer func() {
			s.mu.Lock()
			delete(s.conns, nc)
			s.mu.Unlock()
		}()
		newSession(s, nc, id).serve(context.Background())
	}()
}

// Close stops the listeners and closes every connection. A session that
// did not reach QUIT deletes nothing.
func (s *Server) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	for l := range s.listeners {
		l.Close()
	}
	for c := range s.conns {
		c.Close()
	}
	return nil
}

// Shutdown closes as Close does and waits for the sessions to end, or ctx.
func (s *Server) Shutdown(ctx context.Context) error {
	s.Close()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
