package e2e

import (
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"
)

// The older POP3 family members on the POP3 listener, driven by
// fetchmail (Debian's build has SDPS and RPOP): SDPS multi-drop, RPOP,
// LAST.

// fetchmailLegacy runs fetchmail on rc (the poll entry; the MDA and
// defaults are added) and returns its output, the MDA's deliveries (for
// each local recipient, the envelope sender and message of each copy) and
// its exit error.
func fetchmailLegacy(t *testing.T, poll string) (string, map[string][]string, error) {
	t.Helper()
	fm := need(t, "fetchmail", "fetchmail")
	dir := t.TempDir()
	out := filepath.Join(dir, "out")
	os.Mkdir(out, 0o755)
	// Called as "mda.sh SENDER RCPT...": one copy of the message per
	// recipient, in out/RCPT/, the sender on its first line.
	mda := filepath.Join(dir, "mda.sh")
	os.WriteFile(mda, []byte(fmt.Sprintf(`#!/bin/sh
from="$1"; shift
msg=$(mktemp %[1]s/msg.XXXXXX)
cat > "$msg"
for r in "$@"; do
	mkdir -p "%[1]s/$r"
	{ echo "$from"; cat "$msg"; } > "$(mktemp %[1]s/$r/m.XXXXXX)"
done
rm -f "$msg"
`, out)), 0o755)
	rc := filepath.Join(dir, "fetchmailrc")
	os.WriteFile(rc, []byte("set no bouncemail\n"+poll+fmt.Sprintf("  sslproto ''\n  mda \"%s %%F %%T\"\n", mda)), 0o600)
	cmd := exec.Command(fm, "-f", rc, "-v", "-v", "--nosyslog", "--idfile", filepath.Join(dir, "ids"), "--pidfile", filepath.Join(dir, "pid"))
	cmd.Env = append(os.Environ(), "HOME="+dir, "FETCHMAILHOME="+dir)
	done := make(chan struct{})
	timer := time.AfterFunc(60*time.Second, func() {
		select {
		case <-done:
		default:
			cmd.Process.Kill()
		}
	})
	b, err := cmd.CombinedOutput()
	close(done)
	timer.Stop()
	got := make(map[string][]string)
	es, _ := os.ReadDir(out)
	for _, e := range es {
		if !e.IsDir() {
			continue
		}
		fs, _ := os.ReadDir(filepath.Join(out, e.Name()))
		for _, f := range fs {
			m, _ := os.ReadFile(filepath.Join(out, e.Name(), f.Name()))
			got[e.Name()] = append(got[e.Name()], string(m))
		}
		sort.Strings(got[e.Name()])
	}
	return string(b), got, err
}

