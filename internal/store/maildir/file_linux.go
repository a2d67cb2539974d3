//go:build linux

package maildir

import (
	"errors"
	"io"
	"os"
	"runtime"
	"syscall"
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

// sysOpen opens path with flags (O_CLOEXEC added) and perm.
func sysOpen(path string, flags int, perm uint32) (int, error) {
	for {
		fd, err := syscall.Open(path, flags|syscall.O_CLOEXEC, perm)
		if err == nil {
			return fd, nil
		}
		if !errors.Is(err, syscall.EINTR) {
			return -1, &os.PathError{Op: "open", Path: path, Err: err}
		}
	}
}

func closeFD(fd int) { syscall.Close(fd) }

// readFile returns the contents of path, read into alloc(size) (which
// must return size octets), like os.ReadFile but in four system calls:
// open, fstat, one read of the size fstat gave, close. It reads no further
// than that size, so it is for files that are replaced by rename and never
// written in place (the index); a file shorter than its size comes back
// short.
func readFile(path string, alloc func(size int64) []byte) ([]byte, error) {
	fd, err := sysOpen(path, syscall.O_RDONLY, 0)
	if err != nil {
		return nil, err
	}
	defer syscall.Close(fd)
	var st syscall.Stat_t
	if err := ignoringEINTR(func() error { return syscall.Fstat(fd, &st) }); err != nil {
		return nil, &os.PathError{Op: "stat", Path: path, Err: err}
	}
	data := alloc(st.Size)
	n := 0
	for n < len(data) {
		k, err := syscall.Read(fd, data[n:min(len(data), n+maxRW)])
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		if err != nil {
			return nil, &os.PathError{Op: "read", Path: path, Err: err}
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

// openLockFile opens (creating it if needed) the lock file at path.
func openLockFile(path string) (*lockFile, error) {
	fd, err := sysOpen(path, syscall.O_RDWR|syscall.O_CREAT, 0o600)
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
type msgFile struct {
	fd      int
	path    string
	cleanup runtime.Cleanup
}

// openMessage opens the message file at path for reading. O_NONBLOCK
// changes nothing for a regular file, but a FIFO renamed over a message
// after it was indexed reads as empty instead of blocking the session (and
// its lock) in open(2) for good.
func openMessage(path string) (io.ReadCloser, error) {
	fd, err := sysOpen(path, syscall.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	f := &msgFile{fd: fd, path: path}
	f.cleanup = runtime.AddCleanup(f, closeFD, fd)
	return f, nil
}

func (f *msgFile) Read(p []byte) (int, error) {
	if f.fd < 0 {
		return 0, os.ErrClosed
	}
	if len(p) > maxRW {
		p = p[:maxRW]
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
			return 0, io.EOF
		}
		return n, nil
	}
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
