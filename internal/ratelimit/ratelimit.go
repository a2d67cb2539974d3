// Package ratelimit slows down and then bans password guessing, in the
// manner of Dovecot's auth penalty
// (https://doc.dovecot.org/2.4.2/core/config/auth/penalty.html) with these
// additions:
//
//   - Counters are kept per address group (an IPv4 address, an IPv6 /64 by
//     default: see internal/ipgroup) and, separately, per user name across
//     all addresses.
//   - Delays are scheduled, not only slept: each Check of a group reserves
//     the next free slot, so many parallel connections from one group are
//     serialized instead of each waiting the same penalty and guessing
//     together. Attempts that would have to queue longer than MaxDelay are
//     refused ("throttled") without verifying the password.
//   - After BanAfter counted failures within Window a group is banned for
//     BanDuration: Check refuses it without verifying anything.
//   - A user name under attack from many addresses gets a capped delay but
//     is never banned, so an attacker cannot lock the real user out.
//   - Repeating a recent failure (same user, same password: a phone with an
//     old password polling every few minutes) is not counted again, by
//     comparing keyed fingerprints; no password is ever stored.
//   - Memory is bounded: each table holds at most MaxEntries entries and
//     evicts the least recently failed one that is not banned.
//
// Implementation notes:
//   - Only Failure creates entries; Check and Success of an unknown group
//     or user allocate nothing, so legitimate traffic costs a map lookup.
//   - One mutex guards both tables. Every operation is O(1) apart from the
//     HMAC of Fingerprint, which runs outside the lock (BenchmarkLimiter).
//   - Addresses in Options.Trusted are exempt from everything: no delay, no
//     ban, and their failures are not counted (a webmail front end, a
//     monitoring probe).
//   - The engine should call Check before verifying credentials, wait
//     Delay, then call Failure or Success with the outcome. Failures that
//     are not about credentials (a backend outage, [SYS/TEMP]) must not be
//     reported.
package ratelimit

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"hash/maphash"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/postoffice-mail/postoffice/internal/ipgroup"
)

// Options configure a Limiter. Every zero value means the documented
// default, so Options{} is a sensible internet-facing setup.
type Options struct {
	// Trusted addresses are exempt from delays, bans and counting.
	Trusted []netip.Prefix
	// IPv4Prefix and IPv6Prefix are the group sizes counters are kept by.
	// Defaults 32 and 64; Dovecot uses /48 for IPv6.
	IPv4Prefix, IPv6Prefix int

	// BaseDelay is the delay after the first counted failure of a group;
	// it doubles with each further failure up to MaxDelay. Defaults 2s and
	// 15s, Dovecot's 2, 4, 8, 15 s. Negative BaseDelay: no delays.
	BaseDelay, MaxDelay time.Duration

	// BanAfter counted failures of a group within Window ban the group for
	// BanDuration. Defaults 10 and 15m. Negative BanAfter: never ban.
	BanAfter    int
	BanDuration time.Duration

	// UserDelayAfter counted failures for one user name (from any
	// address) start a per-user delay, growing like the group delay from
	// BaseDelay but capped at UserMaxDelay. Users are never banned.
	// Defaults 5 and 8s. Negative UserDelayAfter: no per-user delay.
	UserDelayAfter int
	UserMaxDelay   time.Duration

	// Window is how long a counter lives after its last counted failure.
	// Default 1h.
	Window time.Duration

	// MaxEntries bounds each table (groups, users). Default 65536, a few
	// tens of MB at most.
	MaxEntries int

	// Now is the clock; default time.Now.
	Now func() time.Time
}

// Defaults for zero Options fields.
const (
	DefaultBaseDelay      = 2 * time.Second
	DefaultMaxDelay       = 15 * time.Second
	DefaultBanAfter       = 10
	DefaultBanDuration    = 15 * time.Minute
	DefaultUserDelayAfter = 5
	DefaultUserMaxDelay   = 8 * time.Second
	DefaultWindow         = time.Hour
	DefaultMaxEntries     = 65536
)

// ringSize is how many recent distinct failures an entry remembers, for
// not counting repeats and for forgiving a user's own failures on success.
const ringSize = 8

// Verdict is the answer of Check.
type Verdict struct {
	// Delay is how long to wait before verifying the credentials.
	Delay time.Duration
	// Refuse means: do not verify; answer with a temporary error.
	Refuse bool
	// Reason says why, when Refuse: "banned" or "throttled" (too many
	// attempts in flight from the group).
	Reason string
	// Until is, when Refuse, the earliest time a retry may succeed.
	Until time.Time
	// Group is the address group the counters are kept by (for logs).
	Group netip.Prefix
}

