// Package dovecot starts a real Dovecot POP3 server for tests, as root from
// a temporary directory: the same client and fetcher tests then run against
// it, and a takeover test can serve the Maildirs it leaves with postoffice.
// Start skips the test, with the Debian package to install, where Dovecot
// cannot run.
package dovecot

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/postoffice-mail/postoffice/internal/testutil"

	"github.com/postoffice-mail/postoffice/internal/certutil"
)

// Server is one running Dovecot serving POP3 (plain with STLS) on loopback.
type Server struct {
	Addr     string
	Dir      string
	UID, GID int            // owner of the Maildirs
	Cert     *certutil.Pair // its TLS certificate

	stop func() // stops Dovecot once; Stop and the test's cleanup call it
}

const mailUser = "vmail" // owns the Maildirs; Dovecot's mail processes refuse root

// Options are the settings of StartWith. The zero value is Start's
// Dovecot.
type Options struct {
	// Users are the users in the passdb, each with the password Password.
	Users []string
	// Mechanisms replaces auth_mechanisms (Dovecot names such as "plain"
	// or "gssapi"); empty means "plain login cram-md5 apop".
	Mechanisms []string
	// Config is appended to dovecot.conf as it stands: settings the
	// harness does not make, such as auth_krb5_keytab and
	// auth_gssapi_hostname for GSSAPI. A setting given twice takes its
	// last value.
	Config string
}

// Start starts Dovecot with the given users (password Password; passdb
// {PLAIN}, so CRAM-MD5 and APOP work too) and stops it when the test ends.
func Start(t testing.TB, users ...string) *Server {
	t.Helper()
	return StartWith(t, Options{Users: users})
}

// StartWith is Start with Options. A Mechanisms list naming "gssapi"
// needs dovecot-gssapi installed; the test skips without it.
func StartWith(t testing.TB, opts Options) *Server {
	t.Helper()
	users := opts.Users
	mechs := "plain login cram-md5 apop"
	if len(opts.Mechanisms) > 0 {
		mechs = strings.Join(opts.Mechanisms, " ")
	}
	bin := testutil.Need(t, "dovecot", "dovecot-core dovecot-pop3d")
	if _, err := os.Stat("/usr/lib/dovecot/pop3"); err != nil {
		testutil.Missing(t, "dovecot's POP3 server", "dovecot-pop3d")
	}
	for _, m := range opts.Mechanisms {
		if strings.EqualFold(m, "gssapi") {
			if _, err := os.Stat("/usr/lib/dovecot/modules/auth/libmech_gssapi.so"); err != nil {
				testutil.Missing(t, "dovecot's GSSAPI mechanism", "dovecot-gssapi")
			}
		}
	}
	if os.Geteuid() != 0 {
		t.Skip("dovecot tests need root (Dovecot drops privileges to its own users)")
	}
	for _, u := range []string{"dovenull", "dovecot"} {
		if _, err := user.Lookup(u); err != nil {
			t.Skipf("dovecot system user %s missing: reinstall dovecot-core", u)
		}
	}
	vu, err := user.Lookup(mailUser)
	if err != nil {
		out, err := exec.Command("useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", mailUser).CombinedOutput()
		if err != nil {
			// A parallel creator may have won.
			if vu, err = user.Lookup(mailUser); err != nil {
				t.Fatalf("useradd %s: %v: %s", mailUser, err, out)
			}
		}
		if vu == nil {
			if vu, err = user.Lookup(mailUser); err != nil {
				t.Fatal(err)
			}
		}
	}
	uid, _ := strconv.Atoi(vu.Uid)
	gid, _ := strconv.Atoi(vu.Gid)

	dir, err := os.MkdirTemp("", "postoffice-dovecot-")
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

	cert, err := certutil.SelfSigned(24 * time.Hour)
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
	certFile := write("cert.pem", string(cert.CertPEM), 0o644)
	keyFile := write("key.pem", string(cert.KeyPEM), 0o600)
	var passdb strings.Builder
	for _, u := range users {
		fmt.Fprintf(&passdb, "%s:{PLAIN}%s::::::\n", u, Password)
	}
	passwd := write("passwd", passdb.String(), 0o644)
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
auth_mechanisms = %[8]s
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
%[9]s
`, dir, port, uid, gid, certFile, keyFile, passwd, mechs, opts.Config), 0o644)
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
	d := &Server{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), Dir: dir, UID: uid, GID: gid, Cert: cert}
	var once sync.Once
	d.stop = func() {
		once.Do(func() { stop(cmd, dir, exited) })
	}
	t.Cleanup(func() {
		d.stop()
		if t.Failed() {
			log, _ := os.ReadFile(filepath.Join(dir, "dovecot.log"))
			t.Logf("dovecot output:\n%s\nlog:\n%s", out.String(), log)
		}
	})
	// Wait for the greeting.
	deadline := time.Now().Add(10 * time.Second)
	for {
		nc, err := net.DialTimeout("tcp", d.Addr, time.Second)
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
			t.Fatalf("dovecot did not greet on %s: %v", d.Addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stop sends SIGTERM to the Dovecot master (by the pid in
// base_dir/master.pid, which is the process cmd started) and waits for it
// to exit, killing it after 5 s.
func stop(cmd *exec.Cmd, dir string, exited <-chan struct{}) {
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
}

// Stop stops Dovecot now, as an administrator does before another server
// takes over its Maildirs and its address: it returns once the master
// process has exited and nothing accepts connections on Addr any more (a
// login process may outlive the master for a moment), or fails the test
// after 10 s. The test's cleanup then has nothing left to stop.
func (d *Server) Stop(t testing.TB) {
	t.Helper()
	d.stop()
	deadline := time.Now().Add(10 * time.Second)
	for {
		nc, err := net.DialTimeout("tcp", d.Addr, time.Second)
		if err != nil {
			return
		}
		nc.Close()
		if time.Now().After(deadline) {
			t.Fatalf("dovecot stopped, but %s still accepts connections", d.Addr)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Maildir returns the path of user's Maildir (mail_location).
func (d *Server) Maildir(user string) string {
	return filepath.Join(d.Dir, "mail", user, "Maildir")
}

// Password is every user's password ({PLAIN} in the passdb).
const Password = "dove pass"

// Deliver writes messages into user's Maildir new/, named so that they
// sort in order, and owned by the mail user.
func (d *Server) Deliver(t testing.TB, user string, msgs []string) {
	t.Helper()
	md := filepath.Join(d.Dir, "mail", user, "Maildir")
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
	d.Chown(t, user)
}

// Chown gives everything under user's mail directory to the mail user, as
// Dovecot's mail processes need after a test wrote files there as root.
func (d *Server) Chown(t testing.TB, user string) {
	t.Helper()
	err := filepath.Walk(filepath.Join(d.Dir, "mail", user), func(p string, _ os.FileInfo, err error) error {
		if err == nil {
			err = os.Chown(p, d.UID, d.GID)
		}
		return err
	})
	if err == nil {
		err = os.Chown(filepath.Join(d.Dir, "mail"), d.UID, d.GID)
	}
	if err != nil {
		t.Fatal(err)
	}
}

// Files counts the messages left in user's Maildir.
func (d *Server) Files(t testing.TB, user string) int {
	n := 0
	for _, sub := range []string{"cur", "new"} {
		ents, err := os.ReadDir(filepath.Join(d.Dir, "mail", user, "Maildir", sub))
		if err != nil {
			t.Fatal(err)
		}
		n += len(ents)
	}
	return n
}
