package pop3

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The same client tests against a real Dovecot (STYLE.md habit 8), run as
// root from a temporary directory as /work/shared/PEERS.md describes.

// dovecot is one running Dovecot instance serving POP3 on loopback.
type dovecot struct {
	addr     string
	dir      string
	uid, gid int
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

	dir, err := os.MkdirTemp("", "pop3-dovecot-")
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

	cert := getCert(t)
	keyDER, err := x509.MarshalPKCS8PrivateKey(cert.cert.PrivateKey)
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
	certFile := write("cert.pem", string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.cert.Certificate[0]})), 0o644)
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
	d := &dovecot{addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), dir: dir, uid: uid, gid: gid}
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

var dovecotUsers = []string{"plain", "authplain", "login", "crammd5", "apop", "stls", "close", "wrong", "many"}

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

// checkMailbox lists and retrieves everything and compares it with msgs
// byte for byte (as sets: Dovecot picks the order).
func checkMailbox(t *testing.T, ctx context.Context, c *Client, msgs []string) {
	t.Helper()
	list, err := c.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	uids, err := c.Uidl(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != len(msgs) || len(uids) != len(msgs) {
		t.Fatalf("List = %v, Uidl = %v; want %d messages", list, uids, len(msgs))
	}
	var got, want []string
	for _, m := range msgs {
		want = append(want, crlfForm(m))
	}
	for i, info := range list {
		rc, err := c.Retr(ctx, info.Num)
		body := readAll(t, rc, err)
		got = append(got, body)
		// PEERS.md: for a message without a final newline Dovecot's LIST
		// size leaves out the CRLF it adds; allow exactly that.
		if n := int64(len(body)); info.Size != n && !(info.Size == n-2 && strings.HasSuffix(body, "\r\n")) {
			t.Errorf("message %d: LIST size %d, RETR %d octets", info.Num, info.Size, n)
		}
		if uids[i].Num != info.Num || uids[i].UID == "" {
			t.Errorf("UIDL line %d = %+v for LIST %+v", i, uids[i], info)
		}
	}
	slices.Sort(got)
	slices.Sort(want)
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("retrieved %q, want %q", got[i], want[i])
		}
	}
}

