package e2e

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/postoffice-mail/postoffice/internal/store/maildir"
	"github.com/postoffice-mail/postoffice/internal/testutil"
	"github.com/postoffice-mail/postoffice/internal/testutil/krbtest"
	"github.com/postoffice-mail/postoffice/internal/testutil/pgtest"
)

var binary string // path of the built postoffice binary

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "postoffice-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "postoffice")
	build := exec.Command("go", "build", "-race", "-o", binary, "github.com/postoffice-mail/postoffice/cmd/postoffice")
	if !raceEnabled {
		build = exec.Command("go", "build", "-o", binary, "github.com/postoffice-mail/postoffice/cmd/postoffice")
	}
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building postoffice:", err)
		os.Exit(1)
	}
	// pgtest starts its throwaway PostgreSQL cluster only when a test asks
	// for a database (pg_test.go), and stops it when the tests end.
	code := pgtest.Main(m)
	krbtest.Stop()
	os.RemoveAll(dir)
	os.Exit(code)
}

// site is a data directory with a passwd-file, Maildirs and a config.
type site struct {
	t      testing.TB
	dir    string
	config string
	store  *maildir.Store
	pg     *pgSite // set for a site on PostgreSQL (pg_test.go); store is then nil
}

const testPassword = "correct horse battery"

// newSite makes a site with users alice and bob@example.org (password
// testPassword).
func newSite(t testing.TB) *site {
	t.Helper()
	dir := t.TempDir()
	s := &site{t: t, dir: dir, config: filepath.Join(dir, "postoffice.toml")}
	passwd := filepath.Join(dir, "passwd")
	for _, u := range []string{"alice", "bob@example.org"} {
		s.run(testPassword+"\n", "user", "add", "--passwd-file", passwd, "--password-stdin", u)
	}
	location := filepath.Join(dir, "vmail", "%d", "%n", "Maildir")
	cfg := fmt.Sprintf(`[pop3]
listen = ["127.0.0.1:0"]
auth_fail_delay = "0s"

[auth]
passwd_file = %q

[mail]
location = "maildir:%s"
`, passwd, location)
	if err := os.WriteFile(s.config, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	st, err := maildir.New(maildir.Options{Location: location})
	if err != nil {
		t.Fatal(err)
	}
	s.store = st
	return s
}

// run runs the binary to completion and returns its stdout.
func (s *site) run(stdin string, args ...string) string {
	s.t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		s.t.Fatalf("postoffice %s: %v\n%s", strings.Join(args, " "), err, errb.String())
	}
	return out.String()
}

// deliver stores a message for user through the store, as the LDA would.
func (s *site) deliver(user, msg string) {
	s.t.Helper()
	if s.pg != nil {
		s.pg.deliver(s.t, user, msg)
		return
	}
	if err := s.store.Deliver(context.Background(), user, strings.NewReader(msg)); err != nil {
		s.t.Fatal(err)
	}
}

// maildir returns the Maildir path of user.
func (s *site) maildir(user string) string {
	s.t.Helper()
	p, err := s.store.Path(user)
	if err != nil {
		s.t.Fatal(err)
	}
	return p
}

// files lists the message files of a user's Maildir (new/ and cur/).
func (s *site) files(user string) []string {
	s.t.Helper()
	var names []string
	for _, sub := range []string{"new", "cur"} {
		es, err := os.ReadDir(filepath.Join(s.maildir(user), sub))
		if err != nil && !os.IsNotExist(err) {
			s.t.Fatal(err)
		}
		for _, e := range es {
			names = append(names, filepath.Join(sub, e.Name()))
		}
	}
	return names
}

// server is a running postoffice serve process.
type server struct {
	t    testing.TB
	cmd  *exec.Cmd
	addr string
	log  *syncBuffer
	done chan struct{}
}

var listenRE = regexp.MustCompile(`msg=listening addr=(\S+) tls=false`)

// start runs postoffice serve on the site and waits until it listens.
func (s *site) start() *server {
	s.t.Helper()
	return s.startCmd(exec.Command(binary, "serve", "--config", s.config))
}

// startCmd runs cmd (postoffice serve, perhaps through a wrapper) and
// waits until it listens, like start.
func (s *site) startCmd(cmd *exec.Cmd) *server {
	s.t.Helper()
	stderr, err := cmd.StderrPipe()
	if err != nil {
		s.t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	srv := &server{t: s.t, cmd: cmd, log: new(syncBuffer), done: make(chan struct{})}
	addrc := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Text()
			srv.log.WriteString(line + "\n")
			if m := listenRE.FindStringSubmatch(line); m != nil {
				select {
				case addrc <- m[1]:
				default:
				}
			}
		}
		cmd.Wait()
		close(srv.done)
	}()
	s.t.Cleanup(srv.kill)
	select {
	case srv.addr = <-addrc:
	case <-srv.done:
		s.t.Fatalf("server exited before listening:\n%s", srv.log)
	case <-time.After(30 * time.Second):
		srv.kill()
		s.t.Fatalf("server did not listen within 30s:\n%s", srv.log)
	}
	return srv
}

// kill sends SIGKILL and waits for the process to go.
func (srv *server) kill() {
	srv.cmd.Process.Signal(syscall.SIGKILL)
	<-srv.done
}

// stop sends SIGTERM and waits for a clean exit.
func (srv *server) stop() {
	srv.t.Helper()
	srv.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-srv.done:
	case <-time.After(40 * time.Second):
		srv.t.Fatalf("server did not stop on SIGTERM:\n%s", srv.log)
	}
}

// conn is a raw POP3 connection for tests that need exact control.
type conn struct {
	t  testing.TB
	nc net.Conn
	br *bufio.Reader
}

func (srv *server) dial() *conn {
	srv.t.Helper()
	nc, err := net.DialTimeout("tcp", srv.addr, 10*time.Second)
	if err != nil {
		srv.t.Fatal(err)
	}
	srv.t.Cleanup(func() { nc.Close() })
	nc.SetDeadline(time.Now().Add(30 * time.Second))
	c := &conn{t: srv.t, nc: nc, br: bufio.NewReader(nc)}
	c.expect("+OK")
	return c
}

func (c *conn) expect(prefix string) string {
	c.t.Helper()
	l, err := c.br.ReadString('\n')
	if err != nil {
		c.t.Fatalf("read: %v (got %q)", err, l)
	}
	l = strings.TrimSuffix(l, "\r\n")
	if !strings.HasPrefix(l, prefix) {
		c.t.Fatalf("got %q, want %q...", l, prefix)
	}
	return l
}

func (c *conn) cmd(line, prefix string) string {
	c.t.Helper()
	io.WriteString(c.nc, line+"\r\n")
	return c.expect(prefix)
}

func (c *conn) login(user string) {
	c.t.Helper()
	c.cmd("USER "+user, "+OK")
	c.cmd("PASS "+testPassword, "+OK")
}

// crlf returns msg as POP3 sends it: CRLF line ends and a final CRLF.
func crlf(msg string) string {
	s := strings.ReplaceAll(strings.ReplaceAll(msg, "\r\n", "\n"), "\n", "\r\n")
	if s != "" && !strings.HasSuffix(s, "\r\n") {
		s += "\r\n"
	}
	return s
}

// need skips the test when a program is not installed.
func need(t testing.TB, prog, pkg string) string {
	t.Helper()
	return testutil.Need(t, prog, pkg)
}

// syncBuffer is the server's log, written by the goroutine that reads its
// stderr and read by tests while the server runs.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) WriteString(s string) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.WriteString(s)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
