//go:build unix

// Package safefs opens files in directories that a local user can write (a
// Maildir in a home directory, an mbox) without following symbolic links,
// and runs file operations as the owner of the mail, so that a process
// running as root cannot be turned against files that user could not reach.
//
// Implementation notes:
//   - A path is split in two at a line the caller chooses: the part above it
//     belongs to the administrator (/var/vmail, a home directory named by the
//     user database) and is opened like any path, links and all; every
//     component below it is opened relative to its parent's descriptor with
//     O_NOFOLLOW (openat(2)), so a link planted there is refused (ELOOP)
//     instead of followed, whether it is the last component or not.
//   - Files are opened with O_NOFOLLOW and checked with fstat(2) on the open
//     descriptor: what is checked is what is used, with no window between a
//     stat and an open for a rename to slip into.
//   - Do runs a function with the file-system uid and gid of the mail owner
//     (setfsuid(2), setfsgid(2) and setgroups(2) on one locked thread, Linux
//     only), as Dovecot's mail processes run as the user: the kernel's own
//     permission checks then protect every file the owner cannot reach,
//     hard links included.
package safefs

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

var (
	// ErrSymlink is returned for a symbolic link where a directory or a file
	// below the line was expected.
	ErrSymlink = errors.New("symbolic link not followed")
	// ErrNotRegular is returned by OpenFile for anything but a regular file.
	ErrNotRegular = errors.New("not a regular file")
)

// Dir is an open directory. Its methods take one path component, never a
// path with '/', and never follow a symbolic link in it.
type Dir struct {
	fd   int
	path string // for error messages and logs
}

// ignoringEINTR retries fn while it fails with EINTR.
func ignoringEINTR(fn func() error) error {
	for {
		if err := fn(); err != unix.EINTR {
			return err
		}
	}
}

