// Package uidlimport takes the UIDLs of a live POP3 server over to
// postoffice's store, and verifies a cut-over from one server to another.
//
// RFC 1939 §7: a client that leaves mail on the server ("keep") knows which
// messages it has by their unique-id listing (UIDL). A new server that
// shows other UIDLs for the same messages makes every such client download
// the whole maildrop again. Import logs in to the old server, reads UIDL,
// LIST and each message's header (TOP n 0), matches every old message to a
// local one by its header hash (HeaderHash) and size, and has the store
// record the old UIDLs (Target). Verify compares two servers, or a server
// and the store, message by message.
//
// Matching follows Dovecot's pop3-migration plugin: the Message-ID alone
// is not enough (missing ids, and duplicates of one message delivered
// twice), so the whole header is hashed, with the fields servers rewrite
// left out. Messages with the same hash are paired in order, and a pair
// must also agree on size: exactly, or by the 2 octets of a final CRLF
// that one server counts for a message stored without a final newline and
// another does not (and without the state fields an mbox server writes into
// the header and hides, such as Dovecot's X-UID).
package uidlimport

import (
	"context"
	"fmt"
	"io"

	"github.com/postoffice-mail/postoffice/internal/store"
	"github.com/postoffice-mail/postoffice/pop3"
)

// OldMessage is one message of the old server.
type OldMessage struct {
	Num  int    `json:"num"`  // message number on the old server
	UIDL string `json:"uidl"` // its UIDL there
	Size int64  `json:"size"` // its LIST size there
	Hash string `json:"-"`    // HeaderHash of its TOP n 0
	// state is the CRLF size of the mbox state fields in its header
	// (stateHeaders), left out of the size Match compares.
	state int64
}

// LocalMessage is one message of the local maildrop.
type LocalMessage struct {
	Index int    `json:"-"`    // index into the maildrop's messages
	UIDL  string `json:"uidl"` // the UIDL postoffice gives it now
	Size  int64  `json:"size"`
	Hash  string `json:"-"`
	state int64  // as OldMessage.state
}

// ReadOld reads the old server's maildrop over c, which is logged in:
// UIDL, LIST and, for each message, the header with TOP n 0 (RFC 1939
// §7). A server without UIDL or TOP cannot be imported from, and says so.
// A message listed by one command and not the other (the server changed
// between them) is an error: run again.
func ReadOld(ctx context.Context, c *pop3.Client) ([]OldMessage, error) {
	uids, err := c.UIDL(ctx)
	if err != nil {
		return nil, fmt.Errorf("UIDL: %w", err)
	}
	list, err := c.List(ctx)
	if err != nil {
		return nil, fmt.Errorf("LIST: %w", err)
	}
	if len(uids) != len(list) {
		return nil, fmt.Errorf("the old server lists %d messages with UIDL and %d with LIST", len(uids), len(list))
	}
	sizes := make(map[int]int64, len(list))
	for _, l := range list {
		sizes[l.Num] = l.Size
	}
	out := make([]OldMessage, 0, len(uids))
	seen := make(map[string]bool, len(uids))
	for _, u := range uids {
		size, ok := sizes[u.Num]
		if !ok {
			return nil, fmt.Errorf("message %d has a UIDL but no LIST line", u.Num)
		}
		if seen[u.UID] {
			// RFC 1939 §7: unique within the maildrop. Importing a
			// repeated one would give two local messages one UIDL.
			return nil, fmt.Errorf("the old server gives UIDL %q to two messages", u.UID)
		}
		seen[u.UID] = true
		body, err := c.Top(ctx, u.Num, 0)
		if err != nil {
			return nil, fmt.Errorf("TOP %d 0: %w", u.Num, err)
		}
		hash, state, err := headerHash(body)
		if cerr := body.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return nil, fmt.Errorf("TOP %d 0: %w", u.Num, err)
		}
		out = append(out, OldMessage{Num: u.Num, UIDL: u.UID, Size: size, Hash: hash, state: state})
	}
	return out, nil
}

// ReadLocal hashes the header of each message of a maildrop snapshot.
// A message that vanished since the snapshot (store.ErrNoMessage) is left
// out; it cannot be matched and has nothing to keep.
func ReadLocal(ctx context.Context, msgs []store.Message, open func(context.Context, int) (io.ReadCloser, error)) ([]LocalMessage, error) {
	out := make([]LocalMessage, 0, len(msgs))
	for i, m := range msgs {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		r, err := open(ctx, i)
		if err == store.ErrNoMessage {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("local message %d: %w", i+1, err)
		}
		hash, state, err := headerHash(r)
		r.Close()
		if err != nil {
			return nil, fmt.Errorf("local message %d: %w", i+1, err)
		}
		out = append(out, LocalMessage{Index: i, UIDL: m.UID, Size: m.Size, Hash: hash, state: state})
	}
	return out, nil
}

// Pair is an old message matched to a local one.
type Pair struct {
	Old   OldMessage
	Local LocalMessage
}

// Match pairs old and local messages by header hash and size. Within one
// hash, an old message takes the first unpaired local message of the
// same size, else the first whose size differs by exactly 2 (a final
// CRLF counted by one server and not the other). Sizes are compared
// without the mbox state fields each side shows in its header
// (stateHeaders): Dovecot hides from POP3, and leaves out of LIST, the
// X-UID, X-IMAPbase and Status lines it wrote into an mbox, which the
// local store serves as part of the message. It returns the pairs in
// the old server's order, the old messages it could not match, and the
// local messages left over.
func Match(old []OldMessage, local []LocalMessage) (pairs []Pair, oldOnly []OldMessage, localOnly []LocalMessage) {
	byHash := make(map[string][]int) // hash -> indexes into local, in order
	for i, l := range local {
		byHash[l.Hash] = append(byHash[l.Hash], i)
	}
	used := make([]bool, len(local))
	take := func(o OldMessage, ok func(LocalMessage) bool) bool {
		for _, i := range byHash[o.Hash] {
			if !used[i] && ok(local[i]) {
				used[i] = true
				pairs = append(pairs, Pair{Old: o, Local: local[i]})
				return true
			}
		}
		return false
	}
	for _, o := range old {
		if take(o, func(l LocalMessage) bool { return l.Size-l.state == o.Size-o.state }) {
			continue
		}
		if take(o, func(l LocalMessage) bool { d := (l.Size - l.state) - (o.Size - o.state); return d == 2 || d == -2 }) {
			continue
		}
		oldOnly = append(oldOnly, o)
	}
	for i, l := range local {
		if !used[i] {
			localOnly = append(localOnly, l)
		}
	}
	return pairs, oldOnly, localOnly
}
