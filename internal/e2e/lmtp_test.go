package e2e

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// freePort returns a loopback TCP port that was free a moment ago.
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// enableLMTP adds an [lmtp] table to the site's config, listening on a
// fixed loopback port (so a restarted server listens on the same one), and
// returns that address.
func (s *site) enableLMTP() string {
	s.t.Helper()
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(s.t))
	f, err := os.OpenFile(s.config, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		s.t.Fatal(err)
	}
	defer f.Close()
	if _, err := fmt.Fprintf(f, "\n[lmtp]\nlisten = [%q]\nsocket = %q\nsocket_mode = \"0600\"\nhostname = \"lmtp.test\"\nspool_dir = %q\n",
		addr, s.lmtpSocket(), s.dir); err != nil {
		s.t.Fatal(err)
	}
	return addr
}

// lmtpSocket is the path of the LMTP unix socket enableLMTP configures.
func (s *site) lmtpSocket() string { return filepath.Join(s.dir, "lmtp.sock") }

var lmtpListenRE = regexp.MustCompile(`msg="lmtp listening" addr=(\S+)`)

// waitLMTP checks that the LMTP listener at addr accepts connections. (The
// "lmtp listening" log line is checked only after the server stopped: start's
// reader goroutine writes srv.log until then.)
func (srv *server) waitLMTP(addr string) {
	srv.t.Helper()
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		srv.t.Fatalf("lmtp %s: %v", addr, err)
	}
	c.Close()
}

// lmtpClient is a raw LMTP conversation (RFC 2033).
type lmtpClient struct {
	nc net.Conn
	br *bufio.Reader
}

func dialLMTP(addr string) (*lmtpClient, error) {
	nc, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return nil, err
	}
	nc.SetDeadline(time.Now().Add(60 * time.Second))
	c := &lmtpClient{nc: nc, br: bufio.NewReader(nc)}
	if _, err := c.reply("220"); err != nil {
		nc.Close()
		return nil, err
	}
	if _, err := c.cmd("LHLO test.client", "250"); err != nil {
		nc.Close()
		return nil, err
	}
	return c, nil
}

// reply reads one reply (skipping continuation lines) and checks its code.
func (c *lmtpClient) reply(code string) (string, error) {
	for {
		l, err := c.br.ReadString('\n')
		if err != nil {
			return l, err
		}
		l = strings.TrimRight(l, "\r\n")
		if len(l) >= 4 && l[3] == '-' {
			continue
		}
		if !strings.HasPrefix(l, code) {
			return l, fmt.Errorf("got %q, want %s", l, code)
		}
		return l, nil
	}
}

func (c *lmtpClient) cmd(line, code string) (string, error) {
	if _, err := io.WriteString(c.nc, line+"\r\n"); err != nil {
		return "", err
	}
	return c.reply(code)
}

// send delivers one message (CRLF lines, unstuffed) to one recipient and
// returns the reply to DATA.
func (c *lmtpClient) send(from, to, msg string) (string, error) {
	if _, err := c.cmd("MAIL FROM:<"+from+">", "250"); err != nil {
		return "", err
	}
	if _, err := c.cmd("RCPT TO:<"+to+">", "250"); err != nil {
		return "", err
	}
	if _, err := c.cmd("DATA", "354"); err != nil {
		return "", err
	}
	var b strings.Builder
	for _, l := range strings.SplitAfter(msg, "\r\n") {
		if strings.HasPrefix(l, ".") {
			b.WriteByte('.')
		}
		b.WriteString(l)
	}
	b.WriteString(".\r\n")
	if _, err := io.WriteString(c.nc, b.String()); err != nil {
		return "", err
	}
	return c.reply("250")
}

// retr returns message n over POP3, unstuffed, with CRLF line ends.
func (c *conn) retr(n int) string {
	c.t.Helper()
	fmt.Fprintf(c.nc, "RETR %d\r\n", n)
	return c.retrReply(n)
}

// count returns the message count from STAT.
func (c *conn) count() int {
	c.t.Helper()
	var n, size int
	if _, err := fmt.Sscanf(c.cmd("STAT", "+OK"), "+OK %d %d", &n, &size); err != nil {
		c.t.Fatal(err)
	}
	return n
}

