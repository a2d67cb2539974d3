package ratelimit

import (
	"fmt"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"
)

// clock is a fake Options.Now.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func newLimiter(t testing.TB, opts Options) (*Limiter, *clock) {
	t.Helper()
	c := &clock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	opts.Now = c.Now
	l, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	return l, c
}

var (
	ip1 = netip.MustParseAddr("192.0.2.1")
	ip2 = netip.MustParseAddr("198.51.100.2")
)

func pw(i int) []byte { return fmt.Appendf(nil, "guess%d", i) }

func TestDelayGrowth(t *testing.T) {
	t.Parallel()
	l, c := newLimiter(t, Options{BanAfter: -1})
	if v := l.Check(ip1, "alice"); v.Delay != 0 || v.Refuse {
		t.Fatalf("Check before any failure = %+v, want no delay", v)
	}
	want := []time.Duration{2 * time.Second, 4 * time.Second, 8 * time.Second, 15 * time.Second, 15 * time.Second}
	for i, w := range want {
		l.Failure(ip1, "alice", l.Fingerprint("alice", pw(i)))
		v := l.Check(ip1, "alice")
		if v.Delay != w || v.Refuse {
			t.Fatalf("Check after %d failures = %+v, want delay %v", i+1, v, w)
		}
		c.Add(v.Delay)
	}
	// The other address logs in at once.
	if v := l.Check(ip2, "bob"); v.Delay != 0 || v.Refuse {
		t.Errorf("Check(other address) = %+v, want no delay", v)
	}
}

// SetPenalty (a reload) changes the delays and bans of the next checks and
// keeps the counters: two failures before BanAfter 4 count toward it.
func TestSetPenalty(t *testing.T) {
	t.Parallel()
	l, c := newLimiter(t, Options{BanAfter: -1})
	for i := range 2 {
		l.Failure(ip1, "alice", l.Fingerprint("alice", pw(i)))
		c.Add(l.Check(ip1, "alice").Delay)
	}
	if err := l.SetPenalty(Options{BaseDelay: time.Second, MaxDelay: 3 * time.Second, BanAfter: 4}); err != nil {
		t.Fatal(err)
	}
	c.Add(time.Minute) // past the slots reserved under the old delays
	l.Failure(ip1, "alice", l.Fingerprint("alice", pw(2)))
	if v := l.Check(ip1, "alice"); v.Refuse || v.Delay != 3*time.Second {
		// Third failure: the new BaseDelay 1s doubled twice is 4s,
		// capped at the new MaxDelay (the old settings gave 8s).
		t.Errorf("Check after SetPenalty = %+v, want a delay of 3s", v)
	}
	if r := l.Failure(ip1, "alice", l.Fingerprint("alice", pw(3))); !r.Banned {
		t.Errorf("fourth failure with BanAfter 4 = %+v, want a ban", r)
	}
	if err := l.SetPenalty(Options{MaxDelay: -1}); err == nil {
		t.Error("SetPenalty with a negative MaxDelay succeeded")
	}
}

func TestBan(t *testing.T) {
	t.Parallel()
	l, c := newLimiter(t, Options{BanAfter: 5, BanDuration: 10 * time.Minute, BaseDelay: -1})
	for i := range 5 {
		if v := l.Check(ip1, "root"); v.Refuse {
			t.Fatalf("attempt %d refused: %+v", i+1, v)
		}
		r := l.Failure(ip1, "root", l.Fingerprint("root", pw(i)))
		if r.Banned != (i == 4) {
			t.Fatalf("Failure %d: Banned = %v", i+1, r.Banned)
		}
		if i == 4 && !r.Until.Equal(c.Now().Add(10*time.Minute)) {
			t.Errorf("Until = %v, want now+10m", r.Until)
		}
	}
	v := l.Check(ip1, "alice")
	if !v.Refuse || v.Reason != "banned" || v.Group.String() != "192.0.2.1/32" {
		t.Fatalf("Check while banned = %+v", v)
	}
	if v := l.Check(ip2, "alice"); v.Refuse || v.Delay != 0 {
		t.Errorf("Check(other address) = %+v, want allowed at once", v)
	}
	c.Add(10 * time.Minute)
	if v := l.Check(ip1, "alice"); v.Refuse {
		t.Fatalf("Check after ban = %+v, want allowed", v)
	}
	// Still within the window: one more failure bans again.
	if r := l.Failure(ip1, "root", l.Fingerprint("root", pw(99))); !r.Banned {
		t.Errorf("failure after ban: %+v, want a new ban", r)
	}
	// A success does not lift a ban.
	l.Success(ip1, "root")
	if v := l.Check(ip1, "root"); !v.Refuse {
		t.Errorf("Check after success while banned = %+v, want refused", v)
	}
}

