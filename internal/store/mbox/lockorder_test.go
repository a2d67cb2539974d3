//go:build linux

package mbox

import (
	"context"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestDotlockBeforeKernelLock: Postfix's local(8) (mbox_open.c), procmail
// and Dovecot take the dotlock first and the kernel lock second. A store
// that took the fcntl lock first and then waited for the dotlock held the
// lock local(8) was waiting for while local(8) held the dotlock it was
// waiting for: both stalled until one timed out, the POP3 login hung for
// local(8)'s 20 s and the delivery was deferred. While the store waits for
// a dotlock another program holds, it must hold no fcntl lock on the mbox.
func TestDotlockBeforeKernelLock(t *testing.T) {
	t.Parallel()
	s := newTestStore(t, Options{NoSync: true, LockTimeout: 5 * time.Second})
	p, err := s.Path("u")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte("From a@example.org  Mon Dec  7 10:00:00 2026\nSubject: x\n\nbody\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// Another program's fresh dotlock, as local(8) makes it.
	if err := os.WriteFile(p+".lock", nil, 0o600); err != nil {
		t.Fatal(err)
	}
	opened := make(chan error, 1)
	go func() {
		m, err := s.Open(context.Background(), "u")
		if err == nil {
			m.Close()
		}
		opened <- err
	}()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	// Watch for 500 ms (bounded: 50 looks) whether the store takes the
	// kernel lock while the dotlock is not its to have.
	held := false
	for i := 0; i < 50 && !held; i++ {
		lk := unix.Flock_t{Type: unix.F_RDLCK}
		if err := unix.FcntlFlock(f.Fd(), unix.F_OFD_GETLK, &lk); err != nil {
			t.Fatal(err)
		}
		held = lk.Type != unix.F_UNLCK
		time.Sleep(10 * time.Millisecond)
	}
	if err := os.Remove(p + ".lock"); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-opened:
		if err != nil {
			t.Errorf("Open after the dotlock went: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Open did not return 30 s after the dotlock went")
	}
	if held {
		t.Error("the store held the fcntl lock on the mbox while it waited for another program's dotlock (lock order inversion with local(8))")
	}
}
