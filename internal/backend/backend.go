// Package backend joins a user database (internal/auth) and a message store
// (internal/store) into a pop3server.Backend: it authenticates, enforces
// LOGIN-DELAY (RFC 2449 §6.5, §8.1.1), opens the maildrop under its lock at
// login and hands the marked messages to the store's Commit in UPDATE.
//
// It translates store and auth errors into the response codes clients act
// on (RFC 2449 §8, RFC 3206): [AUTH] for credentials, [IN-USE] for a locked
// maildrop, [LOGIN-DELAY], and [SYS/TEMP] for anything else, whose detail
// goes to the log only.
package backend

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/postoffice-mail/postoffice/internal/auth"
	"github.com/postoffice-mail/postoffice/internal/ledger"
	"github.com/postoffice-mail/postoffice/internal/sasl"
	"github.com/postoffice-mail/postoffice/internal/store"
	"github.com/postoffice-mail/postoffice/pop3proto"
	"github.com/postoffice-mail/postoffice/pop3server"
)

// Options configure a Backend. Users and Store are required.
type Options struct {
	Users  auth.DB
	Store  store.Store
	Logger *slog.Logger // default: discard
	// LoginDelay is the minimum time between two logins of one user; zero
	// disables the check.
	LoginDelay time.Duration
	// Now is the clock; default time.Now.
	Now func() time.Time
	// APOP enables the APOP command (RFC 1939 §7). Users must then be an
	// auth.CredentialDB, and APOP works only for users whose stored password
	// is plaintext-equivalent ({PLAIN}, {CRAM-MD5} cannot serve it).
	APOP bool
	// SASL, if set, offers SASL AUTH (RFC 5034) with its mechanisms.
	SASL *sasl.Mechanisms
	// IdleTimeout is the engine's pop3server.Options.IdleTimeout, said in
	// the [IN-USE] reply (when the session holding the maildrop ends at
	// the latest); zero means the engine's default, 10 minutes.
	IdleTimeout time.Duration
	// MultiDrop, if set, serves shared maildrops whose login names select
	// part of them (SDPS, internal/legacy/sdps).
	MultiDrop MultiDrop
	// RPOP, if set, offers RPOP (RFC 1081) and decides who may use it
	// (internal/legacy/rpop).
	RPOP RPOPPolicy
	// Ledger, if set, wraps every maildrop in a ledger view: retrieval
	// history, first-retrieval times for expiry, and, when its devices
	// are on, per-device views, with devices named at login as
	// "user#device" (USER/PASS) or by a device password.
	Ledger *ledger.Ledger
	// Policy gives a user's expiry policy, advertised after login as
	// CAPA EXPIRE (RFC 2449 §6.7); nil advertises what the engine's
	// Options.Expire says.
	Policy func(auth.User) ledger.Policy
}

// MultiDrop is a maildrop shared by many recipients, whose login names
// may select part of it: SDPS's "host" (the drop) and "john@host" (john's
// mail in it).
type MultiDrop interface {
	// Split returns the user a login name stands for (whose password it
	// uses and whose maildrop it opens) and what it selects ("" for all of
	// it); ok is false for a name that names no multi-drop.
	Split(login string) (user, selector string, ok bool)
	// Wrap makes the mailbox the session sees of the opened drop m. On
	// error it has closed m.
	Wrap(ctx context.Context, m pop3server.Mailbox, selector string) (pop3server.Mailbox, error)
}

// RPOPPolicy decides RPOP logins (RFC 1081): whether clientUser on the
// client at remote may act as the local user. A refusal is an error whose
// text is for the log only; the client sees [AUTH].
type RPOPPolicy interface {
	Allow(remote net.Addr, user, clientUser string) error
}

// Backend implements pop3server.Backend.
type Backend struct {
	opts Options
	log  *slog.Logger

	mu        sync.Mutex
	lastLogin map[string]time.Time // user -> last successful login (LoginDelay only)
	holders   map[string]*holder   // user -> the session of this process holding the maildrop
}

// holder is a session of this process that holds a maildrop: what the
// [IN-USE] answer to the same user's next login says about it.
type holder struct {
	remote string // client address without port; empty if not known
	since  time.Time
}

