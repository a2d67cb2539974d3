//go:build !linux

package maildir

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/postoffice-mail/postoffice/internal/wire"
)

const sizeWorkers = 8

type dirFD struct{ path string }

func openDirFD(path string) (dirFD, error) { return dirFD{path}, nil }

func (d dirFD) close() {}

// sizeAt is the portable version of the Unix one (size_linux.go).
func (d dirFD) sizeAt(name string, count bool, buf []byte) (n int64, last byte, crlf int64, gone, regular bool, err error) {
	f, err := os.Open(filepath.Join(d.path, name))
	if errors.Is(err, fs.ErrNotExist) {
		return 0, 0, 0, true, false, nil
	}
	if err != nil {
		return 0, 0, 0, false, false, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		return 0, 0, 0, false, false, err
	}
	n = fi.Size()
	if !count {
		if n > 0 {
			var b [1]byte
			if _, err := f.ReadAt(b[:], n-1); err != nil {
				return 0, 0, 0, false, false, err
			}
			last = b[0]
		}
		return n, last, 0, false, true, nil
	}
	var c wire.CRLFCounter
	if _, err := io.CopyBuffer(&c, f, buf); err != nil {
		return 0, 0, 0, false, false, err
	}
	size := c.Size()
	if n > 0 {
		// CRLFCounter includes the completion; take it off.
		var b [1]byte
		f.ReadAt(b[:], n-1)
		last = b[0]
		size -= completion(n, last)
	}
	return n, last, size, false, true, nil
}
