package pop3server_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/postoffice-mail/postoffice/internal/ratelimit"
	"github.com/postoffice-mail/postoffice/pop3server"
	"github.com/postoffice-mail/postoffice/pop3server/memserver"
)

// pipeDial connects a net.Pipe client to srv and reads the greeting. With
// remote set ("192.0.2.1:1234") the server sees the client there; without,
// it sees the pipe's address, which is neither loopback nor an IP.
func pipeDial(t *testing.T, srv *pop3server.Server, remote string) *client {
	t.Helper()
	cli, sv := net.Pipe()
	var nc net.Conn = sv
	if remote != "" {
		nc = remoteAddrConn{sv, net.TCPAddrFromAddrPort(netip.MustParseAddrPort(remote))}
	}
	srv.ServeConn(nc)
	c := &client{t: t, nc: cli, br: bufio.NewReader(cli)}
	c.expect("+OK")
	return c
}

// expectEOF checks that the server has closed the connection.
func (c *client) expectEOF() {
	c.t.Helper()
	if l, err := c.br.ReadString('\n'); err != io.EOF {
		c.t.Fatalf("got %q, %v; want EOF", l, err)
	}
}

// countLogins counts the credential checks that reach the backend.
type countLogins struct {
	pop3server.Backend
	n *atomic.Int32
}

type countLoginsSession struct {
	pop3server.Session
	n *atomic.Int32
}

func (b countLogins) NewSession(ctx context.Context, c *pop3server.Conn) (pop3server.Session, error) {
	s, err := b.Backend.NewSession(ctx, c)
	return countLoginsSession{s, b.n}, err
}

func (s countLoginsSession) Login(ctx context.Context, u, p string) (pop3server.Mailbox, error) {
	s.n.Add(1)
	return s.Session.Login(ctx, u, p)
}