// Result is the answer of Failure.
type Result struct {
	// Counted is false for a trusted address or a repeat of a recent
	// failure with the same user name and password.
	Counted bool
	// Failures and UserFailures are the current counts of the group and
	// of the user name.
	Failures, UserFailures int
	// Banned is true when this failure started a ban of the group, until
	// Until. It is true once per ban: log "client banned" then.
	Banned bool
	Until  time.Time
	Group  netip.Prefix
}

// Fingerprint identifies a user name and password pair without revealing
// it: a truncated HMAC-SHA256 under a key made at random for each Limiter.
// The zero Fingerprint means "unknown" (APOP, SCRAM and other mechanisms
// that never show the password): such failures are always counted.
type Fingerprint struct{ h uint64 }

// Limiter counts authentication failures. It is safe for concurrent use.
type Limiter struct {
	opts Options
	grp  ipgroup.Grouper
	key  [32]byte
	seed maphash.Seed

	trusted atomic.Pointer[[]netip.Prefix] // Options.Trusted, replaced by SetTrusted

	mu    sync.Mutex
	ips   table[netip.Prefix]
	users table[uint64]
}

// New returns a Limiter, or an error naming the first unusable option.
func New(opts Options) (*Limiter, error) {
	grp := ipgroup.Grouper{IPv4Prefix: opts.IPv4Prefix, IPv6Prefix: opts.IPv6Prefix}
	if err := grp.Validate(); err != nil {
		return nil, errors.New("ratelimit: " + strings.TrimPrefix(err.Error(), "ipgroup: "))
	}
	opts, err := withDefaults(opts)
	if err != nil {
		return nil, err
	}
	l := &Limiter{opts: opts, grp: grp, seed: maphash.MakeSeed()}
	l.SetTrusted(opts.Trusted)
	rand.Read(l.key[:])
	l.ips.init(opts.MaxEntries)
	l.users.init(opts.MaxEntries)
	return l, nil
}

// SetPenalty replaces the delays and bans of Options (a configuration
// reload): BaseDelay, MaxDelay, BanAfter, BanDuration, UserDelayAfter,
// UserMaxDelay and Window, with New's defaults for zero values. The
// counters already kept stay; a ban already started keeps its end. The
// address grouping, MaxEntries and Now stay as New set them; Trusted has
// SetTrusted.
func (l *Limiter) SetPenalty(opts Options) error {
	opts, err := withDefaults(opts)
	if err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	o := &l.opts
	o.BaseDelay, o.MaxDelay, o.BanAfter, o.BanDuration = opts.BaseDelay, opts.MaxDelay, opts.BanAfter, opts.BanDuration
	o.UserDelayAfter, o.UserMaxDelay, o.Window = opts.UserDelayAfter, opts.UserMaxDelay, opts.Window
	return nil
}

