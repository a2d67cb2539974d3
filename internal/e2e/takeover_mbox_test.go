//go:build linux

package e2e

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/postoffice-mail/postoffice/internal/testutil/dovecot"
)

// mboxMessages returns n messages in mbox form (From_ lines, LF), each
// with the Received, Date and Message-ID headers the header hashes of
// popa3d and Dovecot's mbox storage read, so that each has its own.
func mboxMessages(tag string, n int) string {
	var b strings.Builder
	for i := 1; i <= n; i++ {
		if i > 1 {
			b.WriteString("\n")
		}
		fmt.Fprintf(&b, "From sender@example.org  Mon Dec  7 10:%02d:00 2026\n", i%60)
		fmt.Fprintf(&b, "Received: from mx.example.org by pop.example.org; Mon, 7 Dec 2026 10:%02d:00 +0000\n", i%60)
		fmt.Fprintf(&b, "Date: Mon, 7 Dec 2026 10:%02d:00 +0000\n", i%60)
		fmt.Fprintf(&b, "Message-ID: <%s-%d@example.org>\n", tag, i)
		fmt.Fprintf(&b, "From: sender@example.org\nTo: alice@example.org\nSubject: %s %02d\n\nbody of message %02d\n", tag, i, i)
	}
	return b.String()
}

// keepClients are mpop ("keep on") and fetchmail ("keep") with their
// state in dir, fetching user's mail from host:port with password pass.
type keepClient struct {
	name string
	run  func(t *testing.T, round string) []string
}

func keepClients(t *testing.T, dir, host, port, user string) []keepClient {
	t.Helper()
	return keepClientsWith(t, dir, host, port, user, "")
}

// keepClientsWith is keepClients with more server options for fetchmail.
func keepClientsWith(t *testing.T, dir, host, port, user, fetchmailOptions string) []keepClient {
	t.Helper()
	mpop := need(t, "mpop", "mpop")
	fm := need(t, "fetchmail", "fetchmail")
	return []keepClient{
		{"mpop", func(t *testing.T, round string) []string {
			return takeoverMpop(t, mpop, dir, host, port, user, round)
		}},
		{"fetchmail", func(t *testing.T, round string) []string {
			return takeoverFetchmailWith(t, fm, dir, host, port, user, round, fetchmailOptions)
		}},
	}
}

