package pop3server

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/postoffice-mail/postoffice/internal/wire"
	"github.com/postoffice-mail/postoffice/pop3proto"
)

// The answers to a password offered in the clear where plaintextOK forbids
// it. They start with Dovecot's words, which admins already know, and say
// what to do: with STLS offered, the client can switch on this very
// connection; without it, only implicit TLS (port 995) is left. [AUTH]
// as Dovecot sends it: the credentials were not accepted (RFC 3206 §5).
const (
	replyPlaintextDisallowed      = "-ERR [AUTH] Plaintext authentication disallowed on non-secure connections: this server accepts passwords only over TLS; use port 995 or STLS"
	replyPlaintextDisallowedNoTLS = "-ERR [AUTH] Plaintext authentication disallowed on non-secure connections: this server accepts passwords only over TLS; use port 995 (POP3S)"
)

// plaintextDisallowed is the answer to a password offered in the clear
// where plaintextOK forbids it.
func (c *conn) plaintextDisallowed() string {
	if c.stlsAvailable() {
		return replyPlaintextDisallowed
	}
	return replyPlaintextDisallowedNoTLS
}

// plaintextMechanisms send a reusable secret in the clear; they fall under
// Options.AllowPlaintextAuth like USER/PASS.
var plaintextMechanisms = []string{"PLAIN", "LOGIN", "OAUTHBEARER", "XOAUTH2"}

// plaintextOK reports whether a password may cross this connection in the
// clear: the options allow it, or TLS is on, or the peer is this host
// (RFC 2595 §2.3 lets a server refuse cleartext logins without TLS).
func (c *conn) plaintextOK() bool {
	return c.srv.opts.AllowPlaintextAuth || c.info.TLS != nil || isLocal(c.info.RemoteAddr)
}

// isLocal reports whether a is a loopback address (127.0.0.0/8, ::1, also
// IPv4-mapped) or a Unix socket. Any net.Addr works: a PROXY-protocol or
// test wrapper's address is parsed from its String form.
func isLocal(a net.Addr) bool {
	if a == nil {
		return false
	}
	if _, ok := a.(*net.UnixAddr); ok {
		return true
	}
	host := a.String()
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.Unmap().IsLoopback()
}

// saslSession returns the session's SASLSession and its mechanism list, or
// nil when the session offers no SASL now: it does not implement
// SASLSession, or its list is empty (go-smtp's rule: one session type
// serves with SASL on or off).
func (c *conn) saslSession() (SASLSession, []string) {
	ss, ok := c.sess.(SASLSession)
	if !ok {
		return nil, nil
	}
	mechs := ss.Mechanisms()
	if len(mechs) == 0 {
		return nil, nil
	}
	return ss, mechs
}

// mechanisms returns the SASL mechanisms to offer now: the backend's list
// without the plaintext ones where plaintextOK forbids them. It is nil when
// the session has no SASL.
func (c *conn) mechanisms() []string {
	_, mechs := c.saslSession()
	return c.allowed(mechs)
}

// allowed returns mechs without the plaintext mechanisms where
// plaintextOK forbids them.
func (c *conn) allowed(mechs []string) []string {
	if c.plaintextOK() {
		return mechs
	}
	var out []string
	for _, m := range mechs {
		if !slices.Contains(plaintextMechanisms, wire.ToUpperASCII(m)) {
			out = append(out, m)
		}
	}
	return out
}

// validText applies RFC 6856 §2 to a USER, PASS or APOP argument: after
// UTF8 it must be UTF-8. Before UTF8, octets pass through as they always
// have.
func (c *conn) validText(s string) bool {
	return !c.info.UTF8 || utf8.ValidString(s)
}

// apopTimestamp makes a greeting timestamp: an RFC 822 msg-id,
// "<pid.random@host>", unique per connection (RFC 1939 §7). Its characters
// are digits, hex and the host name, so never '=', which mpop refuses.
func (s *Server) apopTimestamp() string {
	var b [12]byte
	rand.Read(b[:])
	return "<" + strconv.Itoa(os.Getpid()) + "." + hex.EncodeToString(b[:]) + "@" + s.opts.Hostname + ">"
}

