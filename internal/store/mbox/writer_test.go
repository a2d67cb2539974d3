//go:build linux

package mbox

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

const writerHelperEnv = "POSTOFFICE_MBOX_WRITER_HELPER"

// writerBody is message i of the concurrency test; its body has a line
// starting "From " that the writer quotes, as Postfix's local(8) does.
func writerBody(i int) string {
	return fmt.Sprintf("Subject: w %d\nMessage-ID: <%d@writer.test>\n\nFrom the writer, message %d\n%s\n", i, i, i, strings.Repeat("w", i%300))
}

// TestWriterHelper is the other mail program of TestForeignWriter: it
// appends messages to the mbox exactly as Debian's Postfix local(8) does
// (mailbox_delivery_lock = fcntl, dotlock; mbox_open.c takes them in this
// order whatever the setting's): the dotlock made with O_EXCL, then a
// classic process-wide fcntl write lock on the whole file, then
// "From sender  date", the message with mboxo quoting, an empty line,
// fsync, and the locks released in reverse order.
func TestWriterHelper(t *testing.T) {
	env := os.Getenv(writerHelperEnv)
	if env == "" {
		t.Skip("helper process for TestForeignWriter")
	}
	path, count, _ := strings.Cut(env, ",")
	n, _ := strconv.Atoi(count)
	for i := range n {
		if err := postfixStyleAppend(path, writerBody(i)); err != nil {
			fmt.Println("error", err)
			os.Exit(2)
		}
	}
	os.Exit(0)
}

func postfixStyleAppend(path, body string) error {
	// local(8) (src/global/mbox_open.c) makes the dotlock before it opens
	// the mailbox, and takes the kernel lock after.
	lock := path + ".lock"
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(time.Millisecond) {
		fd, err := unix.Open(lock, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL, 0o644)
		if err == nil {
			unix.Close(fd)
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("dotlock timeout")
		}
	}
	defer os.Remove(lock)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer f.Close() // before the dotlock goes: the reverse order
	lk := unix.Flock_t{Type: unix.F_WRLCK}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(time.Millisecond) {
		if err := unix.FcntlFlock(f.Fd(), unix.F_SETLK, &lk); err == nil {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("fcntl lock timeout")
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "From sender@example.net  %s\n", time.Now().Format("Mon Jan _2 15:04:05 2006"))
	for _, l := range strings.SplitAfter(body, "\n") {
		if strings.HasPrefix(l, "From ") {
			b.WriteByte('>')
		}
		b.WriteString(l)
	}
	b.WriteString("\n")
	if _, err := f.WriteString(b.String()); err != nil {
		return err
	}
	return f.Sync()
}

// TestForeignWriter runs POP3 sessions through the store (Open, read,
// Commit of random deletions, Close) in a loop while another process
// appends 400 messages the way Postfix's local(8) does: no corruption,
// every delivered message there exactly once and byte for byte unless a
// returned Commit deleted it, and no deleted message back.
//
// The writer is an in-test process that follows local(8)'s locking, not
// Postfix itself: running local(8) needs a queue, a pickup service and a
// non-root recipient account, and what it does to the file is exactly
// what the helper does.
func TestForeignWriter(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a writer process; skipped in -short mode")
	}
	t.Parallel()
	s := newTestStore(t, Options{NoSync: true})
	p, _ := s.Path("u")
	const n = 400
	cmd := exec.Command(os.Args[0], "-test.run=^TestWriterHelper$", "-test.count=1")
	cmd.Env = append(os.Environ(), writerHelperEnv+"="+p+","+strconv.Itoa(n))
	done := make(chan error, 1)
	go func() {
		out, err := cmd.CombinedOutput()
		if err != nil {
			err = fmt.Errorf("%v: %s", err, out)
		}
		done <- err
	}()
	deleted := map[string]bool{}
	check := func(final bool) {
		m := openT(t, s, "u")
		defer m.Close()
		seen := map[string]bool{}
		var del []int
		var bodies []string
		for i, msg := range m.Messages() {
			body := read(t, m, i)
			var k int
			if _, err := fmt.Sscanf(body, "Subject: w %d\n", &k); err != nil || body != writerBody(k) {
				t.Fatalf("message %d is corrupt: %.100q", i, body)
			}
			if seen[body] || deleted[body] {
				t.Fatalf("message %d (w %d) duplicated or resurrected", i, k)
			}
			seen[body] = true
			bodies = append(bodies, body)
			if msg.Size <= 0 {
				t.Fatalf("message %d: size %d", i, msg.Size)
			}
			if !final && rand.IntN(3) == 0 {
				del = append(del, i)
			}
		}
		if final {
			for i := range n {
				if b := writerBody(i); !seen[b] && !deleted[b] {
					t.Errorf("message w %d lost", i)
				}
			}
			return
		}
		if err := m.Commit(context.Background(), del); err != nil {
			t.Fatalf("Commit: %v", err)
		}
		for _, i := range del {
			deleted[bodies[i]] = true
		}
	}
	sessions := 0
	for running := true; running && sessions < 10000; sessions++ {
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("writer: %v", err)
			}
			running = false
		default:
		}
		if _, err := os.Stat(p); err != nil {
			time.Sleep(time.Millisecond)
			continue
		}
		check(false)
	}
	check(true)
	if _, err := os.Stat(filepath.Join(filepath.Dir(p), "u.lock")); err == nil {
		t.Errorf("a dotlock was left behind")
	}
	t.Logf("%d sessions, %d messages deleted", sessions, len(deleted))
}
