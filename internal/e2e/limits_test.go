package e2e

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	proxyproto "github.com/pires/go-proxyproto"
)

// The tests in this file run the real binary with the [limits], [auth]
// penalty and [server] keys of docs/security.md. Each client address is a
// loopback address of its own (127.0.0.2 and up: all of 127.0.0.0/8 is
// local on Linux), so the per-address limits of one test do not touch
// another's.

// setAuth adds keys to the [auth] table of the site's config.
func (s *site) setAuth(keys string) {
	s.t.Helper()
	s.editConfig(func(c string) string { return strings.Replace(c, "[auth]\n", "[auth]\n"+keys+"\n", 1) })
}

// appendConfig adds tables to the end of the site's config.
func (s *site) appendConfig(text string) {
	s.t.Helper()
	s.editConfig(func(c string) string { return c + "\n" + text + "\n" })
}

func (s *site) editConfig(f func(string) string) {
	s.t.Helper()
	data, err := os.ReadFile(s.config)
	if err != nil {
		s.t.Fatal(err)
	}
	if err := os.WriteFile(s.config, []byte(f(string(data))), 0o600); err != nil {
		s.t.Fatal(err)
	}
}

// dialFrom connects to addr from the loopback address src.
func dialFrom(t testing.TB, src, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{Timeout: 10 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	nc, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial %s from %s: %v", addr, src, err)
	}
	t.Cleanup(func() { nc.Close() })
	nc.SetDeadline(time.Now().Add(30 * time.Second))
	return nc
}

// connFrom is dial from a given source address, without reading the
// greeting.
func (srv *server) connFrom(src string) *conn {
	srv.t.Helper()
	nc := dialFrom(srv.t, src, srv.addr)
	return &conn{t: srv.t, nc: nc, br: bufio.NewReader(nc)}
}

// line reads one line, or returns the error.
func (c *conn) line() (string, error) {
	l, err := c.br.ReadString('\n')
	return strings.TrimSuffix(l, "\r\n"), err
}

// logText returns the server's log. Call it only after stop or kill: the
// reader goroutine writes the log until the process is gone.
func (srv *server) logText() string {
	<-srv.done
	return srv.log.String()
}

const connRefusal = "-ERR [SYS/TEMP] Too many connections; try again in a minute"

