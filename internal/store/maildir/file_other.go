//go:build !linux

package maildir

import (
	"io"
	"os"
)

// The files of a session through os.File (see file_linux.go).

// readFile returns the contents of path, read into alloc(size).
func readFile(path string, alloc func(size int64) []byte) ([]byte, error) {
	f, err := os.Open(path)
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

func openLockFile(path string) (*lockFile, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	return &lockFile{f}, nil
}

func (l *lockFile) tryLock() error { return tryLock(l.Fd()) }

// openMessage opens a message for reading; see file_linux.go for O_NONBLOCK.
func openMessage(path string) (io.ReadCloser, error) {
	return os.OpenFile(path, os.O_RDONLY|openNonblock, 0)
}