var _ pop3server.Backend = (*Backend)(nil)

// New returns a Backend.
func New(opts Options) (*Backend, error) {
	if opts.Users == nil || opts.Store == nil {
		return nil, errors.New("backend: Options.Users and Options.Store are required")
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.APOP {
		if _, ok := opts.Users.(auth.CredentialDB); !ok {
			return nil, errors.New("backend: APOP needs a user database that hands out stored credentials")
		}
	}
	if opts.IdleTimeout <= 0 {
		opts.IdleTimeout = 10 * time.Minute
	}
	return &Backend{opts: opts, log: opts.Logger, lastLogin: make(map[string]time.Time), holders: make(map[string]*holder)}, nil
}

// NewSession implements pop3server.Backend. The session offers SASL when
// Options.SASL is set (an empty mechanism list means none, by the
// engine's contract) and APOP when Options.APOP is: APOPSession is found
// by type, so a session without it is a different type.
func (b *Backend) NewSession(ctx context.Context, c *pop3server.Conn) (pop3server.Session, error) {
	s := &session{b: b, conn: c}
	switch {
	case b.opts.APOP && b.opts.RPOP != nil:
		return apopRPOPSession{s}, nil
	case b.opts.APOP:
		return apopSession{s}, nil
	case b.opts.RPOP != nil:
		return rpopSession{s}, nil
	}
	return s, nil
}

// rpopSession adds RPOP to a session.
type rpopSession struct{ *session }

// apopRPOPSession has both.
type apopRPOPSession struct{ *session }

func (s apopRPOPSession) APOP(ctx context.Context, user, timestamp, digest string) (pop3server.Mailbox, error) {
	return s.apop(ctx, user, timestamp, digest)
}

func (s apopRPOPSession) RPOP(ctx context.Context, user, clientUser string) (pop3server.Mailbox, error) {
	return rpopSession(s).RPOP(ctx, user, clientUser)
}

// RPOP implements pop3server.RPOPSession: the policy decides, then the
// user is looked up (an unknown user is refused as a refused client is)
// and opened with the restrictions every login gets.
func (s rpopSession) RPOP(ctx context.Context, user, clientUser string) (pop3server.Mailbox, error) {
	b := s.b
	var remote net.Addr
	if s.conn != nil {
		remote = s.conn.RemoteAddr
	}
	if err := b.opts.RPOP.Allow(remote, user, clientUser); err != nil {
		b.log.Info("rpop refused", "user", user, "client_user", clientUser, "remote", addrString(remote), "reason", err)
		return nil, pop3server.ErrAuthFailed
	}
	return b.openAuthenticated(ctx, s.conn, user, "RPOP")
}

type session struct {
	b    *Backend
	conn *pop3server.Conn
}

// apopSession adds APOP to a session.
type apopSession struct{ *session }

func (s apopSession) APOP(ctx context.Context, user, timestamp, digest string) (pop3server.Mailbox, error) {
	return s.apop(ctx, user, timestamp, digest)
}

// errAuthUnavailable answers a user database that cannot be asked.
var errAuthUnavailable = &pop3server.Error{Code: pop3proto.CodeSysTemp, Text: "Authentication service temporarily unavailable; try again in a few minutes"}

// authUnavailable is errAuthUnavailable with err for the log.
func authUnavailable(err error) *pop3server.Error {
	e := *errAuthUnavailable
	e.Err = err
	return &e
}

// inUse is the [IN-USE] answer (RFC 2449 §8.1.2) to a login whose maildrop
// is locked. It is sent only after the credentials were checked, so it
// tells the owner of the maildrop, and nobody else, which of their clients
// holds it: a session of this process is named by its address and start
// ("from 203.0.113.5 since 10:42 UTC"), which is usually enough to find
// the phone or the forgotten desktop client that keeps the lock; a lock
// taken elsewhere (another server, an admin command) is named as such. In
// both cases the reply says when it ends at the latest: a POP3 session
// ends at QUIT or after the idle timeout. It keeps the word "locked",
// which older clients that do not read response codes look for.
func (b *Backend) inUse(user string) *pop3server.Error {
	idle := waitText(b.opts.IdleTimeout)
	b.mu.Lock()
	h := b.holders[user]
	b.mu.Unlock()
	if h == nil {
		return &pop3server.Error{Code: pop3proto.CodeInUse, Text: "Maildrop locked by another session or program; it ends when that client quits or after " + idle + " idle"}
	}
	since := h.since.UTC()
	when := since.Format("15:04 UTC")
	if y, m, d := since.Date(); y != b.opts.Now().UTC().Year() || m != b.opts.Now().UTC().Month() || d != b.opts.Now().UTC().Day() {
		when = since.Format("2006-01-02 15:04 UTC")
	}
	from := ""
	if h.remote != "" {
		from = "from " + h.remote + " "
	}
	return &pop3server.Error{Code: pop3proto.CodeInUse, Text: "Maildrop locked by another session (" + from + "since " + when + "); it ends when that client quits or after " + idle + " idle"}
}

// loginDelay is the [LOGIN-DELAY] answer (RFC 2449 §8.1.1): the policy
// and when the next login is allowed. Only a client that gave the right
// password sees it.
func (b *Backend) loginDelay(wait time.Duration) *pop3server.Error {
	return &pop3server.Error{Code: pop3proto.CodeLoginDelay, Text: "Logins are limited to one every " + waitText(b.opts.LoginDelay) + "; the next login is allowed in " + waitText(wait)}
}

// waitText says d for a client's user, rounded up: "45 seconds" under
// two minutes, else "4 minutes", or "2 hours" from two hours on.
func waitText(d time.Duration) string {
	switch {
	case d < 2*time.Minute:
		s := int((d + time.Second - 1) / time.Second)
		if s <= 1 {
			return "1 second"
		}
		return strconv.Itoa(s) + " seconds"
	case d < 2*time.Hour:
		return strconv.Itoa(int((d+time.Minute-1)/time.Minute)) + " minutes"
	default:
		return strconv.Itoa(int((d+time.Hour-1)/time.Hour)) + " hours"
	}
}

// Login implements pop3server.Session. With devices on, "user#device"
// names a device with the user's own password, and the user's name with
// a device password selects that device; the device password is tried
// only after the user's password failed and only for a user that
// exists, so a wrong password and an unknown user still look alike.
func (s *session) Login(ctx context.Context, username, password string) (pop3server.Mailbox, error) {
	b := s.b
	device := ""
	if l := b.opts.Ledger; l != nil && l.Devices() {
		username, device, _ = ledger.SplitDevice(username)
	}
	selector := ""
	if md := b.opts.MultiDrop; md != nil {
		if drop, sel, ok := md.Split(username); ok {
			// The drop's password, whatever part of it the name selects.
			username, selector = drop, sel
		}
	}
	u, err := b.opts.Users.Authenticate(ctx, username, password)
	if errors.Is(err, auth.ErrFailed) && device == "" && b.opts.Ledger != nil && b.opts.Ledger.Devices() {
		u, device, err = b.deviceLogin(ctx, username, password)
	}
	if errors.Is(err, auth.ErrFailed) {
		return nil, pop3server.ErrAuthFailed
	}
	if err != nil {
		return nil, authUnavailable(err)
	}
	return b.openSelect(ctx, s.conn, u, selector, loginInfo{device: device, mech: "USER"})
}

// deviceLogin checks password against the device passwords of username.
func (b *Backend) deviceLogin(ctx context.Context, username, password string) (auth.User, string, error) {
	u, err := b.opts.Users.Lookup(ctx, username)
	if err != nil {
		return auth.User{}, "", auth.ErrFailed
	}
	name, ok, err := b.opts.Ledger.DeviceByPassword(ctx, b.opts.Store, u.Name, password)
	if err != nil {
		b.log.Warn("device passwords unreadable", "user", u.Name, "err", err)
		return auth.User{}, "", auth.ErrFailed
	}
	if !ok {
		return auth.User{}, "", auth.ErrFailed
	}
	return u, name, nil
}

// loginInfo is what a login method knows that the ledger records.
type loginInfo struct {
	device string
	// mech is the login method: USER (USER/PASS, RFC 1939 §7), APOP, the
	// SASL mechanism (AUTH, RFC 5034), RPOP or KPOP.
	mech string
}

// maxReasonLen bounds a nologin reason sent to the client, so that the
// reply stays within RFC 2449 §4's 512 octets.
const maxReasonLen = 400

// openSelect opens the maildrop of an authenticated user, after applying
// the user's login restrictions (auth.Restrictions) to the connection c
// (openAs). Every login method ends here, so a restriction holds whichever
// was used. The restrictions are checked after the credentials, as Dovecot
// does: only a client that knows the password learns a nologin reason, and
// a wrong password and a refused network look alike ([AUTH], counted as a
// failure).
//
// It serves a login that named a device or a method (li), or
// a login name that selected part of a multi-drop (Options.MultiDrop); a
// user that is a multi-drop gets the drop's mailbox (all of it for
// selector "") whatever the login method.
func (b *Backend) openSelect(ctx context.Context, c *pop3server.Conn, u auth.User, selector string, li loginInfo) (pop3server.Mailbox, error) {
	m, err := b.openAs(ctx, c, u, li)
	if err != nil {
		return nil, err
	}
	if md := b.opts.MultiDrop; md != nil {
		if drop, sel, ok := md.Split(u.Name); ok && sel == "" && drop == strings.ToLower(u.Name) {
			return md.Wrap(ctx, m, selector)
		}
	}
	return m, nil
}

// openAs opens u's maildrop for a login that named a device or a method.
func (b *Backend) openAs(ctx context.Context, c *pop3server.Conn, u auth.User, li loginInfo) (pop3server.Mailbox, error) {
	var remote, direct net.Addr
	if c != nil {
		remote, direct = c.RemoteAddr, c.RealRemoteAddr
		if direct == nil {
			direct = remote
		}
	}
	if err := u.Restrict.Check(remote, direct); err != nil {
		var nl *auth.NoLoginError
		if errors.As(err, &nl) {
			// Dovecot's nologin without proxy: the login fails with the
			// reason as the message, "-ERR [AUTH] reason".
			b.log.Info("login refused: nologin", "user", u.Name)
			if r := sanitizeReason(nl.Reason); r != "" {
				return nil, &pop3server.Error{Code: pop3proto.CodeAuth, Text: r}
			}
			return nil, pop3server.ErrAuthFailed
		}
		b.log.Info("login refused: client address not allowed for user", "user", u.Name, "remote", addrString(remote), "direct", addrString(direct))
		return nil, pop3server.ErrAuthFailed
	}
	user := u.Name
	if wait := b.checkLoginDelay(user); wait > 0 {
		return nil, b.loginDelay(wait)
	}
	md, err := b.opts.Store.Open(ctx, user)
	switch {
	case errors.Is(err, store.ErrInUse):
		return nil, b.inUse(user)
	case err != nil:
		return nil, &pop3server.Error{Code: pop3proto.CodeSysTemp, Text: "Cannot open the maildrop now; try again in a few minutes, and tell the administrator if it persists", Err: err}
	}
	h := &holder{since: b.opts.Now()}
	if remote != nil {
		h.remote = remote.String()
		if host, _, err := net.SplitHostPort(h.remote); err == nil {
			h.remote = host
		}
	}
	if l := b.opts.Ledger; l != nil {
		sess := ledger.Session{User: user, Device: li.device, Remote: h.remote, Mech: li.mech}
		if c != nil && c.TLS != nil {
			sess.TLS = tls.VersionName(c.TLS.Version)
		}
		if b.opts.Policy != nil {
			sess.Policy = b.opts.Policy(u)
		}
		v, err := l.Open(md, sess)
		if err != nil {
			md.Close()
			return nil, &pop3server.Error{Code: pop3proto.CodeSysTemp, Text: "Cannot read this maildrop's device state now; try again in a few minutes, and tell the administrator if it persists", Err: err}
		}
		md = v
	}
	b.recordLogin(user)
	b.mu.Lock()
	b.holders[user] = h
	b.mu.Unlock()
	return &mailbox{md: md, b: b, user: user, h: h}, nil
}

// sanitizeReason makes a nologin reason fit a reply line: printable text
// without a leading '[' (which would read as a response code, RFC 2449 §8),
// at most maxReasonLen octets.
func sanitizeReason(r string) string {
	r = strings.Map(func(c rune) rune {
		if c < 0x20 || c == 0x7f {
			return ' '
		}
		return c
	}, r)
	r = strings.TrimLeft(strings.TrimSpace(r), "[")
	if len(r) > maxReasonLen {
		r = r[:maxReasonLen]
		for !utf8.ValidString(r) {
			r = r[:len(r)-1]
		}
	}
	return r
}

func addrString(a net.Addr) string {
	if a == nil {
		return ""
	}
	return a.String()
}

func (s *session) Close() error { return nil }

// checkLoginDelay returns how long user must still wait before logging
// in, zero if the login may go on.
func (b *Backend) checkLoginDelay(user string) time.Duration {
	if b.opts.LoginDelay <= 0 {
		return 0
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	last, ok := b.lastLogin[user]
	if !ok {
		return 0
	}
	return max(0, b.opts.LoginDelay-b.opts.Now().Sub(last))
}

func (b *Backend) recordLogin(user string) {
	if b.opts.LoginDelay <= 0 {
		return
	}
	now := b.opts.Now()
	b.mu.Lock()
	defer b.mu.Unlock()
	b.lastLogin[user] = now
	if len(b.lastLogin) > 1024 && len(b.lastLogin)%1024 == 0 {
		for u, t := range b.lastLogin {
			if now.Sub(t) >= b.opts.LoginDelay {
				delete(b.lastLogin, u)
			}
		}
	}
}

type mailbox struct {
	md   store.Maildrop
	b    *Backend
	user string // the user database's name for the owner (see User)
	h    *holder
}

// Messages hands the store's snapshot through: store.Message is
// pop3proto.MessageInfo, so there is no copy per login (2.4 MB for
// 100,000 messages). Neither side modifies it.
func (m *mailbox) Messages() []pop3proto.MessageInfo { return m.md.Messages() }

func (m *mailbox) Open(ctx context.Context, i int) (io.ReadCloser, error) {
	r, err := m.md.Open(ctx, i)
	// A store reports a vanished message as ErrNoMessage; a file that is
	// gone (fs.ErrNotExist, in a *fs.PathError) means the same: the engine
	// leaves storage errors to the backend. RFC 3206 §4: [SYS/PERM], a
	// retry will not help.
	if errors.Is(err, store.ErrNoMessage) || errors.Is(err, fs.ErrNotExist) {
		return nil, &pop3server.Error{Code: pop3proto.CodeSysPerm, Text: "Message was removed by another program meanwhile; skip it, or QUIT and log in again for a fresh list", Err: err}
	}
	return r, err
}

// Idle implements pop3server.Idler when the store's maildrop (under a
// ledger view or not) implements store.Idler.
func (m *mailbox) Idle() {
	if i, ok := m.md.(store.Idler); ok {
		i.Idle()
	}
}

// Retrieved implements pop3server.RetrievalObserver for a ledger view.
func (m *mailbox) Retrieved(i int) {
	if v, ok := m.md.(*ledger.View); ok {
		v.Retrieved(i)
	}
}

// Expire implements pop3server.ExpireMailbox: the user's policy when
// Options.Policy is set, else "" (the engine's Options.Expire stands).
func (m *mailbox) Expire() string {
	if v, ok := m.md.(*ledger.View); ok && m.b.opts.Policy != nil {
		return v.Expire()
	}
	return ""
}

func (m *mailbox) Commit(ctx context.Context, deleted []int) error {
	return m.md.Commit(ctx, deleted)
}

func (m *mailbox) Close() error {
	if m.b != nil {
		m.b.mu.Lock()
		if m.b.holders[m.user] == m.h {
			delete(m.b.holders, m.user)
		}
		m.b.mu.Unlock()
	}
	return m.md.Close()
}