// OpenTop opens the directory path, following symbolic links: the part of a
// path that the administrator owns.
func OpenTop(path string) (*Dir, error) {
	var fd int
	err := ignoringEINTR(func() (err error) {
		fd, err = unix.Open(path, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		return err
	})
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	return &Dir{fd: fd, path: path}, nil
}

// checkName refuses anything but one path component.
func checkName(name string) error {
	if name == "" || name == "." || name == ".." || strings.IndexByte(name, '/') >= 0 {
		return fmt.Errorf("safefs: %q is not one path component", name)
	}
	return nil
}

// linkErr turns the errors an O_NOFOLLOW open gives for a symbolic link
// into ErrSymlink: ELOOP for a file, and for a directory ENOTDIR too when
// the name is a link (O_DIRECTORY is checked before O_NOFOLLOW on some
// kernels).
func (d *Dir) linkErr(op, name string, err error) error {
	p := filepath.Join(d.path, name)
	if err == unix.ELOOP || err == unix.EMLINK {
		return &os.PathError{Op: op, Path: p, Err: ErrSymlink}
	}
	if err == unix.ENOTDIR {
		var st unix.Stat_t
		if unix.Fstatat(d.fd, name, &st, unix.AT_SYMLINK_NOFOLLOW) == nil && st.Mode&unix.S_IFMT == unix.S_IFLNK {
			return &os.PathError{Op: op, Path: p, Err: ErrSymlink}
		}
	}
	return &os.PathError{Op: op, Path: p, Err: err}
}

// OpenDir opens the directory name in d without following a link.
func (d *Dir) OpenDir(name string) (*Dir, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	var fd int
	err := ignoringEINTR(func() (err error) {
		fd, err = unix.Openat(d.fd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		return err
	})
	if err != nil {
		return nil, d.linkErr("open", name, err)
	}
	return &Dir{fd: fd, path: filepath.Join(d.path, name)}, nil
}

// Mkdir makes the directory name in d with mode perm. An existing one is
// fs.ErrExist (os.IsExist), whatever it is.
func (d *Dir) Mkdir(name string, perm uint32) error {
	if err := checkName(name); err != nil {
		return err
	}
	err := ignoringEINTR(func() error { return unix.Mkdirat(d.fd, name, perm) })
	if err != nil {
		return &os.PathError{Op: "mkdir", Path: filepath.Join(d.path, name), Err: err}
	}
	return nil
}

// OpenFD opens the file name in d with flags (O_NOFOLLOW and O_CLOEXEC
// added) and, if it creates it, perm. It returns the descriptor and its
// fstat. A symbolic link is ErrSymlink and anything but a regular file
// ErrNotRegular, both without touching the file (O_TRUNC is applied only
// after the check); add O_NONBLOCK to flags where a FIFO must not block
// the open.
func (d *Dir) OpenFD(name string, flags int, perm uint32) (int, unix.Stat_t, error) {
	var st unix.Stat_t
	if err := checkName(name); err != nil {
		return -1, st, err
	}
	trunc := flags&unix.O_TRUNC != 0
	flags &^= unix.O_TRUNC
	var fd int
	err := ignoringEINTR(func() (err error) {
		fd, err = unix.Openat(d.fd, name, flags|unix.O_NOFOLLOW|unix.O_CLOEXEC, perm)
		return err
	})
	if err != nil {
		return -1, st, d.linkErr("open", name, err)
	}
	if err := ignoringEINTR(func() error { return unix.Fstat(fd, &st) }); err != nil {
		unix.Close(fd)
		return -1, st, &os.PathError{Op: "stat", Path: filepath.Join(d.path, name), Err: err}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		unix.Close(fd)
		return -1, st, &os.PathError{Op: "open", Path: filepath.Join(d.path, name), Err: ErrNotRegular}
	}
	if trunc && st.Size != 0 {
		if err := ignoringEINTR(func() error { return unix.Ftruncate(fd, 0) }); err != nil {
			unix.Close(fd)
			return -1, st, &os.PathError{Op: "truncate", Path: filepath.Join(d.path, name), Err: err}
		}
		st.Size = 0
	}
	return fd, st, nil
}

// OpenFile is OpenFD as an *os.File.
func (d *Dir) OpenFile(name string, flags int, perm uint32) (*os.File, error) {
	fd, _, err := d.OpenFD(name, flags, perm)
	if err != nil {
		return nil, err
	}
	return os.NewFile(uintptr(fd), filepath.Join(d.path, name)), nil
}

// Lstat returns the status of name in d, of a link itself if it is one.
func (d *Dir) Lstat(name string) (unix.Stat_t, error) {
	var st unix.Stat_t
	if err := checkName(name); err != nil {
		return st, err
	}
	err := ignoringEINTR(func() error { return unix.Fstatat(d.fd, name, &st, unix.AT_SYMLINK_NOFOLLOW) })
	if err != nil {
		return st, &os.PathError{Op: "lstat", Path: filepath.Join(d.path, name), Err: err}
	}
	return st, nil
}

// Stat returns the status of d itself.
func (d *Dir) Stat() (unix.Stat_t, error) {
	var st unix.Stat_t
	err := ignoringEINTR(func() error { return unix.Fstat(d.fd, &st) })
	if err != nil {
		return st, &os.PathError{Op: "stat", Path: d.path, Err: err}
	}
	return st, nil
}

// Remove unlinks the file name in d (a link itself, never its target).
func (d *Dir) Remove(name string) error {
	if err := checkName(name); err != nil {
		return err
	}
	err := ignoringEINTR(func() error { return unix.Unlinkat(d.fd, name, 0) })
	if err != nil {
		return &os.PathError{Op: "remove", Path: filepath.Join(d.path, name), Err: err}
	}
	return nil
}

// Link makes newName in to a hard link of name in d. Neither name is
// followed if it is a symbolic link (linkat(2) without AT_SYMLINK_FOLLOW),
// and an existing newName is fs.ErrExist.
func (d *Dir) Link(name string, to *Dir, newName string) error {
	if err := checkName(name); err != nil {
		return err
	}
	if err := checkName(newName); err != nil {
		return err
	}
	err := ignoringEINTR(func() error { return unix.Linkat(d.fd, name, to.fd, newName, 0) })
	if err != nil {
		return &os.LinkError{Op: "link", Old: filepath.Join(d.path, name), New: filepath.Join(to.path, newName), Err: err}
	}
	return nil
}

// Rename renames name in d to newName in to, replacing what is there (a
// link is replaced, not followed).
func (d *Dir) Rename(name string, to *Dir, newName string) error {
	if err := checkName(name); err != nil {
		return err
	}
	if err := checkName(newName); err != nil {
		return err
	}
	err := ignoringEINTR(func() error { return unix.Renameat(d.fd, name, to.fd, newName) })
	if err != nil {
		return &os.LinkError{Op: "rename", Old: filepath.Join(d.path, name), New: filepath.Join(to.path, newName), Err: err}
	}
	return nil
}

// Sync fsyncs the directory, making the entries added, renamed or removed
// in it durable.
func (d *Dir) Sync() error {
	if err := ignoringEINTR(func() error { return unix.Fsync(d.fd) }); err != nil {
		return &os.PathError{Op: "sync", Path: d.path, Err: err}
	}
	return nil
}

// FD returns the descriptor, valid until Close.
func (d *Dir) FD() int { return d.fd }

// Path returns the path d was opened by, for messages.
func (d *Dir) Path() string { return d.path }

// Close closes the directory. Closing a nil Dir does nothing.
func (d *Dir) Close() error {
	if d == nil || d.fd < 0 {
		return nil
	}
	err := unix.Close(d.fd)
	d.fd = -1
	return err
}

// Walk opens top (following links) and then each component of below in
// turn without following any. With mkdir non-nil, a missing component is
// made by mkdir(parent, name) and then opened; without, the error is
// fs.ErrNotExist. The parents are closed; the caller closes the result.
func Walk(top string, below []string, mkdir func(parent *Dir, name string) error) (*Dir, error) {
	d, err := OpenTop(top)
	if err != nil {
		return nil, err
	}
	for _, name := range below {
		next, err := d.OpenDir(name)
		if err != nil && mkdir != nil && errors.Is(err, os.ErrNotExist) {
			if err = mkdir(d, name); err == nil || errors.Is(err, os.ErrExist) {
				next, err = d.OpenDir(name)
			}
		}
		d.Close()
		if err != nil {
			return nil, err
		}
		d = next
	}
	return d, nil
}

// Names returns the names in d (without "." and "..").
func (d *Dir) Names() ([]string, error) {
	fd, err := unix.Dup(d.fd)
	if err != nil {
		return nil, &os.PathError{Op: "dup", Path: d.path, Err: err}
	}
	unix.CloseOnExec(fd)
	f := os.NewFile(uintptr(fd), d.path)
	defer f.Close()
	if _, err := f.Seek(0, 0); err != nil {
		return nil, err
	}
	return f.Readdirnames(-1)
}