// A flood of wrong passwords from one address is slowed down (the
// limiter's growing delays), then banned: refused with [SYS/TEMP] before
// any password is checked, even a right one, and logged once as "client
// banned" for fail2ban. Meanwhile another address logs in without waiting,
// and the attacked user from another address waits at most the per-user
// delay: users are never locked out. Time is synctest's, so every duration
// is exact.
func TestBruteForceSlowedThenBanned(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		lim, err := ratelimit.New(ratelimit.Options{
			BaseDelay: 2 * time.Second, MaxDelay: 15 * time.Second,
			BanAfter: 10, BanDuration: 15 * time.Minute,
			UserDelayAfter: 5, UserMaxDelay: 8 * time.Second,
		})
		if err != nil {
			t.Fatal(err)
		}
		var logs lockedBuffer
		var logins atomic.Int32
		srv, err := pop3server.New(pop3server.Options{
			Backend:            countLogins{newFixture(t), &logins},
			Logger:             slog.New(slog.NewTextHandler(&logs, nil)),
			LoginLimiter:       lim,
			AuthFailDelay:      time.Second,
			AllowPlaintextAuth: true,
		})
		if err != nil {
			t.Fatal(err)
		}
		defer srv.Close()
		const attacker, other = "192.0.2.66:40000", "198.51.100.7:40001"

		start := time.Now()
		var failedAt []time.Duration
		for i := 0; ; i++ {
			if i == 20 {
				t.Fatalf("not banned after %d failures", len(failedAt))
			}
			c := pipeDial(t, srv, attacker)
			c.cmd("USER alice", "+OK")
			before := logins.Load()
			l := c.cmd(fmt.Sprintf("PASS guess-%d", i), "-ERR ")
			if strings.HasPrefix(l, "-ERR [AUTH] ") {
				failedAt = append(failedAt, time.Since(start))
				c.nc.Close()
				continue
			}
			if !strings.HasPrefix(l, "-ERR [SYS/TEMP] Too many failed logins from your network; try again") {
				t.Fatalf("attempt %d: %q", i+1, l)
			}
			c.expectEOF()
			c.nc.Close()
			if logins.Load() != before {
				t.Error("a refused attempt reached the backend")
			}
			break
		}
		t.Logf("wrong passwords answered at %v", failedAt)
		if len(failedAt) != 10 {
			t.Errorf("%d failures before the ban, want 10 (BanAfter)", len(failedAt))
		}
		// Slowed: the limiter spaces the guesses at least 2, 4, 8, 15,
		// 15, ... seconds apart, and the engine waits that out before
		// checking.
		if d := failedAt[1] - failedAt[0]; d < 2*time.Second {
			t.Errorf("second guess answered %v after the first, want >= 2s", d)
		}
		if d, least := failedAt[9]-failedAt[0], (2+4+8+6*15)*time.Second; d < least {
			t.Errorf("ten guesses took %v, want >= %v", d, least)
		}

		// Another address logs in at once: no delay was even computed for
		// it, and the login took no (synthetic) time at all.
		if v := lim.Check(netip.MustParseAddr("198.51.100.7"), "bob@example.org"); v.Delay != 0 || v.Refuse {
			t.Errorf("limiter for the other address: %+v, want no delay", v)
		}
		t0 := time.Now()
		c := pipeDial(t, srv, other)
		c.login("bob@example.org", "pw")
		if d := time.Since(t0); d != 0 {
			t.Errorf("other address waited %v to log in, want 0", d)
		}
		c.cmd("QUIT", "+OK")
		c.nc.Close()

		// The attacked user, from elsewhere, waits the capped per-user
		// delay but is not refused.
		t0 = time.Now()
		c = pipeDial(t, srv, other)
		c.login("alice", "secret word")
		if d := time.Since(t0); d <= 0 || d > 8*time.Second {
			t.Errorf("alice from another address waited %v, want (0, 8s]", d)
		}
		c.cmd("QUIT", "+OK")
		c.nc.Close()

		// The banned address is refused even with a right password.
		v := lim.Check(netip.MustParseAddr("192.0.2.66"), "")
		if !v.Refuse || v.Reason != "banned" {
			t.Errorf("limiter for the attacker: %+v, want banned", v)
		}
		c = pipeDial(t, srv, attacker)
		c.cmd("USER bob@example.org", "+OK")
		c.cmd("PASS pw", "-ERR [SYS/TEMP] Too many failed logins")
		c.expectEOF()
		c.nc.Close()

		// After the ban the address may log in again.
		time.Sleep(time.Until(v.Until))
		c = pipeDial(t, srv, attacker)
		c.login("bob@example.org", "pw")
		c.cmd("QUIT", "+OK")
		c.nc.Close()

		synctest.Wait()
		log := logs.String()
		banned := regexp.MustCompile(`(?m)^time=\S+ level=WARN msg="client banned" conn=\S+ remote=192\.0\.2\.66:40000 until=\S+$`)
		if n := len(banned.FindAllString(log, -1)); n != 1 || strings.Count(log, "client banned") != 1 {
			t.Errorf("%d matching \"client banned\" lines, want 1; log:\n%s", n, log)
		}
		refused := regexp.MustCompile(`msg="login refused" conn=\S+ remote=192\.0\.2\.66:40000 user=\S+ code=SYS/TEMP reason="too many failed logins" until=\S+\n`)
		if n := len(refused.FindAllString(log, -1)); n != 2 {
			t.Errorf("%d \"login refused\" lines, want 2; log:\n%s", n, log)
		}
	})
}

// fakeLimiter records the engine's calls and answers as told.
type fakeLimiter struct {
	mu     sync.Mutex
	calls  []string
	delay  time.Duration
	refuse bool
	ban    bool
	until  time.Time
}

func (f *fakeLimiter) record(s string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, s)
}

func (f *fakeLimiter) log() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.calls...)
}

func (f *fakeLimiter) BeforeLogin(remote net.Addr, user string) (time.Duration, bool, time.Time) {
	f.record(fmt.Sprintf("before %s %q", remote, user))
	return f.delay, f.refuse, f.until
}

