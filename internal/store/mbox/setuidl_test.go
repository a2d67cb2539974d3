//go:build linux

package mbox

import (
	"context"
	"fmt"
	"io"

	"github.com/postoffice-mail/postoffice/internal/store"
)

// ChooseUIDL decides the UIDL of message i (0-based, in maildrop order) of
// an mbox: it returns the new UIDL and true, or false to leave the
// message's UIDL as it is. open reads the message as the POP3 server sends
// it (un-escaped, LF line ends); it must be closed.
type ChooseUIDL func(i int, m store.Message, open func() (io.ReadCloser, error)) (uidl string, set bool, err error)

// SetUIDLs is a test helper (the command uses ImportUIDLs, which adds
// the dry-run and --force rules): it replaces UIDLs in user's mbox, for a migration that learnt from
// the old server which UIDL its clients saw for each message (the
// `postoffice migrate uidl` command). It takes the session lock
// (store.ErrInUse while a POP3 session holds it), calls choose for every
// message, and records the chosen UIDLs in the index, replaced atomically
// and durably before it returns; a later rescan keeps them (messages are
// matched by their From_ line and header). Every UIDL must be 1-70
// characters of 0x21-0x7E and, after the change, unique in the mbox (RFC
// 1939 §7); otherwise, or when choose fails, nothing is changed and the
// error is returned. It returns the number of UIDLs that changed.
func (s *Store) SetUIDLs(ctx context.Context, user string, choose ChooseUIDL) (int, error) {
	m, err := s.Open(ctx, user)
	if err != nil {
		return 0, err
	}
	md := m.(*maildrop)
	defer md.Close()
	chosen := map[int]string{}
	for i, msg := range md.infos {
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
		if err := validUID(uidl); err != nil {
			return 0, fmt.Errorf("mbox: UIDL %q of message %d: %w", uidl, i+1, err)
		}
		chosen[i] = uidl
	}
	if len(chosen) == 0 {
		return 0, nil
	}
	msgs := append([]msg(nil), md.msgs...)
	for i, u := range chosen {
		msgs[i].uid = u
	}
	seen := make(map[string]int, len(msgs))
	for i, m := range msgs {
		if j, dup := seen[m.uid]; dup {
			return 0, fmt.Errorf("mbox: UIDL %q would be both message %d's and %d's", m.uid, j+1, i+1)
		}
		seen[m.uid] = i
	}
	x := *md.x
	x.msgs = msgs
	if err := s.writeIndex(md.b, &x); err != nil {
		return 0, err
	}
	return len(chosen), nil
}
