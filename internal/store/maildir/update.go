package maildir

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"

	"github.com/postoffice-mail/postoffice/internal/store"
)

// maxRelocate bounds how often Commit reads new/ and cur/ again for one
// message that keeps moving under it.
const maxRelocate = 3

// Open returns message i as stored. If another agent (Dovecot's IMAP, a
// mail client on the Maildir) has moved it from new/ to cur/ or changed its
// flags since the snapshot, it is found again by its key; if it is gone,
// Open returns store.ErrNoMessage.
func (md *maildrop) Open(ctx context.Context, i int) (io.ReadCloser, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	md.mu.Lock()
	defer md.mu.Unlock()
	if err := md.usable(); err != nil {
		return nil, err
	}
	if i < 0 || i >= len(md.msgs) {
		return nil, fmt.Errorf("maildir: no message %d", i)
	}
	for attempt := 0; ; attempt++ {
		e := md.entry(i)
		if e.sub == "" {
			return nil, store.ErrNoMessage
		}
		f, err := md.openMessage(e)
		if err == nil {
			return f, nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("maildir: open message: %w", err)
		}
		if attempt > 0 {
			return nil, store.ErrNoMessage
		}
		if err := md.relocate(); err != nil {
			return nil, err
		}
	}
}

// openMessage opens e's file, as the Maildir's owner.
func (md *maildrop) openMessage(e entry) (io.ReadCloser, error) {
	d, err := md.box.sub(e.sub)
	if err != nil {
		return nil, err
	}
	wireSize := int64(-1)
	if e.wire {
		wireSize = e.size
	}
	if !md.box.switches() {
		return openMessage(d, e.key+e.info, wireSize, e.stuff) // no closure to allocate per message
	}
	var f io.ReadCloser
	err = md.box.do(func() (err error) {
		f, err = openMessage(d, e.key+e.info, wireSize, e.stuff)
		return err
	})
	return f, err
}

// makeEntries makes md.entries from md.idx, if the snapshot is still the index
// as read, so that the messages' locations can change. The caller holds
// md.mu.
func (md *maildrop) makeEntries() {
	if md.entries == nil && md.idx != nil {
		md.entries, md.idx = md.idx.entries(), nil
	}
}

// Commit removes the messages with the given indexes (RFC 1939 §6, the
// UPDATE state), fsyncs the directories and rewrites the index without them,
// all under the lock. A message already gone counts as removed. On partial
// failure it removes what it can and returns the errors; a failed index
// write (a full disk) is only logged, since the removals are durable. A context already
// done when Commit starts deletes nothing.
func (md *maildrop) Commit(ctx context.Context, deleted []int) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	md.mu.Lock()
	defer md.mu.Unlock()
	if err := md.usable(); err != nil {
		return err
	}
	if md.committed {
		return errors.New("maildir: commit called twice")
	}
	for _, i := range deleted {
		if i < 0 || i >= len(md.msgs) {
			return fmt.Errorf("maildir: commit: no message %d", i)
		}
	}
	md.committed = true
	if len(deleted) == 0 {
		return nil
	}
	return md.box.do(func() error { return md.commit(deleted) })
}

// commit is Commit under the lock, as the Maildir's owner.
func (md *maildrop) commit(deleted []int) error {
	md.makeEntries()
	removed := make([]bool, len(md.entries))
	var errs []error
	touched := map[string]bool{}
	for _, i := range deleted {
		if removed[i] {
			continue
		}
		// A miss means another agent moved or removed the file since we
		// last looked, possibly just after a relocate: look again. A file
		// no lookup finds was removed; one that only moved must be
		// unlinked, or it would come back in the next session.
		for attempt := 0; ; attempt++ {
			e := &md.entries[i]
			if e.sub == "" {
				removed[i] = true // removed by another agent
				break
			}
			d, err := md.box.sub(e.sub)
			if err == nil {
				err = d.Remove(e.key + e.info)
			}
			if err == nil {
				removed[i] = true
				touched[e.sub] = true
				break
			}
			if !errors.Is(err, fs.ErrNotExist) {
				errs = append(errs, fmt.Errorf("maildir: remove message %d: %w", i, err))
				break
			}
			if attempt == maxRelocate {
				errs = append(errs, fmt.Errorf("maildir: remove message %d: still moving after %d lookups", i, attempt))
				break
			}
			if err := md.relocate(); err != nil {
				errs = append(errs, err)
				break
			}
		}
	}
	for _, sub := range []string{"new", "cur"} {
		if touched[sub] {
			d, err := md.box.sub(sub)
			if err == nil {
				err = md.s.syncDir(d)
			}
			if err != nil {
				errs = append(errs, err)
			}
		}
	}
	// The held entries are not in this session; they stay in the index.
	keep := withHeld(md.entries, md.held, func(i int) bool { return !removed[i] })
	if _, err := md.s.writeIndexSum(md.box.dir, keep); err != nil {
		// The removals are durable; the index is only a cache, and the
		// next Open sees from the directories' stamps that it is stale
		// and reads them again. Failing the commit would tell the client
		// its deleted messages are still there, which they are not.
		md.s.log.Warn("maildir: index not updated after commit; the next open rescans", "dir", md.dir, "err", err)
	}
	return errors.Join(errs...)
}

// Close releases the lock: closing the lock file's descriptor drops the
// flock. It deletes nothing (RFC 1939 §6: only UPDATE deletes).
func (md *maildrop) Close() error {
	md.mu.Lock()
	defer md.mu.Unlock()
	if md.closed {
		return nil
	}
	md.closed = true
	md.closeAppend()
	if md.idx != nil {
		// Nothing uses the index any more (Open and Commit check closed):
		// its buffer can serve the next session.
		md.idx.release()
		md.idx = nil
	}
	err := md.lock.Close()
	md.box.close()
	if err != nil {
		return fmt.Errorf("maildir: unlock: %w", err)
	}
	return nil
}

// usable returns an error unless the maildrop is open with its directory
// at hand: it reopens the Maildir after Idle (box.ensure). md.mu is held.
func (md *maildrop) usable() error {
	if md.closed {
		return errors.New("maildir: maildrop closed")
	}
	return md.box.ensure()
}

// Idle implements store.Idler: while the session waits for its client,
// the maildrop gives back every descriptor but its lock's (the Maildir's
// directory, new/, cur/, the journal), so that an idle session holds two
// (with its socket). The next call opens the directory again, without
// following links, and goes on only if it is the same directory.
func (md *maildrop) Idle() {
	md.mu.Lock()
	defer md.mu.Unlock()
	if md.closed {
		return
	}
	md.closeAppend()
	md.box.release()
}