func TestDovecot(t *testing.T) {
	t.Parallel()
	d := startDovecot(t)
	msgs := append(slices.Clone(fixtures), "Subject: dot end\n\n.\n")

	t.Run("USER/PASS, list, retr, top, dele+quit", func(t *testing.T) {
		t.Parallel()
		ctx := testCtx(t)
		d.deliver(t, "plain", msgs)
		c, err := Dial(ctx, d.addr, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		caps, err := c.Capabilities(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if !caps.Has("TOP") || !caps.Has("UIDL") || !caps.STLS() || !caps.HasSASL("PLAIN") || !caps.Pipelining() || !caps.RespCodes() {
			t.Errorf("Dovecot CAPA = %q", caps.Lines)
		}
		if err := c.Login(ctx, "plain", dovecotPassword); err != nil {
			t.Fatal(err)
		}
		if caps, err = c.Capabilities(ctx); err != nil || caps.STLS() {
			t.Errorf("CAPA after login = %q, %v; want it re-read without STLS", caps.Lines, err)
		}
		checkMailbox(t, ctx, c, msgs)
		rc, err := c.Top(ctx, 4, 1)
		if got := readAll(t, rc, err); got != "Subject: top\r\n\r\nb1\r\n" {
			t.Errorf("Top(4, 1) = %q", got)
		}
		if err := c.Dele(ctx, 1); err != nil {
			t.Fatal(err)
		}
		if err := c.Quit(ctx); err != nil {
			t.Fatal(err)
		}
		if n := d.files(t, "plain"); n != len(msgs)-1 {
			t.Errorf("after DELE+QUIT: %d files, want %d", n, len(msgs)-1)
		}
		c, err = Dial(ctx, d.addr, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := c.Login(ctx, "plain", dovecotPassword); err != nil {
			t.Fatal(err)
		}
		if n, _, err := c.Stat(ctx); n != len(msgs)-1 || err != nil {
			t.Errorf("Stat in a new session = %d, %v", n, err)
		}
		c.Quit(ctx)
	})

	auths := []struct {
		user string
		do   func(ctx context.Context, c *Client) error
	}{
		{"authplain", func(ctx context.Context, c *Client) error {
			return c.Authenticate(ctx, NewPlainClient("", "authplain", dovecotPassword))
		}},
		{"login", func(ctx context.Context, c *Client) error {
			return c.Authenticate(ctx, NewLoginClient("login", dovecotPassword))
		}},
		{"crammd5", func(ctx context.Context, c *Client) error {
			return c.Authenticate(ctx, NewCRAMMD5Client("crammd5", dovecotPassword))
		}},
		{"apop", func(ctx context.Context, c *Client) error {
			if c.Greeting().Timestamp == "" {
				return fmt.Errorf("no APOP timestamp in greeting %q", c.Greeting().Text)
			}
			return c.APOP(ctx, "apop", dovecotPassword)
		}},
	}
	for _, a := range auths {
		t.Run("auth "+a.user, func(t *testing.T) {
			t.Parallel()
			ctx := testCtx(t)
			d.deliver(t, a.user, msgs)
			c, err := Dial(ctx, d.addr, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if err := a.do(ctx, c); err != nil {
				t.Fatal(err)
			}
			checkMailbox(t, ctx, c, msgs)
			if err := c.Quit(ctx); err != nil {
				t.Fatal(err)
			}
		})
	}

	t.Run("STLS", func(t *testing.T) {
		t.Parallel()
		ctx := testCtx(t)
		d.deliver(t, "stls", msgs)
		c, err := DialStartTLS(ctx, d.addr, &Options{TLSConfig: &tls.Config{RootCAs: getCert(t).pool}})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		caps, err := c.Capabilities(ctx)
		if err != nil || caps.STLS() {
			t.Errorf("CAPA after STLS = %q, %v", caps.Lines, err)
		}
		if err := c.Authenticate(ctx, NewPlainClient("", "stls", dovecotPassword)); err != nil {
			t.Fatal(err)
		}
		checkMailbox(t, ctx, c, msgs)
		c.Quit(ctx)
	})

	t.Run("close without quit, pipelined DELE", func(t *testing.T) {
		t.Parallel()
		ctx := testCtx(t)
		d.deliver(t, "many", msgs)
		for _, quit := range []bool{false, true} {
			c, err := Dial(ctx, d.addr, nil)
			if err != nil {
				t.Fatal(err)
			}
			if err := c.Login(ctx, "many", dovecotPassword); err != nil {
				t.Fatal(err)
			}
			if err := c.DeleMany(ctx, []int{1, 2, 3}); err != nil {
				t.Fatal(err)
			}
			if !quit {
				c.Close()
				// Dovecot notices the close asynchronously; nothing may
				// go in any case.
				time.Sleep(100 * time.Millisecond)
				if n := d.files(t, "many"); n != len(msgs) {
					t.Fatalf("after Close: %d files, want %d", n, len(msgs))
				}
				continue
			}
			if err := c.Quit(ctx); err != nil {
				t.Fatal(err)
			}
			if n := d.files(t, "many"); n != len(msgs)-3 {
				t.Errorf("after DeleMany+Quit: %d files, want %d", n, len(msgs)-3)
			}
		}
	})

	t.Run("wrong password", func(t *testing.T) {
		t.Parallel()
		ctx := testCtx(t)
		d.deliver(t, "wrong", msgs)
		// PEERS.md: Dovecot's failure penalty is per source address; use
		// one of our own.
		opts := &Options{Dialer: &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}}}
		c, err := Dial(ctx, d.addr, opts)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		err = c.Login(ctx, "wrong", "not the password")
		var perr *Error
		if !errors.As(err, &perr) || !perr.IsAuth() {
			t.Errorf("Login with a wrong password = %v, want [AUTH]", err)
		}
	})
}