// The fourth connection from one address is refused with [SYS/TEMP] while
// another address is served, and a closed connection frees its slot.
func TestConnectionsPerIP(t *testing.T) {
	t.Parallel()
	s := newSite(t)
	s.appendConfig("[limits]\nmax_connections_per_ip = 3")
	srv := s.start()

	var open []*conn
	for range 3 {
		c := srv.connFrom("127.0.0.1")
		c.expect("+OK")
		open = append(open, c)
	}
	c4 := srv.connFrom("127.0.0.1")
	c4.expect(connRefusal)
	if l, err := c4.line(); err == nil {
		t.Errorf("after the refusal the connection stays open; got %q", l)
	}

	other := srv.connFrom("127.0.0.2")
	other.expect("+OK")
	other.login("alice")
	other.cmd("QUIT", "+OK")

	// QUIT one of the three: its slot is free again (the count is released
	// when the server closes the connection, so allow it a moment).
	open[0].cmd("QUIT", "+OK")
	open[0].line() // EOF once the server closed it
	deadline := time.Now().Add(10 * time.Second)
	for {
		c := srv.connFrom("127.0.0.1")
		l, err := c.line()
		if err == nil && strings.HasPrefix(l, "+OK") {
			break
		}
		c.nc.Close()
		if time.Now().After(deadline) {
			t.Fatalf("after a QUIT a new connection still gets %q, %v", l, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	srv.stop()
	if log := srv.logText(); !strings.Contains(log, "reason=max_connections_per_ip") {
		t.Errorf("no refusal logged:\n%s", log)
	}
}

// A flood of wrong passwords from one address is slowed, then banned with
// [SYS/TEMP] and a "client banned" line, while another address logs in.
func TestBruteForceBanned(t *testing.T) {
	t.Parallel()
	s := newSite(t)
	s.setAuth("penalty_base = \"10ms\"\npenalty_max = \"1s\"\nban_after = 5\nban_time = \"10m\"")
	srv := s.start()

	const attacker = "127.0.0.3"
	banned := false
	var replies []string
	for i := range 20 { // bounded: the ban comes after 5
		c := srv.connFrom(attacker)
		c.expect("+OK")
		c.cmd("USER bob@example.org", "+OK")
		io.WriteString(c.nc, fmt.Sprintf("PASS wrong password %d\r\n", i)) // distinct: repeats do not count
		reply, err := c.line()
		if err != nil {
			t.Fatalf("attempt %d: %v", i, err)
		}
		replies = append(replies, reply)
		c.nc.Close()
		if strings.HasPrefix(reply, "-ERR [SYS/TEMP]") {
			banned = true
			break
		}
		if !strings.HasPrefix(reply, "-ERR [AUTH]") {
			t.Fatalf("attempt %d: got %q, want -ERR [AUTH] or [SYS/TEMP]", i, reply)
		}
	}
	if !banned {
		t.Fatalf("20 wrong passwords were never refused: %q", replies)
	}
	if n := len(replies); n != 6 {
		t.Errorf("refused after %d attempts, want 6 (ban_after = 5): %q", n, replies)
	}

	// The right password does not help the banned address...
	c := srv.connFrom(attacker)
	c.expect("+OK")
	c.cmd("USER alice", "+OK")
	c.cmd("PASS "+testPassword, "-ERR [SYS/TEMP]")

	// ...and another address logs in at once.
	start := time.Now()
	ok := srv.connFrom("127.0.0.4")
	ok.expect("+OK")
	ok.login("alice")
	ok.cmd("QUIT", "+OK")
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("login from another address took %v", d)
	}

	srv.stop()
	log := srv.logText()
	banLine := regexp.MustCompile(`level=WARN msg="client banned" conn=\S+ remote=127\.0\.0\.3:\d+ until=`)
	if !banLine.MatchString(log) {
		t.Errorf("no client banned line for %s:\n%s", attacker, log)
	}
	if regexp.MustCompile(`client banned.*remote=127\.0\.0\.4`).MatchString(log) {
		t.Errorf("127.0.0.4 was banned:\n%s", log)
	}
}

// The PROXY protocol is honoured from proxy_protocol_from only: the real
// client address from the header is logged; a header from elsewhere is
// refused; a trusted proxy that sends no header is cut off.
func TestProxyProtocol(t *testing.T) {
	t.Parallel()
	s := newSite(t)
	s.appendConfig("[limits]\nproxy_protocol_from = [\"127.0.0.5/32\"]\nproxy_header_timeout = \"1s\"")
	srv := s.start()
	dst := srv.addr

	header := func(src string) *proxyproto.Header {
		d, err := net.ResolveTCPAddr("tcp", dst)
		if err != nil {
			t.Fatal(err)
		}
		return &proxyproto.Header{
			Version: 2, Command: proxyproto.PROXY, TransportProtocol: proxyproto.TCPv4,
			SourceAddr:      &net.TCPAddr{IP: net.ParseIP(src).To4(), Port: 40000},
			DestinationAddr: d,
		}
	}

	// From the trusted proxy: served, with the client's address.
	c := srv.connFrom("127.0.0.5")
	if _, err := header("203.0.113.9").WriteTo(c.nc); err != nil {
		t.Fatal(err)
	}
	c.expect("+OK")
	c.cmd("QUIT", "+OK")

	// From anyone else: the header is never honoured and the session ends
	// at the first read.
	u := srv.connFrom("127.0.0.6")
	if _, err := header("198.51.100.7").WriteTo(u.nc); err != nil {
		t.Fatal(err)
	}
	u.expect("+OK") // the server speaks first
	if l, err := u.line(); err == nil {
		t.Errorf("untrusted PROXY header: got %q, want the connection closed", l)
	}

	// The trusted proxy must send a header: silence is cut off after
	// proxy_header_timeout, without a greeting.
	start := time.Now()
	silent := srv.connFrom("127.0.0.5")
	if l, err := silent.line(); err == nil {
		t.Errorf("trusted proxy without a header: got %q, want the connection closed", l)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("a proxy without a header was held %v", d)
	}

	srv.stop()
	log := srv.logText()
	if !regexp.MustCompile(`msg=disconnected conn=\S+ remote=203\.0\.113\.9:40000`).MatchString(log) {
		t.Errorf("the session behind the proxy was not logged as remote=203.0.113.9:40000:\n%s", log)
	}
	if strings.Contains(log, "198.51.100.7") {
		t.Errorf("the untrusted header's address reached the log:\n%s", log)
	}
	for _, want := range []string{"reason=untrusted_proxy", "reason=proxy_header"} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %s:\n%s", want, log)
		}
	}
}

