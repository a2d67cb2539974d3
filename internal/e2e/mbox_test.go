//go:build linux

package e2e

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestMboxLocation runs the binary on an mbox location
// ("mbox:<dir>/%u", as /var/mail is served) with uidl_format = "popa3d":
// a message delivered over LMTP and one through the deliver command are
// appended to the user's mbox, and Python's poplib lists, retrieves and
// deletes them over POP3.
func TestMboxLocation(t *testing.T) {
	py := need(t, "python3", "python3")
	s := newSite(t)
	spool := filepath.Join(s.dir, "mail")
	if err := os.MkdirAll(spool, 0o700); err != nil {
		t.Fatal(err)
	}
	cfg, err := os.ReadFile(s.config)
	if err != nil {
		t.Fatal(err)
	}
	loc := regexp.MustCompile(`(?m)^location = .*$`)
	cfg = loc.ReplaceAll(cfg, fmt.Appendf(nil, "location = %q\nuidl_format = \"popa3d\"", "mbox:"+spool+"/%u"))
	if err := os.WriteFile(s.config, cfg, 0o600); err != nil {
		t.Fatal(err)
	}
	lmtpAddr := s.enableLMTP()
	srv := s.start()
	defer srv.stop()
	srv.waitLMTP(lmtpAddr)

	c, err := dialLMTP(lmtpAddr)
	if err != nil {
		t.Fatal(err)
	}
	msg1 := "From: sender@example.net\r\nTo: alice@example.org\r\nMessage-ID: <one@example.net>\r\nSubject: over LMTP\r\n\r\nFrom the start of a line\r\nbody one\r\n"
	if _, err := c.send("sender@example.net", "alice@example.org", msg1); err != nil {
		t.Fatalf("LMTP: %v\nserver log:\n%s", err, srv.log)
	}
	c.cmd("QUIT", "221")
	s.run("From: other@example.net\nMessage-ID: <two@example.net>\nSubject: by deliver\n\nbody two\n",
		"deliver", "--config", s.config, "-u", "alice", "-f", "other@example.net")

	mb, err := os.ReadFile(filepath.Join(spool, "alice"))
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count("\n"+string(mb), "\nFrom "); n != 2 || !strings.Contains(string(mb), "\n>From the start") {
		t.Fatalf("mbox has %d From_ lines (want 2, and the body's From quoted):\n%s", n, mb)
	}

	h, p, _ := net.SplitHostPort(srv.addr)
	script := `
import json, poplib, sys
p = poplib.POP3(sys.argv[1], int(sys.argv[2]), timeout=30)
p.user("alice"); p.pass_(sys.argv[3])
out = {"uidl": [l.decode() for l in p.uidl()[1]], "retr": []}
for n in range(1, p.stat()[0] + 1):
    out["retr"].append(b"\r\n".join(p.retr(n)[1]).decode())
    p.dele(n)
p.quit()
print(json.dumps(out))
`
	out, err := exec.Command(py, "-c", script, h, p, testPassword).Output()
	if err != nil {
		t.Fatalf("poplib: %v\n%s\nserver log:\n%s", err, stderrOf(err), srv.log)
	}
	var got struct {
		UIDL []string
		Retr []string
	}
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("poplib output %q: %v", out, err)
	}
	if len(got.Retr) != 2 || !strings.Contains(got.Retr[0], "\r\nFrom the start of a line\r\nbody one") ||
		!strings.Contains(got.Retr[1], "Subject: by deliver\r\n\r\nbody two") {
		t.Errorf("retrieved %q", got.Retr)
	}
	popa3d := regexp.MustCompile(`^[12] [0-9a-f]{16}$`)
	if len(got.UIDL) != 2 || !popa3d.MatchString(got.UIDL[0]) || !popa3d.MatchString(got.UIDL[1]) || got.UIDL[0][2:] == got.UIDL[1][2:] {
		t.Errorf("UIDL listing %q, want two distinct popa3d UIDLs", got.UIDL)
	}
	mb, err = os.ReadFile(filepath.Join(spool, "alice"))
	if err != nil {
		t.Fatal(err)
	}
	if len(mb) != 0 {
		t.Errorf("mbox after DELE and QUIT: %q, want empty", mb)
	}
}
