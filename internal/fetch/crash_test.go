package fetch

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/postoffice-mail/postoffice/internal/store"
)

var buildOnce = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "postoffice-fetch-test-")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "postoffice")
	out, err := exec.Command("go", "build", "-o", bin, "github.com/postoffice-mail/postoffice/cmd/postoffice").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go build: %v\n%s", err, out)
	}
	return bin, nil
})

// binary builds the postoffice command once per test process.
func binary(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds the binary; skipped in -short mode")
	}
	bin, err := buildOnce()
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

const crashMessages = 500

var subjectRE = regexp.MustCompile(`Subject: message (\d+)\r?\n`)

// TestCrash runs postoffice fetch with keep = false against 500 messages,
// SIGKILLs it at random instants at least 20 times, runs it to completion,
// and counts what the target got: a Maildir, an MDA, and our LMTP server
// (which stays up while fetch is killed, as an MTA would).
func TestCrash(t *testing.T) {
	bin := binary(t)
	for _, kind := range []string{"maildir", "mda", "lmtp"} {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			srv := startServer(t, nil)
			srv.deliver(t, crashMessages, "Subject: message %d\r\n\r\nbody\r\n")
			dir := t.TempDir()
			out := filepath.Join(dir, "out")
			os.Mkdir(out, 0o700)
			target := "maildir:" + out
			var lmtpStore store.Store
			extra := ""
			switch kind {
			case "mda":
				target = fmt.Sprintf(`mda:cat > "$(mktemp %s/m.XXXXXX)"`, out)
			case "lmtp":
				var addr string
				addr, lmtpStore = lmtpServer(t, false)
				target = "lmtp:" + addr
				extra = "recipient = \"me@example.org\"\n"
			}
			conf := filepath.Join(dir, "fetch.toml")
			os.WriteFile(conf, []byte(fmt.Sprintf(`[[account]]
name = "crash"
server = %q
tls = "none"
user = %q
password = %q
keep = false
target = '%s'
state_dir = %q
%s`, srv.addr, testUser, testPass, target, filepath.Join(dir, "state"), extra)), 0o600)

			kills, runs := 0, 0
			deadline := time.Now().Add(45 * time.Second)
			for done := false; !done; {
				if time.Now().After(deadline) {
					t.Fatalf("no clean run after %d kills, %d runs", kills, runs)
				}
				cmd := exec.Command(bin, "fetch", "--quiet", "--config", conf)
				errb := new(lockedBuffer)
				cmd.Stderr = errb
				if err := cmd.Start(); err != nil {
					t.Fatal(err)
				}
				runs++
				exited := make(chan error, 1)
				go func() { exited <- cmd.Wait() }()
				var err error
				if kills < 20 {
					delay := time.Duration(3+rand.IntN(148)) * time.Millisecond
					select {
					case err = <-exited:
					case <-time.After(delay):
						cmd.Process.Signal(syscall.SIGKILL)
						err = <-exited
						var ee *exec.ExitError
						if errors.As(err, &ee) && ee.Sys().(syscall.WaitStatus).Signal() == syscall.SIGKILL {
							kills++
							continue
						}
					}
				} else {
					err = <-exited
				}
				var ee *exec.ExitError
				switch {
				case err == nil:
					done = kills >= 20
				case errors.As(err, &ee) && ee.ExitCode() == ExitTempFail:
					// The server may still hold the killed session's lock.
					time.Sleep(10 * time.Millisecond)
				default:
					t.Fatalf("fetch: %v\n%s", err, errb.String())
				}
			}

			counts := make([]int, crashMessages)
			partial := 0
			for _, b := range received(t, kind, out, lmtpStore) {
				m := subjectRE.FindStringSubmatch(b)
				want := "Subject: message %s\n\nbody\n"
				if kind == "lmtp" { // CRLF as sent, below our LMTP server's header
					want = "Return-Path: <>\r\nDelivered-To: <me@example.org>\r\nSubject: message %s\r\n\r\nbody\r\n"
				}
				if m == nil || b != fmt.Sprintf(want, m[1]) {
					partial++ // an MDA killed with its parent saw a truncated message
					continue
				}
				i, _ := strconv.Atoi(m[1])
				counts[i]++
			}
			lost, dups := 0, 0
			for i, n := range counts {
				if n == 0 {
					lost++
					t.Errorf("message %d lost", i)
				}
				if n > 1 {
					dups += n - 1
				}
			}
			if n := srv.b.Count(testUser); n != 0 {
				t.Errorf("%d messages left on the server", n)
			}
			t.Logf("%s: %d kills, %d runs, %d messages, %d lost, %d duplicates, %d partial", kind, kills, runs, crashMessages, lost, dups, partial)
			if kind == "maildir" && (dups > 0 || partial > 0) {
				t.Errorf("maildir target got %d duplicates and %d partial messages, want none", dups, partial)
			}
			if kind == "lmtp" && partial > 0 {
				// The LMTP server keeps nothing of a DATA cut short.
				t.Errorf("lmtp target got %d partial messages, want none", partial)
			}
			if dups+partial > kills {
				t.Errorf("%d duplicates and %d partial deliveries for %d kills, want at most one per kill", dups, partial, kills)
			}
		})
	}
}

// received returns the messages a crash run's target got: the files in
// out (out/new for a Maildir), or the LMTP server's maildrop of "me".
func received(t *testing.T, kind, out string, st store.Store) []string {
	t.Helper()
	if kind == "lmtp" {
		return stored(t, st, "me")
	}
	dir := out
	if kind == "maildir" {
		dir = filepath.Join(out, "new")
	}
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var msgs []string
	for _, e := range es {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		msgs = append(msgs, string(b))
	}
	return msgs
}

// lockedBuffer is a bytes.Buffer safe for the exec copier goroutine.
type lockedBuffer struct {
	mu sync.Mutex
	b  []byte
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.b = append(l.b, p...)
	return len(p), nil
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return string(l.b)
}
