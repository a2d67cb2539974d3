package ratelimit_test

import (
	"bufio"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/postoffice-mail/postoffice/internal/ratelimit"
	"github.com/postoffice-mail/postoffice/internal/testutil"
	"github.com/postoffice-mail/postoffice/pop3server"
	"github.com/postoffice-mail/postoffice/pop3server/memserver"
)

// The Limiter plugs into the engine as its LoginLimiter.
var _ pop3server.LoginLimiter = (*ratelimit.Limiter)(nil)

// TestFail2banFilterEngineBan runs the engine with a real Limiter until it
// bans the client, and checks the filter against the engine's output: it
// takes 127.0.0.1 from every "authentication failed" line and from the one
// "client banned" line, and ignores "login refused" (a refused attempt is
// no new evidence; the ban line already counts).
func TestFail2banFilterEngineBan(t *testing.T) {
	t.Parallel()
	res := failRegexps(t)
	var logs syncBuffer
	lim, err := ratelimit.New(ratelimit.Options{BaseDelay: -1, BanAfter: 3})
	if err != nil {
		t.Fatal(err)
	}
	be := memserver.New()
	be.AddUser("alice", "right")
	addr, _ := testutil.ServePOP3(t, pop3server.Options{
		Backend:      be,
		Logger:       slog.New(slog.NewTextHandler(&logs, nil)),
		LoginLimiter: lim,
	})
	var replies []string
	for i := 0; i < 4; i++ {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(10 * time.Second))
		r := bufio.NewReader(c)
		r.ReadString('\n')
		fmt.Fprintf(c, "USER alice\r\nPASS wrong%d\r\n", i)
		r.ReadString('\n')
		l, _ := r.ReadString('\n')
		replies = append(replies, strings.TrimSpace(l))
		c.Close()
	}
	want := "-ERR [SYS/TEMP] Too many failed logins from your network; try again"
	if strings.HasPrefix(replies[2], want) || !strings.HasPrefix(replies[3], want) {
		t.Errorf("replies %q: want the fourth attempt, after the ban, refused", replies)
	}
	deadline := time.Now().Add(10 * time.Second)
	for strings.Count(logs.String(), `msg=disconnected`) < 4 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	var failed, bans, refused int
	for _, line := range strings.Split(logs.String(), "\n") {
		host := banned(res, line)
		switch {
		case strings.Contains(line, `msg="authentication failed"`):
			failed++
		case strings.Contains(line, `msg="client banned"`):
			bans++
		case strings.Contains(line, `msg="login refused"`):
			refused++
			if host != "" {
				t.Errorf("filter matched a refusal: %q", line)
			}
			continue
		default:
			if host != "" {
				t.Errorf("filter matched a line that is no failure: %q", line)
			}
			continue
		}
		if host != "127.0.0.1" {
			t.Errorf("filter(%q) = %q, want 127.0.0.1", line, host)
		}
	}
	if failed != 3 || bans != 1 || refused != 1 {
		t.Errorf("%d failures, %d bans, %d refusals logged, want 3, 1, 1; log:\n%s", failed, bans, refused, logs.String())
	}
}
