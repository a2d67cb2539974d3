// Package pop3server is the POP3 protocol engine of postoffice: it owns the
// RFC 1939 states (AUTHORIZATION, TRANSACTION, UPDATE), every byte on the
// wire, deletion marks, and the extension mechanism of RFC 2449 (CAPA,
// RESP-CODES, AUTH-RESP-CODE, PIPELINING, TOP, UIDL, USER, LOGIN-DELAY,
// EXPIRE, IMPLEMENTATION) with the response codes of RFC 3206 (defined
// in package pop3proto, with MessageInfo, and shared with the client). It also
// implements APOP (RFC 1939 §7), STLS (RFC 2595 §4), SASL AUTH (RFC 5034)
// and UTF8 and LANG (RFC 6856). It knows nothing of files, databases or
// password schemes: it talks to a Backend, whose Session may add APOP
// (APOPSession) and SASL mechanisms (SASLSession); CAPA and the greeting
// follow what the session implements.
//
// Implementation notes:
//   - DELE only marks; the marked set reaches the backend only through
//     Mailbox.Commit on QUIT (RFC 1939 §6). Any other end of a session
//     (drop, timeout, shutdown, panic) closes the mailbox and deletes nothing.
//   - Replies are buffered and flushed only when no pipelined input is
//     waiting (RFC 2449 §6.6), so a burst of commands gets one write. A
//     session takes a 4 KiB reply buffer and a 1 KiB read buffer from
//     pools, and RETR, TOP and whole LIST/UIDL listings borrow a 64 KiB
//     one until the next flush (writer.go). A session waiting for its
//     client gives its buffers back; on a plain socket it waits for input
//     on the socket itself (wait.go), on TLS it keeps the read buffer,
//     which the blocked Read needs. c.br and c.bw are nil only inside that
//     wait. Idle sessions are what a POP3 server holds most of (the
//     idle-memory targets are in docs/performance.md).
//   - The commands of a download (STAT, LIST n, UIDL n, RETR n, DELE n,
//     NOOP, RSET, listings) allocate nothing in the engine
//     (TestCommandsDoNotAllocate).
//   - Input lines are bounded (255 octets, RFC 2449 §4). Where AUTH is
//     possible an AUTH line and each SASL response may be up to 16 KiB
//     (RFC 5034 §4 allows longer lines; OAuth tokens need them); no other
//     command gains from that. A line is refused as soon as more than its
//     limit has arrived without a line end: "-ERR Line too long" and the
//     session ends at once (as Dovecot does), without reading the rest,
//     so an endless line costs a bounded read, not an idle timeout. The
//     close lingers (half-close, then at most 64 KiB or 2 s of input
//     discarded) so the client can read the reply. An exchange has at
//     most 10 challenges and waits under the idle timeout.
//   - An unknown user and a wrong password get the same reply after the
//     same delay. APOP and SASL credential failures take the same path
//     ([AUTH], delay, MaxAuthFailures); undecodable base64, a malformed
//     SASL message (an *Error without code) and "*" are not credential
//     failures: no delay, and all but "*" count as bad commands.
//   - After "+OK Begin TLS negotiation" the read buffer is replaced, so
//     whatever the client pipelined in plaintext after STLS is discarded,
//     never run inside TLS (the CVE-2011-0411 class); a pending USER and
//     UTF8 mode are forgotten (RFC 2595 §4). Conn.TLS is set on the *Conn
//     the backend holds. A failed handshake ends the session.
//   - Unless Options.AllowPlaintextAuth, USER/PASS and the PLAIN, LOGIN,
//     OAUTHBEARER and XOAUTH2 mechanisms are neither offered nor accepted
//     on a connection that is not TLS and not from loopback or a Unix
//     socket. APOP stays: no password crosses the wire.
//   - The APOP timestamp is "<pid.random@Hostname>", 96 random bits, new
//     for every connection; it never contains '='.
//   - UTF8 (RFC 6856 §2) makes the engine require valid UTF-8 in USER,
//     PASS and APOP names and sets Conn.UTF8; it is also accepted after
//     login, for Outlook (see cmdUTF8). Messages are sent as stored
//     whether or not the client issued UTF8: the engine does not downgrade
//     UTF-8 header fields. RFC 6856 §2 expects a server to avoid sending
//     such headers to a client that has not enabled UTF8 and points to
//     downgrading (RFC 6857); we choose not to, because a downgrade
//     rewrites the message, so the LIST size would no longer be what RETR
//     sends (RFC 1939 §11) and the UIDL would no longer
//     name one fixed content, and because mail clients in use display raw
//     UTF-8 headers. (The wording of §2 was not re-checked against the RFC
//     text when this was written.)
//   - Replies are in English only; LANG lists "en" and "i-default".
//   - Abuse limits: before login the idle timeout is PreLoginTimeout and
//     at most MaxLoginCommands commands are run; after login a command cap
//     that scales with the maildrop (QUIT always passes, so no deletion is
//     lost to it). Every write to the client has its own WriteTimeout
//     deadline, never one per message or per flush, so a stalled reader is
//     dropped and a slow steady one is served.
//   - Options.LoginLimiter is asked before every credential check (PASS,
//     APOP, each AUTH) and told each [AUTH] failure and each login; other
//     failures ([IN-USE], [SYS/TEMP]) are not its business. A refusal is
//     answered [SYS/TEMP] without checking anything and ends the session.
//     Its delays, like AuthFailDelay, end early when the server stops.
//   - The log lines "authentication failed" and "client banned" are read
//     by fail2ban (docs/fail2ban/postoffice.conf): conn and remote come
//     first, before anything the client chose.
package pop3server

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Options configure a Server. Backend is required; every other zero value
// means the documented default.
type Options struct {
	Backend Backend
	Logger  *slog.Logger // default: discard

	// Greeting is the text after "+OK " in the greeting; default
	// "POP3 server ready".
	Greeting string
	// Implementation is the CAPA IMPLEMENTATION text; default "postoffice".
	Implementation string

	// IdleTimeout ends a logged-in session that sends nothing for this
	// long, silently and without UPDATE (RFC 1939 §3: at least 10
	// minutes). Default 10m. A command line must arrive whole within it.
	IdleTimeout time.Duration
	// PreLoginTimeout is the idle timeout before login (AUTHORIZATION,
	// also while a SASL exchange waits for the client). Default 1m; it is
	// never longer than IdleTimeout.
	//
	// RFC 1939 §3 asks that an autologout timer be of at least 10 minutes
	// and does not name a state. Its purpose is a logged-in user's session
	// (the timer must not enter UPDATE); before login there is nothing to
	// lose but the connection, which the client simply opens again. Idle
	// unauthenticated connections are what floods are made of, so we give
	// them less time (Exchange's unauthenticated timer is 60 s, and not
	// even reset by commands): a deliberate, documented deviation for the
	// AUTHORIZATION state only.
	PreLoginTimeout time.Duration
	// WriteTimeout ends a session when the client takes less than 32 KiB
	// of a pending reply within it: a client that stops reading cannot
	// hold the session (and a maildrop lock) longer, and one that reads
	// slower than 32 KiB per WriteTimeout is cut off. A client that
	// keeps reading may take as long as it needs for a message of any size.
	// Default 2m.
	WriteTimeout time.Duration
	// MaxLoginCommands ends the session when a command beyond this many is
	// sent before login (every command line counts, valid or not; SASL
	// responses do not). QUIT is always answered. Default 50; negative: no
	// cap.
	MaxLoginCommands int
	// MaxCommands caps the commands of a session after login. Beyond it
	// every command but QUIT gets -ERR and counts as a bad command, so a
	// client that hits the cap can still QUIT and commit its deletions.
	// Default (0): 1000 plus 10 per message in the maildrop, so a client
	// can LIST, UIDL, TOP, RETR and DELE each message one by one twice
	// over; positive: that many; negative: no cap.
	MaxCommands int
	// AuthFailDelay is waited before answering any failed login, the same
	// for unknown users and wrong passwords. Default 1s; negative: none.
	AuthFailDelay time.Duration
	// MaxAuthFailures ends the session after this many failed logins.
	// Default 3.
	MaxAuthFailures int
	// MaxBadCommands ends the session after this many bad commands: unknown
	// commands, commands not valid in the current state, and syntax errors
	// (a missing, extra or non-numeric argument: "TOP 1 x", "RETR x").
	// A well-formed command naming a message that does not exist (0, past
	// the end, or deleted in this session) gets -ERR but is not a bad
	// command: clients send those legitimately (a pipelined DELE of a
	// message another device removed, a client probing LIST n). Default
	// DefaultMaxBadCommands (20, as Dovecot's).
	//
	// An oversize line is not counted: it ends the session at once.
	MaxBadCommands int

	// LoginLimiter, if set, is consulted before every credential check and
	// told the outcome, to slow down and ban password guessing across
	// connections (internal/ratelimit). It comes on top of AuthFailDelay
	// and MaxAuthFailures, which work per connection. Default nil: none.
	LoginLimiter LoginLimiter

	// Observer, if set, is told of each session's start and end and of
	// each login attempt, for metrics (internal/metrics). Default nil.
	Observer Observer

	// LoginDelay, if positive, is advertised as CAPA LOGIN-DELAY (whole
	// seconds); enforcing it is the backend's job ([LOGIN-DELAY] errors).
	LoginDelay time.Duration
	// Expire, if not empty, is advertised as CAPA EXPIRE: "NEVER" or a
	// number of days, followed by " USER" when the policy varies per user
	// (RFC 2449 §6.7); a Mailbox with ExpireMailbox gives the user's own
	// value after login.
	Expire string

	// TLSConfig is used by ServeTLS (implicit TLS, RFC 8314) and, when
	// set, offered on plain connections through STLS (RFC 2595 §4).
	TLSConfig *tls.Config
	// TLSHandshakeTimeout bounds a TLS handshake (implicit or after STLS);
	// a handshake that does not finish in time ends the session. Default 1m.
	TLSHandshakeTimeout time.Duration

	// AllowPlaintextAuth permits USER/PASS and the plaintext SASL
	// mechanisms (PLAIN, LOGIN, OAUTHBEARER, XOAUTH2) on connections that
	// are neither TLS nor from a loopback address or a Unix socket (RFC 2595
	// §2.3). Default false: such logins are refused with [AUTH] and are not
	// advertised, as Dovecot's disable_plaintext_auth=yes does. APOP is
	// never refused by this rule: no password crosses the wire.
	AllowPlaintextAuth bool

	// Extension, if set, adds commands to the TRANSACTION state and lines
	// to CAPA (extension.go): POP4. Default nil: POP3 only.
	Extension Extension

	// Hostname is the domain of the APOP timestamp in the greeting
	// (RFC 1939 §7), "<pid.random@Hostname>". Default os.Hostname(), or
	// "localhost" if that is not a usable host name.
	Hostname string

	// EnableLAST answers LAST (RFC 1460 §5, removed by RFC 1725) with the
	// highest message number retrieved in this session, as Dovecot's
	// pop3_enable_last does. Default false: LAST is an unknown command.
	EnableLAST bool
	// Workarounds turn on behaviours old clients need (legacy.go). Each
	// is off by default.
	Workarounds Workarounds

	// NoSendfile makes RETR read and write messages stored in wire form
	// on plain TCP connections, as it does over TLS, instead of having
	// the store send them with sendfile(2) (SocketSender). sendfile(2)
	// saves the server a copy of every octet, which is what a network
	// card wants; a client on the same host (a proxy in front, over
	// loopback) must then copy them out of the page cache cold, and on
	// a two-core test machine it became the bottleneck. Default false:
	// sendfile(2) where the store offers it.
	NoSendfile bool
}