const lmtpMessage = "From: sender@example.net\nTo: alice@example.org, bob@example.org\nSubject: over LMTP\n\n" +
	"Line one.\n.A line starting with a dot.\n..two dots\n\xc3\xa9t\xc3\xa9 8-bit\nlast line\n"

// swaks speaks LMTP to postoffice serve with three recipients, one of them
// unknown; the two others get the message, retrievable byte for byte over
// POP3 with Return-Path and Delivered-To in front.
func TestLMTPSwaks(t *testing.T) {
	t.Parallel()
	swaks := need(t, "swaks", "swaks")
	s := newSite(t)
	lmtpAddr := s.enableLMTP()
	srv := s.start()
	srv.waitLMTP(lmtpAddr)
	data := filepath.Join(s.dir, "message.eml")
	// swaks ends DATA with "\r\n.\r\n" after the file's text, so the file
	// leaves out the final newline.
	if err := os.WriteFile(data, []byte(strings.TrimSuffix(lmtpMessage, "\n")), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(swaks, "--protocol", "LMTP", "--server", lmtpAddr,
		"--from", "sender@example.net", "--to", "alice@example.org,unknown@example.org,bob@example.org",
		"--data", "@"+data, "--timeout", "30")
	out, err := cmd.CombinedOutput()
	transcript := string(out)
	// swaks exits non-zero when a recipient is refused; the transcript tells.
	for _, want := range []string{
		"<** 550 5.1.1",
		"<-  250 2.0.0 <alice@example.org>",
		"<-  250 2.0.0 <bob@example.org>",
	} {
		if !strings.Contains(transcript, want) {
			t.Errorf("swaks transcript lacks %q (exit %v):\n%s", want, err, transcript)
		}
	}
	// The unix socket (lmtp.socket) takes mail too.
	out, err = exec.Command(swaks, "--protocol", "LMTP", "--socket", s.lmtpSocket(),
		"--from", "<>", "--to", "bob@example.org", "--data", "@"+data, "--timeout", "30").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "<-  250 2.0.0 <bob@example.org>") {
		t.Errorf("swaks over the unix socket: %v\n%s", err, out)
	}
	if fi, err := os.Stat(s.lmtpSocket()); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("socket mode %v, %v, want 0600 (lmtp.socket_mode)", fi.Mode(), err)
	}
	for user, rcpt := range map[string]string{"alice": "alice@example.org", "bob@example.org": "bob@example.org"} {
		c := srv.dial()
		c.login(user)
		if n, want := c.count(), map[string]int{"alice": 1, "bob@example.org": 2}[user]; n != want {
			t.Fatalf("%s has %d messages, want %d", user, n, want)
		}
		want := crlf("Return-Path: <sender@example.net>\nDelivered-To: <" + rcpt + ">\n" + lmtpMessage)
		if got := c.retr(1); got != want {
			t.Errorf("%s RETR 1 = %q, want %q", user, got, want)
		}
		if user == "bob@example.org" {
			want := crlf("Return-Path: <>\nDelivered-To: <bob@example.org>\n" + lmtpMessage)
			if got := c.retr(2); got != want {
				t.Errorf("%s RETR 2 = %q, want %q", user, got, want)
			}
		}
		c.cmd("QUIT", "+OK")
	}
	srv.stop()
	if _, err := os.Stat(s.lmtpSocket()); err == nil {
		t.Error("socket file left behind after a clean stop")
	}
	if strings.Contains(srv.log.String(), "Line one") {
		t.Error("message content reached the log")
	}
	if !lmtpListenRE.MatchString(srv.log.String()) {
		t.Errorf("no lmtp listening line in the log:\n%s", srv.log)
	}
}

