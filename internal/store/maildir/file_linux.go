//go:build linux

package maildir

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"

	"github.com/postoffice-mail/postoffice/internal/store/safefs"
)

// The files of a session through plain system calls.
//
// On Linux, os.Open and os.OpenFile offer every file to the network
// poller: two fcntl calls to make it non-blocking, an epoll_ctl that a
// regular file refuses, and two fcntl calls to make it blocking again,
// besides the open itself. A session opens the lock file, the index and
// every message it reads, so that was five wasted system calls in each of
// the nine it made per message read (open, five, two reads, close). The
// files here are used through plain system calls instead, as sizeAt does;
// a cleanup still closes a descriptor whose owner was dropped unclosed, as
// an os.File's finalizer would, so a forgotten Close cannot hold a lock
// for ever.

// maxRW is the most one read or write asks for, as in internal/poll: some
// kernels fail larger ones.
const maxRW = 1 << 30

func closeFD(fd int) { syscall.Close(fd) }

// readFile returns the contents of the file name in d, read into
// alloc(size) (which must return size octets), like os.ReadFile but in
// four system calls: open (without following a link; anything but a
// regular file is refused), fstat, one read of the size fstat gave, close.
// It reads no further than that size, so it is for files that are
// replaced by rename and never written in place (the index); a file
// shorter than its size comes back short.
func readFile(d *safefs.Dir, name string, alloc func(size int64) []byte) ([]byte, error) {
	fd, st, err := d.OpenFD(name, syscall.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer syscall.Close(fd)
	data := alloc(st.Size)
	n := 0
	for n < len(data) {
		k, err := syscall.Read(fd, data[n:min(len(data), n+maxRW)])
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		if err != nil {
			return nil, &os.PathError{Op: "read", Path: filepath.Join(d.Path(), name), Err: err}
		}
		if k == 0 {
			break
		}
		n += k
	}
	return data[:n], nil
}

func ignoringEINTR(fn func() error) error {
	for {
		if err := fn(); !errors.Is(err, syscall.EINTR) {
			return err
		}
	}
}

// lockFile is the open lock file of a session.
type lockFile struct {
	fd      int
	cleanup runtime.Cleanup
}

// openLockFile opens (creating it if needed) the lock file name in d. A
// symbolic link or anything but a regular file there is refused, so the
// file written in place is always the Maildir's own.
func openLockFile(d *safefs.Dir, name string) (*lockFile, error) {
	fd, _, err := d.OpenFD(name, syscall.O_RDWR|syscall.O_CREAT|syscall.O_NONBLOCK, 0o600)
	if err != nil {
		return nil, err
	}
	l := &lockFile{fd: fd}
	l.cleanup = runtime.AddCleanup(l, closeFD, fd)
	return l, nil
}

func (l *lockFile) tryLock() error {
	err := tryLock(uintptr(l.fd))
	runtime.KeepAlive(l)
	return err
}

func (l *lockFile) ReadAt(p []byte, off int64) (int, error) {
	for {
		n, err := syscall.Pread(l.fd, p, off)
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		runtime.KeepAlive(l)
		if err != nil {
			return 0, err
		}
		if n < len(p) {
			return n, io.EOF
		}
		return n, nil
	}
}

func (l *lockFile) WriteAt(p []byte, off int64) (int, error) {
	for {
		n, err := syscall.Pwrite(l.fd, p, off)
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		runtime.KeepAlive(l)
		if err != nil {
			return 0, err
		}
		if n < len(p) {
			return n, io.ErrShortWrite
		}
		return n, nil
	}
}

func (l *lockFile) Truncate(size int64) error {
	err := ignoringEINTR(func() error { return syscall.Ftruncate(l.fd, size) })
	runtime.KeepAlive(l)
	return err
}

// Close closes the file, which releases the lock.
func (l *lockFile) Close() error {
	l.cleanup.Stop()
	// Like os.File.Close: close(2) is not retried on EINTR, since the
	// descriptor is released either way.
	return syscall.Close(l.fd)
}

// msgFile is a message opened for reading. It is not safe for concurrent
// use.
//
// It reads no further than the size fstat gave at open: a Maildir message
// is written in tmp/ and renamed into place, never written in place, so
// that size is the message, and the last Read returns io.EOF without the
// read(2) that would find the end (one system call in five per message
// read).
type msgFile struct {
	fd      int
	left    int64 // octets still to read, of the size at open
	size    int64 // the size at open
	wire    bool  // indexed as in wire form, and still of the indexed size
	stuff   string
	path    string
	cleanup runtime.Cleanup

	// After Wire: Read and SendTo give the wire form, a "." before each
	// line at the offsets in dots. next is the first of them not yet
	// passed, and dotSent says whether its dot went.
	wireMode bool
	dots     []int64
	next     int
	dotSent  bool
}

// openMessage opens the message file name in d for reading. O_NONBLOCK
// changes nothing for a regular file, but a FIFO renamed over a message
// after it was indexed is refused instead of blocking the session (and its
// lock) in open(2) for good; so is a symbolic link (safefs.OpenFD).
//
// wireSize is the size of the file when the index says it is the
// message's wire form, else -1: a file of another size has changed since
// and is sent through the converter like any other. stuff is the index's
// list of lines to dot-stuff (entry.stuff).
func openMessage(d *safefs.Dir, name string, wireSize int64, stuff string) (io.ReadCloser, error) {
	fd, st, err := d.OpenFD(name, syscall.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	f := &msgFile{fd: fd, left: st.Size, size: st.Size, wire: st.Size == wireSize, stuff: stuff, path: d.Path() + string(filepath.Separator) + name}
	f.cleanup = runtime.AddCleanup(f, closeFD, fd)
	return f, nil
}

func (f *msgFile) Read(p []byte) (int, error) {
	if f.fd < 0 {
		return 0, os.ErrClosed
	}
	if f.left <= 0 {
		if len(p) == 0 {
			return 0, nil
		}
		return 0, io.EOF
	}
	if int64(len(p)) > f.left {
		p = p[:f.left]
	}
	if len(p) > maxRW {
		p = p[:maxRW]
	}
	if f.wireMode && len(p) > 0 {
		if lim, dot := f.stuffPoint(); dot {
			p[0] = '.'
			f.dotSent = true
			return 1, nil
		} else if lim >= 0 && int64(len(p)) > lim {
			p = p[:lim]
		}
	}
	for {
		n, err := syscall.Read(f.fd, p)
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		runtime.KeepAlive(f)
		if err != nil {
			return 0, &os.PathError{Op: "read", Path: f.path, Err: err}
		}
		if n == 0 && len(p) > 0 {
			// Shorter than at open: the end is here.
			f.left = 0
			return 0, io.EOF
		}
		f.left -= int64(n)
		return n, nil
	}
}

// Wire implements pop3server.WireReader: the octets of the message when
// the file is its wire form but for the stuffing of some lines
// (crlfCounter.wireReady). From then on Read and SendTo give the wire
// form: a "." before each of those lines.
func (f *msgFile) Wire() (int64, bool) {
	if !f.wire || f.fd < 0 || f.left != f.size {
		return 0, false
	}
	if f.stuff != "" && f.dots == nil {
		for s := range strings.SplitSeq(f.stuff, ",") {
			v, err := strconv.ParseInt(s, 10, 64)
			if err != nil {
				return 0, false // the index checked the list: cannot happen
			}
			f.dots = append(f.dots, v)
		}
	}
	f.wireMode = true
	return f.size, true
}

// stuffPoint says, in wire mode, whether the next octet to send is a
// stuffing dot, and else how many file octets may go before the next one
// (-1: no more).
func (f *msgFile) stuffPoint() (lim int64, dot bool) {
	off := f.size - f.left
	for f.next < len(f.dots) {
		at := f.dots[f.next]
		switch {
		case at > off:
			return at - off, false
		case at == off && !f.dotSent:
			return 0, true
		}
		if at == off {
			// Its dot went; the line itself is next.
			if f.next+1 < len(f.dots) {
				return f.dots[f.next+1] - off, false
			}
			return -1, false
		}
		f.next++
		f.dotSent = false
	}
	return -1, false
}

// SendTo implements pop3server.SocketSender: it sends at most max octets of
// the file, from where reading stopped, to the socket rc with sendfile(2),
// so that they go from the page cache to the socket without a copy through
// the server. A write deadline on the connection bounds the wait for room
// in the socket's buffer. A file shorter than at open is an error: its
// size was promised to the client. On a file system that cannot
// sendfile(2) it returns errors.ErrUnsupported having sent nothing, and
// Read still gives the whole wire form.
func (f *msgFile) SendTo(rc syscall.RawConn, max int64) (int64, error) {
	if f.fd < 0 {
		return 0, os.ErrClosed
	}
	var sent int64
	for sent < max && f.left > 0 {
		chunk := min(max-sent, f.left, maxRW)
		if f.wireMode {
			lim, dot := f.stuffPoint()
			if dot {
				if err := writeDot(rc); err != nil {
					return sent, err
				}
				f.dotSent = true
				continue
			}
			if lim >= 0 {
				chunk = min(chunk, lim)
			}
		}
		var serr error
		werr := rc.Write(func(sock uintptr) bool {
			n, err := syscall.Sendfile(int(sock), f.fd, nil, int(chunk))
			if n > 0 {
				sent += int64(n)
				f.left -= int64(n)
			}
			switch {
			case errors.Is(err, syscall.EAGAIN):
				return n > 0 // nothing sent: wait until the socket has room
			case errors.Is(err, syscall.EINTR):
				return true
			case n <= 0 && f.left == f.size && (errors.Is(err, syscall.EINVAL) || errors.Is(err, syscall.ENOSYS) || errors.Is(err, syscall.EOPNOTSUPP)):
				// A file system without sendfile(2) support: nothing
				// sent, the caller reads the file instead.
				serr = errors.ErrUnsupported
			case err != nil:
				serr = &os.PathError{Op: "sendfile", Path: f.path, Err: err}
			case n == 0:
				serr = fmt.Errorf("sendfile %s: %w", f.path, io.ErrUnexpectedEOF)
			}
			return true
		})
		runtime.KeepAlive(f)
		if werr != nil {
			return sent, werr
		}
		if serr != nil {
			return sent, serr
		}
	}
	return sent, nil
}

// writeDot writes a stuffing "." to the socket rc.
func writeDot(rc syscall.RawConn) error {
	var serr error
	werr := rc.Write(func(sock uintptr) bool {
		n, err := syscall.Write(int(sock), []byte{'.'})
		switch {
		case errors.Is(err, syscall.EAGAIN), errors.Is(err, syscall.EINTR):
			return false
		case err != nil:
			serr = err
		case n != 1:
			return false
		}
		return true
	})
	if werr != nil {
		return werr
	}
	return serr
}

func (f *msgFile) Close() error {
	if f.fd < 0 {
		return os.ErrClosed
	}
	f.cleanup.Stop()
	err := syscall.Close(f.fd)
	f.fd = -1
	if err != nil {
		return &os.PathError{Op: "close", Path: f.path, Err: err}
	}
	return nil
}