// withDefaults checks opts and fills in the defaults of zero values.
func withDefaults(opts Options) (Options, error) {
	if opts.MaxDelay < 0 || opts.BanDuration < 0 || opts.UserMaxDelay < 0 || opts.Window < 0 || opts.MaxEntries < 0 {
		return opts, errors.New("ratelimit: negative MaxDelay, BanDuration, UserMaxDelay, Window or MaxEntries")
	}
	if opts.BaseDelay == 0 {
		opts.BaseDelay = DefaultBaseDelay
	}
	if opts.MaxDelay == 0 {
		opts.MaxDelay = max(DefaultMaxDelay, opts.BaseDelay)
	}
	if opts.BanAfter == 0 {
		opts.BanAfter = DefaultBanAfter
	}
	if opts.BanDuration == 0 {
		opts.BanDuration = DefaultBanDuration
	}
	if opts.UserDelayAfter == 0 {
		opts.UserDelayAfter = DefaultUserDelayAfter
	}
	if opts.UserMaxDelay == 0 {
		opts.UserMaxDelay = DefaultUserMaxDelay
	}
	if opts.Window == 0 {
		opts.Window = DefaultWindow
	}
	if opts.MaxEntries == 0 {
		opts.MaxEntries = DefaultMaxEntries
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return opts, nil
}

// Fingerprint returns the fingerprint of user and password. It is the only
// method that sees a password, and it keeps nothing.
func (l *Limiter) Fingerprint(user string, password []byte) Fingerprint {
	m := hmac.New(sha256.New, l.key[:])
	m.Write([]byte(normUser(user)))
	m.Write([]byte{0})
	m.Write(password)
	var sum [sha256.Size]byte
	return Fingerprint{binary.LittleEndian.Uint64(m.Sum(sum[:0])) | 1} // never zero
}

// Group returns the group ip is counted in.
func (l *Limiter) Group(ip netip.Addr) netip.Prefix { return l.grp.Key(ip) }

// Trusted reports whether ip is exempt.
func (l *Limiter) Trusted(ip netip.Addr) bool { return ipgroup.Contains(*l.trusted.Load(), ip) }

// SetTrusted replaces Options.Trusted (a configuration reload). Counters
// already kept for a newly trusted address stay until they expire, but
// are no longer consulted for it.
func (l *Limiter) SetTrusted(ps []netip.Prefix) { l.trusted.Store(&ps) }

// Check is called before verifying the credentials of user from ip; user
// may be empty when it is not known yet (SASL). The caller waits
// Verdict.Delay, or refuses at once if Verdict.Refuse. Check reserves a
// slot: an attempt that checks and then never reports is harmless.
func (l *Limiter) Check(ip netip.Addr, user string) Verdict {
	if l.Trusted(ip) {
		return Verdict{}
	}
	g := l.grp.Key(ip)
	v := Verdict{Group: g}
	var uh uint64
	if user != "" {
		uh = l.userKey(user)
	}
	now := l.opts.Now()
	t := now.UnixNano()

	l.mu.Lock()
	defer l.mu.Unlock()
	window := int64(l.opts.Window)
	if e := l.ips.live(g, t, window); e != nil {
		if t < e.bannedUntil {
			v.Refuse, v.Reason, v.Until = true, "banned", time.Unix(0, e.bannedUntil)
			return v
		}
		if e.failures > 0 && l.opts.BaseDelay > 0 {
			slot := max(e.slot, t)
			wait := time.Duration(slot - t)
			if wait > l.opts.MaxDelay {
				v.Refuse, v.Reason, v.Until = true, "throttled", time.Unix(0, slot)
				return v
			}
			e.slot = slot + int64(l.interval(e.failures, l.opts.MaxDelay))
			v.Delay = wait
		}
	}
	if user != "" {
		if wait := l.userDelay(uh, t); wait > v.Delay {
			v.Delay = wait
		}
	}
	return v
}

// userDelay is the per-user delay of the user with key uh at t. l.mu is
// held.
func (l *Limiter) userDelay(uh uint64, t int64) time.Duration {
	if l.opts.UserDelayAfter <= 0 || l.opts.BaseDelay <= 0 {
		return 0
	}
	u := l.users.live(uh, t, int64(l.opts.Window))
	if u == nil {
		return 0
	}
	n := u.failures - l.opts.UserDelayAfter + 1
	if n <= 0 {
		return 0
	}
	return max(0, time.Duration(u.last+int64(l.interval(n, l.opts.UserMaxDelay))-t))
}

// CheckUser returns the per-user delay for user from ip, and reserves
// nothing: it is for a user name learnt after Check was called for the
// attempt (a SASL exchange reveals its authentication identity only in a
// client message), so the address group's slot is not taken twice.
func (l *Limiter) CheckUser(ip netip.Addr, user string) time.Duration {
	if user == "" || l.Trusted(ip) {
		return 0
	}
	uh := l.userKey(user)
	t := l.opts.Now().UnixNano()
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.userDelay(uh, t)
}

// Failure records a failed authentication of user from ip. fp is
// l.Fingerprint(user, password), or the zero Fingerprint when the password
// is not known.
func (l *Limiter) Failure(ip netip.Addr, user string, fp Fingerprint) Result {
	if l.Trusted(ip) {
		return Result{}
	}
	g := l.grp.Key(ip)
	var uh uint64
	if user != "" {
		uh = l.userKey(user)
	}
	t := l.opts.Now().UnixNano()
	r := Result{Group: g}

	l.mu.Lock()
	defer l.mu.Unlock()
	e := l.ips.liveOrAdd(g, t, int64(l.opts.Window))
	if fp.h == 0 || !e.seen(fp.h) {
		r.Counted = true
		e.push(fp.h, uh)
		e.failures++
		e.last = t
		e.slot = max(e.slot, t+int64(l.interval(e.failures, l.opts.MaxDelay)))
		if l.opts.BanAfter > 0 && e.failures >= l.opts.BanAfter && t >= e.bannedUntil {
			e.bannedUntil = t + int64(l.opts.BanDuration)
			r.Banned = true
		}
	}
	r.Failures = e.failures
	if r.Banned {
		r.Until = time.Unix(0, e.bannedUntil)
	}

	if user != "" {
		u := l.users.liveOrAdd(uh, t, int64(l.opts.Window))
		if fp.h == 0 || !u.seen(fp.h) {
			u.push(fp.h, uh)
			u.failures++
			u.last = t
		}
		r.UserFailures = u.failures
	}
	return r
}

// Success records a successful login of user from ip. It clears the user's
// counter, and forgives the group the failures this user made from it
// (those still remembered: the last few distinct ones). Failures made for
// other users stay: a valid account does not reset a guessing attack.
func (l *Limiter) Success(ip netip.Addr, user string) {
	if l.Trusted(ip) {
		return
	}
	g := l.grp.Key(ip)
	uh := l.userKey(user)
	l.mu.Lock()
	defer l.mu.Unlock()
	if u := l.users.get(uh); u != nil {
		l.users.remove(u)
	}
	e := l.ips.get(g)
	if e == nil {
		return
	}
	for i := range e.ring {
		if m := &e.ring[i]; m.user == uh && m.set {
			*m = mark{}
			e.failures--
		}
	}
	if e.failures <= 0 && e.bannedUntil <= l.opts.Now().UnixNano() {
		l.ips.remove(e)
	}
}

// Len returns the number of group and user entries held.
func (l *Limiter) Len() (groups, users int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.ips.m), len(l.users.m)
}

