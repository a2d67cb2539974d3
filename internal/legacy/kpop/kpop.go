// Package kpop serves Kerberized POP: POP3 on its own port (1109, "kpop"
// in /etc/services) where the client proves its identity with a Kerberos 5
// ticket before any POP3 text, as MIT's popper and fetchmail's "protocol
// KPOP" with "auth kerberos_v5" do.
//
// The exchange, from fetchmail's driver.c (kerberos5_auth) and MIT krb5's
// krb5_sendauth/krb5_recvauth (lib/krb5/krb/sendauth.c, recvauth.c):
//
//	C: "KRB5_SENDAUTH_V1.0", "KPOPV1.0" (each with a 4-octet length)
//	S: 0x00
//	C: AP-REQ for pop/HOST@REALM, mutual authentication required
//	S: empty message (or a KRB-ERROR, a "-ERR [AUTH]" line, and the end)
//	S: AP-REP
//	S: +OK greeting, and POP3 from there (RFC 1939)
//
// fetchmail then logs in with USER and PASS; its password is a dummy (it
// sends the user name). USER must name the local user the principal maps
// to; PASS is not checked, since the ticket was the credential. No SASL,
// APOP or STLS is offered on this port: the session is already
// authenticated, and nothing in KPOP protects the stream afterwards.
//
// Kerberos 4's krb_sendauth ("KPOPV0.1"), KPOP's original form, is not
// implemented: Kerberos 4 is withdrawn from MIT Kerberos and broken.
package kpop

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/postoffice-mail/postoffice/internal/auth/kerberos"
	"github.com/postoffice-mail/postoffice/internal/legacy/listen"
	"github.com/postoffice-mail/postoffice/pop3proto"
	"github.com/postoffice-mail/postoffice/pop3server"
)

// AppVersion is the application version string of KPOP's sendauth.
const AppVersion = "KPOPV1.0"

// DefaultHandshakeTimeout bounds the sendauth exchange.
const DefaultHandshakeTimeout = 30 * time.Second

// Opener opens the maildrop of an authenticated user name, as
// internal/backend's OpenAuthenticated does.
type Opener interface {
	OpenAuthenticated(ctx context.Context, c *pop3server.Conn, name string) (pop3server.Mailbox, error)
}

// Options configure New. Acceptor, Mapper and Opener are required.
type Options struct {
	Acceptor *kerberos.Acceptor
	Mapper   *kerberos.Mapper
	Opener   Opener
	// POP3 are the engine's options for the sessions after the handshake;
	// Backend is replaced, and AllowPlaintextAuth is forced on (PASS
	// carries no secret here).
	POP3 pop3server.Options
	// HandshakeTimeout bounds the sendauth exchange; zero means
	// DefaultHandshakeTimeout.
	HandshakeTimeout time.Duration
	Logger           *slog.Logger
}

// Server is a KPOP server.
type Server struct {
	opts Options
	eng  *pop3server.Server
	log  *slog.Logger

	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	pending   map[net.Conn]struct{} // in the handshake
	closed    bool
	wg        sync.WaitGroup
}

// New makes a KPOP server.
func New(opts Options) (*Server, error) {
	if opts.Acceptor == nil || opts.Mapper == nil || opts.Opener == nil {
		return nil, errors.New("kpop: Options.Acceptor, Mapper and Opener are required")
	}
	if opts.HandshakeTimeout <= 0 {
		opts.HandshakeTimeout = DefaultHandshakeTimeout
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{opts: opts, log: opts.Logger, listeners: map[net.Listener]struct{}{}, pending: map[net.Conn]struct{}{}}
	po := opts.POP3
	po.Backend = backend{s}
	po.AllowPlaintextAuth = true
	po.TLSConfig = nil
	po.Logger = opts.Logger
	eng, err := pop3server.New(po)
	if err != nil {
		return nil, fmt.Errorf("kpop: %w", err)
	}
	s.eng = eng
	return s, nil
}

// Serve accepts connections on l until it is closed or the server stops.
func (s *Server) Serve(l net.Listener) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return errors.New("kpop: server closed")
	}
	s.listeners[l] = struct{}{}
	s.mu.Unlock()
	return listen.Loop(l, s.isClosed, s.log, "kpop", func(nc net.Conn) {
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			nc.Close()
			return
		}
		s.pending[nc] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go s.handshake(nc)
	})
}