// lmtpMulti delivers one message to several recipients in one
// transaction.
func lmtpMulti(t *testing.T, addr, from string, rcpts []string, msg string) {
	t.Helper()
	c, err := dialLMTP(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.nc.Close()
	if _, err := c.cmd("MAIL FROM:<"+from+">", "250"); err != nil {
		t.Fatal(err)
	}
	for _, r := range rcpts {
		if _, err := c.cmd("RCPT TO:<"+r+">", "250"); err != nil {
			t.Fatalf("RCPT %s: %v", r, err)
		}
	}
	if _, err := c.cmd("DATA", "354"); err != nil {
		t.Fatal(err)
	}
	io.WriteString(c.nc, strings.ReplaceAll(msg, "\n", "\r\n")+".\r\n")
	for _, r := range rcpts {
		if _, err := c.reply("250"); err != nil {
			t.Fatalf("DATA for %s: %v", r, err)
		}
	}
}

const sdpsMessage = "From: sender@example.net\nTo: john@host.example, mary@host.example, pete@host.example\nSubject: to three\n\nHello all three.\n"
const sdpsJohnOnly = "From: other@example.net\nTo: john@host.example\nSubject: john only\n\nFor john.\n"

// startSDPS runs a site with the SDPS domain host.example (its drop is the
// user "host.example", password testPassword) and LMTP, and delivers one
// message to john, mary and pete, and one to john only.
func startSDPS(t *testing.T) (*site, *server) {
	s := newSite(t)
	s.run(testPassword+"\n", "user", "add", "--passwd-file", filepath.Join(s.dir, "passwd"), "--password-stdin", "host.example")
	s.appendConfig("[sdps]\ndomains = [\"host.example\"]")
	lmtpAddr := s.enableLMTP()
	srv := s.start()
	srv.waitLMTP(lmtpAddr)
	lmtpMulti(t, lmtpAddr, "sender@example.net", []string{"john@host.example", "mary@host.example", "Pete@host.example"}, sdpsMessage)
	lmtpMulti(t, lmtpAddr, "other@example.net", []string{"john@host.example"}, sdpsJohnOnly)
	return s, srv
}

// SDPS over the wire: the whole drop, john's part of it with "john@host"
// and "john+host", *ENV, Return-Path on RETR, and the drop's password
// required for every form.
func TestSDPSLogins(t *testing.T) {
	_, srv := startSDPS(t)

	c := srv.dial()
	c.login("host.example")
	if n := c.count(); n != 4 {
		t.Fatalf("whole drop: %d messages, want 4 (one copy per recipient)", n)
	}
	c.cmd("QUIT", "+OK")

	for _, name := range []string{"john@host.example", "john+host.example", "JOHN@host.example"} {
		c := srv.dial()
		c.login(name)
		if n := c.count(); n != 2 {
			t.Fatalf("%s: %d messages, want 2", name, n)
		}
		c.cmd("*ENV 2", "+OK")
		var lines []string
		for l := c.expect(""); l != "."; l = c.expect("") {
			lines = append(lines, l)
		}
		if want := []string{"2", lines[1], "other@example.net", "john@host.example"}; len(lines) != 4 || lines[2] != want[2] || lines[3] != want[3] || lines[0] != "2" {
			t.Errorf("%s: *ENV 2 = %q, want %q", name, lines, want)
		}
		msg := c.retr(2)
		if !strings.HasPrefix(msg, "Return-Path: <other@example.net>\r\n") {
			t.Errorf("%s: RETR 2 does not start with the Return-Path:\n%s", name, msg)
		}
		c.cmd("QUIT", "+OK")
	}

	c = srv.dial()
	c.cmd("USER mary@host.example", "+OK")
	c.cmd("PASS wrong", "-ERR [AUTH]")
	c.cmd("USER nobody@other.example", "+OK")
	c.cmd("PASS "+testPassword, "-ERR [AUTH]")
	c.cmd("QUIT", "+OK")
}

// fetchmail "protocol SDPS" in multidrop mode: each copy goes to its
// envelope recipient only (the header names all three), with its envelope
// sender; the drop is empty afterwards. Then "USER john+host" sees only
// john's mail.
func TestSDPSFetchmailMultidrop(t *testing.T) {
	s, srv := startSDPS(t)
	host, port, _ := net.SplitHostPort(srv.addr)
	out, got, err := fetchmailLegacy(t, fmt.Sprintf("poll %s port %s protocol sdps timeout 20\n  localdomains host.example\n  user \"host.example\" there with password %q is * here\n",
		host, port, testPassword))
	if err != nil {
		t.Fatalf("fetchmail: %v\n%s\nserver log:\n%s", err, out, srv.log)
	}
	if !strings.Contains(out, "*ENV 1") {
		t.Fatalf("fetchmail did not send *ENV:\n%s", out)
	}
	counts := map[string]int{}
	for r, ms := range got {
		counts[strings.ToLower(r)] += len(ms)
	}
	// fetchmail hands the MDA each envelope recipient as it read it from
	// *ENV (the case of the RCPT TO the MTA gave: Pete).
	if want := map[string]int{"john@host.example": 2, "mary@host.example": 1, "pete@host.example": 1}; fmt.Sprint(counts) != fmt.Sprint(want) {
		t.Fatalf("deliveries per recipient = %v, want %v\nfetchmail:\n%s", counts, want, out)
	}
	for r, ms := range got {
		for _, m := range ms {
			from, body, _ := strings.Cut(m, "\n")
			wantFrom := "sender@example.net"
			if strings.Contains(body, "john only") {
				wantFrom = "other@example.net"
			}
			if from != wantFrom {
				t.Errorf("%s got envelope sender %q, want %q", r, from, wantFrom)
			}
		}
	}
	if n := len(s.files("host.example")); n != 0 {
		t.Errorf("drop holds %d messages after fetchmail, want 0", n)
	}
}

// "USER john+host" with fetchmail: only john's mail, and deleting it
// leaves the others' in the drop.
func TestSDPSFetchmailOneRecipient(t *testing.T) {
	s, srv := startSDPS(t)
	host, port, _ := net.SplitHostPort(srv.addr)
	out, got, err := fetchmailLegacy(t, fmt.Sprintf("poll %s port %s protocol sdps timeout 20\n  localdomains host.example\n  user \"john+host.example\" there with password %q is * here\n",
		host, port, testPassword))
	if err != nil {
		t.Fatalf("fetchmail: %v\n%s\nserver log:\n%s", err, out, srv.log)
	}
	if len(got) != 1 || len(got["john@host.example"]) != 2 {
		t.Fatalf("deliveries = %v, want two for john only\n%s", got, out)
	}
	if n := len(s.files("host.example")); n != 2 {
		t.Errorf("drop holds %d messages after john's fetch, want mary's and pete's 2", n)
	}
}

// Without [sdps], a domain's recipients are not accepted by LMTP and
// *ENV is unknown.
func TestSDPSOff(t *testing.T) {
	s := newSite(t)
	s.run(testPassword+"\n", "user", "add", "--passwd-file", filepath.Join(s.dir, "passwd"), "--password-stdin", "host.example")
	lmtpAddr := s.enableLMTP()
	srv := s.start()
	srv.waitLMTP(lmtpAddr)
	lc, err := dialLMTP(lmtpAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer lc.nc.Close()
	lc.cmd("MAIL FROM:<a@example.net>", "250")
	if l, err := lc.cmd("RCPT TO:<john@host.example>", "550"); err != nil {
		t.Errorf("RCPT to an SDPS-less domain: %q, want 550", l)
	}
	s.deliver("host.example", "Subject: x\n\nx\n")
	c := srv.dial()
	c.login("host.example")
	c.cmd("*ENV 1", "-ERR Unknown command")
	c.cmd("QUIT", "+OK")
	c = srv.dial()
	c.cmd("USER john@host.example", "+OK")
	c.cmd("PASS "+testPassword, "-ERR [AUTH]")
}

// lowPortRelay is a fetchmail plugin: it connects from SRC_ADDR:SRC_PORT
// (port 0: any) to the server and joins the connection to its stdin and
// stdout, since fetchmail binds no privileged port itself.
const lowPortRelay = `import socket, sys, threading
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[3], int(sys.argv[4])))
s.connect((sys.argv[1], int(sys.argv[2])))
def up():
    while True:
        b = sys.stdin.buffer.raw.read(65536)
        if not b:
            s.shutdown(socket.SHUT_WR); return
        s.sendall(b)
threading.Thread(target=up, daemon=True).start()
while True:
    b = s.recv(65536)
    if not b: break
    sys.stdout.buffer.write(b); sys.stdout.buffer.flush()
`

// rpopFetch runs fetchmail "protocol RPOP" for alice as client user root,
// connecting from src:srcPort.
func rpopFetch(t *testing.T, srv *server, py, script, src string, srcPort int) (string, map[string][]string, error) {
	host, port, _ := net.SplitHostPort(srv.addr)
	return fetchmailLegacy(t, fmt.Sprintf("poll 127.0.0.1 protocol rpop timeout 20\n  plugin \"%s %s %s %s %s %d\"\n  user \"alice\" there with password \"root\" is alice here\n",
		py, script, host, port, src, srcPort))
}

// fetchmail "protocol RPOP" (it sends USER alice, then RPOP with its
// password field, here the client user "root"): accepted from the trusted
// network on a port below 1024; refused from a port above, from an
// untrusted address, for a client user the map does not list, and with
// RPOP off.
func TestRPOPFetchmail(t *testing.T) {
	py := need(t, "python3", "python3")
	if os.Geteuid() != 0 {
		t.Skip("binding a port below 1024 needs root")
	}
	script := filepath.Join(t.TempDir(), "relay.py")
	os.WriteFile(script, []byte(lowPortRelay), 0o644)
	lowPort := func() int { return 600 + rand.IntN(400) }

	s := newSite(t)
	rmap := filepath.Join(s.dir, "rpop.map")
	os.WriteFile(rmap, []byte("# LOCALUSER CLIENTHOST CLIENTUSER\nalice 127.0.0.0/8 root\n"), 0o644)
	s.appendConfig(fmt.Sprintf("[rpop]\nenabled = true\ntrusted_networks = [\"127.0.0.1/32\"]\nmap = %q", rmap))
	srv := s.start()

	s.deliver("alice", "Subject: rpop\n\nover RPOP\n")
	out, got, err := rpopFetch(t, srv, py, script, "127.0.0.1", lowPort())
	if err != nil || len(got["alice"]) != 1 {
		t.Fatalf("RPOP from 127.0.0.1, low port: %v, %d messages\n%s\nserver log:\n%s", err, len(got["alice"]), out, srv.log)
	}
	if !strings.Contains(out, "POP3> RPOP ") { // fetchmail shrouds the argument in its log
		t.Errorf("fetchmail did not send RPOP:\n%s", out)
	}

	s.deliver("alice", "Subject: rpop 2\n\nnot over RPOP\n")
	for _, c := range []struct {
		name string
		src  string
		port int
	}{
		{"high port", "127.0.0.1", 0},
		{"untrusted address", "127.0.0.2", lowPort()},
	} {
		out, got, err := rpopFetch(t, srv, py, script, c.src, c.port)
		if err == nil || len(got) != 0 || !strings.Contains(out, "-ERR [AUTH]") {
			t.Errorf("RPOP from %s was not refused: %v, %v\n%s", c.name, err, got, out)
		}
	}
	host, port, _ := net.SplitHostPort(srv.addr)
	out, got, err = fetchmailLegacy(t, fmt.Sprintf("poll 127.0.0.1 protocol rpop timeout 20\n  plugin \"%s %s %s %s 127.0.0.1 %d\"\n  user \"alice\" there with password \"mallory\" is alice here\n",
		py, script, host, port, lowPort()))
	if err == nil || len(got) != 0 {
		t.Errorf("RPOP for an unmapped client user was not refused:\n%s", out)
	}
	if !strings.Contains(srv.log.String(), "rpop refused") {
		t.Errorf("no refusal in the server log:\n%s", srv.log)
	}
	srv.stop()

	off := newSite(t)
	srv = off.start()
	off.deliver("alice", "Subject: rpop off\n\nx\n")
	out, got, err = rpopFetch(t, srv, py, script, "127.0.0.1", lowPort())
	if err == nil || len(got) != 0 || !strings.Contains(out, "-ERR Unknown command") {
		t.Errorf("RPOP with [rpop] off was not refused: %v, %v\n%s", err, got, out)
	}
}

// fetchmail sends LAST when it keeps mail and does not fetch all (and
// uses no UIDL): with pop3.enable_last it gets "+OK 0" (nothing retrieved
// yet in the session) and fetches both messages; without, LAST is unknown
// and fetchmail falls back to UIDL.
func TestLASTFetchmail(t *testing.T) {
	for _, on := range []bool{true, false} {
		t.Run(fmt.Sprint("enable_last=", on), func(t *testing.T) {
			s := newSite(t)
			if on {
				s.editConfig(func(c string) string { return strings.Replace(c, "[pop3]\n", "[pop3]\nenable_last = true\n", 1) })
			}
			srv := s.start()
			s.deliver("alice", "Subject: one\n\n1\n")
			s.deliver("alice", "Subject: two\n\n2\n")
			host, port, _ := net.SplitHostPort(srv.addr)
			out, got, err := fetchmailLegacy(t, fmt.Sprintf("poll %s port %s protocol pop3 timeout 20\n  user \"alice\" there with password %q is alice here\n  keep\n",
				host, port, testPassword))
			if err != nil || len(got["alice"]) != 2 {
				t.Fatalf("fetchmail: %v, %d messages\n%s\nserver log:\n%s", err, len(got["alice"]), out, srv.log)
			}
			if !strings.Contains(out, "POP3> LAST") {
				t.Fatalf("fetchmail did not send LAST:\n%s", out)
			}
			if on != strings.Contains(out, "POP3< +OK 0") {
				t.Errorf("LAST answer with enable_last=%v:\n%s", on, out)
			}
			if !on && !strings.Contains(out, "POP3> UIDL") {
				t.Errorf("fetchmail did not fall back to UIDL:\n%s", out)
			}
		})
	}
}