func (f *fakeLimiter) LoginFailed(remote net.Addr, user string, password []byte) (bool, time.Time) {
	pw := "nil"
	if password != nil {
		pw = fmt.Sprintf("%q", password)
	}
	f.record(fmt.Sprintf("failed %s %q %s", remote, user, pw))
	return f.ban, f.until
}

func (f *fakeLimiter) LoginSucceeded(remote net.Addr, user string) {
	f.record(fmt.Sprintf("succeeded %s %q", remote, user))
}

// The engine asks the limiter before every credential check (PASS, APOP,
// AUTH) and reports the outcome: the password for PASS (also an empty
// one), nil for APOP and SASL, whose SASL failures count per address only.
// Checks that never reach the credentials (bad base64, an unknown
// mechanism) ask nothing; backend failures ([SYS/TEMP]) report nothing.
func TestLoginLimiterCalls(t *testing.T) {
	t.Parallel()
	b := newFixture(t)
	b.EnableAPOP()
	b.EnableSASL()
	lim := &fakeLimiter{}
	srv, err := pop3server.New(pop3server.Options{Backend: b, LoginLimiter: lim, AuthFailDelay: -1, MaxAuthFailures: 10})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	const remote = "127.0.0.5:999"
	c := pipeDial(t, srv, remote)
	c.cmd("USER alice", "+OK")
	c.cmd("PASS wrong", "-ERR [AUTH] ")
	c.cmd("USER nobody", "+OK")
	c.cmd("PASS", "-ERR [AUTH] ")
	c.cmd("APOP alice 00000000000000000000000000000000", "-ERR [AUTH] ")
	c.cmd("AUTH PLAIN "+base64.StdEncoding.EncodeToString([]byte("\x00alice\x00wrong")), "-ERR [AUTH] ")
	c.cmd("AUTH PLAIN ###", "-ERR Invalid base64 data: send the SASL response in base64, or * to cancel")
	c.cmd("AUTH X-NONE", "-ERR Unsupported")
	c.cmd("USER alice", "+OK")
	c.cmd("PASS secret word", "+OK Logged in")
	c.cmd("QUIT", "+OK")
	c.nc.Close()
	want := []string{
		`before 127.0.0.5:999 "alice"`,
		`failed 127.0.0.5:999 "alice" "wrong"`,
		`before 127.0.0.5:999 "nobody"`,
		`failed 127.0.0.5:999 "nobody" ""`,
		`before 127.0.0.5:999 "alice"`,
		`failed 127.0.0.5:999 "alice" nil`,
		`before 127.0.0.5:999 ""`,
		`failed 127.0.0.5:999 "" nil`,
		`before 127.0.0.5:999 "alice"`,
		`succeeded 127.0.0.5:999 "alice"`,
	}
	got := lim.log()
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("limiter calls:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// A refusal answers [SYS/TEMP], checks nothing, logs "login refused" with
// the time of the end of the ban, and closes; a ban reported by
// LoginFailed is logged once as "client banned" in the line shape the
// fail2ban filter expects.
func TestLoginLimiterRefusalAndBanLog(t *testing.T) {
	t.Parallel()
	var logs lockedBuffer
	var logins atomic.Int32
	until := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	lim := &fakeLimiter{until: until, ban: true}
	srv, err := pop3server.New(pop3server.Options{
		Backend:      countLogins{newFixture(t), &logins},
		Logger:       slog.New(slog.NewTextHandler(&logs, nil)),
		LoginLimiter: lim, AuthFailDelay: -1,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	c := pipeDial(t, srv, "127.0.0.9:4242")
	c.cmd("USER alice", "+OK")
	c.cmd("PASS wrong", "-ERR [AUTH] ")
	lim.mu.Lock()
	lim.refuse = true
	lim.mu.Unlock()
	c.cmd("USER alice", "+OK")
	c.cmd("PASS secret word", "-ERR [SYS/TEMP] Too many failed logins from your network; try again")
	c.expectEOF()
	c.nc.Close()
	waitSessions(t, srv, 0)
	if n := logins.Load(); n != 1 {
		t.Errorf("%d logins reached the backend, want 1 (the refused one must not)", n)
	}
	log := logs.String()
	for _, re := range []string{
		`level=WARN msg="client banned" conn=\S+ remote=127\.0\.0\.9:4242 until=2030-01-02T03:04:05\.000Z\n`,
		`level=INFO msg="login refused" conn=\S+ remote=127\.0\.0\.9:4242 user=alice code=SYS/TEMP reason="too many failed logins" until=2030-01-02T03:04:05\.000Z\n`,
	} {
		if !regexp.MustCompile(re).MatchString(log) {
			t.Errorf("log lacks %s:\n%s", re, log)
		}
	}
}

// A login delay is waited before the check, and Shutdown ends a session
// sitting one out instead of waiting for it.
func TestLoginDelayAndShutdown(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		lim := &fakeLimiter{delay: 5 * time.Second}
		srv, err := pop3server.New(pop3server.Options{Backend: newFixture(t), LoginLimiter: lim, AuthFailDelay: -1, AllowPlaintextAuth: true})
		if err != nil {
			t.Fatal(err)
		}
		defer srv.Close()
		c := pipeDial(t, srv, "192.0.2.1:1")
		start := time.Now()
		c.login("alice", "secret word")
		if d := time.Since(start); d != 5*time.Second {
			t.Errorf("login took %v, want the 5s delay", d)
		}
		c.cmd("QUIT", "+OK")
		c.nc.Close()

		lim.mu.Lock()
		lim.delay = time.Hour
		lim.mu.Unlock()
		c = pipeDial(t, srv, "192.0.2.1:2")
		c.cmd("USER alice", "+OK")
		io.WriteString(c.nc, "PASS secret word\r\n")
		synctest.Wait()
		start = time.Now()
		if err := srv.Shutdown(context.Background()); err != nil {
			t.Fatal(err)
		}
		if d := time.Since(start); d != 0 {
			t.Errorf("Shutdown waited %v for a session in a login delay", d)
		}
		c.expectEOF()
		c.nc.Close()
	})
}

// The pre-login timeout ends sessions that have not logged in, also one
// waiting in a SASL exchange, long before the idle timeout ends a
// logged-in one (after login the idle timeout of RFC 1939 §3 applies).
func TestPreLoginTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv, err := pop3server.New(pop3server.Options{Backend: saslFixture(t), AuthFailDelay: -1, AllowPlaintextAuth: true})
		if err != nil {
			t.Fatal(err)
		}
		defer srv.Close()
		start := time.Now()
		idle := pipeDial(t, srv, "")
		half := pipeDial(t, srv, "")
		io.WriteString(half.nc, "USER ali") // half a line, then nothing
		sasl := pipeDial(t, srv, "")
		sasl.cmd("AUTH PLAIN", "+ ")
		user := pipeDial(t, srv, "")
		user.login("alice", "secret word")

		time.Sleep(pop3server.DefaultPreLoginTimeout - time.Second)
		synctest.Wait()
		if n := srv.Sessions(); n != 4 {
			t.Fatalf("%d sessions before the pre-login timeout, want 4", n)
		}
		time.Sleep(time.Second)
		synctest.Wait()
		if n := srv.Sessions(); n != 1 {
			t.Fatalf("%d sessions after the pre-login timeout, want 1", n)
		}
		for _, c := range []*client{idle, half, sasl} {
			c.expectEOF() // silently, as RFC 1939 §3 has it
			c.nc.Close()
		}
		time.Sleep(10*time.Minute - time.Since(start) - time.Second)
		synctest.Wait()
		if n := srv.Sessions(); n != 1 {
			t.Fatalf("logged-in session ended after %v, before the idle timeout", time.Since(start))
		}
		time.Sleep(time.Second)
		user.expectEOF()
		if d := time.Since(start); d != 10*time.Minute {
			t.Errorf("logged-in session ended after %v, want 10m", d)
		}
		user.nc.Close()
	})
}

