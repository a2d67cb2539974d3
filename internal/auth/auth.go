// Package auth defines the user database seam of postoffice: who may log in,
// with which credentials, and where their mail lives. Implementations live in
// subpackages (passwdfile for Dovecot's passwd-file format).
package auth

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strings"

	"github.com/postoffice-mail/postoffice/internal/ipgroup"
)

var (
	// ErrFailed is returned for a wrong password and for an unknown user
	// alike, so callers cannot tell them apart.
	ErrFailed = errors.New("auth: authentication failed")
	// ErrUnknownUser is returned by Lookup only (delivery needs to know).
	ErrUnknownUser = errors.New("auth: unknown user")
)

// User is an authenticated or looked-up account.
type User struct {
	Name  string            // canonical login name as stored in the database
	Home  string            // home directory, may be empty
	Extra map[string]string // extra fields (Dovecot's userdb_* and others), may be nil
	// Restrict limits where and whether the user may log in (Dovecot's
	// passdb extra fields nologin, reason, allow_nets, allow_real_nets).
	// The database only reports it; the caller that knows the connection
	// applies it with Restrictions.Check after the credentials were
	// verified, whatever the mechanism. It does not concern delivery.
	Restrict Restrictions
}

// Restrictions are the login restrictions of a user. The zero value
// restricts nothing.
type Restrictions struct {
	// NoLogin refuses every login, even with the right password
	// (Dovecot's nologin). Reason, if set, is the text the client is given
	// instead of the usual authentication failure (Dovecot's reason).
	NoLogin bool
	Reason  string
	// AllowNets, when not nil, lists the only networks the client may log
	// in from: its address as the server sees it after the PROXY protocol
	// (Dovecot's allow_nets).
	AllowNets []netip.Prefix
	// AllowRealNets, when not nil, lists the only networks the direct peer
	// may be in: the load balancer's address when the PROXY protocol is in
	// use, the client's otherwise (Dovecot's allow_real_nets).
	AllowRealNets []netip.Prefix
}

// NoLoginError is the error of Restrictions.Check for a user with NoLogin.
// Reason is meant for the client; it may be empty.
type NoLoginError struct{ Reason string }

func (e *NoLoginError) Error() string {
	if e.Reason == "" {
		return "auth: login disabled for this user"
	}
	return "auth: login disabled for this user: " + e.Reason
}

// ErrNetDenied is the error of Restrictions.Check for a client outside the
// user's allowed networks.
var ErrNetDenied = errors.New("auth: client address not in the user's allowed networks")

// Check applies r to a login from client (the address after the PROXY
// protocol) through direct (the socket's peer). A connection without an IP
// address (a Unix socket, a pipe) is outside every network list, as in
// Dovecot, which needs the keyword "local" for those; postoffice does not
// accept that keyword. The error is a *NoLoginError or ErrNetDenied.
func (r Restrictions) Check(client, direct net.Addr) error {
	if r.NoLogin {
		return &NoLoginError{Reason: r.Reason}
	}
	if r.AllowNets != nil {
		ip, ok := ipgroup.Addr(client)
		if !ok || !ipgroup.Contains(r.AllowNets, ip) {
			return ErrNetDenied
		}
	}
	if r.AllowRealNets != nil {
		ip, ok := ipgroup.Addr(direct)
		if !ok || !ipgroup.Contains(r.AllowRealNets, ip) {
			return ErrNetDenied
		}
	}
	return nil
}

// LoginAlias returns the name Demon's SDPS login form stands for:
// "user+domain" typed at login means "user@domain" (the last '+' separates
// the domain). ok is false for a name with an '@' (it already has a domain,
// and "alice+news@example.org" is plus-addressing, not this form) and for a
// name without a '+' between two non-empty parts.
//
// The alias is for names a user types at an interactive POP3 login (USER,
// APOP, the authentication identity of PLAIN, LOGIN, CRAM-MD5, SCRAM), where
// clients of Demon's service sent it because some could not send an '@'.
// It never applies to a name that comes from elsewhere: an LMTP or LDA
// recipient, an OAuth claim, a client certificate. There, "alice+x.org" is
// someone else's name or a plus-address, and reading it as alice@x.org
// would hand alice's mail or mailbox to whoever can choose that name.
func LoginAlias(login string) (alias string, ok bool) {
	if strings.Contains(login, "@") {
		return "", false
	}
	i := strings.LastIndexByte(login, '+')
	if i <= 0 || i == len(login)-1 {
		return "", false
	}
	return login[:i] + "@" + login[i+1:], true
}

// DB is a user database.
//
// Authenticate (and CredentialDB.Credentials) serve interactive logins: they
// take the name the user typed and, when no user has exactly that name, also
// its LoginAlias. Lookup takes a name from elsewhere (a recipient, a token
// claim, a certificate) and finds only the user of exactly that name.
type DB interface {
	// Authenticate checks a plaintext password for a login name (exactly,
	// else its LoginAlias). It returns ErrFailed for an unknown user and for
	// a wrong password, spending about the same time on both. Other errors
	// are temporary failures (database down).
	Authenticate(ctx context.Context, user, password string) (User, error)
	// Lookup finds the user of exactly this name without a password (for
	// delivery, token and certificate logins). It returns ErrUnknownUser if
	// there is none.
	Lookup(ctx context.Context, user string) (User, error)
}

// CredentialDB is a DB that also hands out a user's stored password. The
// challenge-response methods (APOP, CRAM-MD5, SCRAM) need the stored secret
// itself, not a password to check against it.
type CredentialDB interface {
	DB
	// Credentials returns the user of a login name (exactly, else its
	// LoginAlias) and its stored password in "{SCHEME}data" form, the database's default scheme made explicit. It returns
	// ErrUnknownUser when there is no such user; other errors are temporary
	// failures.
	Credentials(ctx context.Context, user string) (User, string, error)
}

// SCRAMParams are the public parameters of a user's SCRAM credentials
// (RFC 5802 §3): what the server-first message shows (i=, the salt's length)
// and what answering it costs the server.
type SCRAMParams struct {
	// Derived is true for a plaintext-equivalent stored password: the SCRAM
	// server derives the keys at each login (one PBKDF2) with its own
	// iteration count and salt, and Iterations and SaltLen are zero.
	Derived bool
	// Iterations and SaltLen (in bytes) are those of stored {SCRAM-*} keys,
	// which cost no key derivation to serve.
	Iterations int
	SaltLen    int
}

// SCRAMDecoyDB is a CredentialDB that tells a SCRAM server how to answer a
// name it does not have. A SCRAM server must send the salt and iteration
// count before it can check anything (RFC 5802 §5), so for an unknown name it
// makes up decoy credentials; to be told from nothing, they must look and
// cost like those of most real users and stay the same for every spelling of
// the name the database treats as one.
type SCRAMDecoyDB interface {
	CredentialDB
	// DominantSCRAM returns the parameters of the most common kind of SCRAM
	// credentials among the users whose stored password can serve SCRAM
	// with hash ("SHA-1" or "SHA-256"); ok is false when no user's can.
	DominantSCRAM(ctx context.Context, hash string) (p SCRAMParams, ok bool)
	// CanonicalName returns the one spelling shared by every spelling of
	// user that the database looks up as the same entry: the stored name of
	// a user it has, and for any other name the name it would have. Names
	// the database tells apart (by case, say) stay apart.
	CanonicalName(user string) string
}