// postoffice deliver: the LDA delivers stdin with Return-Path and
// Delivered-To, and answers in sysexits codes.
func TestDeliverCommand(t *testing.T) {
	t.Parallel()
	s := newSite(t)
	deliver := func(stdin string, args ...string) (int, string) {
		cmd := exec.Command(binary, append([]string{"deliver"}, args...)...)
		cmd.Stdin = strings.NewReader(stdin)
		var errb bytes.Buffer
		cmd.Stderr = &errb
		err := cmd.Run()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return ee.ExitCode(), errb.String()
		}
		if err != nil {
			t.Fatal(err)
		}
		return 0, errb.String()
	}
	msg := "Subject: by LDA\n\nbody\n"
	if code, stderr := deliver("From sender@example.net Sat Nov 28 08:00:00 2026\n"+msg,
		"-u", "Alice@example.org", "--config", s.config, "-f", "sender@example.net"); code != 0 {
		t.Fatalf("deliver exit %d: %s", code, stderr)
	}
	crlfMsg := "Subject: CRLF\r\n\r\nbody\r\n"
	if code, stderr := deliver(crlfMsg, "-u", "bob@example.org", "--config", s.config); code != 0 {
		t.Fatalf("deliver exit %d: %s", code, stderr)
	}
	badConfig := filepath.Join(s.dir, "bad.toml")
	os.WriteFile(badConfig, []byte("[pop3]\nbogus = 1\n"), 0o600)
	tests := []struct {
		args []string
		code int
	}{
		{[]string{"-u", "nobody@example.org", "--config", s.config}, 67},
		{[]string{"--config", s.config}, 64},
		{[]string{"-u", "alice", "--bogus"}, 64},
		{[]string{"-u", "alice", "--config", badConfig}, 78},
		{[]string{"-u", "alice", "--config", filepath.Join(s.dir, "missing.toml")}, 78},
	}
	for _, tt := range tests {
		if code, stderr := deliver(msg, tt.args...); code != tt.code {
			t.Errorf("deliver %v exit %d, want %d: %s", tt.args, code, tt.code, stderr)
		}
	}
	srv := s.start()
	c := srv.dial()
	c.login("alice")
	if n := c.count(); n != 1 {
		t.Fatalf("alice has %d messages, want 1", n)
	}
	if got, want := c.retr(1), crlf("Return-Path: <sender@example.net>\nDelivered-To: <Alice@example.org>\n"+msg); got != want {
		t.Errorf("alice RETR 1 = %q, want %q", got, want)
	}
	c.cmd("QUIT", "+OK")
	c = srv.dial()
	c.login("bob@example.org")
	if got, want := c.retr(1), "Return-Path: <>\r\nDelivered-To: <bob@example.org>\r\n"+crlfMsg; got != want {
		t.Errorf("bob RETR 1 = %q, want %q", got, want)
	}
	c.cmd("QUIT", "+OK")
}

// burstMessage is message i of a burst: its last line checksums the rest,
// so a truncated message shows.
func burstMessage(i int) string {
	head := fmt.Sprintf("Subject: burst %d\r\nX-Burst: %d\r\n\r\n", i, i)
	body := strings.Repeat(fmt.Sprintf("line of message %d, some padding to make it longer\r\n", i), 20+i%50)
	sum := sha256.Sum256([]byte(head + body))
	return head + body + "X-Checksum: " + hex.EncodeToString(sum[:]) + "\r\n"
}

var burstRE = regexp.MustCompile(`(?s)^Return-Path: <burst@example\.net>\r\nDelivered-To: <[^>]+>\r\n(Subject: burst (\d+)\r\n.*)X-Checksum: ([0-9a-f]{64})\r\n$`)

