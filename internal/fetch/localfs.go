package fetch

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"github.com/postoffice-mail/postoffice/internal/store/safefs"
)

// Local targets (maildir:, mbox:) follow the rules of the Maildir store.
// The configured path is the administrator's and is opened like any path;
// what lies in it, which the mail's owner can write (tmp/, new/, cur/ and
// the messages of a Maildir, the mbox file in its directory), is opened
// without following a symbolic link. A fetcher running as root works in
// the target as its owner (the owner of the Maildir directory, or of the
// mbox file, or of the directory it is to be made in), so files it makes
// belong to that user and the kernel refuses it what that user could not
// do (safefs.Do).

// maildirDirs opens the Maildir dir (made if missing, as the process) and
// its tmp/, new/ and cur/ (made if missing, as the owner), and returns them
// in that order with the owner. The caller closes them.
func maildirDirs(dir string) (subs [3]*safefs.Dir, owner safefs.Owner, err error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return subs, owner, err
	}
	top, err := safefs.OpenTop(dir)
	if err != nil {
		return subs, owner, err
	}
	defer top.Close()
	owner = targetOwner(top)
	err = safefs.Do(owner, func() error {
		for i, name := range []string{"tmp", "new", "cur"} {
			if err := top.Mkdir(name, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
				return err
			}
			if subs[i], err = top.OpenDir(name); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		closeDirs(subs[:])
	}
	return subs, owner, err
}

func closeDirs(ds []*safefs.Dir) {
	for _, d := range ds {
		d.Close()
	}
}

// targetOwner returns the owner of d when the process is root (safefs.Do
// uses it only then), else an unknown owner.
func targetOwner(d *safefs.Dir) safefs.Owner {
	if os.Geteuid() == 0 {
		if o, err := safefs.OwnerOf(d); err == nil {
			return o
		}
	}
	return safefs.Owner{UID: -1, GID: -1}
}

// openMbox opens (creating it if needed) the mbox file at path for
// appending, without following a link in its last component, and refuses
// anything but a regular file. Run as root, it opens it as its owner (or,
// when it does not exist yet, as the owner of its directory): what is done
// with the open file later needs no permission check.
func openMbox(path string) (*os.File, error) {
	dir, err := safefs.OpenTop(filepath.Dir(path))
	if err != nil {
		return nil, err
	}
	defer dir.Close()
	owner := targetOwner(dir)
	name := filepath.Base(path)
	if os.Geteuid() == 0 {
		if st, err := dir.Lstat(name); err == nil {
			owner = safefs.Owner{UID: int(st.Uid), GID: int(st.Gid)}
		}
	}
	var f *os.File
	err = safefs.Do(owner, func() (err error) {
		f, err = dir.OpenFile(name, os.O_RDWR|os.O_CREATE|syscall.O_NONBLOCK, 0o600)
		return err
	})
	return f, err
}