// Started as root with [server] user = "nobody", the server binds (POP3,
// LMTP over TCP and a unix socket), switches to nobody, and serves a
// delivery and a login that deletes it.
func TestDropPrivileges(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: run the e2e tests as root to test [server] user")
	}
	t.Parallel()
	nobody, err := user.Lookup("nobody")
	if err != nil {
		t.Skipf("no user nobody: %v", err)
	}
	uid, _ := strconv.Atoi(nobody.Uid)
	gid, _ := strconv.Atoi(nobody.Gid)

	s := newSite(t)
	lmtpAddr := s.enableLMTP()
	s.appendConfig("[server]\nuser = \"nobody\"")
	s.deliver("alice", "Subject: before\n\nstored as root\n")
	// Giving the mail user its files is the administrator's job; here the
	// whole site. The test's temporary directories are 0700 root.
	if err := os.Chmod(filepath.Dir(s.dir), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := filepath.Walk(s.dir, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, uid, gid)
	}); err != nil {
		t.Fatal(err)
	}

	srv := s.start()
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", srv.cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	wantUid := fmt.Sprintf("Uid:\t%d\t%d\t%d\t%d", uid, uid, uid, uid)
	wantGid := fmt.Sprintf("Gid:\t%d\t%d\t%d\t%d", gid, gid, gid, gid)
	if !bytes.Contains(status, []byte(wantUid)) || !bytes.Contains(status, []byte(wantGid)) {
		t.Errorf("/proc/PID/status does not show nobody (%q, %q):\n%s", wantUid, wantGid, status)
	}
	var st syscall.Stat_t
	if err := syscall.Stat(s.lmtpSocket(), &st); err != nil {
		t.Fatal(err)
	}
	if int(st.Uid) != uid || int(st.Gid) != gid || st.Mode&0o777 != 0o600 {
		t.Errorf("lmtp socket: uid %d gid %d mode %o, want %d %d 600", st.Uid, st.Gid, st.Mode&0o777, uid, gid)
	}

	// A delivery over the unix socket, written by the server as nobody.
	nc, err := net.DialTimeout("unix", s.lmtpSocket(), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(30 * time.Second))
	lc := &lmtpClient{nc: nc, br: bufio.NewReader(nc)}
	if _, err := lc.reply("220"); err != nil {
		t.Fatal(err)
	}
	if _, err := lc.cmd("LHLO test.client", "250"); err != nil {
		t.Fatal(err)
	}
	if reply, err := lc.send("sender@example.org", "alice@example.org", "Subject: after\r\n\r\ndelivered to nobody's server\r\n"); err != nil {
		t.Fatalf("LMTP delivery: %q, %v", reply, err)
	}
	srv.waitLMTP(lmtpAddr)

	c := srv.dial()
	c.login("alice")
	c.cmd("STAT", "+OK 2 ")
	if body := c.retr(2); !strings.Contains(body, "delivered to nobody's server") {
		t.Errorf("RETR 2 = %q", body)
	}
	c.cmd("DELE 1", "+OK")
	c.cmd("DELE 2", "+OK")
	c.cmd("QUIT", "+OK")
	srv.stop()
	if files := s.files("alice"); len(files) != 0 {
		t.Errorf("after DELE and QUIT as nobody, left: %q", files)
	}
	if log := srv.logText(); strings.Contains(log, "running as root") {
		t.Errorf("warned about root although [server] user is set:\n%s", log)
	}
}

// With systemd socket activation the server serves the sockets it is
// given (LISTEN_FDS, LISTEN_PID, LISTEN_FDNAMES) and binds none of the
// configured addresses of that kind.
func TestSocketActivation(t *testing.T) {
	t.Parallel()
	s := newSite(t)
	pop3L, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pop3L.Close()
	lmtpL, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer lmtpL.Close()
	var files []*os.File
	for _, l := range []net.Listener{pop3L, lmtpL} {
		f, err := l.(*net.TCPListener).File()
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		files = append(files, f)
	}

	// LISTEN_PID must be the server's pid, unknown before it starts: a
	// shell sets it to its own pid and execs the server, which keeps it.
	cmd := exec.Command("/bin/sh", "-c", `LISTEN_PID=$$; export LISTEN_PID; exec "$0" "$@"`,
		binary, "serve", "--config", s.config)
	cmd.Env = append(os.Environ(), "LISTEN_FDS=2", "LISTEN_FDNAMES=pop3:lmtp")
	cmd.ExtraFiles = files // descriptors 3 and 4
	srv := s.startCmd(cmd)
	for _, f := range files {
		f.Close()
	}
	pop3L.Close() // the server holds its own copies now
	lmtpL.Close()
	if srv.addr != pop3L.Addr().String() {
		t.Errorf("server listens on %s, want the passed socket %s", srv.addr, pop3L.Addr())
	}

	c := srv.dial()
	c.login("alice")
	c.cmd("STAT", "+OK 0 0")
	c.cmd("QUIT", "+OK")

	lc, err := dialLMTP(lmtpL.Addr().String())
	if err != nil {
		t.Fatalf("LMTP on the passed socket: %v", err)
	}
	if reply, err := lc.send("sender@example.org", "alice@example.org", "Subject: activated\r\n\r\nhi\r\n"); err != nil {
		t.Fatalf("LMTP delivery: %q, %v", reply, err)
	}
	lc.cmd("QUIT", "221")
	lc.nc.Close()

	srv.stop()
	log := srv.logText()
	if n := strings.Count(log, "msg=listening "); n != 1 {
		t.Errorf("%d POP3 listeners, want only the passed one:\n%s", n, log)
	}
	if !strings.Contains(log, "systemd=true") {
		t.Errorf("listener not logged as from systemd:\n%s", log)
	}
	if got := len(s.files("alice")); got != 1 {
		t.Errorf("alice has %d messages, want 1", got)
	}
}