// kill -9 of the server during a burst of LMTP deliveries from several
// connections: afterwards every message visible over POP3 is complete, and
// every message that got a 250 is there.
func TestLMTPKillDuringBurst(t *testing.T) {
	t.Parallel()
	s := newSite(t)
	lmtpAddr := s.enableLMTP()
	srv := s.start()
	const workers, perWorker = 4, 50 // 200 messages
	var (
		mu    sync.Mutex
		acked = make(map[string]map[int]bool) // user -> message numbers answered 250
		sent  int
		wg    sync.WaitGroup
	)
	users := []string{"alice", "bob@example.org"}
	rcpts := map[string]string{"alice": "alice@example.org", "bob@example.org": "bob@example.org"}
	for _, u := range users {
		acked[u] = make(map[int]bool)
	}
	killAt := make(chan struct{})
	var once sync.Once
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := dialLMTP(lmtpAddr)
			if err != nil {
				t.Errorf("worker %d: %v", w, err)
				return
			}
			defer c.nc.Close()
			for k := range perWorker {
				i := w*perWorker + k
				user := users[i%2]
				if _, err := c.send("burst@example.net", rcpts[user], burstMessage(i)); err != nil {
					return // the server died under us: this one is not acknowledged
				}
				mu.Lock()
				acked[user][i] = true
				sent++
				if sent == 60 {
					once.Do(func() { close(killAt) })
				}
				mu.Unlock()
			}
		}()
	}
	select {
	case <-killAt:
	case <-time.After(60 * time.Second):
		t.Fatal("burst did not get 60 messages through in 60s")
	}
	srv.kill()
	wg.Wait()
	mu.Lock()
	total := sent
	mu.Unlock()
	if total >= workers*perWorker {
		t.Logf("all %d messages were acknowledged before the kill landed", total)
	}

	srv = s.start()
	for _, user := range users {
		c := srv.dial()
		c.login(user)
		n := c.count()
		seen := make(map[int]bool)
		for k := 1; k <= n; k++ {
			got := c.retr(k)
			m := burstRE.FindStringSubmatch(got)
			if m == nil {
				t.Errorf("%s message %d is malformed or partial: %.200q", user, k, got)
				continue
			}
			sum := sha256.Sum256([]byte(m[1]))
			if hex.EncodeToString(sum[:]) != m[3] {
				t.Errorf("%s message %d (burst %s) fails its checksum: partial", user, k, m[2])
			}
			var i int
			fmt.Sscan(m[2], &i)
			seen[i] = true
		}
		c.cmd("QUIT", "+OK")
		for i := range acked[user] {
			if !seen[i] {
				t.Errorf("%s: burst message %d got 250 but is missing after the restart", user, i)
			}
		}
		t.Logf("%s: %d acknowledged, %d present after kill -9 and restart", user, len(acked[user]), len(seen))
		// tmp/ may hold what the kill interrupted; POP3 never shows it.
		if es, _ := os.ReadDir(filepath.Join(s.maildir(user), "tmp")); len(es) > 0 {
			t.Logf("%s: %d interrupted deliveries left in tmp/", user, len(es))
		}
	}
}

// postfixMasterCf runs smtpd on one loopback port and the services a
// delivery needs, none chrooted.
const postfixMasterCf = `127.0.0.1:%d inet n - n - - smtpd
pickup    unix  n - n 60 1 pickup
cleanup   unix  n - n - 0 cleanup
qmgr      unix  n - n 300 1 qmgr
rewrite   unix  - - n - - trivial-rewrite
bounce    unix  - - n - 0 bounce
defer     unix  - - n - 0 bounce
trace     unix  - - n - 0 bounce
verify    unix  - - n - 1 verify
flush     unix  n - n 1000? 0 flush
proxymap  unix  - - n - - proxymap
smtp      unix  - - n - - smtp
relay     unix  - - n - - smtp
showq     unix  n - n - - showq
error     unix  - - n - - error
retry     unix  - - n - - error
discard   unix  - - n - - discard
local     unix  - n n - - local
lmtp      unix  - - n - - lmtp
anvil     unix  - - n - 1 anvil
scache    unix  - - n - 1 scache
postlog   unix-dgram n - n - 1 postlogd
`

// postfixMainCf delivers example.org over LMTP to postoffice and nothing
// anywhere else; no DNS, its own queue, data directory and log file.
const postfixMainCf = `compatibility_level = 3.6
queue_directory = {{dir}}/queue
data_directory = {{dir}}/data
mail_owner = postfix
setgid_group = postdrop
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
myhostname = mx.postoffice.test
mydomain = postoffice.test
myorigin = $myhostname
mydestination = example.org
local_recipient_maps =
local_transport = lmtp:inet:{{lmtp}}
default_transport = error:no relaying from this test instance
relay_domains =
relayhost =
mynetworks = 127.0.0.0/8
smtp_dns_support_level = disabled
lmtp_dns_support_level = disabled
smtputf8_enable = no
alias_maps =
alias_database =
biff = no
maillog_file = {{dir}}/maillog
maillog_file_prefixes = {{dir}}
syslog_name = postfix-postoffice-test
`

