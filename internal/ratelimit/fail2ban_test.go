package ratelimit_test

import (
	"bufio"
	"bytes"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/postoffice-mail/postoffice/internal/testutil"
	"github.com/postoffice-mail/postoffice/pop3server"
	"github.com/postoffice-mail/postoffice/pop3server/memserver"
)

const filterPath = "../../docs/fail2ban/postoffice.conf"

// failRegexps reads failregex from the fail2ban filter and translates it
// to Go: %(__prefix_line)s (the optional syslog prefix) becomes empty and
// <ADDR> becomes a group named host matching an IPv4 or IPv6 address, as
// fail2ban's own <ADDR> does.
func failRegexps(t *testing.T) []*regexp.Regexp {
	t.Helper()
	data, err := os.ReadFile(filterPath)
	if err != nil {
		t.Fatal(err)
	}
	var pats []string
	in := false
	for _, line := range strings.Split(string(data), "\n") {
		switch {
		case strings.HasPrefix(line, "failregex"):
			in = true
			_, p, _ := strings.Cut(line, "=")
			pats = append(pats, strings.TrimSpace(p))
		case in && strings.HasPrefix(line, " ") && strings.TrimSpace(line) != "":
			pats = append(pats, strings.TrimSpace(line))
		default:
			in = false
		}
	}
	if len(pats) == 0 {
		t.Fatal("no failregex in the filter")
	}
	const addr = `(?P<host>(?:\d{1,3}\.){3}\d{1,3}|[0-9A-Fa-f]{0,4}:[0-9A-Fa-f:.]*)`
	var res []*regexp.Regexp
	for _, p := range pats {
		p = strings.ReplaceAll(p, "%(__prefix_line)s", "")
		p = strings.ReplaceAll(p, "<ADDR>", addr)
		p = strings.ReplaceAll(p, "<HOST>", addr)
		res = append(res, regexp.MustCompile(p))
	}
	return res
}

// banned returns the address fail2ban would take from line, or "".
func banned(res []*regexp.Regexp, line string) string {
	for _, re := range res {
		if m := re.FindStringSubmatch(line); m != nil {
			return m[re.SubexpIndex("host")]
		}
	}
	return ""
}

func TestFail2banFilterSamples(t *testing.T) {
	t.Parallel()
	res := failRegexps(t)
	tests := []struct{ line, want string }{
		{`time=2026-01-02T03:04:05.678Z level=INFO msg="authentication failed" conn=1a remote=192.0.2.1:51234 user=alice`, "192.0.2.1"},
		{`time=2026-01-02T03:04:05.678Z level=INFO msg="authentication failed" conn=1a remote=[2001:db8::1]:51234 user="x remote=6.6.6.6:1 y"`, "2001:db8::1"},
		{`time=2026-01-02T03:04:06.001+02:00 level=WARN msg="client banned" conn=1b remote=[2001:db8:1:2::ff]:51235 until=2026-01-02T03:19:06Z`, "2001:db8:1:2::ff"},
		{`level=INFO msg="authentication failed" conn=z remote=[::ffff:192.0.2.9]:110 user=a`, "::ffff:192.0.2.9"},
		{`time=2026-01-02T03:04:07.001Z level=INFO msg="logged in" conn=1d remote=192.0.2.9:51236 user=bob messages=3`, ""},
		{`time=2026-01-02T03:04:08.001Z level=INFO msg="disconnected" conn=1e remote=192.0.2.1:51237 user="msg=\"authentication failed\" conn=1 remote=6.6.6.6:1 "`, ""},
		{`time=2026-01-02T03:04:08.001Z level=INFO msg="login refused" conn=1e remote=192.0.2.1:51237 user=a code=SYS/TEMP`, ""},
	}
	for _, tt := range tests {
		if got := banned(res, tt.line); got != tt.want {
			t.Errorf("filter(%q) = %q, want %q", tt.line, got, tt.want)
		}
	}
}

// syncBuffer is a bytes.Buffer safe for the engine's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestFail2banFilterEngine runs real sessions against pop3server with the
// text log handler postoffice uses, and checks that the filter takes the
// client's address from the engine's "authentication failed" lines, even
// for a user name crafted to look like another address.
func TestFail2banFilterEngine(t *testing.T) {
	t.Parallel()
	res := failRegexps(t)
	var logs syncBuffer
	be := memserver.New()
	be.AddUser("alice", "right")
	addr, _ := testutil.ServePOP3(t, pop3server.Options{
		Backend: be,
		Logger:  slog.New(slog.NewTextHandler(&logs, nil)),
	})
	for _, user := range []string{"alice", `x remote=6.6.6.6:1 y`, `" conn=1 remote=6.6.6.6:1 `} {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(10 * time.Second))
		r := bufio.NewReader(c)
		r.ReadString('\n')
		fmt.Fprintf(c, "USER %s\r\nPASS wrong\r\nQUIT\r\n", user)
		for {
			if _, err := r.ReadString('\n'); err != nil {
				break
			}
		}
		c.Close()
	}
	deadline := time.Now().Add(10 * time.Second)
	for strings.Count(logs.String(), `msg=disconnected`) < 3 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	var hits int
	for _, line := range strings.Split(logs.String(), "\n") {
		host := banned(res, line)
		if strings.Contains(line, `msg="authentication failed"`) {
			hits++
			if host != "127.0.0.1" {
				t.Errorf("filter(%q) = %q, want 127.0.0.1", line, host)
			}
		} else if host != "" {
			t.Errorf("filter matched a line that is no failure: %q", line)
		}
	}
	if hits != 3 {
		t.Errorf("%d authentication failures logged, want 3; log:\n%s", hits, logs.String())
	}
}

// TestFail2banRegex runs fail2ban's own fail2ban-regex, when installed,
// over docs/fail2ban/sample.log.
func TestFail2banRegex(t *testing.T) {
	t.Parallel()
	bin := testutil.Need(t, "fail2ban-regex", "fail2ban")
	common, err := os.ReadFile("/etc/fail2ban/filter.d/common.conf")
	if err != nil {
		testutil.Missing(t, "/etc/fail2ban/filter.d/common.conf", "fail2ban")
	}
	dir := t.TempDir()
	filter, err := os.ReadFile(filterPath)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "common.conf"), common, 0o644)
	os.WriteFile(filepath.Join(dir, "postoffice.conf"), filter, 0o644)
	out, err := exec.Command(bin, "../../docs/fail2ban/sample.log", filepath.Join(dir, "postoffice.conf")).CombinedOutput()
	if err != nil {
		t.Fatalf("fail2ban-regex: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "5 lines, 0 ignored, 3 matched, 2 missed") {
		t.Errorf("fail2ban-regex over sample.log:\n%s", out)
	}
	if !regexp.MustCompile(`\[5\] \^time=Year-Month-Day`).Match(out) {
		t.Errorf("fail2ban-regex did not take the time= stamps:\n%s", out)
	}
}