func TestPreLoginTimeoutNotLongerThanIdle(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv, err := pop3server.New(pop3server.Options{Backend: newFixture(t), IdleTimeout: 20 * time.Second, PreLoginTimeout: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		defer srv.Close()
		c := pipeDial(t, srv, "")
		start := time.Now()
		c.expectEOF()
		if d := time.Since(start); d != 20*time.Second {
			t.Errorf("pre-login session ended after %v, want the 20s idle timeout", d)
		}
		c.nc.Close()
	})
}

// bigMessage is 1 MiB of 64-octet lines.
var bigMessage = strings.Repeat(strings.Repeat("x", 62)+"\r\n", 16<<10)

// slowReaderSetup logs in as u with one bigMessage and sends RETR 1.
func slowReaderSetup(t *testing.T) (*pop3server.Server, *memserver.Backend, *client) {
	b := memserver.New()
	b.AddUser("u", "p")
	b.Deliver("u", []byte(bigMessage))
	srv, err := pop3server.New(pop3server.Options{Backend: b, AuthFailDelay: -1, AllowPlaintextAuth: true})
	if err != nil {
		t.Fatal(err)
	}
	c := pipeDial(t, srv, "")
	c.login("u", "p")
	io.WriteString(c.nc, "RETR 1\r\n")
	return srv, b, c
}

