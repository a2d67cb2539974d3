//go:build unix

package maildir

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/postoffice-mail/postoffice/internal/store"
	"github.com/postoffice-mail/postoffice/internal/store/safefs"
)

// Maildir++ folders (store.Folders), as Courier and Dovecot lay them out
// (Dovecot's default LAYOUT=maildir++): a folder is a Maildir of its own,
// a directory of the user's Maildir named "." followed by the folder name
// with '.' as the hierarchy separator: "Lists/go" is ".Lists.go". A
// folder holds an empty "maildirfolder" file, which marks it as one for
// Maildir++ deliverers. INBOX is the user's Maildir itself.
//
// Each folder is a maildrop like INBOX: its own lock, index and UIDLs, so
// two sessions may have two folders of one user open at once, and one
// folder is open in one session only (store.ErrInUse).
//
// Folder names are restricted (store.Folders) so that every name maps to
// one directory name and back: no '.', which is the separator on disk, no
// '/' or '\\' within a level, no '%' (Dovecot's escape character, whose
// escapes we do not decode), printable ASCII and space only. A directory
// whose name does not map back (a Dovecot folder with an escaped name, a
// ".." directory) is not listed and cannot be opened: left alone, never
// mistaken for another folder.

// maildirFolderFile marks a Maildir++ folder.
const maildirFolderFile = "maildirfolder"

// trashPrefix names a deleted folder's directory while it is removed: not
// a folder name (no leading '.'), and left for the next DeleteFolder to
// finish if a crash interrupts the removal.
const trashPrefix = "postoffice-deleted-"

var _ store.Folders = (*Store)(nil)

// isInbox reports whether name is INBOX (case-insensitive).
func isInbox(name string) bool { return strings.EqualFold(name, store.Inbox) }

// folderDir returns the directory name of folder name, or an error
// wrapping store.ErrBadFolderName. INBOX has none.
func folderDir(name string) (string, error) {
	if isInbox(name) {
		return "", fmt.Errorf("maildir: %q: INBOX is not a Maildir++ folder: %w", name, store.ErrBadFolderName)
	}
	levels := strings.Split(name, "/")
	if len(name) > 1000 || len(levels) > 16 {
		return "", fmt.Errorf("maildir: folder name too long: %w", store.ErrBadFolderName)
	}
	for i, l := range levels {
		if l == "" || len(l) > 255 || l[0] == ' ' || l[len(l)-1] == ' ' {
			return "", fmt.Errorf("maildir: folder name %q: %w", name, store.ErrBadFolderName)
		}
		if i == 0 && isInbox(l) {
			return "", fmt.Errorf("maildir: folder name %q: no folders below INBOX: %w", name, store.ErrBadFolderName)
		}
		for j := 0; j < len(l); j++ {
			c := l[j]
			if c < 0x20 || c > 0x7e || c == '.' || c == '\\' || c == '%' {
				return "", fmt.Errorf("maildir: folder name %q: %w", name, store.ErrBadFolderName)
			}
		}
	}
	return "." + strings.Join(levels, "."), nil
}

// folderName is the inverse of folderDir; ok is false for a directory
// name that is not a folder we can name.
func folderName(dir string) (string, bool) {
	if len(dir) < 2 || dir[0] != '.' {
		return "", false
	}
	name := strings.ReplaceAll(dir[1:], ".", "/")
	if d, err := folderDir(name); err != nil || d != dir {
		return "", false
	}
	return name, true
}

