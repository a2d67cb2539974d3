package main

import (
	"bufio"
	"context"
	"net"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// orderedLog keeps the log and the try-it banner in the order written.
type orderedLog struct {
	mu sync.Mutex
	b  strings.Builder
}

func (w *orderedLog) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (w *orderedLog) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}

// serve --dev prints its try-it lines only once every listener is up, so
// a script that runs the printed curl line at once finds the server. The
// dev configuration is served on free ports instead of 1110 and 1995; the
// banner is written by serve's ready hook, as runServe does, into the
// same stream as the log: every "listening" line must come before it,
// and a connection made as soon as it appears must be greeted.
func TestDevBannerAfterListening(t *testing.T) {
	t.Parallel()
	cfg, banner, err := setupDev(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(banner, "curl pop3://") {
		t.Fatalf("banner lacks the curl line:\n%s", banner)
	}
	cfg.POP3.Listen = []string{"127.0.0.1:0"}
	cfg.POP3.ListenTLS = []string{"127.0.0.1:0"}
	var out orderedLog
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	printed := make(chan struct{})
	go func() {
		done <- serve(ctx, cfg, &out, func() {
			out.Write([]byte(banner))
			close(printed)
		})
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	}()
	select {
	case <-printed:
	case err := <-done:
		t.Fatalf("serve ended before printing the banner: %v\n%s", err, out.String())
	case <-time.After(30 * time.Second):
		t.Fatalf("no banner within 30s:\n%s", out.String())
	}
	text := out.String()
	curl := strings.Index(text, "curl pop3://")
	addrs := regexp.MustCompile(`msg=listening addr=(\S+) tls=false`).FindAllStringSubmatchIndex(text, -1)
	if n := strings.Count(text, "msg=listening "); n != 2 || len(addrs) != 1 {
		t.Fatalf("want 2 listening lines (one plain) before the banner:\n%s", text)
	}
	if last := strings.LastIndex(text, "msg=listening "); last > curl {
		t.Fatalf("banner printed before the listeners were up:\n%s", text)
	}
	addr := text[addrs[0][2]:addrs[0][3]]
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("connecting as soon as the banner appeared: %v", err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	if l, err := bufio.NewReader(nc).ReadString('\n'); !strings.HasPrefix(l, "+OK") {
		t.Fatalf("greeting %q, %v", l, err)
	}
}