// cmdAPOP is RFC 1939 §7 "APOP name digest". It is not subject to the
// plaintext rule: only a digest of the timestamp crosses the wire.
func (c *conn) cmdAPOP(ctx context.Context, args string) error {
	as, ok := c.sess.(APOPSession)
	if !ok || c.apopTS == "" {
		return c.badErr("-ERR Unknown command: send CAPA for the commands this server supports")
	}
	// The digest is the last word; the name may hold spaces.
	i := strings.LastIndexByte(args, ' ')
	if i <= 0 {
		return c.badErr("-ERR APOP needs a user name and a digest: send APOP name digest")
	}
	name, digest := args[:i], args[i+1:]
	if !isHexDigest(digest) {
		return c.badErr("-ERR Invalid APOP digest: send 32 hex digits, the MD5 of the greeting's timestamp and the password")
	}
	if strings.IndexByte(name, 0) >= 0 || !c.validText(name) {
		return c.badErr("-ERR Invalid UTF-8 after the UTF8 command: send the name and password in UTF-8")
	}
	if err := c.beforeLogin(name, "APOP"); err != nil {
		return err
	}
	c.user = name
	start := time.Now()
	mbox, err := as.APOP(ctx, name, c.apopTS, wire.ToLowerASCII(digest))
	a := loginAttempt{method: "APOP", d: time.Since(start)}
	if err != nil {
		return c.loginFailed(err, a, name, nil)
	}
	return c.enterTransaction(mbox, a)
}

// isHexDigest reports whether s is 32 hex digits (an MD5 digest).
func isHexDigest(s string) bool {
	if len(s) != 32 {
		return false
	}
	for i := 0; i < len(s); i++ {
		b := s[i]
		if !('0' <= b && b <= '9' || 'a' <= b && b <= 'f' || 'A' <= b && b <= 'F') {
			return false
		}
	}
	return true
}

// cmdAuth is SASL AUTH (RFC 5034 §4) and, without an argument and with
// Workarounds.BareAUTH, the mechanism listing older clients use (Outlook
// and Netscape send it; Microsoft's [MS-POP3] §2.2.1 documents it, no RFC
// does). The engine
// owns the framing; the backend's SASLExchange sees decoded octets only.
// No payload is ever logged.
func (c *conn) cmdAuth(ctx context.Context, args string) error {
	ss, offered := c.saslSession()
	if ss == nil {
		return c.badErr("-ERR Unknown command: send CAPA for the commands this server supports")
	}
	mechs := c.allowed(offered)
	if args == "" {
		if !c.srv.opts.Workarounds.BareAUTH {
			return c.badErr("-ERR AUTH needs a mechanism name: send CAPA for the SASL mechanisms this server supports")
		}
		c.writeLine("+OK")
		for _, m := range mechs {
			c.writeLine(m)
		}
		c.writeLine(".")
		return nil
	}
	c.user = ""
	mech, ir, _ := strings.Cut(args, " ")
	// Mechanism names are upper-case ASCII (RFC 4422 §3.1); a client's
	// lower case is accepted, but no other letter folds onto them.
	mech = wire.ToUpperASCII(mech)
	if !slices.Contains(mechs, mech) {
		if slices.Contains(offered, mech) {
			return c.badErr(c.plaintextDisallowed())
		}
		return c.badErr("-ERR Unsupported authentication mechanism: send CAPA, its SASL line lists the mechanisms offered")
	}
	// RFC 5034 §4: "=" is an empty initial response; none at all means
	// the mechanism's first challenge is sent.
	var resp []byte
	if ir != "" {
		var ok bool
		if resp, ok = decodeSASL(ir); !ok {
			return c.badErr("-ERR Invalid base64 data: send the SASL response in base64, or * to cancel")
		}
	}
	// The user is not known before the exchange: the LoginLimiter is asked
	// about the client address first, then, once a client message names
	// the authentication identity (SASLIdentityNotifier), about that user,
	// before any credential is checked; a failure is counted for it.
	if err := c.beforeLogin("", mech); err != nil {
		return err
	}
	exch, err := ss.StartSASL(ctx, mech)
	if err != nil {
		return c.loginFailed(err, loginAttempt{method: mech}, "", nil)
	}
	var ident string  // the authentication identity, once reported
	var hookErr error // the session must end: refused or shutting down
	if n, ok := exch.(SASLIdentityNotifier); ok {
		n.OnIdentity(func(user string) error {
			ident, c.user = user, user
			hookErr = c.userDelay(user)
			return hookErr
		})
	}
	for round := 0; ; round++ {
		challenge, done, err := exch.Next(ctx, resp)
		if hookErr != nil {
			return hookErr
		}
		if err != nil {
			return c.loginFailed(err, loginAttempt{method: mech}, ident, nil)
		}
		if done && len(challenge) == 0 {
			break
		}
		if round >= maxSASLRounds {
			return c.badErr("-ERR Too many SASL round trips, authentication aborted: start again with AUTH")
		}
		// RFC 5034 §4: a challenge is "+ " and base64, also the
		// additional data that comes with success, which the client
		// answers with an empty line.
		c.writeLine("+ " + base64.StdEncoding.EncodeToString(challenge))
		line, err := c.readContinuation()
		if err == wire.ErrLineTooLong {
			return c.lineTooLong()
		}
		if err != nil {
			return err
		}
		if line == "*" {
			if ident != "" {
				// The server has already done work for this user (SCRAM
				// derives keys when it answers the client-first message):
				// a cancel here is a failed login, or an attacker could
				// make us run PBKDF2 for free.
				return c.loginFailed(&Error{Code: pop3proto.CodeAuth, Text: "Authentication aborted by the client: start again with AUTH or USER"}, loginAttempt{method: mech}, ident, nil)
			}
			c.writeLine("-ERR Authentication aborted by the client: start again with AUTH or USER")
			return nil
		}
		var ok bool
		if resp, ok = decodeSASL(line); !ok {
			return c.badErr("-ERR Invalid base64 data: send the SASL response in base64, or * to cancel")
		}
		if done {
			if len(resp) != 0 {
				return c.badErr("-ERR Expected an empty response: send an empty line to finish, or * to cancel")
			}
			break
		}
	}
	c.user = exch.User()
	if ident == "" {
		ident = c.user
	}
	start := time.Now()
	mbox, err := exch.Login(ctx)
	a := loginAttempt{method: mech, d: time.Since(start)}
	if err != nil {
		return c.loginFailed(err, a, ident, nil)
	}
	return c.enterTransaction(mbox, a)
}

