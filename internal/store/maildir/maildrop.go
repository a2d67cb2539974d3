// This file holds the maildrop type: a locked snapshot of one Maildir.
// snapshot.go takes it (lock, scan, index), sizing.go sizes the messages
// the index did not know, and update.go serves it (open a message, commit
// the deletions of the UPDATE state, close).

package maildir

import (
	"errors"
	"os"
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
	wire bool // the file is the message's wire form (wireReady)
	// stuff, with wire, is where the lines that start with "." start:
	// decimal offsets separated by commas, "" for none. The stuffing dot
	// goes before each.
	stuff string
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
	beforeScan    func(sub string) // test hook: a reading of new/ and cur/ is about to read sub; nil in production

	// held are index entries the snapshot left out because the readings
	// of new/ and cur/ missed their files and never settled (scan): not
	// in this session, but kept in the index, with their UIDLs, for the
	// next one.
	held []heldEntry

	// appendFile is the state file AppendState last appended to, kept
	// open until the session ends or the file is replaced (WriteState):
	// the journal gets a line per RETR, and opening the file for each
	// (as the Maildir's owner, without following links) cost more than
	// the write.
	appendFile *os.File
	appendName string
}

// heldEntry is an index entry left out of the snapshot; at is the number
// of snapshot entries that come before it in the index.
type heldEntry struct {
	at int
	e  entry
}

// withHeld returns the index entries of a snapshot: the entries keep
// reports true for, with held put back in their places.
func withHeld(entries []entry, held []heldEntry, keep func(i int) bool) []entry {
	if len(held) == 0 && keep == nil {
		return entries
	}
	out := make([]entry, 0, len(entries)+len(held))
	for i, e := range entries {
		for len(held) > 0 && held[0].at <= i {
			out = append(out, held[0].e)
			held = held[1:]
		}
		if keep == nil || keep(i) {
			out = append(out, e)
		}
	}
	for _, h := range held {
		out = append(out, h.e)
	}
	return out
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