// interval is BaseDelay doubled n-1 times, capped at limit.
func (l *Limiter) interval(n int, limit time.Duration) time.Duration {
	d := l.opts.BaseDelay
	for i := 1; i < n && d < limit; i++ {
		d *= 2
	}
	return min(d, limit)
}

func (l *Limiter) userKey(user string) uint64 {
	return maphash.String(l.seed, normUser(user))
}

// normUser canonicalises a user name the way the user databases look it up,
// so that every spelling of one account shares a counter: case is folded
// (Alice and alice; Dovecot lowercases login names too), and a name without
// '@' whose last '+' separates a local part from a domain is the same
// account as local@domain (Demon's SDPS form "user+domain", which passwdfile
// and the mail location template accept for "user@domain").
func normUser(u string) string {
	u = strings.ToLower(u)
	if !strings.Contains(u, "@") {
		if i := strings.LastIndexByte(u, '+'); i > 0 && i < len(u)-1 {
			u = u[:i] + "@" + u[i+1:]
		}
	}
	return u
}

// The methods below adapt the Limiter to an engine that knows connections
// by net.Addr and has the password in hand (USER/PASS, AUTH PLAIN): they
// use only standard types, so pop3server can declare them as an interface
// without importing this package. A connection without an IP address
// (net.Pipe, a Unix socket) is local and exempt.

// BeforeLogin is Check for the client at remote.
func (l *Limiter) BeforeLogin(remote net.Addr, user string) (delay time.Duration, refuse bool, until time.Time) {
	ip, ok := ipgroup.Addr(remote)
	if !ok {
		return 0, false, time.Time{}
	}
	v := l.Check(ip, user)
	return v.Delay, v.Refuse, v.Until
}

// UserDelay is CheckUser for the client at remote.
func (l *Limiter) UserDelay(remote net.Addr, user string) time.Duration {
	ip, ok := ipgroup.Addr(remote)
	if !ok {
		return 0
	}
	return l.CheckUser(ip, user)
}

// LoginFailed is Failure for the client at remote; password is nil when
// the mechanism does not reveal it (APOP, SCRAM). It reports whether this
// failure started a ban, and until when, for the "client banned" log line.
func (l *Limiter) LoginFailed(remote net.Addr, user string, password []byte) (banned bool, until time.Time) {
	ip, ok := ipgroup.Addr(remote)
	if !ok {
		return false, time.Time{}
	}
	var fp Fingerprint
	if password != nil {
		fp = l.Fingerprint(user, password)
	}
	r := l.Failure(ip, user, fp)
	return r.Banned, r.Until
}

// LoginSucceeded is Success for the client at remote.
func (l *Limiter) LoginSucceeded(remote net.Addr, user string) {
	if ip, ok := ipgroup.Addr(remote); ok {
		l.Success(ip, user)
	}
}
