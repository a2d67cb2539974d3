//go:build unix

package maildir

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestFIFOIgnored: a named pipe in new/ is not a message, even named with
// a W= that is otherwise trusted without opening the file. Open must not
// block opening it (it would hold the maildrop lock for good).
func TestFIFOIgnored(t *testing.T) {
	t.Parallel()
	s, _ := newTestStore(t, true)
	const user = "fifo"
	if err := s.Deliver(context.Background(), user, strings.NewReader("Subject: real\n\n")); err != nil {
		t.Fatal(err)
	}
	fifo := filepath.Join(mustPath(t, s, user), "new", "1700000000.M1P1.fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Skip("mkfifo:", err)
	}
	fifoW := filepath.Join(mustPath(t, s, user), "new", "1700000001.M1P1.fifo,S=5,W=5")
	if err := syscall.Mkfifo(fifoW, 0o600); err != nil {
		t.Fatal(err)
	}
	type result struct {
		n   int
		err error
	}
	done := make(chan result, 1)
	go func() {
		m, err := s.Open(context.Background(), user)
		if err != nil {
			done <- result{err: err}
			return
		}
		defer m.Close()
		done <- result{n: len(m.Messages())}
	}()
	select {
	case r := <-done:
		if r.err != nil || r.n != 1 {
			t.Errorf("Open with a FIFO in new/ = %d messages, %v; want 1, nil", r.n, r.err)
		}
	case <-time.After(10 * time.Second):
		// Release the blocked open before failing.
		for _, p := range []string{fifo, fifoW} {
			if f, err := os.OpenFile(p, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
				f.Close()
			}
		}
		t.Fatal("Open blocked on a FIFO in new/")
	}
}

// TestFIFOSwappedInDoesNotBlock: a FIFO renamed over a message after the
// maildrop was opened reads as a short message; RETR must not block in
// open(2) while the session holds the lock.
func TestFIFOSwappedInDoesNotBlock(t *testing.T) {
	t.Parallel()
	s, _ := newTestStore(t, true)
	const user = "fifoswap"
	if err := s.Deliver(context.Background(), user, strings.NewReader("Subject: real\n\nbody\n")); err != nil {
		t.Fatal(err)
	}
	m, err := s.Open(context.Background(), user)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	dir := mustPath(t, s, user)
	var msg string
	for _, sub := range []string{"new", "cur"} {
		es, _ := os.ReadDir(filepath.Join(dir, sub))
		for _, e := range es {
			msg = filepath.Join(dir, sub, e.Name())
		}
	}
	if msg == "" {
		t.Fatal("delivered message not found")
	}
	fifo := filepath.Join(dir, "tmp", "swap")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Skip("mkfifo:", err)
	}
	if err := os.Rename(fifo, msg); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		r, err := m.Open(context.Background(), 0)
		if err == nil {
			var buf [64]byte
			_, err = r.Read(buf[:])
			r.Close()
		}
		done <- err
	}()
	select {
	case <-done: // an error or EOF: either way, not stuck
	case <-time.After(10 * time.Second):
		if f, err := os.OpenFile(msg, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
			f.Close()
		}
		t.Fatal("reading a FIFO swapped in for a message blocked")
	}
}

// TestStateFIFODoesNotBlock: a FIFO in place of a state file (postoffice-
// devices, which every session's view reads) is refused, not opened for
// a read that would wait for a writer while the session holds the lock.
// An empty state file reads as empty, not as missing.
func TestStateFIFODoesNotBlock(t *testing.T) {
	t.Parallel()
	s, _ := newTestStore(t, true)
	const user = "statefifo"
	if err := s.Deliver(context.Background(), user, strings.NewReader("Subject: real\n\n")); err != nil {
		t.Fatal(err)
	}
	dir := mustPath(t, s, user)
	if err := syscall.Mkfifo(filepath.Join(dir, "postoffice-devices"), 0o600); err != nil {
		t.Skip("mkfifo:", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "postoffice-history"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	m, err := s.Open(context.Background(), user)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	sf := m.(*maildrop)
	done := make(chan error, 1)
	go func() {
		_, err := sf.ReadState("devices")
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil {
			t.Error("ReadState of a FIFO: no error")
		}
	case <-time.After(10 * time.Second):
		if f, err := os.OpenFile(filepath.Join(dir, "postoffice-devices"), os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
			f.Close()
		}
		t.Fatal("ReadState blocked on a FIFO")
	}
	if data, err := sf.ReadState("history"); err != nil || data == nil || len(data) != 0 {
		t.Errorf("ReadState of an empty file = %q (nil: %v), %v; want empty, not nil", data, data == nil, err)
	}
	if data, err := sf.ReadState("none"); err != nil || data != nil {
		t.Errorf("ReadState of a missing file = %q, %v; want nil, nil", data, err)
	}
}
