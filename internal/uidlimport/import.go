package uidlimport

import (
	"context"
	"io"

	"github.com/postoffice-mail/postoffice/internal/store"
)

// Target is a store that can record imported UIDLs. The Maildir store
// implements it (maildir.Store.ImportUIDLs, which documents when a UIDL
// may be changed): assign is called with the maildrop locked and returns
// the matched local messages in the old server's order with their UIDLs;
// refused are those whose UIDL the store kept because a client may have
// seen it and force was not set.
type Target interface {
	ImportUIDLs(ctx context.Context, user string, force, dryRun bool,
		assign func(msgs []store.Message, open func(ctx context.Context, i int) (io.ReadCloser, error)) (matched []int, uidls []string, err error),
	) (refused []int, err error)
}

// Options tune Import.
type Options struct {
	// Force changes UIDLs the store already recorded (a client of
	// postoffice may have seen them). Only for a maildrop no client has
	// read from postoffice yet.
	Force bool
	// DryRun matches and reports, and records nothing.
	DryRun bool
}

// Report is what Import did for one user.
type Report struct {
	User      string         `json:"user"`
	Old       int            `json:"old"`       // messages on the old server
	Local     int            `json:"local"`     // messages in the local maildrop
	Matched   int            `json:"matched"`   // old messages matched
	Changed   int            `json:"changed"`   // UIDLs recorded or changed (would be, with DryRun)
	Unchanged int            `json:"unchanged"` // matched messages that already had the old UIDL
	Unmatched []OldMessage   `json:"unmatched"` // old messages with no local copy
	Refused   []Refusal      `json:"refused"`   // recorded UIDLs kept (see Options.Force)
	LocalOnly []LocalMessage `json:"local_only"`
	DryRun    bool           `json:"dry_run"`
}

// Refusal is a matched message whose recorded UIDL was kept.
type Refusal struct {
	OldUIDL   string `json:"old_uidl"`
	LocalUIDL string `json:"local_uidl"`
}

// OK reports whether every old message was matched and given its UIDL:
// the maildrop can be served without any client downloading again.
func (r Report) OK() bool { return len(r.Unmatched) == 0 && len(r.Refused) == 0 }

// Import matches the old server's messages (from ReadOld) with user's
// maildrop in t and records their UIDLs.
func Import(ctx context.Context, t Target, user string, old []OldMessage, opts Options) (Report, error) {
	rep := Report{User: user, Old: len(old), DryRun: opts.DryRun}
	var pairs []Pair
	assign := func(msgs []store.Message, open func(context.Context, int) (io.ReadCloser, error)) ([]int, []string, error) {
		local, err := ReadLocal(ctx, msgs, open)
		if err != nil {
			return nil, nil, err
		}
		rep.Local = len(local)
		pairs, rep.Unmatched, rep.LocalOnly = Match(old, local)
		idx := make([]int, len(pairs))
		uidls := make([]string, len(pairs))
		for k, p := range pairs {
			idx[k], uidls[k] = p.Local.Index, p.Old.UIDL
		}
		return idx, uidls, nil
	}
	refused, err := t.ImportUIDLs(ctx, user, opts.Force, opts.DryRun, assign)
	if err != nil {
		return rep, err
	}
	rep.Matched = len(pairs)
	kept := make(map[int]bool, len(refused))
	for _, i := range refused {
		kept[i] = true
	}
	for _, p := range pairs {
		switch {
		case kept[p.Local.Index]:
			rep.Refused = append(rep.Refused, Refusal{OldUIDL: p.Old.UIDL, LocalUIDL: p.Local.UIDL})
		case p.Local.UIDL == p.Old.UIDL:
			rep.Unchanged++
		default:
			rep.Changed++
		}
	}
	return rep, nil
}