// Folders implements store.Folders: INBOX, then the folders found, sorted.
// A user without a Maildir yet has INBOX only.
func (s *Store) Folders(ctx context.Context, user string) ([]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	b, err := s.openBox(user, false)
	if errors.Is(err, fs.ErrNotExist) {
		return []string{store.Inbox}, nil
	}
	if err != nil {
		return nil, err
	}
	defer b.close()
	var names []string
	err = b.do(func() error {
		ents, err := b.dir.Names()
		if err != nil {
			return fmt.Errorf("maildir: list folders: %w", err)
		}
		for _, e := range ents {
			name, ok := folderName(e)
			if !ok || !isDir(b.dir, e) {
				continue
			}
			names = append(names, name)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	slices.Sort(names)
	return append([]string{store.Inbox}, names...), nil
}

// isDir reports whether name in d is a directory (not a link to one).
func isDir(d *safefs.Dir, name string) bool {
	st, err := d.Lstat(name)
	return err == nil && st.Mode&unix.S_IFMT == unix.S_IFDIR
}

// CreateFolder implements store.Folders. The user's Maildir is made if
// needed; the folder gets cur/, new/, tmp/ and maildirfolder, all fsynced
// before it returns.
func (s *Store) CreateFolder(ctx context.Context, user, name string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if isInbox(name) {
		return fmt.Errorf("maildir: create INBOX: %w", store.ErrFolderExists)
	}
	dir, err := folderDir(name)
	if err != nil {
		return err
	}
	b, err := s.openBox(user, true)
	if err != nil {
		return err
	}
	defer b.close()
	return b.do(func() error {
		if err := b.dir.Mkdir(dir, 0o700); err != nil {
			if errors.Is(err, fs.ErrExist) {
				return fmt.Errorf("maildir: create folder %q: %w", name, store.ErrFolderExists)
			}
			return fmt.Errorf("maildir: create folder: %w", err)
		}
		fd, err := b.dir.OpenDir(dir)
		if err != nil {
			return fmt.Errorf("maildir: create folder: %w", err)
		}
		fb := &box{dir: fd, owner: b.owner}
		defer fb.close()
		if err := s.createSubs(fb); err != nil {
			return err
		}
		f, err := fd.OpenFile(maildirFolderFile, os.O_WRONLY|os.O_CREATE, 0o600)
		if err != nil {
			return fmt.Errorf("maildir: create folder: %w", err)
		}
		f.Close()
		if err := s.syncDir(fd); err != nil {
			return err
		}
		return s.syncDir(b.dir)
	})
}

// openFolderBox opens the directory of folder name (not INBOX) in user's
// Maildir, without creating anything. A missing folder is store.ErrNoFolder.
func (s *Store) openFolderBox(user, name string) (*box, error) {
	dir, err := folderDir(name)
	if err != nil {
		return nil, err
	}
	b, err := s.openBox(user, false)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("maildir: folder %q: %w", name, store.ErrNoFolder)
	}
	if err != nil {
		return nil, err
	}
	defer b.close()
	var fd *safefs.Dir
	err = b.do(func() (err error) {
		fd, err = b.dir.OpenDir(dir)
		return err
	})
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("maildir: folder %q: %w", name, store.ErrNoFolder)
	}
	if err != nil {
		return nil, fmt.Errorf("maildir: %w", err)
	}
	return &box{dir: fd, owner: b.owner}, nil
}

// OpenFolder implements store.Folders. A folder is locked and indexed as
// INBOX is (Open); a folder lacking cur/, new/ or tmp/ gets them.
func (s *Store) OpenFolder(ctx context.Context, user, name string) (store.Maildrop, error) {
	if isInbox(name) {
		return s.Open(ctx, user)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	fb, err := s.openFolderBox(user, name)
	if err != nil {
		return nil, err
	}
	md := &maildrop{s: s, dir: fb.path(), box: fb, beforeScan: s.beforeScan}
	err = fb.do(func() error {
		if _, err := fb.dir.Lstat("cur"); err != nil {
			if err := s.createSubs(fb); err != nil {
				return err
			}
		}
		return md.open(ctx)
	})
	if err != nil {
		fb.close()
		return nil, err
	}
	return md, nil
}

// DeliverFolder implements store.Folders: Deliver into an existing
// folder.
func (s *Store) DeliverFolder(ctx context.Context, user, name string, r io.Reader) error {
	if isInbox(name) {
		return s.Deliver(ctx, user, r)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	fb, err := s.openFolderBox(user, name)
	if err != nil {
		return err
	}
	defer fb.close()
	return fb.do(func() error { return s.deliverBox(ctx, fb, r) })
}

// DeleteFolder implements store.Folders. It takes the folder's lock, so a
// folder open in a session is not deleted (store.ErrInUse); renames the
// directory out of the folder namespace, durably, which is the moment the
// folder is gone; then removes the files. A crash during the removal
// leaves a directory named postoffice-deleted-..., which no client sees
// and the next DeleteFolder of the user removes.
func (s *Store) DeleteFolder(ctx context.Context, user, name string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	dir, err := folderDir(name)
	if err != nil {
		return err
	}
	fb, err := s.openFolderBox(user, name)
	if err != nil {
		return err
	}
	b, err := s.openBox(user, false)
	if err != nil {
		fb.close()
		return err
	}
	defer b.close()
	return b.do(func() error {
		defer fb.close()
		lf, err := openLockFile(fb.dir, lockName)
		if err != nil {
			return fmt.Errorf("maildir: lock: %w", err)
		}
		defer lf.Close()
		if err := lf.tryLock(); err != nil {
			if errors.Is(err, errLocked) {
				return store.ErrInUse
			}
			return fmt.Errorf("maildir: lock: %w", err)
		}
		trash := trashPrefix + uniqueName(time.Now(), s.host)
		if err := b.dir.Rename(dir, b.dir, trash); err != nil {
			return fmt.Errorf("maildir: delete folder: %w", err)
		}
		if err := s.syncDir(b.dir); err != nil {
			return err
		}
		s.sweepTrash(b.dir)
		return nil
	})
}

// sweepTrash removes the directories of deleted folders in d. Failures
// are logged: the folder is already gone for clients.
func (s *Store) sweepTrash(d *safefs.Dir) {
	names, err := d.Names()
	if err != nil {
		return
	}
	for _, n := range names {
		if strings.HasPrefix(n, trashPrefix) && isDir(d, n) {
			if err := removeTree(d, n, 3); err != nil {
				s.log.Warn("maildir: removing a deleted folder", "dir", d.Path(), "name", n, "err", err)
			}
		}
	}
}

// removeTree removes directory name in parent and what it holds, at most
// depth levels deep (a folder, its cur/, new/, tmp/, their files), never
// following a link.
func removeTree(parent *safefs.Dir, name string, depth int) error {
	d, err := parent.OpenDir(name)
	if err != nil {
		return err
	}
	names, err := d.Names()
	if err == nil {
		for _, n := range names {
			if isDir(d, n) {
				if depth <= 1 {
					err = fmt.Errorf("maildir: %s/%s: too deep", d.Path(), n)
					break
				}
				if err = removeTree(d, n, depth-1); err != nil {
					break
				}
			} else if err = d.Remove(n); err != nil {
				break
			}
		}
	}
	d.Close()
	if err != nil {
		return err
	}
	if err := unix.Unlinkat(parent.FD(), name, unix.AT_REMOVEDIR); err != nil {
		return &os.PathError{Op: "rmdir", Path: parent.Path() + "/" + name, Err: err}
	}
	return nil
}

// RenameFolder implements store.Folders. Subfolders move with the folder
// ("a" to "b" takes "a/x" to "b/x"), as IMAP RENAME does (RFC 3501
// §6.3.5). Every target is checked before anything moves; the renames
// themselves are one rename(2) per directory, fsynced at the end. A
// folder made by another agent between the check and the rename is not
// replaced: rename(2) refuses to replace a directory that is not empty,
// and a folder has cur/, new/ and tmp/.
func (s *Store) RenameFolder(ctx context.Context, user, from, to string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if isInbox(from) || isInbox(to) {
		return fmt.Errorf("maildir: rename INBOX: %w", store.ErrBadFolderName)
	}
	fromDir, err := folderDir(from)
	if err != nil {
		return err
	}
	toDir, err := folderDir(to)
	if err != nil {
		return err
	}
	if fromDir == toDir {
		return fmt.Errorf("maildir: rename %q onto itself: %w", from, store.ErrFolderExists)
	}
	b, err := s.openBox(user, false)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("maildir: folder %q: %w", from, store.ErrNoFolder)
	}
	if err != nil {
		return err
	}
	defer b.close()
	return b.do(func() error {
		if !isDir(b.dir, fromDir) {
			return fmt.Errorf("maildir: folder %q: %w", from, store.ErrNoFolder)
		}
		names, err := b.dir.Names()
		if err != nil {
			return fmt.Errorf("maildir: rename folder: %w", err)
		}
		type move struct{ from, to string }
		moves := []move{{fromDir, toDir}}
		for _, n := range names {
			if strings.HasPrefix(n, fromDir+".") {
				if _, ok := folderName(n); ok {
					moves = append(moves, move{n, toDir + n[len(fromDir):]})
				}
			}
		}
		for _, m := range moves {
			if _, err := b.dir.Lstat(m.to); err == nil {
				name, _ := folderName(m.to)
				return fmt.Errorf("maildir: rename onto %q: %w", name, store.ErrFolderExists)
			}
			if _, ok := folderName(m.to); !ok {
				return fmt.Errorf("maildir: rename to %q: %w", to, store.ErrBadFolderName)
			}
		}
		for _, m := range moves {
			if err := b.dir.Rename(m.from, b.dir, m.to); err != nil {
				s.syncDir(b.dir)
				return fmt.Errorf("maildir: rename folder: %w", err)
			}
		}
		return s.syncDir(b.dir)
	})
}