func TestTrusted(t *testing.T) {
	t.Parallel()
	l, _ := newLimiter(t, Options{Trusted: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}, BanAfter: 2})
	for i := range 10 {
		if r := l.Failure(ip1, "alice", l.Fingerprint("alice", pw(i))); r.Counted || r.Banned {
			t.Fatalf("trusted failure counted: %+v", r)
		}
	}
	if v := l.Check(ip1, "alice"); v != (Verdict{}) {
		t.Errorf("Check(trusted) = %+v, want zero", v)
	}
	if g, u := l.Len(); g != 0 || u != 0 {
		t.Errorf("Len = %d, %d, want nothing stored", g, u)
	}
}

// SetTrusted (a reload) takes effect at once, both ways.
func TestSetTrusted(t *testing.T) {
	t.Parallel()
	l, _ := newLimiter(t, Options{BanAfter: 100})
	if r := l.Failure(ip1, "alice", l.Fingerprint("alice", pw(1))); !r.Counted {
		t.Fatalf("untrusted failure not counted: %+v", r)
	}
	l.SetTrusted([]netip.Prefix{netip.PrefixFrom(ip1, 32)})
	if r := l.Failure(ip1, "alice", l.Fingerprint("alice", pw(2))); r.Counted {
		t.Errorf("failure counted after SetTrusted: %+v", r)
	}
	if v := l.Check(ip1, "alice"); v != (Verdict{}) {
		t.Errorf("Check after SetTrusted = %+v, want zero", v)
	}
	l.SetTrusted(nil)
	if r := l.Failure(ip1, "alice", l.Fingerprint("alice", pw(3))); !r.Counted {
		t.Errorf("failure not counted after SetTrusted(nil): %+v", r)
	}
}

func TestIPv6Grouping(t *testing.T) {
	t.Parallel()
	a := netip.MustParseAddr("2001:db8:1:2::1")
	same64 := netip.MustParseAddr("2001:db8:1:2:ffff::9")
	same48 := netip.MustParseAddr("2001:db8:1:3::1")
	for _, tt := range []struct {
		prefix              int
		want64, wantOther48 bool
	}{{0, true, false}, {48, true, true}} {
		l, _ := newLimiter(t, Options{IPv6Prefix: tt.prefix})
		l.Failure(a, "alice", l.Fingerprint("alice", pw(1)))
		if got := l.Check(same64, "bob").Delay > 0; got != tt.want64 {
			t.Errorf("/%d: delayed in same /64 = %v, want %v", tt.prefix, got, tt.want64)
		}
		if got := l.Check(same48, "bob").Delay > 0; got != tt.wantOther48 {
			t.Errorf("/%d: delayed in other /64 of the /48 = %v, want %v", tt.prefix, got, tt.wantOther48)
		}
	}
	if _, err := New(Options{IPv6Prefix: 129}); err == nil {
		t.Error("New(IPv6Prefix 129) = nil error")
	}
}

func TestRepeatNotCounted(t *testing.T) {
	t.Parallel()
	l, _ := newLimiter(t, Options{})
	fp := l.Fingerprint("alice", []byte("old password"))
	for i := range 5 {
		r := l.Failure(ip1, "alice", fp)
		if r.Counted != (i == 0) || r.Failures != 1 || r.UserFailures != 1 {
			t.Fatalf("repeat %d: %+v, want counted once", i, r)
		}
	}
	// A repeat from another address counts for that address, not again
	// for the user.
	if r := l.Failure(ip2, "alice", fp); !r.Counted || r.Failures != 1 || r.UserFailures != 1 {
		t.Errorf("same password from another address: %+v", r)
	}
	// Same password, other user: a new guess. Case is folded.
	if r := l.Failure(ip1, "bob", l.Fingerprint("bob", []byte("old password"))); !r.Counted || r.Failures != 2 {
		t.Errorf("other user: %+v", r)
	}
	if r := l.Failure(ip1, "ALICE", l.Fingerprint("ALICE", []byte("old password"))); r.Counted {
		t.Errorf("case-folded repeat counted: %+v", r)
	}
	// Unknown fingerprints always count.
	for i := range 3 {
		if r := l.Failure(ip1, "carol", Fingerprint{}); !r.Counted || r.Failures != 3+i {
			t.Errorf("zero fingerprint %d: %+v", i, r)
		}
	}
	if l.Fingerprint("alice", []byte("x")) == l.Fingerprint("alice", []byte("y")) {
		t.Error("different passwords give the same fingerprint")
	}
}

