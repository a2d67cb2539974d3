package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/postoffice-mail/postoffice/internal/fetch"
	"github.com/postoffice-mail/postoffice/internal/testutil"
	"github.com/postoffice-mail/postoffice/pop3server"
	"github.com/postoffice-mail/postoffice/pop3server/memserver"
)

// fetchArgsEnv carries the arguments of the postoffice command that the
// test binary runs as a child process (see TestFetchDaemon).
const fetchArgsEnv = "POSTOFFICE_TEST_FETCH_ARGS"

// TestFetchDaemonChild is the child process of TestFetchDaemon: the real
// command, signals and all.
func TestFetchDaemonChild(t *testing.T) {
	args := os.Getenv(fetchArgsEnv)
	if args == "" {
		t.Skip("runs only as the child process of TestFetchDaemon")
	}
	os.Exit(run(strings.Split(args, "\x1f"), os.Stdout, os.Stderr))
}

// lockedBuffer collects the child's output while the test reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// countFiles counts the messages in a Maildir.
func countFiles(dir string) int {
	n := 0
	for _, sub := range []string{"new", "cur"} {
		es, _ := os.ReadDir(filepath.Join(dir, sub))
		n += len(es)
	}
	return n
}

// postoffice fetch --daemon polls every poll_interval: mail that arrives
// between polls comes with the next one, and SIGTERM ends the process with
// exit 0 and the state saved.
func TestFetchDaemon(t *testing.T) {
	t.Parallel()
	b := memserver.New()
	b.AddUser("alice", "secret")
	addr, _ := testutil.ServePOP3(t, pop3server.Options{Backend: b})
	for i := range 2 {
		b.Deliver("alice", []byte(fmt.Sprintf("Subject: early %d\r\n\r\nx\r\n", i)))
	}
	dir := t.TempDir()
	mail, state := filepath.Join(dir, "Maildir"), filepath.Join(dir, "state")
	conf := filepath.Join(dir, "fetch.toml")
	err := os.WriteFile(conf, []byte(fmt.Sprintf(`[[account]]
name = "daemon"
server = %q
tls = "none"
user = "alice"
password = "secret"
target = "maildir:%s"
state_dir = %q
poll_interval = "1s"
`, addr, mail, state)), 0o600)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestFetchDaemonChild$")
	cmd.Env = append(os.Environ(), fetchArgsEnv+"=fetch\x1f--config\x1f"+conf+"\x1f--daemon")
	var out lockedBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		select {
		case <-exited:
		default:
			cmd.Process.Kill()
			<-exited
		}
	})
	waitFor := func(n int) {
		t.Helper()
		deadline := time.Now().Add(15 * time.Second)
		for countFiles(mail) < n {
			if time.Now().After(deadline) {
				t.Fatalf("Maildir has %d messages, want %d; output:\n%s", countFiles(mail), n, out.String())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	waitFor(2)
	b.Deliver("alice", []byte("Subject: between polls\r\n\r\nx\r\n"))
	waitFor(3)
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-exited:
		if waitErr != nil {
			t.Fatalf("postoffice fetch --daemon after SIGTERM: %v; output:\n%s", waitErr, out.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatalf("postoffice fetch --daemon did not exit after SIGTERM; output:\n%s", out.String())
	}
	if n := countFiles(mail); n != 3 {
		t.Errorf("Maildir has %d messages, want 3", n)
	}
	st, err := fetch.OpenState(state, "daemon")
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if st.Len() != 3 {
		t.Errorf("state holds %d UIDLs, want 3", st.Len())
	}
	if fi, err := os.Stat(filepath.Join(state, "daemon.journal")); err != nil || fi.Size() != 0 {
		t.Errorf("journal not folded into the snapshot: %v, %v", fi, err)
	}
}
