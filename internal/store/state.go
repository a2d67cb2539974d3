package store

import (
	"context"
	"time"
)

// StateFiles is an add-on a Maildrop implements when it can keep small
// files of its own beside the messages, under the maildrop's lock: the
// per-device views, first-retrieval times and retrieval history of
// internal/ledger live in them. Names are fixed by the caller (plain
// words such as "devices", "history"); a store maps them to its own place
// (a Maildir keeps "postoffice-<name>").
type StateFiles interface {
	// ReadState returns the content of the named file, or nil and no
	// error when there is none yet.
	ReadState(name string) ([]byte, error)
	// WriteState replaces the named file atomically and durably: after a
	// crash it holds either the old or the new content, never a mix.
	WriteState(name string, data []byte) error
	// AppendState appends data to the named file, creating it. It is
	// for records that are not mail (the retrieval journal): a store may
	// hold the data briefly before writing it, and says for how long in
	// its doc (the Maildir store writes it to the kernel before returning,
	// so it survives a SIGKILL; the PostgreSQL store writes it within a
	// second, or with the session's next write). SyncState makes earlier
	// appends durable. A reader of an appended file must tolerate a torn
	// last line.
	AppendState(name string, data []byte) error
	// SyncState makes earlier appends to the named file durable.
	SyncState(name string) error
}

// StateReader is an add-on a Store implements when the state files of a
// maildrop can be read without taking its lock (a file replaced by
// rename, or appended to, reads consistently either way), so an
// administrator can read a user's history while a session holds the
// maildrop.
type StateReader interface {
	ReadState(ctx context.Context, user, name string) ([]byte, error)
}

// Arrivals is an add-on a Maildrop implements when it knows when each
// message was delivered; i is an index into Messages. The expiry policy's
// after_arrival counts from it.
type Arrivals interface {
	Delivered(i int) (time.Time, bool)
}
