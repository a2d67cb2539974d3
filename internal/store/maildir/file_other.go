//go:build !linux

package maildir

import (
	"io"
	"os"
	"syscall"

	"github.com/postoffice-mail/postoffice/internal/store/safefs"
)

// The files of a session through os.File (see file_linux.go).

// openNonblock makes opening a FIFO return at once (see file_linux.go). It
// lives here, beside its only users: file_linux.go passes O_NONBLOCK to
// openat directly. The package builds on Unix only (internal/store/safefs
// does), where every port defines O_NONBLOCK.
const openNonblock = syscall.O_NONBLOCK

// readFile returns the contents of the file name in d, read into
// alloc(size), opened without following a link.
func readFile(d *safefs.Dir, name string, alloc func(size int64) []byte) ([]byte, error) {
	f, err := d.OpenFile(name, os.O_RDONLY|openNonblock, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	data := alloc(fi.Size())
	n, err := io.ReadFull(f, data)
	if err != nil && err != io.ErrUnexpectedEOF {
		return nil, err
	}
	return data[:n], nil
}

// lockFile is the open lock file of a session.
type lockFile struct{ *os.File }

func openLockFile(d *safefs.Dir, name string) (*lockFile, error) {
	f, err := d.OpenFile(name, os.O_RDWR|os.O_CREATE|openNonblock, 0o600)
	if err != nil {
		return nil, err
	}
	return &lockFile{f}, nil
}

func (l *lockFile) tryLock() error { return tryLock(l.Fd()) }

// openMessage opens a message for reading; see file_linux.go for O_NONBLOCK.
func openMessage(d *safefs.Dir, name string, _ int64, _ string) (io.ReadCloser, error) {
	f, err := d.OpenFile(name, os.O_RDONLY|openNonblock, 0)
	if err != nil {
		return nil, err
	}
	return f, nil
}
