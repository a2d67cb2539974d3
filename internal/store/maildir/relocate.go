package maildir

import (
	"errors"
	"io/fs"
)

// maxScans bounds how often one relocate reads new/ and cur/ while they
// keep changing under it.
const maxScans = 4

// relocate reads new/ and cur/ again and updates where every entry is,
// after another agent (Dovecot's IMAP, a mail client on the Maildir) moved
// files from new/ to cur/ or renamed them to change their flags. The
// caller holds md.mu.
//
// An entry is marked gone (sub "") only when a settled reading missed it.
// POSIX leaves unspecified whether readdir returns an entry renamed while
// the directory is being read, and ext4 returns entries in hash order, so
// a file Dovecot renames during the reading (cur/K:2, to cur/K:2,S) can be
// missed under both names. Taking that miss for a removal would make
// Commit leave a message the client deleted, to come back in the next
// session and stay visible over IMAP. So when something is missing, the
// directories are read again, as Dovecot's maildir sync does when a
// directory changed while it was read: the reading is settled when a
// second or later one starts and ends with the same stamps of new/ and
// cur/ (inode, modification and change times, statDir), the first one
// alone is not trusted since two changes within one clock tick leave the
// same times. An entry seen by any reading is found, where it was last
// seen; after maxScans unsettled readings, an entry no reading saw keeps
// its old place, so Open answers store.ErrNoMessage and Commit's unlink
// misses again and ends, bounded, with an error rather than a guess.
func (md *maildrop) relocate() error {
	md.makeEntries()
	pos := make(map[string]int, len(md.entries))
	for i, e := range md.entries {
		pos[e.key] = i
	}
	seen := make([]place, len(md.entries))
	settled, err := md.locate(0, func(key []byte) (int, bool) {
		i, ok := pos[string(key)]
		return i, ok
	}, seen)
	if err != nil {
		return err
	}
	for i, p := range seen {
		switch {
		case p.sub != "":
			md.entries[i].sub, md.entries[i].info = p.sub, p.info
		case settled:
			md.entries[i].sub = ""
		}
	}
	if md.afterRelocate != nil {
		md.afterRelocate()
	}
	return nil
}

// place is where a reading of new/ and cur/ saw a message's file: its
// directory and info part; sub is "" when no reading saw it.
type place struct{ sub, info string }

// locate reads new/ and cur/ until the reading settles (see relocate), at
// most maxScans readings counting the done ones the caller already made,
// and records in seen[i] where the last reading that saw it found the
// file of the message lookup maps to i (lookup's argument is a file name
// up to its info part). It reports whether the last reading settled:
// every message was seen, or a second or later reading missed some with
// the stamps of new/ and cur/ the same before and after it. A message
// that no reading saw is then gone; without settling, nothing can be said
// of it.
func (md *maildrop) locate(done int, lookup func(key []byte) (int, bool), seen []place) (settled bool, err error) {
	for scan := done + 1; scan <= maxScans; scan++ {
		before, berr := md.dirStamps()
		for _, sub := range []string{"new", "cur"} {
			if md.beforeScan != nil {
				md.beforeScan(sub)
			}
			err := scanDir(md.box.dir, sub, func(name []byte, typ fileType) {
				if typ == typeDir || !usableName(name) {
					return
				}
				key, info := splitName(name)
				if i, ok := lookup(key); ok {
					// cur/ is read after new/, and files move from
					// new/ to cur/: the last sighting is the newest.
					seen[i] = place{sub, string(info)}
				}
			})
			if err != nil && !errors.Is(err, fs.ErrNotExist) {
				return false, err
			}
		}
		after, aerr := md.dirStamps()
		missing := false
		for _, p := range seen {
			if p.sub == "" {
				missing = true
				break
			}
		}
		// Without stamps (a system that has none, a directory gone), two
		// readings that both missed an entry settle it.
		if !missing || (scan > 1 && (berr != nil || aerr != nil || before == after)) {
			return true, nil
		}
	}
	return false, nil
}

// dirStamps returns the stamps of new/ and cur/.
func (md *maildrop) dirStamps() ([2]dirStamp, error) {
	var st [2]dirStamp
	var err error
	for i, sub := range []string{"new", "cur"} {
		if st[i], err = statDir(md.box.dir, sub); err != nil {
			return st, err
		}
	}
	return st, nil
}
