package backend

import (
	"context"
	"crypto/md5"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"strings"

	"github.com/postoffice-mail/postoffice/internal/auth"
	"github.com/postoffice-mail/postoffice/internal/auth/scheme"
	"github.com/postoffice-mail/postoffice/internal/sasl"
	"github.com/postoffice-mail/postoffice/pop3server"
)

// apop checks an APOP digest (RFC 1939 §7): MD5 of the greeting's timestamp
// followed by the shared secret, which is the stored password, so it works
// only where that is plaintext-equivalent.
func (s *session) apop(ctx context.Context, user, timestamp, digest string) (pop3server.Mailbox, error) {
	b := s.b
	u, stored, err := b.opts.Users.(auth.CredentialDB).Credentials(ctx, user)
	if errors.Is(err, auth.ErrUnknownUser) {
		return nil, pop3server.ErrAuthFailed
	}
	if err != nil {
		return nil, authUnavailable(err)
	}
	secret, ok := scheme.PlaintextEquivalent(stored)
	if !ok {
		// Logged so an admin can tell "wrong password" from "this user's
		// scheme cannot do APOP"; the client sees the same [AUTH].
		b.log.Info("apop impossible for user: stored scheme is not plaintext-equivalent", "user", u.Name)
		return nil, pop3server.ErrAuthFailed
	}
	sum := md5.Sum([]byte(timestamp + secret))
	want := hex.EncodeToString(sum[:])
	if subtle.ConstantTimeCompare([]byte(want), []byte(digest)) != 1 {
		return nil, pop3server.ErrAuthFailed
	}
	return b.openSelect(ctx, s.conn, u, "", loginInfo{mech: "APOP"})
}

// Mechanisms implements pop3server.SASLSession: the mechanisms usable on
// this connection now, none (no SASL) without Options.SASL.
func (s *session) Mechanisms() []string {
	if s.b.opts.SASL == nil {
		return nil
	}
	return s.b.opts.SASL.Available(s.conn.TLS)
}

// StartSASL implements pop3server.SASLSession.
func (s *session) StartSASL(ctx context.Context, mech string) (pop3server.SASLExchange, error) {
	if s.b.opts.SASL == nil {
		return nil, errUnavailable
	}
	srv, err := s.b.opts.SASL.Start(ctx, mech, s.conn.TLS)
	if err != nil {
		return nil, saslError(err)
	}
	return &exchange{b: s.b, conn: s.conn, srv: srv, mech: strings.ToUpper(mech)}, nil
}

// exchange adapts a sasl.Server to pop3server.SASLExchange.
type exchange struct {
	b        *Backend
	conn     *pop3server.Conn
	srv      sasl.Server
	mech     string // upper case
	done     bool
	identify func(user string) error // from OnIdentity, may be nil
}

var _ pop3server.SASLIdentityNotifier = (*exchange)(nil)

// OnIdentity implements pop3server.SASLIdentityNotifier: the mechanisms
// report the authentication identity through sasl.WithIdentityHook.
func (e *exchange) OnIdentity(f func(user string) error) { e.identify = f }

var (
	errMalformed   = &pop3server.Error{Text: "Invalid SASL message: start again with AUTH"}
	errUnavailable = &pop3server.Error{Text: "Unsupported authentication mechanism: send CAPA, its SASL line lists the mechanisms offered"}
)

// saslError maps the mechanism table's errors to what the client sees.
func saslError(err error) error {
	switch {
	case errors.Is(err, sasl.ErrAuthFailed):
		return pop3server.ErrAuthFailed
	case errors.Is(err, sasl.ErrMalformed):
		return errMalformed
	case errors.Is(err, sasl.ErrUnavailable):
		return errUnavailable
	}
	return authUnavailable(err)
}

func (e *exchange) Next(ctx context.Context, response []byte) ([]byte, bool, error) {
	if e.identify != nil {
		ctx = sasl.WithIdentityHook(ctx, e.identify)
	}
	ctx = sasl.WithRemoteAddr(ctx, e.conn.RemoteAddr)
	ch, done, err := e.srv.Next(ctx, response)
	if err != nil {
		if e.mech == sasl.GSSAPI && errors.Is(err, sasl.ErrAuthFailed) {
			// The engine logs "authentication failed" without a reason;
			// a Kerberos refusal's reason (expired ticket, replay,
			// ticket for another service, principal without a user) is
			// what an administrator needs, and it holds no secret: the
			// principal and the KDC's error text, never a token or key.
			e.b.log.Info("gssapi refused", "conn", e.conn.ID, "remote", addrString(e.conn.RemoteAddr), "err", err)
		}
		return nil, false, saslError(err)
	}
	e.done = done
	return ch, done, nil
}

func (e *exchange) Login(ctx context.Context) (pop3server.Mailbox, error) {
	if !e.done {
		return nil, errors.New("backend: SASL Login before the exchange succeeded")
	}
	return e.b.openSelect(ctx, e.conn, e.srv.User(), "", loginInfo{mech: e.mech})
}

func (e *exchange) User() string { return e.srv.User().Name }
