//go:build linux || darwin || freebsd || openbsd || netbsd || dragonfly

package passwdfile

import (
	"os"
	"syscall"
)

// lockFile takes an exclusive flock on f, waiting for other holders. flock
// locks belong to the open file description, so two opens in one process
// exclude each other too.
func lockFile(f *os.File) error {
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX)
		if err != syscall.EINTR {
			return err
		}
	}
}

// fileOwner returns the owner of a file.
func fileOwner(fi os.FileInfo) (uid, gid int, ok bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, 0, false
	}
	return int(st.Uid), int(st.Gid), true
}
