package store

import (
	"context"
	"errors"
	"io"
	"time"
)

// ErrUIDExists is returned by Importer.Import for a UIDL the maildrop
// already has for a different message (other stored bytes). The same
// message imported again is not an error: Import is idempotent by UIDL.
var ErrUIDExists = errors.New("store: UIDL already used by another message in the maildrop")

// ImportMessage is one message for Importer.Import.
type ImportMessage struct {
	// UID is the UIDL the message keeps: 1-70 characters of 0x21-0x7E
	// (RFC 1939 §7), stored as it is, whatever its form.
	UID string
	// ArrivalTime is when the message first arrived, on the server it
	// comes from. Zero means now.
	ArrivalTime time.Time
	// Open returns the message's stored bytes. It is called at most once
	// per Import call, and the reader is closed before Import returns:
	// a batch holds at most one source body open at a time.
	Open func(ctx context.Context) (io.ReadCloser, error)
}

// Importer is an optional interface of a Store: storing messages that
// keep the UIDL and arrival time they had elsewhere, so that a maildrop
// moved between stores (or from another server) shows its POP3 clients
// the same UIDLs, and they download nothing again (RFC 1939 §7: a UIDL is
// persistent across sessions).
//
// Import stores msgs in user's maildrop, in order, after every message it
// holds already. A message whose UIDL the maildrop already has is skipped
// when it is the same message (the same stored bytes) and refused with
// ErrUIDExists otherwise, before anything of the batch is stored; so a
// migration interrupted at any instant is resumed by importing again. On
// any other error a part of msgs may have been stored, each message whole
// with its UIDL or not at all: importing the batch again completes it.
//
// Import does not wait for a maildrop in use: it returns ErrInUse, as Open
// does, where the store needs the maildrop's lock to import.
type Importer interface {
	Store
	Import(ctx context.Context, user string, msgs []ImportMessage) error
}

// ArrivalTimer is an optional interface of a Maildrop: when message i
// (0-based index into Messages) arrived, as well as the store knows it
// (Maildir: the file's modification time, which Dovecot also takes as the
// received date; PostgreSQL: the time of the delivery's transaction).
type ArrivalTimer interface {
	ArrivalTime(ctx context.Context, i int) (time.Time, error)
}
