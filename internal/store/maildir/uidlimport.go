package maildir

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/postoffice-mail/postoffice/internal/store"
)

// Importing UIDLs from the server postoffice replaces.
//
// A site that moves from another POP3 server must keep the UIDLs its
// clients saw (RFC 1939 §7: a client that keeps mail on the server
// recognises what it already has by UIDL), or every client downloads the
// whole maildrop again. Where the old server's UIDLs cannot be derived
// from the Maildir (Dovecot with another pop3_uidl_format, Courier, a
// server on other files altogether), "postoffice migrate uidl" reads them
// from the old server over POP3, matches each old message to a local one,
// and records them here, in postoffice-index, where Open reads them: an
// imported UIDL is then an ordinary recorded UIDL, served as such.
//
// The rule that keeps this safe: every Open records a message's UIDL in
// the index before any client can see it, so a message the index already
// lists may have been shown to a client under that UIDL, and changing it
// would make that client download it again. So ImportUIDLs sets the UIDL
// of a message the index does not list yet freely, leaves one that
// already has the imported UIDL alone (a second run changes nothing), and
// refuses to change one that the index lists with another UIDL unless
// force is set (the administrator knows no client has connected to
// postoffice yet). It takes the maildrop lock for the whole run, so no
// POP3 session sees a half-imported maildrop.
//
// Messages are written to the index in the old server's order, then the
// unmatched ones the index listed before, in their order: message numbers
// then agree with the old server's (RFC 1939 does not require it, but a
// cut-over that changes nothing a client can see is the easiest one to
// verify). An unmatched message the index did not list is left out of it,
// so it stays unrecorded, and the next Open gives it the UIDL it would
// have had (derived from its name or read from dovecot-uidlist); a later
// import can still set it without force.

// UIDLAssigner is the importer's part of ImportUIDLs. It is given the
// maildrop's messages, in their current order, and a way to read each
// one; it returns the local messages it matched (indexes into msgs), in
// the old server's order, and the UIDL each is to have (uidls[k] for
// matched[k]).
type UIDLAssigner = func(msgs []store.Message, open func(ctx context.Context, i int) (io.ReadCloser, error)) (matched []int, uidls []string, err error)

// ImportUIDLs locks user's maildrop, lets assign match its messages, and
// records the UIDLs assign returns (see the rules above). With dryRun it
// records nothing. refused lists the indexes (into the messages assign
// was given) whose recorded UIDL differs from the imported one and was
// kept because force was not set. An imported UIDL that is not 1-70
// characters of 0x21-0x7E, or that would make two messages share a UIDL,
// is an error and nothing is recorded.
func (s *Store) ImportUIDLs(ctx context.Context, user string, force, dryRun bool, assign UIDLAssigner) (refused []int, err error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	b, err := s.openBox(user, true)
	if err != nil {
		return nil, err
	}
	md := &maildrop{s: s, dir: b.path(), box: b}
	var prior map[string]string // key -> UIDL the index recorded
	var priorKeys []string      // the index's keys, in its order
	var prev lockState
	err = b.do(func() error {
		lf, err := openLockFile(b.dir, lockName)
		if err != nil {
			return fmt.Errorf("maildir: lock: %w", err)
		}
		if err := lf.tryLock(); err != nil {
			lf.Close()
			if errors.Is(err, errLocked) {
				return store.ErrInUse
			}
			return fmt.Errorf("maildir: lock: %w", err)
		}
		md.lock = lf
		prev = readLockState(lf)
		idx, err := readIndexFile(b.dir)
		if errors.Is(err, errCorrupt) {
			s.log.Warn("maildir: rebuilding corrupt index", "dir", md.dir, "err", err)
			idx = nil
		} else if err != nil {
			return err
		}
		prior = make(map[string]string, len(idx.entries()))
		for _, e := range idx.entries() {
			prior[e.key] = e.uidl
			priorKeys = append(priorKeys, e.key)
		}
		// The index as read is not used after this, so scan may keep
		// strings into it but its buffer is not released (nil buf).
		entries, held, _, err := md.scan(ctx, idx)
		if err != nil {
			return err
		}
		md.entries, md.held = entries, held
		md.msgs = make([]store.Message, len(entries))
		for i, e := range entries {
			md.msgs[i] = store.Message{UID: e.uidl, Size: e.size}
		}
		return nil
	})
	if err != nil {
		if md.lock != nil {
			md.lock.Close()
		}
		b.close()
		return nil, err
	}
	defer md.Close()

	matched, uidls, err := assign(md.msgs, md.Open)
	if err != nil {
		return nil, err
	}
	if len(matched) != len(uidls) {
		return nil, fmt.Errorf("maildir: import: %d messages but %d UIDLs", len(matched), len(uidls))
	}
	md.mu.Lock()
	entries, held := md.entries, md.held
	md.mu.Unlock()

	final := make([]string, len(entries)) // each message's UIDL after the import
	for i, e := range entries {
		final[i] = e.uidl
		if u, ok := prior[e.key]; ok {
			final[i] = u
		}
	}
	inOrder := make([]bool, len(entries))
	changed := false
	for k, i := range matched {
		if i < 0 || i >= len(entries) || inOrder[i] {
			return nil, fmt.Errorf("maildir: import: bad or repeated message index %d", i)
		}
		inOrder[i] = true
		u := uidls[k]
		if !validUIDL(u) {
			return nil, fmt.Errorf("maildir: import: UIDL %q is not 1-70 characters of 0x21-0x7E (RFC 1939 §7)", u)
		}
		old, recorded := prior[entries[i].key]
		switch {
		case recorded && old == u:
		case recorded && !force:
			refused = append(refused, i)
		default:
			final[i] = u
			changed = true
		}
	}
	seen := make(map[string]int, len(final))
	for i, u := range final {
		if j, dup := seen[u]; dup {
			return nil, fmt.Errorf("maildir: import: UIDL %q would be shared by two messages (%s and %s)", u, entries[j].key, entries[i].key)
		}
		seen[u] = i
	}
	// Messages the scan held out of the snapshot (their files kept moving
	// while it read the directories) keep their recorded UIDLs and their
	// index lines.
	for _, h := range held {
		if j, dup := seen[h.e.uidl]; dup {
			return nil, fmt.Errorf("maildir: import: UIDL %q would be shared by two messages (%s and %s)", h.e.uidl, entries[j].key, h.e.key)
		}
	}
	next := make([]entry, 0, len(entries))
	for _, i := range matched {
		e := entries[i]
		e.uidl = final[i]
		next = append(next, e)
	}
	for i, e := range entries {
		if inOrder[i] {
			continue
		}
		if _, recorded := prior[e.key]; recorded {
			next = append(next, e)
		}
	}
	for _, h := range held {
		next = append(next, h.e)
	}
	if !changed {
		// Same UIDLs: write only if the order or the set of recorded
		// messages changed.
		changed = len(next) != len(priorKeys)
		for k := 0; !changed && k < len(next); k++ {
			changed = next[k].key != priorKeys[k]
		}
	}
	if dryRun || !changed {
		return refused, nil
	}
	err = b.do(func() error {
		if _, err := s.writeIndexSum(b.dir, next); err != nil {
			return err
		}
		// The index changed under the lock file's stamps: forget them,
		// so the next Open reads the directories and finds the messages
		// left out of the index.
		writeLockState(md.lock, lockState{sweep: prev.sweep})
		return nil
	})
	return refused, err
}