// Slow readers: a client that stops reading in the middle of a RETR is
// dropped WriteTimeout after the last write it accepted, and its maildrop
// lock goes with it; one that reads a byte a second (slowloris) fares no
// better. One that reads steadily, slowly but above the floor of 32 KiB per
// WriteTimeout, gets a message however long it takes, here longer than the
// idle timeout (a deadline per message would have cut it).
func TestSlowReaders(t *testing.T) {
	wt := pop3server.DefaultWriteTimeout
	t.Run("never", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			srv, b, c := slowReaderSetup(t)
			defer srv.Close()
			defer c.nc.Close()
			time.Sleep(wt - time.Second)
			synctest.Wait()
			if srv.Sessions() != 1 {
				t.Fatal("session ended before the write timeout")
			}
			time.Sleep(time.Second)
			synctest.Wait()
			if srv.Sessions() != 0 {
				t.Fatal("session still open after the write timeout")
			}
			// The lock is free and nothing was deleted.
			c2 := pipeDial(t, srv, "")
			c2.login("u", "p")
			c2.cmd("QUIT", "+OK")
			c2.nc.Close()
			if n := b.Count("u"); n != 1 {
				t.Errorf("%d messages, want 1", n)
			}
		})
	})
	t.Run("byte-per-second", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			srv, _, c := slowReaderSetup(t)
			defer srv.Close()
			defer c.nc.Close()
			start := time.Now()
			var one [1]byte
			n := 0
			for ; n < 10000; n++ {
				if _, err := c.nc.Read(one[:]); err != nil {
					break
				}
				time.Sleep(time.Second)
			}
			if d := time.Since(start); d < wt || d > wt+2*time.Second {
				t.Errorf("a 1 B/s reader was dropped after %v (%d octets), want about %v", d, n, wt)
			}
		})
	})
	t.Run("steady", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			srv, _, c := slowReaderSetup(t)
			defer srv.Close()
			defer c.nc.Close()
			start := time.Now()
			var got strings.Builder
			buf := make([]byte, 32<<10)
			// 32 KiB a minute: twice the floor of the default timeout.
			for i := 0; i < 1000 && !strings.HasSuffix(got.String(), "\r\n.\r\n"); i++ {
				for n := 0; n < len(buf) && !strings.HasSuffix(got.String(), "\r\n.\r\n"); {
					m, err := c.nc.Read(buf[n:])
					if err != nil {
						t.Fatalf("after %v and %d octets: %v", time.Since(start), got.Len(), err)
					}
					got.Write(buf[n : n+m])
					n += m
				}
				time.Sleep(time.Minute)
			}
			want := "+OK " + fmt.Sprint(len(bigMessage)) + " octets\r\n" + bigMessage + ".\r\n"
			if got.String() != want {
				t.Fatalf("got %d octets, want %d", got.Len(), len(want))
			}
			if d := time.Since(start); d <= 10*time.Minute {
				t.Fatalf("transfer took %v; the test wants one longer than the idle timeout", d)
			}
			c.cmd("QUIT", "+OK")
		})
	})
}

