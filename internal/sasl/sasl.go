package sasl

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"

	"github.com/postoffice-mail/postoffice/internal/auth"
	"github.com/postoffice-mail/postoffice/internal/auth/kerberos"
	"github.com/postoffice-mail/postoffice/internal/auth/oauth"
)

// Mechanism names.
const (
	ScramSHA256Plus = "SCRAM-SHA-256-PLUS"
	ScramSHA256     = "SCRAM-SHA-256"
	ScramSHA1Plus   = "SCRAM-SHA-1-PLUS"
	ScramSHA1       = "SCRAM-SHA-1"
	CramMD5         = "CRAM-MD5"
	Plain           = "PLAIN"
	Login           = "LOGIN"
	OAuthBearer     = "OAUTHBEARER"
	XOAuth2         = "XOAUTH2"
	External        = "EXTERNAL"
)

// MaxResponseSize bounds one decoded client response; a longer one is
// ErrMalformed. The engine should bound its lines below this anyway.
const MaxResponseSize = 64 << 10

var (
	// ErrAuthFailed means the credentials were not accepted: wrong password,
	// unknown user, unusable stored scheme, invalid token, wrong channel
	// binding, a refused authorization identity. Callers cannot and should not
	// tell these apart.
	ErrAuthFailed = errors.New("sasl: authentication failed")
	// ErrMalformed means a client message does not parse or breaks the
	// mechanism's rules.
	ErrMalformed = errors.New("sasl: malformed message")
	// ErrUnavailable means the mechanism is unknown, not enabled or not
	// usable on this connection (Start only).
	ErrUnavailable = errors.New("sasl: mechanism not available")
)

// defaultOrder is the list when Options.Enabled is nil: the mechanisms
// every stored scheme can serve. CRAM-MD5 and SCRAM work only for users
// stored in matching schemes, and a client that sees them offered picks
// them (mpop, Thunderbird's "encrypted password") and then fails for
// everyone else, so they are offered only when the admin lists them, as
// Dovecot's auth_mechanisms defaults to PLAIN alone.
var defaultOrder = []string{Plain, Login, OAuthBearer, XOAuth2}

// known lists every mechanism this package implements.
var known = []string{
	ScramSHA256Plus, ScramSHA256, ScramSHA1Plus, ScramSHA1, CramMD5, Plain, Login, OAuthBearer, XOAuth2, External, GSSAPI,
}

// Options configures New.
type Options struct {
	// Users is the user database. Required. CRAM-MD5 and the SCRAM
	// mechanisms need it to implement auth.CredentialDB; otherwise they are
	// left out of the default list, and naming them in Enabled is an error.
	Users auth.DB
	// OAuth verifies bearer tokens. Nil leaves OAUTHBEARER and XOAUTH2 out of
	// the default list, and naming them in Enabled is an error.
	OAuth oauth.Verifier
	// OAuthScope is the scope named in the OAUTHBEARER and XOAUTH2 error
	// challenges (RFC 7628 §3.2.2); empty omits it.
	OAuthScope string
	// Enabled lists the mechanisms to offer, in order of preference
	// (case-insensitive). Nil means PLAIN and LOGIN, then OAUTHBEARER and
	// XOAUTH2 when OAuth is set: what every stored scheme can serve. SCRAM,
	// CRAM-MD5 and EXTERNAL are offered only when listed here. An unknown
	// name is an error.
	Enabled []string
	// Secret keys the salts of SCRAM credentials the server makes up: the
	// decoys of unknown users and the keys it derives from a
	// plaintext-equivalent password. Nil (what postoffice serve uses) means
	// 32 random bytes for the life of the Mechanisms. A name's salt is then
	// the same at every attempt but changes at a restart, which tells an
	// unknown name (or a derived user) from a user with stored {SCRAM-*}
	// keys only to someone who asked for that name both before and after
	// the restart. A key that outlives the process would need secret state
	// kept somewhere; one derived from anything readable (a machine id, the
	// config) would let anyone compute a name's decoy salt and tell from a
	// single attempt whether the name exists. A caller that keeps a secret
	// of at least 32 random bytes may set it here. Tests set a fixed one.
	Secret []byte
	// Hostname goes into the CRAM-MD5 challenge. Empty means os.Hostname(),
	// or "localhost" if that fails.
	Hostname string
	// ExternalUsername says which part of a verified client certificate names
	// the user for EXTERNAL: "cn" (the default, the subject's CommonName) or
	// "email" (the first rfc822Name subjectAltName). The name must then be
	// found by Users.Lookup.
	ExternalUsername string
	// ServerCertificate returns the leaf certificate the server presented on
	// the connection, which tls-server-end-point channel binding (RFC 5929
	// §4) hashes; crypto/tls does not record it in ConnectionState. Nil (or
	// a nil result) offers tls-exporter only. A certificate reloaded between
	// handshake and AUTH only makes the binding fail.
	ServerCertificate func(cs *tls.ConnectionState) *x509.Certificate
	// GSSAPI, when set, offers the GSSAPI mechanism (RFC 4752) with this
	// Kerberos service principal, whatever Enabled says: configuring a
	// keytab is what turns it on, as in Dovecot. GSSAPIMapper, required
	// with it, maps the client principal to a user, which must then be
	// found by Users.Lookup.
	GSSAPI       *kerberos.Acceptor
	GSSAPIMapper *kerberos.Mapper
	// Logger receives debug lines about failed exchanges (mechanism and
	// reason, never secrets); nil discards them.
	Logger *slog.Logger
}

