package fetch

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// A fetch from a real Dovecot, started as root from a temporary directory
// (the harness is the minimal part of pop3/dovecot_test.go).

// The same client tests against a real Dovecot (STYLE.md habit 8), run as
// root from a temporary directory as /work/shared/PEERS.md describes.

// dovecot is one running Dovecot instance serving POP3 on loopback.
type dovecot struct {
	addr     string
	dir      string
	uid, gid int

	fingerprint string // of its certificate
}

const dovecotUser = "vmail" // owns the Maildirs; Dovecot's mail processes refuse root

// startDovecot starts Dovecot for one test, or skips the test when it
// cannot run here.
func startDovecot(t *testing.T) *dovecot {
	t.Helper()
	bin, err := exec.LookPath("dovecot")
	if err != nil {
		t.Skip("dovecot not installed: apt-get install dovecot-pop3d")
	}
	if _, err := os.Stat("/usr/lib/dovecot/pop3"); err != nil {
		t.Skip("dovecot POP3 server not installed: apt-get install dovecot-pop3d")
	}
	if os.Geteuid() != 0 {
		t.Skip("dovecot tests need root (Dovecot drops privileges to its own users)")
	}
	for _, u := range []string{"dovenull", "dovecot"} {
		if _, err := user.Lookup(u); err != nil {
			t.Skipf("dovecot system user %s missing: reinstall dovecot-core", u)
		}
	}
	vu, err := user.Lookup(dovecotUser)
	if err != nil {
		out, err := exec.Command("useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", dovecotUser).CombinedOutput()
		if err != nil {
			// A parallel creator may have won.
			if vu, err = user.Lookup(dovecotUser); err != nil {
				t.Fatalf("useradd %s: %v: %s", dovecotUser, err, out)
			}
		}
		if vu == nil {
			if vu, err = user.Lookup(dovecotUser); err != nil {
				t.Fatal(err)
			}
		}
	}
	uid, _ := strconv.Atoi(vu.Uid)
	gid, _ := strconv.Atoi(vu.Gid)

	dir, err := os.MkdirTemp("", "fetch-dovecot-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	// Dovecot's unprivileged processes need to reach the mail directory.
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()

	cert, _, fp := selfSigned(t)
	keyDER, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	write := func(name, content string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	certFile := write("cert.pem", string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]})), 0o644)
	keyFile := write("key.pem", string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})), 0o600)
	var users strings.Builder
	for _, u := range dovecotUsers {
		fmt.Fprintf(&users, "%s:{PLAIN}%s::::::\n", u, dovecotPassword)
	}
	passwd := write("passwd", users.String(), 0o644)
	conf := write("dovecot.conf", fmt.Sprintf(`
base_dir = %[1]s/run
state_dir = %[1]s/state
log_path = %[1]s/dovecot.log
protocols = pop3
listen = 127.0.0.1
default_login_user = dovenull
default_internal_user = dovecot
first_valid_uid = %[3]d
first_valid_gid = %[4]d
mail_uid = %[3]d
mail_gid = %[4]d
mail_location = maildir:%[1]s/mail/%%u/Maildir
disable_plaintext_auth = no
auth_mechanisms = plain login cram-md5 apop
auth_failure_delay = 0
ssl = yes
ssl_cert = <%[5]s
ssl_key = <%[6]s
passdb {
  driver = passwd-file
  args = %[7]s
}
userdb {
  driver = static
  args = uid=%[3]d gid=%[4]d home=%[1]s/mail/%%u
}
service pop3-login {
  inet_listener pop3 {
    address = 127.0.0.1
    port = %[2]d
  }
  inet_listener pop3s {
    port = 0
  }
}
`, dir, port, uid, gid, certFile, keyFile, passwd), 0o644)
	for _, d := range []string{"run", "state"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}

	cmd := exec.Command(bin, "-F", "-c", conf)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	d := &dovecot{addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), dir: dir, uid: uid, gid: gid, fingerprint: fp}
	t.Cleanup(func() {
		// Stop it by the pid in base_dir/master.pid (the process we started).
		pid := cmd.Process.Pid
		if b, err := os.ReadFile(filepath.Join(dir, "run", "master.pid")); err == nil {
			if p, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
				pid = p
			}
		}
		syscall.Kill(pid, syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			log, _ := os.ReadFile(filepath.Join(dir, "dovecot.log"))
			t.Logf("dovecot output:\n%s\nlog:\n%s", out.String(), log)
		}
	})
	// Wait for the greeting.
	deadline := time.Now().Add(10 * time.Second)
	for {
		nc, err := net.DialTimeout("tcp", d.addr, time.Second)
		if err == nil {
			nc.SetDeadline(time.Now().Add(2 * time.Second))
			buf := make([]byte, 3)
			_, err = io.ReadFull(nc, buf)
			nc.Close()
			if err == nil && string(buf) == "+OK" {
				return d
			}
		}
		select {
		case <-exited:
			log, _ := os.ReadFile(filepath.Join(dir, "dovecot.log"))
			t.Fatalf("dovecot exited: %s\n%s", out.String(), log)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("dovecot did not greet on %s: %v", d.addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

var dovecotUsers = []string{"fetch"}

const dovecotPassword = "dove pass"

// deliver writes messages into user's Maildir new/, named so that they
// sort in order, and owned by the mail user.
func (d *dovecot) deliver(t *testing.T, user string, msgs []string) {
	t.Helper()
	md := filepath.Join(d.dir, "mail", user, "Maildir")
	for _, sub := range []string{"", "cur", "new", "tmp"} {
		p := filepath.Join(md, sub)
		if err := os.MkdirAll(p, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	for i, m := range msgs {
		p := filepath.Join(md, "new", fmt.Sprintf("%d.M%dP1.postoffice-test", 1700000000+i, i))
		if err := os.WriteFile(p, []byte(m), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	filepath.Walk(filepath.Join(d.dir, "mail", user), func(p string, _ os.FileInfo, err error) error {
		if err == nil {
			err = os.Chown(p, d.uid, d.gid)
		}
		return err
	})
	os.Chown(filepath.Join(d.dir, "mail"), d.uid, d.gid)
}

// files counts the messages left in user's Maildir.
func (d *dovecot) files(t *testing.T, user string) int {
	n := 0
	for _, sub := range []string{"cur", "new"} {
		ents, err := os.ReadDir(filepath.Join(d.dir, "mail", user, "Maildir", sub))
		if err != nil {
			t.Fatal(err)
		}
		n += len(ents)
	}
	return n
}

func TestDovecotFetch(t *testing.T) {
	t.Parallel()
	d := startDovecot(t)
	d.deliver(t, "fetch", []string{"Subject: 1\n\none\n", "Subject: 2\n\n.dot\nFrom x\n", "Subject: 3\n\nthree\n"})
	srv := &testServer{addr: d.addr}
	mail := filepath.Join(t.TempDir(), "Maildir")
	state := filepath.Join(t.TempDir(), "state")
	acct := func(auth, extra string) *Account {
		a := account(t, srv, fmt.Sprintf("tls = \"starttls\"\nfingerprint = %q\nauth = %q\ntarget = \"maildir:%s\"\n%s", d.fingerprint, auth, mail, extra))
		a.User, a.Password, a.StateDir = "fetch", dovecotPassword, state
		return a
	}
	if res := run1(t, acct("auto", ""), Options{}); res.Fetched != 3 {
		t.Fatalf("first run = %+v, want 3 fetched", res)
	}
	// Every mechanism Dovecot offers here; nothing new each time.
	for _, mech := range []string{"user", "plain", "login", "cram-md5", "apop"} {
		if res := run1(t, acct(mech, ""), Options{}); res.Fetched != 0 {
			t.Errorf("auth %s: run = %+v, want nothing new", mech, res)
		}
	}
	if res := run1(t, acct("auto", "keep = false"), Options{}); res.Fetched != 0 || res.Deleted != 3 {
		t.Fatalf("keep = false run = %+v, want 3 deleted", res)
	}
	if n := d.files(t, "fetch"); n != 0 {
		t.Errorf("%d messages left on Dovecot", n)
	}
	got := maildirFiles(t, mail)
	if len(got) != 3 {
		t.Fatalf("maildir has %d messages, want 3", len(got))
	}
	for _, m := range got {
		if m == "Subject: 2\n\n.dot\nFrom x\n" {
			return
		}
	}
	t.Errorf("message 2 not delivered intact: %q", got)
}