// decodeSASL decodes a client's SASL response: "=" or nothing is empty,
// anything else strict padded base64 without line breaks.
func decodeSASL(s string) ([]byte, bool) {
	if s == "" || s == "=" {
		return []byte{}, true
	}
	if strings.ContainsAny(s, "\r\n") {
		return nil, false
	}
	b, err := base64.StdEncoding.Strict().DecodeString(s)
	return b, err == nil
}

// readContinuation sends what is buffered and reads the client's answer to
// a SASL challenge, under the pre-login timeout and the AUTH line limit.
// While it waits the session counts as idle, so Shutdown may close it.
func (c *conn) readContinuation() (string, error) {
	if err := c.flush(); err != nil {
		return "", err
	}
	if !c.setBusy(false) {
		return "", errClose
	}
	c.nc.SetReadDeadline(time.Now().Add(c.readTimeout()))
	line, _, err := c.readLine(authLineLimit)
	if err == nil || err == wire.ErrLineTooLong {
		c.setBusy(true)
	}
	return string(line), err
}

// SASLIdentityNotifier is an add-on a SASLExchange implements when it can
// name the authentication identity as soon as a client message reveals it,
// before it checks any credential (PLAIN, LOGIN, CRAM-MD5, SCRAM). The
// engine then applies the LoginLimiter's per-user delay to that name and
// counts a failure, or a cancel after the identity was reported, for it.
type SASLIdentityNotifier interface {
	// OnIdentity registers f, called at most once per Next with the
	// authentication identity, before credentials are checked. When f
	// returns an error the exchange must stop and Next return at once
	// (any error); the engine then ends the session.
	OnIdentity(f func(user string) error)
}

// UserDelayer is an add-on a LoginLimiter implements to delay a login by
// the user it names once that name is known, without taking another
// attempt from the client's address: the engine calls it when a SASL
// exchange reports its identity (SASLIdentityNotifier), after BeforeLogin
// was asked without a user. *ratelimit.Limiter is one.
type UserDelayer interface {
	UserDelay(remote net.Addr, user string) time.Duration
}

// userDelay waits the LoginLimiter's per-user delay for user, if it has
// one. An error ends the session (the server is stopping).
func (c *conn) userDelay(user string) error {
	ud, ok := c.srv.opts.LoginLimiter.(UserDelayer)
	if !ok {
		return nil
	}
	if d := ud.UserDelay(c.info.RemoteAddr, user); d > 0 {
		c.log.Debug("login delayed", "user", user, "delay", d)
		return c.pause(d)
	}
	return nil
}