// A real Postfix, configured in a temporary directory, accepts SMTP on
// loopback and hands the mail to postoffice over LMTP; Python's poplib then
// retrieves it.
func TestLMTPPostfix(t *testing.T) {
	t.Parallel()
	postfix := need(t, "postfix", "postfix")
	py := need(t, "python3", "python3")
	if os.Geteuid() != 0 {
		t.Skip("Postfix needs root to start")
	}
	s := newSite(t)
	lmtpAddr := s.enableLMTP()
	srv := s.start()
	srv.waitLMTP(lmtpAddr)

	// Not t.TempDir: Postfix's daemons run as user postfix and need to
	// reach their queue through every parent directory.
	dir, err := os.MkdirTemp("", "postoffice-postfix-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	conf := filepath.Join(dir, "conf")
	for _, d := range []string{conf, filepath.Join(dir, "queue"), filepath.Join(dir, "data")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("chown", "postfix", filepath.Join(dir, "data")).CombinedOutput(); err != nil {
		t.Fatalf("chown postfix: %v %s", err, out)
	}
	smtpPort := freePort(t)
	mainCf := strings.NewReplacer("{{dir}}", dir, "{{lmtp}}", lmtpAddr).Replace(postfixMainCf)
	if err := os.WriteFile(filepath.Join(conf, "main.cf"), []byte(mainCf), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(conf, "master.cf"), []byte(fmt.Sprintf(postfixMasterCf, smtpPort)), 0o644); err != nil {
		t.Fatal(err)
	}
	maillog := func() string { b, _ := os.ReadFile(filepath.Join(dir, "maillog")); return string(b) }
	if out, err := exec.Command(postfix, "-c", conf, "start").CombinedOutput(); err != nil {
		t.Fatalf("postfix start: %v\n%s\n%s", err, out, maillog())
	}
	t.Cleanup(func() {
		exec.Command(postfix, "-c", conf, "stop").Run()
		// Wait for the master to go, so its files can be removed.
		pid := filepath.Join(dir, "queue", "pid", "master.pid")
		for i := 0; i < 100; i++ {
			b, err := os.ReadFile(pid)
			if err != nil {
				return
			}
			var n int
			fmt.Sscan(strings.TrimSpace(string(b)), &n)
			if n == 0 || exec.Command("kill", "-0", fmt.Sprint(n)).Run() != nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	})

	smtpAddr := fmt.Sprintf("127.0.0.1:%d", smtpPort)
	var nc net.Conn
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if nc, err = net.DialTimeout("tcp", smtpAddr, time.Second); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("postfix smtpd not listening on %s: %v\n%s", smtpAddr, err, maillog())
		}
	}
	nc.SetDeadline(time.Now().Add(60 * time.Second))
	c := &lmtpClient{nc: nc, br: bufio.NewReader(nc)}
	smtp := func(line, code string) {
		t.Helper()
		if l, err := c.cmd(line, code); err != nil {
			t.Fatalf("SMTP %s: %v (%q)\n%s", line, err, l, maillog())
		}
	}
	if l, err := c.reply("220"); err != nil {
		t.Fatalf("postfix greeting: %v %q", err, l)
	}
	smtp("EHLO client.test", "250")
	smtp("MAIL FROM:<sender@example.net>", "250")
	smtp("RCPT TO:<alice@example.org>", "250")
	smtp("RCPT TO:<bob@example.org>", "250")
	smtp("DATA", "354")
	body := "From: sender@example.net\r\nTo: alice@example.org, bob@example.org\r\nSubject: through Postfix\r\n" +
		"Message-ID: <postfix-e2e@example.net>\r\nDate: Sat, 28 Nov 2026 08:00:00 +0000\r\n\r\n" +
		"Hello through Postfix.\r\n..a stuffed line\r\nbye\r\n"
	if _, err := io.WriteString(nc, body+".\r\n"); err != nil {
		t.Fatal(err)
	}
	if l, err := c.reply("250"); err != nil {
		t.Fatalf("DATA: %v %q", err, l)
	}
	c.cmd("QUIT", "221")
	nc.Close()
	wantBody := strings.Replace(body, "\r\n..a", "\r\n.a", 1)

	h, p := hostPort(t, srv.addr)
	const script = `
import base64, poplib, sys, time
host, port, user, pw = sys.argv[1:5]
deadline = time.time() + 60
while True:
    m = poplib.POP3(host, int(port), timeout=30)
    m.user(user)
    m.pass_(pw)
    if m.stat()[0] > 0 or time.time() > deadline:
        break
    m.quit()
    time.sleep(0.2)
n = m.stat()[0]
if n == 0:
    sys.exit("no mail arrived within 60s")
resp, lines, octets = m.retr(1)
m.quit()
sys.stdout.write(base64.b64encode(b"\r\n".join(lines) + b"\r\n").decode())
`
	for _, rcpt := range []string{"alice@example.org", "bob@example.org"} {
		user := map[string]string{"alice@example.org": "alice", "bob@example.org": "bob@example.org"}[rcpt]
		out, err := exec.Command(py, "-c", script, h, p, user, testPassword).Output()
		if err != nil {
			t.Fatalf("poplib for %s: %v\n%s\nmaillog:\n%s", user, err, stderrOf(err), maillog())
		}
		got := b64(t, string(out))
		prefix := "Return-Path: <sender@example.net>\r\nDelivered-To: <" + rcpt + ">\r\nReceived: from client.test"
		if !strings.HasPrefix(got, prefix) {
			t.Errorf("%s: message starts %.200q, want %q", user, got, prefix)
		}
		// Postfix adds Received (and may add headers after ours); the body
		// arrives byte for byte.
		_, gotBody, _ := strings.Cut(got, "\r\n\r\n")
		_, want, _ := strings.Cut(wantBody, "\r\n\r\n")
		if gotBody != want {
			t.Errorf("%s: body %q, want %q", user, gotBody, want)
		}
		for _, hdr := range []string{"Subject: through Postfix\r\n", "Message-ID: <postfix-e2e@example.net>\r\n"} {
			if !strings.Contains(got, hdr) {
				t.Errorf("%s: message lacks %q:\n%s", user, hdr, got)
			}
		}
	}
	if !strings.Contains(maillog(), "status=sent") {
		t.Errorf("maillog has no status=sent:\n%s", maillog())
	}
}

// postoffice deliver enforces [quota]: a full maildrop defers (75), or
// bounces (73) when the quota is permanent, and nothing is stored.
func TestDeliverQuota(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		quota string
		code  int
	}{
		{"messages = 1", 75},
		{"messages = 1\npermanent = true", 73},
		{"bytes = 100", 75}, // the second message would not fit
	} {
		s := newSite(t)
		f, err := os.OpenFile(s.config, os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(f, "\n[quota]\n%s\n", tt.quota)
		f.Close()
		msg := "Subject: q\n\n" + strings.Repeat("z", 40) + "\n"
		for i, want := range []int{0, tt.code} {
			cmd := exec.Command(binary, "deliver", "-u", "alice", "--config", s.config)
			cmd.Stdin = strings.NewReader(msg)
			out, err := cmd.CombinedOutput()
			code := 0
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				code = ee.ExitCode()
			}
			if code != want {
				t.Errorf("[quota] %s: delivery %d exit %d, want %d: %s", tt.quota, i+1, code, want, out)
			}
		}
		if n := len(s.files("alice")); n != 1 {
			t.Errorf("[quota] %s: %d messages stored, want 1", tt.quota, n)
		}
		if es, _ := os.ReadDir(filepath.Join(s.maildir("alice"), "tmp")); len(es) != 0 {
			t.Errorf("[quota] %s: %d files left in tmp/", tt.quota, len(es))
		}
	}
}
