package maildir

import (
	"context"
	"fmt"
	"io"

	"github.com/postoffice-mail/postoffice/internal/store"
)

// ChooseUIDL decides the UIDL of message i (0-based, in maildrop order) of
// a maildrop: it returns the new UIDL and true, or false to leave the
// message's UIDL as it is. open reads the message as the POP3 server
// sends it (LF line ends as stored), for a caller that matches messages
// by content; it must be closed.
type ChooseUIDL func(i int, m store.Message, open func() (io.ReadCloser, error)) (uidl string, set bool, err error)

// SetUIDLs is a test helper (the command uses ImportUIDLs, which adds
// the dry-run and --force rules): it replaces UIDLs in user's maildrop, for a migration that learnt
// from the old server which UIDL its clients saw for each message (the
// `postoffice migrate uidl` command). It takes the maildrop's lock
// (store.ErrInUse while a POP3 session holds it), calls choose for every
// message, and records the chosen UIDLs in postoffice-index, replaced
// atomically and durably before it returns; from then on they are served
// and never change, as a UIDL read from dovecot-uidlist. Every UIDL must
// be 1-70 characters of 0x21-0x7E and, after the change, unique in the
// maildrop (RFC 1939 §7); otherwise, or when choose fails, nothing is
// changed and the error is returned. It returns the number of UIDLs that
// changed.
func (s *Store) SetUIDLs(ctx context.Context, user string, choose ChooseUIDL) (int, error) {
	m, err := s.Open(ctx, user)
	if err != nil {
		return 0, err
	}
	md := m.(*maildrop)
	defer md.Close()
	chosen := map[int]string{}
	for i, msg := range md.msgs {
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		open := func() (io.ReadCloser, error) { return md.Open(ctx, i) }
		uidl, set, err := choose(i, msg, open)
		if err != nil {
			return 0, err
		}
		if !set || uidl == msg.UID {
			continue
		}
		if !validUIDL(uidl) {
			return 0, fmt.Errorf("maildir: UIDL %q of message %d: not 1-70 characters of 0x21-0x7E", uidl, i+1)
		}
		chosen[i] = uidl
	}
	if len(chosen) == 0 {
		return 0, nil
	}
	// The entries as they are now: reading a message may have found it
	// moved (new/ to cur/) and updated where it is.
	md.mu.Lock()
	entries := md.entries
	if entries == nil {
		entries = md.idx.entries()
	}
	entries = append([]entry(nil), entries...)
	md.mu.Unlock()
	for i, u := range chosen {
		entries[i].uidl = u
	}
	seen := make(map[string]int, len(entries))
	for i, e := range entries {
		if j, dup := seen[e.uidl]; dup {
			return 0, fmt.Errorf("maildir: UIDL %q would be both message %d's and %d's", e.uidl, j+1, i+1)
		}
		seen[e.uidl] = i
	}
	err = md.box.do(func() error {
		_, err := s.writeIndexSum(md.box.dir, entries)
		return err
	})
	if err != nil {
		return 0, err
	}
	return len(chosen), nil
}
