//go:build unix

package maildir

import (
	"errors"
	"syscall"
)

// errLocked reports that another open file description holds the lock.
var errLocked = errors.New("maildir: locked")

// tryLock takes an exclusive flock on the open file fd without waiting. flock locks belong
// to the open file description, so a second open of the same file in this
// process is refused as well, and the kernel drops the lock when the holder
// dies, even by SIGKILL: there are no stale locks to break.
func tryLock(fd uintptr) error {
	for {
		err := syscall.Flock(int(fd), syscall.LOCK_EX|syscall.LOCK_NB)
		switch {
		case err == nil:
			return nil
		case errors.Is(err, syscall.EINTR):
			continue
		case errors.Is(err, syscall.EWOULDBLOCK):
			return errLocked
		}
		return err
	}
}
