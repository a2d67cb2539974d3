package mbox

import (
	"context"
	"errors"
	"fmt"
	"time"

	"golang.org/x/sys/unix"
)

// checkLocking says whether this system has the locks the store needs: on
// Linux it does.
func checkLocking() error { return nil }

// fcntlLock takes a write lock on the whole of fd, as Postfix's local(8),
// procmail and mutt take theirs with fcntl(F_SETLK). It uses Linux's open
// file description locks (F_OFD_SETLK): they conflict with those classic
// per-process locks of other programs exactly as another process's lock
// would, and, unlike them, also with a lock taken through another
// descriptor of this process, so two goroutines of one server exclude
// each other too (a classic lock is per process: the second goroutine
// would simply get it, and closing any descriptor would drop it).
// It polls until ctx ends or the deadline passes.
func fcntlLock(ctx context.Context, fd int, deadline time.Time) error {
	lk := unix.Flock_t{Type: unix.F_WRLCK, Whence: 0, Start: 0, Len: 0}
	return poll(ctx, deadline, func() (bool, error) {
		err := unix.FcntlFlock(uintptr(fd), unix.F_OFD_SETLK, &lk)
		switch {
		case err == nil:
			return true, nil
		case errors.Is(err, unix.EAGAIN), errors.Is(err, unix.EACCES), errors.Is(err, unix.EINTR):
			return false, nil
		default:
			return false, fmt.Errorf("mbox: fcntl lock: %w", err)
		}
	})
}

// fcntlUnlock releases what fcntlLock took (closing the descriptor does too).
func fcntlUnlock(fd int) {
	lk := unix.Flock_t{Type: unix.F_UNLCK}
	unix.FcntlFlock(uintptr(fd), unix.F_OFD_SETLK, &lk)
}