const (
	maxCommandLine = 255      // RFC 2449 §4, terminator included
	maxAuthLine    = 16 << 10 // AUTH lines and SASL responses (RFC 5034 §4 allows more than 255)
	maxSASLRounds  = 10       // challenges per AUTH exchange
)

// Server serves POP3 on listeners.
type Server struct {
	opts   Options
	log    *slog.Logger
	nextID atomic.Uint64

	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	conns     map[*conn]struct{}
	stopping  atomic.Bool   // set by Shutdown and Close; changed only under mu
	stopped   chan struct{} // closed with stopping: ends login delays
	wg        sync.WaitGroup
	baseCtx   context.Context
	cancel    context.CancelFunc

	// testHookWait, set by tests before serving, is called by a session
	// about to wait for input, with its buffers given back (wait.go).
	testHookWait func(*conn)
}

// ErrServerClosed is returned by Serve after Shutdown or Close.
var ErrServerClosed = errors.New("pop3server: server closed")

// New returns a Server. It fails if the options are unusable.
func New(opts Options) (*Server, error) {
	if opts.Backend == nil {
		return nil, errors.New("pop3server: Options.Backend is required")
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Greeting == "" {
		opts.Greeting = "POP3 server ready"
	}
	if opts.Implementation == "" {
		opts.Implementation = "postoffice"
	}
	if opts.IdleTimeout <= 0 {
		opts.IdleTimeout = 10 * time.Minute
	}
	if opts.PreLoginTimeout <= 0 {
		opts.PreLoginTimeout = DefaultPreLoginTimeout
	}
	opts.PreLoginTimeout = min(opts.PreLoginTimeout, opts.IdleTimeout)
	if opts.WriteTimeout <= 0 {
		opts.WriteTimeout = DefaultWriteTimeout
	}
	if opts.MaxLoginCommands == 0 {
		opts.MaxLoginCommands = DefaultMaxLoginCommands
	}
	if opts.AuthFailDelay == 0 {
		opts.AuthFailDelay = time.Second
	}
	if opts.MaxAuthFailures <= 0 {
		opts.MaxAuthFailures = 3
	}
	if opts.MaxBadCommands <= 0 {
		opts.MaxBadCommands = DefaultMaxBadCommands
	}
	if opts.TLSHandshakeTimeout <= 0 {
		opts.TLSHandshakeTimeout = time.Minute
	}
	if opts.Hostname == "" {
		h, err := os.Hostname()
		if err != nil || !validHostname(h) {
			h = "localhost"
		}
		opts.Hostname = h
	} else if !validHostname(opts.Hostname) {
		return nil, errors.New("pop3server: Options.Hostname must be a host name (letters, digits, '-' and '.')")
	}
	if strings.ContainsAny(opts.Greeting, "\r\n\x00") || strings.ContainsAny(opts.Implementation, "\r\n\x00") {
		return nil, errors.New("pop3server: Options.Greeting and Implementation must be one line")
	}
	if e := strings.TrimSuffix(opts.Expire, " USER"); e != "" && e != "NEVER" {
		if n, err := strconv.Atoi(e); err != nil || n < 0 {
			return nil, errors.New(`pop3server: Options.Expire must be "NEVER" or a number of days, optionally followed by " USER"`)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{
		opts:      opts,
		log:       opts.Logger,
		listeners: make(map[net.Listener]struct{}),
		conns:     make(map[*conn]struct{}),
		stopped:   make(chan struct{}),
		baseCtx:   ctx,
		cancel:    cancel,
	}
	return s, nil
}

// Serve accepts plain POP3 connections on l until Shutdown or Close.
func (s *Server) Serve(l net.Listener) error { return s.serve(l, false) }

// ServeTLS accepts implicit-TLS connections (POP3S, RFC 8314) on l.
func (s *Server) ServeTLS(l net.Listener) error {
	if s.opts.TLSConfig == nil {
		return errors.New("pop3server: ServeTLS needs Options.TLSConfig")
	}
	return s.serve(l, true)
}

func (s *Server) serve(l net.Listener, implicitTLS bool) error {
	s.mu.Lock()
	if s.closing() {
		s.mu.Unlock()
		l.Close()
		return ErrServerClosed
	}
	s.listeners[l] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, l)
		s.mu.Unlock()
	}()

	var delay time.Duration
	for {
		nc, err := l.Accept()
		if err != nil {
			if s.closing() {
				return ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || isTemporary(err) {
				// EMFILE and friends: back off instead of spinning.
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				s.log.Warn("accept failed", "err", err, "retry_in", delay)
				time.Sleep(delay)
				continue
			}
			return err
		}
		delay = 0
		if implicitTLS {
			nc = tls.Server(corkOf(nc), s.opts.TLSConfig)
		}
		s.ServeConn(nc)
	}
}

// validHostname reports whether h can be the domain of an RFC 822 msg-id
// without quoting: LDH labels separated by dots. mpop, for one, refuses an
// APOP timestamp with '=' in it.
func validHostname(h string) bool {
	if h == "" || len(h) > 253 || h[0] == '.' || h[len(h)-1] == '.' || strings.Contains(h, "..") {
		return false
	}
	for i := 0; i < len(h); i++ {
		b := h[i]
		if !('a' <= b && b <= 'z' || 'A' <= b && b <= 'Z' || '0' <= b && b <= '9' || b == '-' || b == '.') {
			return false
		}
	}
	return true
}

func isTemporary(err error) bool {
	var t interface{ Temporary() bool }
	return errors.As(err, &t) && t.Temporary()
}

// ServeConn serves one already accepted connection in a new goroutine. A
// *tls.Conn is served as implicit TLS (its handshake runs first). While
// the session waits for a command, a *net.TCPConn or *net.UnixConn, or a
// wrapper of one with a RawInput method that says it holds no input
// (internal/netlimit's), is waited on without a read buffer (wait.go). A
// connection (under its TLS layer) with OnEvict and LoggedIn methods may
// be evicted by its limiter until it logs in (conn.go, evictableConn).
func (s *Server) ServeConn(nc net.Conn) {
	c := newConn(s, nc)
	s.mu.Lock()
	if s.closing() {
		s.mu.Unlock()
		nc.Close()
		return
	}
	s.conns[c] = struct{}{}
	s.wg.Add(1)
	s.mu.Unlock()
	if c.evictable != nil {
		c.evictable.OnEvict(c.evict)
	}
	go func() {
		defer s.wg.Done()
		defer func() {
			s.mu.Lock()
			delete(s.conns, c)
			s.mu.Unlock()
		}()
		growStartStack() // stack.go
		c.serve(s.baseCtx)
	}()
}

// Shutdown stops accepting connections, closes sessions waiting for a
// command or sitting out a login delay, and lets running commands (a RETR,
// a QUIT's commit) finish until ctx is done; then it closes the rest. A
// closed session deletes nothing: it never reached UPDATE.
func (s *Server) Shutdown(ctx context.Context) error {
	s.stop((*conn).abortIfIdle)
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
	}
	s.Close()
	<-done
	return ctx.Err()
}

// Close stops accepting and closes every connection at once.
func (s *Server) Close() error {
	s.stop((*conn).abort)
	s.cancel()
	return nil
}

// stop marks the server stopped, closes the listeners and applies end to
// every connection.
func (s *Server) stop(end func(*conn)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.stopping.Load() {
		close(s.stopped)
	}
	s.stopping.Store(true)
	for l := range s.listeners {
		l.Close()
	}
	for c := range s.conns {
		end(c)
	}
}

// closing reports whether Shutdown or Close was called. It takes no lock:
// sessions call it while holding their own.
func (s *Server) closing() bool { return s.stopping.Load() }

// Sessions returns the number of open connections.
func (s *Server) Sessions() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}
