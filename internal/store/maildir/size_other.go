//go:build !linux

package maildir

import (
	"errors"
	"io"
	"io/fs"
	"os"

	"github.com/postoffice-mail/postoffice/internal/store/safefs"
	"github.com/postoffice-mail/postoffice/internal/wire"
)

const sizeWorkers = 8

type dirFD struct{ d *safefs.Dir }

func dirFDOf(d *safefs.Dir) dirFD { return dirFD{d} }

// sizeAt is the portable version of the Unix one (size_linux.go). It
// never reports the wire form: only Linux sends messages with sendfile(2).
func (d dirFD) sizeAt(name string, count bool, buf []byte) (n int64, last byte, crlf int64, ready bool, stuff string, gone, regular bool, err error) {
	f, err := d.d.OpenFile(name, os.O_RDONLY|openNonblock, 0)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return 0, 0, 0, false, "", true, false, nil
	case errors.Is(err, safefs.ErrSymlink), errors.Is(err, safefs.ErrNotRegular):
		return 0, 0, 0, false, "", false, false, nil
	}
	if err != nil {
		return 0, 0, 0, false, "", false, false, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		return 0, 0, 0, false, "", false, false, err
	}
	n = fi.Size()
	if !count {
		if n > 0 {
			var b [1]byte
			if _, err := f.ReadAt(b[:], n-1); err != nil {
				return 0, 0, 0, false, "", false, false, err
			}
			last = b[0]
		}
		return n, last, 0, false, "", false, true, nil
	}
	var c wire.CRLFCounter
	if _, err := io.CopyBuffer(&c, f, buf); err != nil {
		return 0, 0, 0, false, "", false, false, err
	}
	size := c.Size()
	if n > 0 {
		// CRLFCounter includes the completion; take it off.
		var b [1]byte
		f.ReadAt(b[:], n-1)
		last = b[0]
		size -= completion(n, last)
	}
	return n, last, size, false, "", false, true, nil
}