// Mechanisms is the table of enabled mechanisms. It is safe for concurrent
// use.
type Mechanisms struct {
	opts    Options
	enabled []string
	creds   auth.CredentialDB // nil if Users is not one
	log     *slog.Logger

	scramNonce func() string // tests only: a fixed server nonce
}

// New checks opts and returns the mechanism table.
func New(opts Options) (*Mechanisms, error) {
	if opts.Users == nil {
		return nil, errors.New("sasl: Options.Users is required")
	}
	m := &Mechanisms{opts: opts, log: opts.Logger}
	if m.log == nil {
		m.log = slog.New(slog.DiscardHandler)
	}
	m.creds, _ = opts.Users.(auth.CredentialDB)
	switch opts.ExternalUsername {
	case "":
		m.opts.ExternalUsername = "cn"
	case "cn", "email":
	default:
		return nil, fmt.Errorf("sasl: ExternalUsername %q: want \"cn\" or \"email\"", opts.ExternalUsername)
	}
	if m.opts.Hostname == "" {
		if h, err := os.Hostname(); err == nil && h != "" {
			m.opts.Hostname = h
		} else {
			m.opts.Hostname = "localhost"
		}
	}
	if m.opts.Secret == nil {
		m.opts.Secret = make([]byte, 32)
		rand.Read(m.opts.Secret)
	}

	if (opts.GSSAPI == nil) != (opts.GSSAPIMapper == nil) {
		return nil, errors.New("sasl: Options.GSSAPI and Options.GSSAPIMapper go together")
	}
	if opts.GSSAPI != nil {
		// Ticket logins first: a client that holds a ticket should use it
		// rather than ask its user for a password.
		m.enabled = append(m.enabled, GSSAPI)
	}
	if opts.Enabled == nil {
		for _, name := range defaultOrder {
			if m.usable(name) == nil {
				m.enabled = append(m.enabled, name)
			}
		}
		return m, nil
	}
	for _, name := range opts.Enabled {
		name = strings.ToUpper(strings.TrimSpace(name))
		if !slices.Contains(known, name) {
			return nil, fmt.Errorf("sasl: unknown mechanism %q", name)
		}
		if err := m.usable(name); err != nil {
			return nil, err
		}
		if !slices.Contains(m.enabled, name) {
			m.enabled = append(m.enabled, name)
		}
	}
	return m, nil
}

// usable reports why a mechanism cannot be enabled with these options.
func (m *Mechanisms) usable(name string) error {
	switch name {
	case ScramSHA256Plus, ScramSHA256, ScramSHA1Plus, ScramSHA1, CramMD5:
		if m.creds == nil {
			return fmt.Errorf("sasl: %s needs a user database that hands out stored credentials (auth.CredentialDB)", name)
		}
	case OAuthBearer, XOAuth2:
		if m.opts.OAuth == nil {
			return fmt.Errorf("sasl: %s needs an OAuth token verifier", name)
		}
	case GSSAPI:
		if m.opts.GSSAPI == nil {
			return fmt.Errorf("sasl: %s needs a Kerberos keytab", name)
		}
	}
	return nil
}

// Enabled returns the enabled mechanisms in order of preference, whatever
// the connection.
func (m *Mechanisms) Enabled() []string { return slices.Clone(m.enabled) }

// Available returns the enabled mechanisms usable on a connection with TLS
// state cs (nil without TLS), in order of preference: -PLUS only when a
// channel binding type is available, EXTERNAL only with a verified client
// certificate that names a user.
func (m *Mechanisms) Available(cs *tls.ConnectionState) []string {
	var out []string
	for _, name := range m.enabled {
		if m.availableOn(name, cs) {
			out = append(out, name)
		}
	}
	return out
}

