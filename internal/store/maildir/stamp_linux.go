//go:build linux

package maildir

import (
	"errors"
	"syscall"
)

// statDir returns the stamp of directory path: device, inode, and the
// modification and change times in nanoseconds. Any change of the
// directory's entries (a file added, removed or renamed) moves both times.
func statDir(path string) (dirStamp, error) {
	var st syscall.Stat_t
	for {
		err := syscall.Stat(path, &st)
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		if err != nil {
			return dirStamp{}, err
		}
		break
	}
	return dirStamp{
		dev:   uint64(st.Dev),
		ino:   st.Ino,
		mtime: st.Mtim.Nano(),
		ctime: st.Ctim.Nano(),
	}, nil
}