// The same floor over TLS, where the records of a chunk are gathered and
// written to the socket together: a client that reads steadily at twice
// the floor gets the whole message, and one that stops reading is dropped
// WriteTimeout later. crypto/tls gives up on a connection after one failed
// write, so a deadline that fell inside its write would cut the steady
// reader too.
func TestSlowReadersTLS(t *testing.T) {
	wt := pop3server.DefaultWriteTimeout
	// The certificates are made (and cached for the package's other
	// tests) outside the bubbles, whose clocks start in 2000; the client
	// checks them against the time outside.
	serverTLS, clientConf := testTLSConfig(t), clientTLS(t).Clone()
	now := time.Now()
	clientConf.Time = func() time.Time { return now }
	setup := func(t *testing.T) (*pop3server.Server, net.Conn, *bufio.Reader) {
		b := memserver.New()
		b.AddUser("u", "p")
		b.Deliver("u", []byte(bigMessage))
		srv, err := pop3server.New(pop3server.Options{Backend: b, AuthFailDelay: -1, TLSConfig: serverTLS})
		if err != nil {
			t.Fatal(err)
		}
		c := pipeDial(t, srv, "")
		c.cmd("STLS", "+OK")
		tc := tls.Client(c.nc, clientConf)
		if err := tc.Handshake(); err != nil {
			t.Fatalf("handshake: %v", err)
		}
		br := bufio.NewReader(tc)
		io.WriteString(tc, "USER u\r\nPASS p\r\nRETR 1\r\n")
		for range 2 {
			if l, err := br.ReadString('\n'); err != nil || !strings.HasPrefix(l, "+OK") {
				t.Fatalf("login: %q, %v", l, err)
			}
		}
		return srv, tc, br
	}
	t.Run("steady", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			srv, tc, br := setup(t)
			defer srv.Close()
			defer tc.Close()
			start := time.Now()
			var got strings.Builder
			buf := make([]byte, 32<<10)
			// 32 KiB a minute: twice the floor of the default timeout.
			for i := 0; i < 1000 && !strings.HasSuffix(got.String(), "\r\n.\r\n"); i++ {
				for n := 0; n < len(buf) && !strings.HasSuffix(got.String(), "\r\n.\r\n"); {
					m, err := br.Read(buf[n:])
					if err != nil {
						t.Fatalf("after %v and %d octets: %v", time.Since(start), got.Len(), err)
					}
					got.Write(buf[n : n+m])
					n += m
				}
				time.Sleep(time.Minute)
			}
			want := "+OK " + fmt.Sprint(len(bigMessage)) + " octets\r\n" + bigMessage + ".\r\n"
			if got.String() != want {
				t.Fatalf("got %d octets, want %d", got.Len(), len(want))
			}
		})
	})
	t.Run("never", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			srv, tc, _ := setup(t)
			defer srv.Close()
			defer tc.Close()
			time.Sleep(wt - time.Second)
			synctest.Wait()
			if srv.Sessions() != 1 {
				t.Fatal("session ended before the write timeout")
			}
			time.Sleep(2 * time.Second)
			synctest.Wait()
			if srv.Sessions() != 0 {
				t.Fatal("session still open after the write timeout")
			}
		})
	})
}