func (m *Mechanisms) availableOn(name string, cs *tls.ConnectionState) bool {
	switch name {
	case ScramSHA256Plus, ScramSHA1Plus:
		return len(m.bindings(cs)) > 0
	case External:
		_, err := m.externalIdentity(cs)
		return err == nil
	}
	return true
}

// Server is one exchange in progress. It is not safe for concurrent use.
type Server interface {
	// Next takes the client's decoded response (nil: no initial response was
	// given; empty: an empty one) and returns the next challenge. done
	// reports success; a non-nil challenge with done is additional data
	// (SCRAM's server-final message) the engine sends as a continuation,
	// whose empty reply it awaits. Errors wrap ErrAuthFailed or ErrMalformed,
	// or are temporary failures. After done or an error the exchange is over.
	Next(ctx context.Context, response []byte) (challenge []byte, done bool, err error)
	// User is the authenticated user, valid once Next reported done.
	User() auth.User
}

// mechanism is one mechanism's state machine; exchange wraps it.
type mechanism interface {
	next(ctx context.Context, response []byte) (challenge []byte, done bool, err error)
	user() auth.User
}

// Start begins an exchange with the named mechanism on a connection with TLS
// state cs (nil without TLS). A mechanism not in Available(cs) is
// ErrUnavailable.
func (m *Mechanisms) Start(ctx context.Context, name string, cs *tls.ConnectionState) (Server, error) {
	name = strings.ToUpper(name)
	if !slices.Contains(m.enabled, name) || !m.availableOn(name, cs) {
		return nil, fmt.Errorf("%w: %q", ErrUnavailable, name)
	}
	var mech mechanism
	switch name {
	case Plain:
		mech = newPlain(m)
	case Login:
		mech = &loginServer{m: m}
	case CramMD5:
		mech = newCRAMMD5(m)
	case ScramSHA256, ScramSHA256Plus, ScramSHA1, ScramSHA1Plus:
		mech = newSCRAM(m, name, cs)
	case OAuthBearer:
		mech = newOAuthBearer(m)
	case XOAuth2:
		mech = &xoauth2Server{m: m}
	case GSSAPI:
		mech = &gssapiServer{m: m}
	case External:
		id, err := m.externalIdentity(cs)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
		}
		mech = newExternal(m, id)
	default:
		return nil, fmt.Errorf("%w: %q", ErrUnavailable, name)
	}
	return &exchange{m: m, name: name, mech: mech}, nil
}

// exchange enforces what every mechanism shares: the size bound, nothing
// after the end, and User only after success.
type exchange struct {
	m        *Mechanisms
	name     string
	mech     mechanism
	finished bool
	ok       bool
}

func (e *exchange) Next(ctx context.Context, response []byte) ([]byte, bool, error) {
	if e.finished {
		return nil, false, fmt.Errorf("%w: exchange already finished", ErrMalformed)
	}
	if len(response) > MaxResponseSize {
		e.finished = true
		return nil, false, fmt.Errorf("%w: response of %d bytes exceeds %d", ErrMalformed, len(response), MaxResponseSize)
	}
	challenge, done, err := e.mech.next(ctx, response)
	switch {
	case err != nil:
		e.finished = true
		e.m.log.Debug("sasl exchange failed", "mech", e.name, "err", err)
		return nil, false, err
	case done:
		e.finished, e.ok = true, true
	}
	return challenge, done, nil
}

func (e *exchange) User() auth.User {
	if !e.ok {
		return auth.User{}
	}
	return e.mech.user()
}

type identityHookKey struct{}

// WithIdentityHook returns a context carrying f. A mechanism given it in
// Server.Next calls f with the authentication identity as soon as it has
// parsed it from the client's message and before it checks any credential
// (PLAIN, LOGIN, CRAM-MD5, SCRAM), so the caller can apply a per-user delay
// first and count a failure for that name. An error from f ends the
// exchange: Next returns it.
func WithIdentityHook(ctx context.Context, f func(user string) error) context.Context {
	return context.WithValue(ctx, identityHookKey{}, f)
}

// identify calls the identity hook of ctx, if any.
func identify(ctx context.Context, user string) error {
	if f, ok := ctx.Value(identityHookKey{}).(func(string) error); ok && f != nil {
		return f(user)
	}
	return nil
}

// lookupErr maps a Users.Lookup error for a name the client asserted.
func lookupErr(err error) error {
	if errors.Is(err, auth.ErrUnknownUser) {
		return fmt.Errorf("%w: unknown user", ErrAuthFailed)
	}
	return err
}
