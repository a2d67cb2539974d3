package pop3server_test

import (
	"log/slog"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/postoffice-mail/postoffice/pop3server"
)

// The two lines every session writes, "logged in" and "disconnected",
// have the session's attributes first (conn, remote, then user once
// logged in: fail2ban's filter depends on the order), then their own; and
// a handler that prints source positions gets the line of the logging
// call, as from Logger.Info.
func TestSessionLogLines(t *testing.T) {
	t.Parallel()
	var logs lockedBuffer
	addr, _ := startServer(t, pop3server.Options{
		Backend: newFixture(t),
		Logger:  slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{AddSource: true})),
	})
	c := dial(t, addr)
	c.login("alice", "secret word")
	c.cmd("RETR 1", "+OK")
	for c.line() != "." {
	}
	c.cmd("DELE 2", "+OK")
	c.cmd("QUIT", "+OK")
	early := dial(t, addr)
	early.cmd("QUIT", "+OK")

	want := []string{
		`level=INFO source=(\S+/login\.go):(\d+) msg="logged in" conn=\S+ remote=127\.0\.0\.1:\d+ user=alice messages=3\n`,
		`level=INFO source=(\S+/conn\.go):(\d+) msg=disconnected conn=\S+ remote=127\.0\.0\.1:\d+ user=alice duration=\S+ top=0/0 retr=1/\d+ del=1/\d+ size=\d+ quit=true\n`,
		`level=INFO source=(\S+/conn\.go):(\d+) msg=disconnected conn=\S+ remote=127\.0\.0\.1:\d+ duration=\S+\n`,
	}
	deadline := time.Now().Add(10 * time.Second)
	for strings.Count(logs.String(), "msg=disconnected") < 2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	out := logs.String()
	for _, re := range want {
		m := regexp.MustCompile(re).FindStringSubmatch(out)
		if m == nil {
			t.Errorf("no line matching %s in the log:\n%s", re, out)
			continue
		}
		src, err := os.ReadFile(m[1])
		if err != nil {
			t.Fatal(err)
		}
		n, _ := strconv.Atoi(m[2])
		lines := strings.Split(string(src), "\n")
		if n < 1 || n > len(lines) || !strings.Contains(lines[n-1], "logAttrs(") {
			t.Errorf("source=%s:%d is not a logging call", m[1], n)
		}
	}
}
