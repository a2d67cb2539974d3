//go:build linux

package maildir

import (
	"bytes"
	"errors"
	"strconv"
	"syscall"

	"github.com/postoffice-mail/postoffice/internal/store/safefs"
	"github.com/postoffice-mail/postoffice/internal/wire"
)

// sizeWorkers is how many files are sized at once when many are new. The
// work is waiting for the disk (an inode and a data block per file when
// the page cache is cold), so it is worth many more than the CPUs.
const sizeWorkers = 32

// dirFD is an open directory that files are opened relative to.
type dirFD struct{ fd int }

// dirFDOf returns d's descriptor as a dirFD; d keeps it open.
func dirFDOf(d *safefs.Dir) dirFD { return dirFD{d.FD()} }

// sizeAt measures the file name in d, with plain system calls (an os.File
// costs a poller registration and a finalizer per file): its length, its
// last octet, and, when count is set, its CRLF size without completion
// and whether it is in wire form (read whole through buf). It opens non-blocking, so that a FIFO cannot
// block, and without following a symbolic link (O_NOFOLLOW: the open
// fails with ELOOP). gone reports a file that vanished; regular is false
// for anything but a regular file, a link included.
func (d dirFD) sizeAt(name string, count bool, buf []byte) (n int64, last byte, crlf int64, ready bool, stuff string, gone, regular bool, err error) {
	var fd int
	for {
		fd, err = syscall.Openat(d.fd, name, syscall.O_RDONLY|syscall.O_NONBLOCK|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0)
		if !errors.Is(err, syscall.EINTR) {
			break
		}
	}
	switch {
	case errors.Is(err, syscall.ENOENT):
		return 0, 0, 0, false, "", true, false, nil
	case errors.Is(err, syscall.ELOOP), errors.Is(err, syscall.ENXIO):
		return 0, 0, 0, false, "", false, false, nil // a symbolic link; a socket
	}
	if err != nil {
		return 0, 0, 0, false, "", false, false, err
	}
	defer syscall.Close(fd)
	var st syscall.Stat_t
	if err := syscall.Fstat(fd, &st); err != nil {
		return 0, 0, 0, false, "", false, false, err
	}
	if st.Mode&syscall.S_IFMT != syscall.S_IFREG {
		return 0, 0, 0, false, "", false, false, nil
	}
	if !count {
		n = st.Size
		if n > 0 {
			var b [1]byte
			for {
				k, err := syscall.Pread(fd, b[:], n-1)
				if errors.Is(err, syscall.EINTR) {
					continue
				}
				if err != nil {
					return 0, 0, 0, false, "", false, false, err
				}
				if k != 1 {
					return 0, 0, 0, false, "", false, false, errors.New("maildir: file shrank while sized")
				}
				break
			}
			last = b[0]
		}
		return n, last, 0, false, "", false, true, nil
	}
	c := crlfCounter{dots: wire.DotLines{Max: maxStuff}}
	for {
		k, err := syscall.Read(fd, buf)
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		if err != nil {
			return 0, 0, 0, false, "", false, false, err
		}
		if k == 0 {
			break
		}
		c.write(buf[:k])
	}
	return c.n, c.last, c.size(), c.wireReady(), c.stuffing(), false, true, nil
}

// crlfCounter counts what wire.CRLFCounter counts, a buffer at a time with
// the vectorized bytes.Count instead of a loop per octet.
type crlfCounter struct {
	n, lf, crlf int64
	last        byte
	dots        wire.DotLines // Max maxStuff
}

func (c *crlfCounter) write(p []byte) {
	if len(p) == 0 {
		return
	}
	c.lf += int64(bytes.Count(p, []byte{'\n'}))
	c.crlf += int64(bytes.Count(p, []byte("\r\n")))
	if c.last == '\r' && p[0] == '\n' {
		c.crlf++
	}
	c.dots.Write(p)
	c.n += int64(len(p))
	c.last = p[len(p)-1]
}

// size is the CRLF size without the completion of a last line.
func (c *crlfCounter) size() int64 { return c.n + c.lf - c.crlf }

// wireReady reports whether what was counted is the wire form of a
// message (RFC 1939 §3) but for the stuffing of at most maxStuff lines
// that start with ".": every LF after a CR, and a last line that ends in
// CRLF, or nothing at all. Such a message is sent as it is stored, a "."
// added where stuffing() says (msgFile.SendTo).
func (c *crlfCounter) wireReady() bool {
	return c.lf == c.crlf && !c.dots.Many() && (c.n == 0 || c.last == '\n')
}

// stuffing returns where the lines to stuff start, as the index keeps
// them: decimal offsets separated by commas, or "" for none.
func (c *crlfCounter) stuffing() string {
	var b []byte
	for i, off := range c.dots.Offsets() {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendInt(b, off, 10)
	}
	return string(b)
}
