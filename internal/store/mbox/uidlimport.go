package mbox

import (
	"context"
	"fmt"
	"io"

	"github.com/postoffice-mail/postoffice/internal/store"
)

// ImportUIDLs records UIDLs read from the server postoffice replaces (the
// `postoffice migrate uidl` command, package uidlimport), under the rules
// of the Maildir store's ImportUIDLs: every Open records a message's UIDL
// in the index before a client can see it, so a message whose UIDL the
// index listed before this call may have been shown to a client under it
// and is changed only with force (refused lists it otherwise); a message
// the index did not list, or that already has the imported UIDL, is set
// freely. It holds the session lock for the whole run (store.ErrInUse
// while a POP3 session holds it), so no session sees a half-imported
// maildrop.
//
// An mbox keeps its order: messages are numbered as they stand in the
// file, which for an old server on the same file (Dovecot, popa3d,
// qpopper) is its order too, so matched only says which messages get
// which UIDL. Every UIDL must be 1-70 characters of 0x21-0x7E and unique
// in the mbox after the change (RFC 1939 §7), or nothing is recorded and
// the error is returned. With dryRun nothing is recorded.
func (s *Store) ImportUIDLs(ctx context.Context, user string, force, dryRun bool,
	assign func(msgs []store.Message, open func(ctx context.Context, i int) (io.ReadCloser, error)) (matched []int, uidls []string, err error),
) (refused []int, err error) {
	m, err := s.Open(ctx, user)
	if err != nil {
		return nil, err
	}
	md := m.(*maildrop)
	defer md.Close()
	recorded := make(map[string]bool, len(md.prior))
	for _, p := range md.prior {
		recorded[p.uid] = true
	}
	matched, uidls, err := assign(md.infos, md.Open)
	if err != nil {
		return nil, err
	}
	if len(matched) != len(uidls) {
		return nil, fmt.Errorf("mbox: import: %d messages but %d UIDLs", len(matched), len(uidls))
	}
	msgs := append([]msg(nil), md.msgs...)
	seenIndex := make(map[int]bool, len(matched))
	changed := false
	for k, i := range matched {
		if i < 0 || i >= len(msgs) || seenIndex[i] {
			return nil, fmt.Errorf("mbox: import: bad or repeated message index %d", i)
		}
		seenIndex[i] = true
		u := uidls[k]
		if err := validUID(u); err != nil {
			return nil, fmt.Errorf("mbox: import: UIDL %q of message %d: %w", u, i+1, err)
		}
		switch cur := msgs[i].uid; {
		case cur == u:
		case recorded[cur] && !force:
			refused = append(refused, i)
		default:
			msgs[i].uid = u
			changed = true
		}
	}
	seen := make(map[string]int, len(msgs))
	for i, m := range msgs {
		if j, dup := seen[m.uid]; dup {
			return nil, fmt.Errorf("mbox: import: UIDL %q would be both message %d's and %d's", m.uid, j+1, i+1)
		}
		seen[m.uid] = i
	}
	if dryRun || !changed {
		return refused, nil
	}
	x := *md.x
	x.msgs = msgs
	return refused, s.writeIndex(md.b, &x)
}