// isClosed reports whether Close or Shutdown has begun.
func (s *Server) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// handshake runs sendauth on nc and hands it to the engine.
func (s *Server) handshake(nc net.Conn) {
	defer s.wg.Done()
	defer func() {
		s.mu.Lock()
		delete(s.pending, nc)
		s.mu.Unlock()
	}()
	nc.SetDeadline(time.Now().Add(s.opts.HandshakeTimeout))
	acc, err := s.opts.Acceptor.RecvAuth(nc, AppVersion, nc.RemoteAddr())
	if err != nil {
		s.log.Info("kpop handshake failed", "remote", nc.RemoteAddr().String(), "err", err)
		if errors.Is(err, kerberos.ErrRefused) {
			// The KRB-ERROR went first, and sendauth clients (fetchmail,
			// MIT's and Heimdal's krb5_sendauth) stop reading there and
			// report its text, as they do against Heimdal's popper, which
			// only closes. The line after it says the same in POP3's
			// terms (RFC 3206 §5) to anything reading the stream as text:
			// a person with a terminal client, a monitoring probe. It is
			// written before the close, so it cannot cut the KRB-ERROR.
			fmt.Fprintf(nc, "-ERR [%s] Kerberos ticket refused: run kinit for a fresh ticket, then reconnect\r\n", pop3proto.CodeAuth)
		}
		nc.Close()
		return
	}
	nc.SetDeadline(time.Time{})
	user, err := s.opts.Mapper.User(acc.Client)
	if err != nil {
		// The principal was proven; it has no mailbox here. The session
		// goes on so that the client sees the usual -ERR [AUTH] at USER.
		s.log.Info("kpop principal maps to no user", "principal", acc.Client.String(), "err", err)
		user = ""
	}
	s.log.Debug("kpop handshake", "principal", acc.Client.String(), "user", user)
	s.eng.ServeConn(&conn{Conn: nc, local: &Addr{Addr: nc.LocalAddr(), Principal: acc.Client.String(), User: user}})
}

// Close stops the listeners and closes every connection.
func (s *Server) Close() error {
	s.stop()
	return s.eng.Close()
}

// Shutdown stops the listeners, drops the handshakes in progress and lets
// sessions end as pop3server.Server.Shutdown does.
func (s *Server) Shutdown(ctx context.Context) error {
	s.stop()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
	}
	return s.eng.Shutdown(ctx)
}

func (s *Server) stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	for l := range s.listeners {
		l.Close()
	}
	for c := range s.pending {
		c.Close()
	}
}

// Addr is the local address of a KPOP connection as the engine sees it:
// it carries the identity the handshake proved to the session, which has
// no other way to the connection.
type Addr struct {
	net.Addr
	Principal string // the client principal, "name@REALM"
	User      string // its local user, "" when it maps to none
}

// conn is a connection after the handshake.
type conn struct {
	net.Conn
	local *Addr
}

func (c *conn) LocalAddr() net.Addr { return c.local }

// NetConn returns the connection under it (the engine finds the peer's
// socket through it).
func (c *conn) NetConn() net.Conn { return c.Conn }

// backend makes the sessions of the engine.
type backend struct{ s *Server }

func (b backend) NewSession(ctx context.Context, c *pop3server.Conn) (pop3server.Session, error) {
	a, ok := c.LocalAddr.(*Addr)
	if !ok {
		return nil, errors.New("kpop: connection without a Kerberos identity")
	}
	return &session{s: b.s, conn: c, id: a}, nil
}

// session is the AUTHORIZATION state of a KPOP session: USER/PASS only.
type session struct {
	s    *Server
	conn *pop3server.Conn
	id   *Addr
}

// Login takes USER's name, which must be the principal's user; the
// password is not checked (fetchmail sends a dummy).
func (s *session) Login(ctx context.Context, username, _ string) (pop3server.Mailbox, error) {
	if s.id.User == "" || username != s.id.User {
		s.s.log.Info("kpop login refused: USER is not the principal's user", "principal", s.id.Principal, "user", username)
		return nil, pop3server.ErrAuthFailed
	}
	return s.s.opts.Opener.OpenAuthenticated(ctx, s.conn, username)
}

func (s *session) Close() error { return nil }