func TestSuccessForgivesOwnFailuresOnly(t *testing.T) {
	t.Parallel()
	l, _ := newLimiter(t, Options{})
	l.Failure(ip1, "alice", l.Fingerprint("alice", pw(1)))
	l.Failure(ip1, "alice", l.Fingerprint("alice", pw(2)))
	for i := range 3 {
		l.Failure(ip1, "mallory", l.Fingerprint("mallory", pw(i)))
	}
	l.Success(ip1, "alice")
	if r := l.Failure(ip1, "x", Fingerprint{}); r.Failures != 4 {
		t.Errorf("failures after alice's success = %d, want 3+1", r.Failures)
	}
	// A typo then a success leaves nothing behind.
	l2, _ := newLimiter(t, Options{})
	l2.Failure(ip2, "bob", l2.Fingerprint("bob", pw(1)))
	l2.Success(ip2, "bob")
	if v := l2.Check(ip2, "bob"); v.Delay != 0 {
		t.Errorf("Check after success = %+v, want no delay", v)
	}
	if g, u := l2.Len(); g != 0 || u != 0 {
		t.Errorf("Len after success = %d, %d, want 0, 0", g, u)
	}
}

func TestUserDelayNeverBans(t *testing.T) {
	t.Parallel()
	l, c := newLimiter(t, Options{UserDelayAfter: 3, UserMaxDelay: 5 * time.Second, BanAfter: 2})
	// A botnet: each address guesses once.
	for i := range 50 {
		ip := netip.AddrFrom4([4]byte{203, 0, 113, byte(i)})
		l.Failure(ip, "alice", l.Fingerprint("alice", pw(i)))
	}
	fresh := netip.MustParseAddr("192.0.2.200")
	v := l.Check(fresh, "Alice")
	if v.Refuse || v.Delay <= 0 || v.Delay > 5*time.Second {
		t.Fatalf("Check(alice from a fresh address) = %+v, want a delay of at most 5s", v)
	}
	if v := l.Check(fresh, "bob"); v.Delay != 0 || v.Refuse {
		t.Errorf("Check(bob) = %+v, want none", v)
	}
	c.Add(5 * time.Second)
	if v := l.Check(fresh, "alice"); v.Delay != 0 {
		t.Errorf("Check(alice) after the delay = %+v, want none", v)
	}
	l.Success(fresh, "alice")
	if _, u := l.Len(); u != 0 {
		t.Errorf("user entries after success = %d", u)
	}
}

func TestParallelAttemptsThrottled(t *testing.T) {
	t.Parallel()
	l, _ := newLimiter(t, Options{BaseDelay: time.Second, MaxDelay: 4 * time.Second})
	l.Failure(ip1, "alice", Fingerprint{})
	var delays []time.Duration
	var v Verdict
	for range 10 {
		if v = l.Check(ip1, "alice"); v.Refuse {
			break
		}
		delays = append(delays, v.Delay)
	}
	want := []time.Duration{1 * time.Second, 2 * time.Second, 3 * time.Second, 4 * time.Second}
	if fmt.Sprint(delays) != fmt.Sprint(want) || v.Reason != "throttled" {
		t.Errorf("parallel checks: delays %v then %+v; want %v then throttled", delays, v, want)
	}
}

func TestExpiry(t *testing.T) {
	t.Parallel()
	l, c := newLimiter(t, Options{Window: time.Hour})
	for i := range 3 {
		l.Failure(ip1, "alice", l.Fingerprint("alice", pw(i)))
	}
	c.Add(time.Hour + time.Second)
	if v := l.Check(ip1, "alice"); v.Delay != 0 {
		t.Errorf("Check after the window = %+v, want none", v)
	}
	if r := l.Failure(ip1, "alice", Fingerprint{}); r.Failures != 1 || r.UserFailures != 1 {
		t.Errorf("Failure after the window = %+v, want counts from 1", r)
	}
}

func TestBoundedMemory(t *testing.T) {
	t.Parallel()
	l, _ := newLimiter(t, Options{MaxEntries: 100, BanAfter: 3})
	for i := range 3 {
		l.Failure(ip1, "root", l.Fingerprint("root", pw(i)))
	}
	// A flood of single failures from 10,000 /64s, each for another user.
	for i := range 10000 {
		ip := netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, byte(i >> 8), byte(i), 15: 1})
		l.Failure(ip, fmt.Sprint("user", i), Fingerprint{})
		if g, u := l.Len(); g > 100 || u > 100 {
			t.Fatalf("after %d failures: Len = %d, %d, want at most 100", i, g, u)
		}
	}
	if v := l.Check(ip1, "root"); !v.Refuse {
		t.Errorf("banned group evicted by a flood: %+v", v)
	}
}

