// This file holds the maildrop type: a locked snapshot of one Maildir.
// snapshot.go takes it (lock, scan, index), sizing.go sizes the messages
// the index did not know, and update.go serves it (open a message, commit
// the deletions of the UPDATE state, close).

package maildir

import (
	"errors"
	"sync"
	"syscall"

	"github.com/postoffice-mail/postoffice/internal/store"
)

// entry is one message of a snapshot, and one line of the index (whose
// entries become the snapshot as they are when nothing changed).
type entry struct {
	key  string // base name, without the info part
	sub  string // "new" or "cur"; "" once known to be gone (or not known)
	info string // current info part (":2,S"), file name is key+info
	uidl string
	size int64
}

// maildrop is a locked snapshot of one Maildir.
type maildrop struct {
	s    *Store
	dir  string // the Maildir's path, for logs
	box  *box   // the Maildir, opened without following links
	lock *lockFile

	mu sync.Mutex // guards entries, idx, closed, committed
	// entries is the snapshot with where each message is; it is nil while
	// the snapshot is idx as read (the warm Open), and made from idx when
	// the messages' locations must change (makeEntries).
	entries   []entry
	idx       *index
	msgs      []store.Message
	closed    bool
	committed bool

	afterRelocate func()           // test hook, nil in production
	beforeScan    func(sub string) // test hook: relocate is about to read sub; nil in production
}

var _ store.Maildrop = (*maildrop)(nil)

// Messages returns the snapshot taken by Open.
func (md *maildrop) Messages() []store.Message { return md.msgs }

// entry returns message i of the snapshot. The caller holds md.mu.
func (md *maildrop) entry(i int) entry {
	if md.entries == nil {
		return md.idx.entry(i)
	}
	return md.entries[i]
}

// noSpace reports whether err says the file system or the user's quota is
// full.
func noSpace(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)
}
