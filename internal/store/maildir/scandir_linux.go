//go:build linux

package maildir

import (
	"bytes"
	"errors"
	"fmt"
	"path/filepath"
	"syscall"
	"unsafe"

	"github.com/postoffice-mail/postoffice/internal/store/safefs"
)

// scanDir calls fn for every entry of the directory name in parent except
// "." and "..", with the name valid only during the call, and its type as the
// directory entry says (d_type; typeUnknown when the file system does not
// say, or for a symbolic link). On Linux it reads getdents64 records into one
// large buffer: a Maildir of 100,000 messages is listed in a few system
// calls and without a string per name, so that names already in the index
// cost no allocation.
//
// The directory is opened without following a symbolic link (an error
// wrapping safefs.ErrSymlink), so a new/ or cur/ that is a link lists
// nothing of where it points.
func scanDir(parent *safefs.Dir, name string, fn func(name []byte, typ fileType)) error {
	path := filepath.Join(parent.Path(), name)
	d, err := parent.OpenDir(name)
	if err != nil {
		return err
	}
	defer d.Close()
	fd := d.FD()
	buf := make([]byte, 512<<10)
	for {
		n, err := syscall.Getdents(fd, buf)
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		if err != nil {
			return fmt.Errorf("maildir: read %s: %w", filepath.Base(path), err)
		}
		if n <= 0 {
			return nil
		}
		for b := buf[:n]; len(b) > 0; {
			// struct linux_dirent64: d_ino u64, d_off s64, d_reclen u16,
			// d_type u8, d_name[].
			if len(b) < 19 {
				return fmt.Errorf("maildir: read %s: short dirent", filepath.Base(path))
			}
			reclen := int(*(*uint16)(unsafe.Pointer(&b[16])))
			if reclen < 19 || reclen > len(b) {
				return fmt.Errorf("maildir: read %s: bad dirent", filepath.Base(path))
			}
			typ := b[18]
			name := b[19:reclen]
			if i := bytes.IndexByte(name, 0); i >= 0 {
				name = name[:i]
			}
			b = b[reclen:]
			if len(name) == 0 || string(name) == "." || string(name) == ".." {
				continue
			}
			fn(name, direntType(typ))
		}
	}
}

// direntType maps a d_type to a fileType.
func direntType(t uint8) fileType {
	switch t {
	case syscall.DT_REG:
		return typeRegular
	case syscall.DT_DIR:
		return typeDir
	case syscall.DT_UNKNOWN, syscall.DT_LNK:
		return typeUnknown // a stat (or an open) tells
	}
	return typeSpecial
}
