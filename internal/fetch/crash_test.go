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

var subjectRE = regexp.MustCompile(`Subject: message (\d+)\n`)

// TestCrash runs postoffice fetch with keep = false against 500 messages,
// SIGKILLs it at random instants at least 20 times, runs it to completion,
// and counts what the target got.
func TestCrash(t *testing.T) {
	bin := binary(t)
	for _, kind := range []string{"maildir", "mda"} {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			srv := startServer(t, nil)
			srv.deliver(t, crashMessages, "Subject: message %d\r\n\r\nbody\r\n")
			dir := t.TempDir()
			out := filepath.Join(dir, "out")
			os.Mkdir(out, 0o700)
			target := "maildir:" + out
			if kind == "mda" {
				target = fmt.Sprintf(`mda:cat > "$(mktemp %s/m.XXXXXX)"`, out)
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
`, srv.addr, testUser, testPass, target, filepath.Join(dir, "state"))), 0o600)

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
			es, err := os.ReadDir(out)
			if kind == "maildir" {
				es, err = os.ReadDir(filepath.Join(out, "new"))
			}
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range es {
				base := out
				if kind == "maildir" {
					base = filepath.Join(out, "new")
				}
				b, err := os.ReadFile(filepath.Join(base, e.Name()))
				if err != nil {
					t.Fatal(err)
				}
				m := subjectRE.FindSubmatch(b)
				if m == nil || string(b) != fmt.Sprintf("Subject: message %s\n\nbody\n", m[1]) {
					partial++ // an MDA killed with its parent saw a truncated message
					continue
				}
				i, _ := strconv.Atoi(string(m[1]))
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
			if dups+partial > kills {
				t.Errorf("%d duplicates and %d partial deliveries for %d kills, want at most one per kill", dups, partial, kills)
			}
		})
	}
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
