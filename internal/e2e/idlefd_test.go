package e2e

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/postoffice-mail/postoffice/pop3server"
)

// A logged-in session that waits for its client gives back every
// descriptor of its Maildir but the lock's (the directory, new/, the
// journal), so that an idle session costs the server two descriptors
// with its socket; its next command reopens them and works.
func TestIdleSessionDescriptors(t *testing.T) {
	t.Parallel()
	if _, err := os.Stat("/proc/self/fd"); err != nil {
		t.Skip("no /proc/self/fd here")
	}
	s := newSite(t)
	s.deliver("alice", "Subject: one\n\nfirst\n")
	s.deliver("alice", "Subject: two\n\nsecond\n")
	md := s.maildir("alice")
	srv := s.start()
	defer srv.stop()
	under := func() []string {
		es, _ := os.ReadDir(filepath.Join("/proc", strconv.Itoa(srv.cmd.Process.Pid), "fd"))
		var out []string
		for _, e := range es {
			l, err := os.Readlink(filepath.Join("/proc", strconv.Itoa(srv.cmd.Process.Pid), "fd", e.Name()))
			if err == nil && (l == md || strings.HasPrefix(l, md+"/")) {
				out = append(out, l)
			}
		}
		return out
	}
	c := srv.dial()
	c.login("alice")
	c.cmd("RETR 1", "+OK")
	for l := c.expect(""); l != "."; l = c.expect("") {
	}
	var got []string
	for range 50 { // IdleRelease, and some
		time.Sleep(pop3server.IdleRelease / 10)
		if got = under(); len(got) == 1 {
			break
		}
	}
	if len(got) != 1 || filepath.Base(got[0]) != "postoffice-pop3.lock" {
		t.Fatalf("an idle session holds %q under its Maildir; want only the lock file", got)
	}
	c.cmd("RETR 2", "+OK")
	var body []string
	for l := c.expect(""); l != "."; l = c.expect("") {
		body = append(body, l)
	}
	if strings.Join(body, "\n") != "Subject: two\n\nsecond" {
		t.Errorf("RETR 2 after the idle wait = %q", body)
	}
	c.cmd("DELE 1", "+OK")
	c.cmd("QUIT", "+OK")
	if n := len(s.files("alice")); n != 1 {
		t.Errorf("%d messages after DELE 1 and QUIT, want 1", n)
	}
}
