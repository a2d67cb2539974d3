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
	type place struct{ sub, info string }
	seen := make([]place, len(md.entries))
	settled := false
	for scan := 1; scan <= maxScans && !settled; scan++ {
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
				if i, ok := pos[string(key)]; ok {
					// cur/ is read after new/, and files move from
					// new/ to cur/: the last sighting is the newest.
					seen[i] = place{sub, string(info)}
				}
			})
			if err != nil && !errors.Is(err, fs.ErrNotExist) {
				return err
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
		settled = !missing || (scan > 1 && (berr != nil || aerr != nil || before == after))
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