// checkTakeover is the part every takeover test shares once the old
// server is gone and postoffice serves its mail on its address: poplib's
// UIDL listing is the old one byte for byte, each client fetches
// nothing, and after one LMTP delivery each fetches exactly that one.
func checkTakeover(t *testing.T, py string, clients []keepClient, host, port, user, rcpt string, old []byte, srv *server, lmtpAddr string) {
	t.Helper()
	lines := func(b []byte) []string { return strings.SplitAfter(string(b), "\r\n") }
	if got := poplibUIDL(t, py, host, port, user); !bytes.Equal(got, old) {
		t.Errorf("UIDL listing after the takeover: old server (-) and postoffice (+) differ:\n%s", cmp.Diff(lines(old), lines(got)))
	}
	for _, c := range clients {
		if got := c.run(t, "postoffice"); len(got) != 0 {
			t.Errorf("%s fetched %d messages again from postoffice, want 0", c.name, len(got))
		}
	}
	lmtpDeliver(t, lmtpAddr, rcpt, "From: sender@example.org\nTo: "+rcpt+"\nMessage-ID: <fresh@example.org>\nSubject: after the takeover\n\nnew mail\n")
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

// startDovecotMbox starts Dovecot serving user's INBOX from the mbox file
// <dir>/spool/<user> (mail_location = mbox:~/mail:INBOX=...), filled with
// msgs, with the extra settings conf; it returns Dovecot and the spool
// directory.
func startDovecotMbox(t *testing.T, user, msgs, conf string) (*dovecot.Server, string) {
	t.Helper()
	d := dovecot.StartWith(t, dovecot.Options{Users: []string{user}, Config: conf})
	spool := filepath.Join(d.Dir, "spool")
	home := filepath.Join(d.Dir, "mail", user, "mail")
	for _, p := range []string{spool, home} {
		if err := os.MkdirAll(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(spool, user), []byte(msgs), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{spool, filepath.Join(spool, user)} {
		if err := os.Chown(p, d.UID, d.GID); err != nil {
			t.Fatal(err)
		}
	}
	d.Chown(t, user)
	return d, spool
}

// dovecotMboxLocation is the mail_location of startDovecotMbox (Dovecot's
// %u doubled for Sprintf).
func dovecotMboxLocation(d *dovecot.Server) string {
	return fmt.Sprintf("mail_location = mbox:%s/mail/%%u/mail:INBOX=%s/spool/%%u", d.Dir, d.Dir)
}

// TestDovecotMboxTakeover switches from Dovecot serving an mbox
// (mail_location = mbox:~/mail:INBOX=<spool>/%u) to postoffice on the
// same file, watched by mpop and fetchmail keeping their mail on the
// server, for the two pop3_uidl_format values a site has:
//
//   - "%m": postoffice computes the same header MD5 ([mail] uidl_format =
//     "%m") and serves Dovecot's UIDLs by itself;
//   - Dovecot's default "%08Xu%08Xv": the UID and UIDVALIDITY live in
//     Dovecot's mbox index and in X-UID/X-IMAPbase headers it writes only
//     when it rewrites the file, which postoffice does not read, so
//     `postoffice migrate uidl` copies them from the running Dovecot
//     before the switch.
func TestDovecotMboxTakeover(t *testing.T) {
	for _, tc := range []struct{ name, dovecotFormat, uidlFormat string }{
		{"md5", "%m", "%m"},
		{"default", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			py := need(t, "python3", "python3")
			const user = "alice"
			// Start chooses the directory, so the mbox location is added
			// after it with AddConfig (a reload), and waitDovecotMbox
			// waits until Dovecot serves from the mbox.
			conf := ""
			if tc.dovecotFormat != "" {
				conf = "pop3_uidl_format = " + tc.dovecotFormat
			}
			d, spool := startDovecotMbox(t, user, mboxMessages("mbox-"+tc.name, 30), conf)
			d.AddConfig(t, dovecotMboxLocation(d))
			host, port := hostPort(t, d.Addr)
			waitDovecotMbox(t, py, host, port, user, 30)
			dir := t.TempDir()
			clients := keepClients(t, dir, host, port, user)
			for _, c := range clients {
				if got := c.run(t, "dovecot"); len(got) != 30 {
					t.Fatalf("%s fetched %d messages from Dovecot, want 30", c.name, len(got))
				}
			}
			fromDovecot := poplibUIDL(t, py, host, port, user)
			if n := bytes.Count(fromDovecot, []byte("\r\n")); n != 30 {
				t.Fatalf("Dovecot's UIDL listing has %d lines, want 30:\n%s", n, fromDovecot)
			}
			location := "mbox:" + spool + "/%u"
			if tc.uidlFormat == "" {
				// The documented path: migrate uidl from the running Dovecot.
				cfg := filepath.Join(dir, "migrate.toml")
				if err := os.WriteFile(cfg, fmt.Appendf(nil, "[auth]\npasswd_file = %q\n\n[mail]\nlocation = %q\n",
					filepath.Join(d.Dir, "passwd"), location), 0o600); err != nil {
					t.Fatal(err)
				}
				cmd := exec.Command(binary, "migrate", "uidl", "--from", "pop3://"+user+"@"+d.Addr, "--user", user, "--config", cfg)
				cmd.Env = append(os.Environ(), "POSTOFFICE_OLD_PASSWORD="+dovecot.Password)
				if out, err := cmd.CombinedOutput(); err != nil {
					mb, _ := os.ReadFile(filepath.Join(spool, user))
					top, _ := exec.Command(py, "-c", "import poplib,sys\np=poplib.POP3(sys.argv[1],int(sys.argv[2]))\np.user(sys.argv[3]);p.pass_(sys.argv[4])\nprint(p.list(1), p.top(1,0))", host, port, user, dovecot.Password).CombinedOutput()
					t.Fatalf("postoffice migrate uidl: %v\n%s\nmbox: %.1200s\nTOP: %s", err, out, mb, top)
				}
			}
			d.Stop(t)
			srv, lmtpAddr := postofficeOn(t, dir, d.Addr, filepath.Join(d.Dir, "passwd"), location, tc.uidlFormat)
			checkTakeover(t, py, clients, host, port, user, "alice@example.org", fromDovecot, srv, lmtpAddr)
			if tc.uidlFormat == "%m" {
				// The new message's UIDL has the shape of Dovecot's %m.
				after := strings.SplitAfter(string(poplibUIDL(t, py, host, port, user)), "\r\n")
				if len(after) != 32 || !regexp.MustCompile(`^31 [0-9a-f]{32}\r\n$`).MatchString(after[30]) {
					t.Errorf("listing after a delivery ends %q, want a 31st line with an MD5 in hex", after[max(len(after)-3, 0):])
				}
			}
		})
	}
}

// waitDovecotMbox waits, bounded, until Dovecot (reloaded with the mbox
// location) lists n messages for user.
func waitDovecotMbox(t *testing.T, py, host, port, user string, n int) {
	t.Helper()
	const script = `import poplib, sys, time
deadline = time.time() + 20
while True:
    try:
        p = poplib.POP3(sys.argv[1], int(sys.argv[2]), timeout=10)
        p.user(sys.argv[3]); p.pass_(sys.argv[4])
        c = p.stat()[0]
        p.quit()
        if c == int(sys.argv[5]):
            break
    except Exception as e:
        c = str(e)
    if time.time() > deadline:
        sys.exit("Dovecot lists %s messages" % c)
    time.sleep(0.2)
`
	if out, err := exec.Command(py, "-c", script, host, port, user, dovecot.Password, fmt.Sprint(n)).CombinedOutput(); err != nil {
		t.Fatalf("waiting for Dovecot's mbox: %v\n%s", err, out)
	}
}