func TestConcurrent(t *testing.T) {
	t.Parallel()
	l, c := newLimiter(t, Options{MaxEntries: 50})
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 500 {
				ip := netip.AddrFrom4([4]byte{10, 0, byte(g), byte(i % 70)})
				user := fmt.Sprint("u", i%13)
				l.Check(ip, user)
				if i%3 == 0 {
					l.Success(ip, user)
				} else {
					l.Failure(ip, user, l.Fingerprint(user, pw(i)))
				}
				if i%50 == 0 {
					c.Add(time.Second)
				}
			}
		}()
	}
	wg.Wait()
	if g, u := l.Len(); g > 50 || u > 50 {
		t.Errorf("Len = %d, %d, want at most 50", g, u)
	}
}

// BenchmarkLimiter measures the cost under the lock: Check of an address
// with no record (every legitimate login), and Failure plus Check from
// many addresses (an attack), on all CPUs.
func BenchmarkLimiter(b *testing.B) {
	b.Run("CheckUnknown", func(b *testing.B) {
		l, _ := newLimiter(b, Options{})
		b.RunParallel(func(pb *testing.PB) {
			i := 0
			for pb.Next() {
				i++
				l.Check(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), "alice")
			}
		})
	})
	b.Run("FailureCheck", func(b *testing.B) {
		l, _ := newLimiter(b, Options{MaxEntries: 10000})
		fp := l.Fingerprint("alice", []byte("pw"))
		b.RunParallel(func(pb *testing.PB) {
			i := 0
			for pb.Next() {
				i++
				ip := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
				l.Failure(ip, "alice", fp)
				l.Check(ip, "alice")
			}
		})
	})
	b.Run("Fingerprint", func(b *testing.B) {
		l, _ := newLimiter(b, Options{})
		for b.Loop() {
			l.Fingerprint("alice@example.org", []byte("correct horse battery staple"))
		}
	})
}

func TestEngineAdapter(t *testing.T) {
	t.Parallel()
	l, _ := newLimiter(t, Options{BanAfter: 2})
	remote := &net.TCPAddr{IP: net.ParseIP("192.0.2.1"), Port: 51234}
	if banned, _ := l.LoginFailed(remote, "alice", []byte("a")); banned {
		t.Fatal("banned after one failure")
	}
	if banned, _ := l.LoginFailed(remote, "alice", []byte("a")); banned {
		t.Fatal("a repeated password counted")
	}
	banned, until := l.LoginFailed(remote, "alice", []byte("b"))
	if !banned || until.IsZero() {
		t.Fatalf("LoginFailed = %v, %v; want a ban", banned, until)
	}
	if _, refuse, _ := l.BeforeLogin(&net.TCPAddr{IP: net.ParseIP("::ffff:192.0.2.1"), Port: 1}, "bob"); !refuse {
		t.Error("BeforeLogin(mapped address of the banned client) not refused")
	}
	pipe, _ := net.Pipe()
	defer pipe.Close()
	if d, refuse, _ := l.BeforeLogin(pipe.RemoteAddr(), "alice"); d != 0 || refuse {
		t.Error("a pipe is not exempt")
	}
	l.LoginSucceeded(remote, "alice")
}

// The SDPS spelling user+domain and any case of user@domain share one user
// counter, as they name one account in the user database.
func TestUserNameCanonical(t *testing.T) {
	t.Parallel()
	l, err := New(Options{BanAfter: -1, UserDelayAfter: 1})
	if err != nil {
		t.Fatal(err)
	}
	ip := netip.MustParseAddr("192.0.2.1")
	l.Failure(ip, "alice+example.org", Fingerprint{})
	r := l.Failure(netip.MustParseAddr("192.0.2.2"), "ALICE@example.org", Fingerprint{})
	if r.UserFailures != 2 {
		t.Errorf("failures for alice+example.org then ALICE@example.org: user count %d, want 2", r.UserFailures)
	}
	if d := l.CheckUser(netip.MustParseAddr("192.0.2.3"), "Alice+Example.org"); d <= 0 {
		t.Errorf("CheckUser(Alice+Example.org) = %v, want a delay", d)
	}
	if r := l.Failure(ip, "bob+tag@example.org", Fingerprint{}); r.UserFailures != 1 {
		t.Errorf("bob+tag@example.org shares a counter with another name: %d failures", r.UserFailures)
	}
}
