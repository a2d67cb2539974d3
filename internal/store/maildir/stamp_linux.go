//go:build linux

package maildir

import (
	"errors"

	"golang.org/x/sys/unix"

	"github.com/postoffice-mail/postoffice/internal/store/safefs"
)

// statDir returns the stamp of the directory name in d: device, inode,
// and the modification and change times in nanoseconds. Any change of the
// directory's entries (a file added, removed or renamed) moves both times.
// A symbolic link is not followed: it is no directory, and has no stamp.
func statDir(d *safefs.Dir, name string) (dirStamp, error) {
	st, err := d.Lstat(name)
	if err != nil {
		return dirStamp{}, err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return dirStamp{}, errors.New("maildir: not a directory")
	}
	return dirStamp{
		dev:   uint64(st.Dev),
		ino:   st.Ino,
		mtime: st.Mtim.Nano(),
		ctime: st.Ctim.Nano(),
	}, nil
}
