package main

import (
	"bytes"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"syscall"
	"testing"

	"github.com/postoffice-mail/postoffice/internal/config"
	"github.com/postoffice-mail/postoffice/pop3server"
)

func parseConfig(t *testing.T, extra string) *config.Config {
	t.Helper()
	cfg, err := config.Parse("test.toml", []byte(`[pop3]
listen = ["127.0.0.1:0"]
[auth]
passwd_file = "/nonexistent"
`+extra+`
[mail]
location = "maildir:/tmp/%u"
`))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// penalty = false leaves the engine without a limiter (a nil interface, not
// a nil *ratelimit.Limiter inside one), and "0s"/0 switch single parts off
// while the rest works.
func TestLoginLimiterFromConfig(t *testing.T) {
	t.Parallel()
	lim, err := newLoginLimiter(parseConfig(t, "penalty = false"))
	if err != nil || lim != nil {
		t.Fatalf("penalty = false: newLoginLimiter = %v, %v; want nil, nil", lim, err)
	}
	var opts pop3server.Options
	setLimits(&opts, parseConfig(t, ""), lim, nil)
	if opts.LoginLimiter != nil {
		t.Fatalf("setLimits with no limiter set Options.LoginLimiter = %#v", opts.LoginLimiter)
	}

	lim, err = newLoginLimiter(parseConfig(t, "penalty_base = \"0s\"\nban_after = 3\nuser_penalty_after = 0"))
	if err != nil || lim == nil {
		t.Fatalf("newLoginLimiter = %v, %v", lim, err)
	}
	ip := netip.MustParseAddr("192.0.2.7")
	for i := range 3 {
		if v := lim.Check(ip, "alice"); v.Delay != 0 || v.Refuse {
			t.Fatalf("attempt %d with penalty_base 0s: %+v, want no delay", i+1, v)
		}
		lim.Failure(ip, "alice", lim.Fingerprint("alice", []byte(fmt.Sprint("guess", i))))
	}
	if v := lim.Check(ip, "alice"); !v.Refuse {
		t.Errorf("after ban_after failures: %+v, want refused", v)
	}
	if v := lim.Check(netip.MustParseAddr("198.51.100.1"), "alice"); v.Delay != 0 || v.Refuse {
		t.Errorf("another address with user_penalty_after = 0: %+v, want no delay", v)
	}
}

// The soft descriptor limit is raised to the hard one, and a hard limit
// that cannot hold three descriptors per connection is reported.
func TestRaiseFileLimit(t *testing.T) {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		t.Skip(err)
	}
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	if got := raiseFileLimit(log, 10); got != uint64(rl.Max) {
		t.Errorf("soft limit after raiseFileLimit = %d, want the hard limit %d", got, rl.Max)
	}
	if strings.Contains(buf.String(), "too low") {
		t.Errorf("warned for 10 connections: %s", buf.String())
	}
	if rl.Max > 1<<30 { // unlimited, or too large to matter
		return
	}
	raiseFileLimit(log, int(rl.Max/3))
	if !strings.Contains(buf.String(), "file descriptor limit too low") {
		t.Errorf("no warning for max_connections %d with a hard limit of %d: %q", rl.Max/3, rl.Max, buf.String())
	}
}
