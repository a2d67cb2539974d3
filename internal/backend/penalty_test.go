package backend

import (
	"bufio"
	"context"
	"encoding/base64"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/postoffice-mail/postoffice/internal/ratelimit"
	"github.com/postoffice-mail/postoffice/pop3"
)

// recordingLimiter is a ratelimit.Limiter that notes the per-user delays
// the engine asks for.
type recordingLimiter struct {
	*ratelimit.Limiter
	mu     sync.Mutex
	delays map[string]time.Duration // user -> last UserDelay answer
}

func (r *recordingLimiter) UserDelay(remote net.Addr, user string) time.Duration {
	d := r.Limiter.UserDelay(remote, user)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.delays[user] = d
	return d
}

func (r *recordingLimiter) delay(user string) (time.Duration, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	d, ok := r.delays[user]
	return d, ok
}

// newPenaltyLimiter delays a user after one failure, by 10 ms on a clock
// that stands still, and never bans or delays an address.
func newPenaltyLimiter(t *testing.T) *recordingLimiter {
	t.Helper()
	now := time.Unix(1_700_000_000, 0)
	l, err := ratelimit.New(ratelimit.Options{
		BaseDelay: 10 * time.Millisecond, MaxDelay: 10 * time.Millisecond,
		BanAfter: -1, UserDelayAfter: 1, UserMaxDelay: 10 * time.Millisecond,
		Now: func() time.Time { return now },
	})
	if err != nil {
		t.Fatal(err)
	}
	return &recordingLimiter{Limiter: l, delays: make(map[string]time.Duration)}
}

const penaltyFile = "alice@example.org:{PLAIN}pw\n"

// SASL failures (PLAIN, LOGIN, CRAM-MD5, SCRAM) count for the user they
// name, under the name the user database would find, and bring that user's
// delay on the next attempt from another address, before the credentials
// are checked.
func TestSASLFailuresCountForUser(t *testing.T) {
	t.Parallel()
	for _, m := range loginMethods {
		if m.name == "USER" || m.name == "APOP" {
			continue
		}
		t.Run(m.name, func(t *testing.T) {
			t.Parallel()
			lim := newPenaltyLimiter(t)
			dial, _ := limitedServer(t, penaltyFile, lim)
			ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
			defer cancel()
			attempt := func(from, user, pass string) error {
				c, err := pop3.NewClient(context.Background(), dial(from, from), nil)
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				err = m.login(ctx, c, user, pass)
				if err == nil {
					c.Quit(ctx)
				}
				return err
			}
			if err := attempt("203.0.113.1:1", "alice+example.org", "wrong"); replyOf(err) != "[AUTH] Authentication failed: check the user name and password" {
				t.Fatalf("wrong password: %s", replyOf(err))
			}
			fresh := netip.MustParseAddr("198.51.100.50")
			if d := lim.CheckUser(fresh, "Alice@Example.org"); d <= 0 {
				t.Errorf("after a %s failure for alice+example.org, alice@example.org has no delay", m.name)
			}
			if err := attempt("203.0.113.2:1", "alice@example.org", "pw"); err != nil {
				t.Errorf("right password from another address: %s", replyOf(err))
			}
			if d, ok := lim.delay("alice@example.org"); !ok || d <= 0 {
				t.Errorf("second %s attempt: per-user delay asked %v, %v; want a positive delay for alice@example.org", m.name, ok, d)
			}
		})
	}
}

// A SCRAM exchange cancelled with "*" after the server's first challenge
// (which cost the server a key derivation) counts as a failure for the user.
func TestSCRAMCancelCounts(t *testing.T) {
	t.Parallel()
	lim := newPenaltyLimiter(t)
	dial, _ := limitedServer(t, penaltyFile, lim)
	nc := dial("203.0.113.3:1", "203.0.113.3:1")
	nc.SetDeadline(time.Now().Add(30 * time.Second))
	br := bufio.NewReader(nc)
	read := func() string {
		t.Helper()
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("read: %v", err)
		}
		return strings.TrimRight(line, "\r\n")
	}
	send := func(s string) {
		t.Helper()
		if _, err := nc.Write([]byte(s + "\r\n")); err != nil {
			t.Fatalf("write: %v", err)
		}
	}
	read() // greeting
	send("AUTH SCRAM-SHA-256 " + base64.StdEncoding.EncodeToString([]byte("n,,n=alice@example.org,r=abcdefghijklmnop")))
	if got := read(); !strings.HasPrefix(got, "+ ") {
		t.Fatalf("client-first answered %q, want a challenge", got)
	}
	send("*")
	if got := read(); !strings.HasPrefix(got, "-ERR") {
		t.Fatalf("cancel answered %q, want -ERR", got)
	}
	if d := lim.CheckUser(netip.MustParseAddr("198.51.100.50"), "alice@example.org"); d <= 0 {
		t.Errorf("a SCRAM cancel after the first challenge was not counted for the user")
	}
}
