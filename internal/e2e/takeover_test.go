package e2e

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/postoffice-mail/postoffice/internal/store/maildir"
	"github.com/postoffice-mail/postoffice/internal/testutil/dovecot"
)

// TestDovecotTakeover is the switch from Dovecot's POP3 to postoffice as an
// administrator does it, watched by clients that leave their mail on the
// server: a real Dovecot 2.3 serves a Maildir of 30 messages and mpop
// ("keep on", its uidls file) and fetchmail ("keep", its idfile) each fetch
// all 30; Python's poplib records Dovecot's UIDL listing. Dovecot is
// stopped and postoffice serves the same Maildirs, with Dovecot's
// dovecot-uidlist and passwd-file in place, on the address Dovecot had
// (the clients' state is per server, as a user's would be). Then poplib's
// UIDL listing must be Dovecot's byte for byte, each client fetches
// nothing, and after one new delivery each fetches exactly that one.
func TestDovecotTakeover(t *testing.T) {
	t.Parallel()
	mpop := need(t, "mpop", "mpop")
	fm := need(t, "fetchmail", "fetchmail")
	py := need(t, "python3", "python3")
	const user = "alice"
	d := dovecot.Start(t, user)
	msgs := make([]string, 30)
	for i := range msgs {
		msgs[i] = fmt.Sprintf("From: sender@example.org\nTo: alice@example.org\nSubject: takeover %02d\n\nbody of message %02d\n", i+1, i+1)
	}
	d.Deliver(t, user, msgs)
	host, port := hostPort(t, d.Addr)
	dir := t.TempDir()
	clients := []struct {
		name string
		run  func(t *testing.T, round string) []string
	}{
		{"mpop", func(t *testing.T, round string) []string {
			return takeoverMpop(t, mpop, dir, host, port, user, round)
		}},
		{"fetchmail", func(t *testing.T, round string) []string {
			return takeoverFetchmail(t, fm, dir, host, port, user, round)
		}},
	}

	for _, c := range clients {
		if got := c.run(t, "dovecot"); len(got) != len(msgs) {
			t.Fatalf("%s fetched %d messages from Dovecot, want %d", c.name, len(got), len(msgs))
		}
	}
	fromDovecot := poplibUIDL(t, py, host, port, user)
	if n := bytes.Count(fromDovecot, []byte("\r\n")); n != len(msgs) {
		t.Fatalf("Dovecot's UIDL listing has %d lines, want %d:\n%s", n, len(msgs), fromDovecot)
	}
	if _, err := os.Stat(filepath.Join(d.Maildir(user), "dovecot-uidlist")); err != nil {
		t.Fatalf("Dovecot left no dovecot-uidlist: %v", err)
	}
	d.Stop(t)

	// postoffice on Dovecot's address, Maildirs and passwd-file.
	location := filepath.Join(d.Dir, "mail", "%u", "Maildir")
	s := &site{t: t, dir: dir, config: filepath.Join(dir, "postoffice.toml")}
	cfg := fmt.Sprintf(`[pop3]
listen = [%q]
auth_fail_delay = "0s"

[auth]
passwd_file = %q

[mail]
location = "maildir:%s"
`, d.Addr, filepath.Join(d.Dir, "passwd"), location)
	if err := os.WriteFile(s.config, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	st, err := maildir.New(maildir.Options{Location: location})
	if err != nil {
		t.Fatal(err)
	}
	s.store = st
	srv := s.start()
	if srv.addr != d.Addr {
		t.Fatalf("postoffice listens on %s, want Dovecot's %s", srv.addr, d.Addr)
	}

	if got := poplibUIDL(t, py, host, port, user); !bytes.Equal(got, fromDovecot) {
		lines := func(b []byte) []string { return strings.SplitAfter(string(b), "\r\n") }
		t.Errorf("UIDL listing after the takeover: Dovecot (-) and postoffice (+) differ:\n%s",
			cmp.Diff(lines(fromDovecot), lines(got)))
	}
	for _, c := range clients {
		if got := c.run(t, "postoffice"); len(got) != 0 {
			t.Errorf("%s fetched %d messages again from postoffice, want 0", c.name, len(got))
		}
	}

	const fresh = "From: sender@example.org\nTo: alice@example.org\nSubject: after the takeover\n\nnew mail\n"
	s.deliver(user, fresh)
	for _, c := range clients {
		got := c.run(t, "new")
		if len(got) != 1 || !strings.Contains(got[0], "Subject: after the takeover") {
			t.Errorf("%s fetched %d messages after one delivery, want only the new one: %.300q", c.name, len(got), got)
		}
	}
	if t.Failed() {
		t.Logf("postoffice log:\n%s", srv.log)
	}
}

// takeoverMpop runs mpop with "keep on" and a uidls file kept across
// rounds, delivering into a Maildir of its own for this round, and returns
// what it delivered.
func takeoverMpop(t *testing.T, mpop, dir, host, port, user, round string) []string {
	t.Helper()
	out := filepath.Join(dir, "mpop-"+round)
	for _, sub := range []string{"new", "cur", "tmp"} {
		if err := os.MkdirAll(filepath.Join(out, sub), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	rc := filepath.Join(dir, "mpoprc")
	if err := os.WriteFile(rc, []byte(fmt.Sprintf(`account takeover
host %s
port %s
timeout 20
tls off
user %s
password %q
auth user
delivery maildir %s
uidls_file %s
received_header off
keep on
`, host, port, user, dovecot.Password, out, filepath.Join(dir, "mpop-uidls"))), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(mpop, "-C", rc, "takeover")
	cmd.Env = append(os.Environ(), "HOME="+dir)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("mpop (%s): %v\n%s", round, err, b)
	}
	return readFiles(t, filepath.Join(out, "new"))
}

// takeoverFetchmail runs fetchmail with "keep" and an idfile kept across
// rounds, delivering each message to a file of its own through an MDA,
// and returns what it delivered. It speaks plaintext POP3 with USER/PASS
// on loopback; an empty sslproto stops it from trying STLS, which Dovecot
// offers.
func takeoverFetchmail(t *testing.T, fm, dir, host, port, user, round string) []string {
	t.Helper()
	return takeoverFetchmailWith(t, fm, dir, host, port, user, round, "")
}

// takeoverFetchmailWith is takeoverFetchmail with more server options on
// the rc file's poll line (such as "uidl").
func takeoverFetchmailWith(t *testing.T, fm, dir, host, port, user, round, serverOptions string) []string {
	t.Helper()
	out := filepath.Join(dir, "fetchmail-"+round)
	if err := os.Mkdir(out, 0o755); err != nil {
		t.Fatal(err)
	}
	mda := filepath.Join(dir, "mda-"+round+".sh")
	if err := os.WriteFile(mda, []byte(fmt.Sprintf("#!/bin/sh\nexec cat > %s/$(date +%%s%%N).$$\n", out)), 0o755); err != nil {
		t.Fatal(err)
	}
	rc := filepath.Join(dir, "fetchmailrc")
	if err := os.WriteFile(rc, []byte(fmt.Sprintf(`set no bouncemail
poll %s service %s protocol POP3 auth password timeout 20 %s
  user %q there with password %q
  sslproto ''
  mda %q
  keep
`, host, port, serverOptions, user, dovecot.Password, mda)), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(fm, "-f", rc, "-v", "--nosyslog", "--idfile", filepath.Join(dir, "fetchmail-ids"),
		"--pidfile", filepath.Join(dir, "fetchmail.pid")) // root's default is /var/run, shared
	cmd.Env = append(os.Environ(), "HOME="+dir, "FETCHMAILHOME="+dir)
	b, err := cmd.CombinedOutput()
	// fetchmail exits 1 when there was no mail: not an error.
	var ee *exec.ExitError
	if err != nil && !(errors.As(err, &ee) && ee.ExitCode() == 1) {
		t.Fatalf("fetchmail (%s): %v\n%s", round, err, b)
	}
	return readFiles(t, out)
}

// poplibUIDL returns the UIDL listing Python's poplib reads, each line as
// the server sent it with CRLF.
func poplibUIDL(t *testing.T, py, host, port, user string) []byte {
	t.Helper()
	const script = `import poplib, sys
p = poplib.POP3(sys.argv[1], int(sys.argv[2]), timeout=20)
p.user(sys.argv[3])
p.pass_(sys.argv[4])
resp, lines, octets = p.uidl()
p.quit()
sys.stdout.buffer.write(b"".join(l + b"\r\n" for l in lines))
`
	out, err := exec.Command(py, "-c", script, host, port, user, dovecot.Password).Output()
	if err != nil {
		t.Fatalf("poplib: %v\n%s", err, stderrOf(err))
	}
	return out
}

// postofficeOn starts postoffice serve on addr (the old server's) with the
// given passwd-file, [mail] location and uidl_format (none when empty),
// with LMTP on a loopback port of its own; it returns the server and the
// LMTP address.
func postofficeOn(t *testing.T, dir, addr, passwd, location, uidlFormat string) (*server, string) {
	t.Helper()
	s := &site{t: t, dir: dir, config: filepath.Join(dir, "postoffice.toml")}
	extra := ""
	if uidlFormat != "" {
		extra = fmt.Sprintf("uidl_format = %q\n", uidlFormat)
	}
	cfg := fmt.Sprintf("[pop3]\nlisten = [%q]\nauth_fail_delay = \"0s\"\n\n[auth]\npasswd_file = %q\n\n[mail]\nlocation = %q\n%s",
		addr, passwd, location, extra)
	if err := os.WriteFile(s.config, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	lmtpAddr := s.enableLMTP()
	srv := s.start()
	if srv.addr != addr {
		t.Fatalf("postoffice listens on %s, want %s", srv.addr, addr)
	}
	srv.waitLMTP(lmtpAddr)
	return srv, lmtpAddr
}

// lmtpDeliver delivers one message (LF or CRLF lines) to rcpt over LMTP.
func lmtpDeliver(t *testing.T, addr, rcpt, msg string) {
	t.Helper()
	c, err := dialLMTP(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.nc.Close()
	if _, err := c.send("sender@example.net", rcpt, crlf(msg)); err != nil {
		t.Fatalf("LMTP delivery to %s: %v", rcpt, err)
	}
	c.cmd("QUIT", "221")
}
