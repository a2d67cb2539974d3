// Package store defines the maildrop storage seam of postoffice: a Store
// opens a user's maildrop under an exclusive lock (RFC 1939 §4), takes durable
// deliveries, and a Maildrop is the snapshot a POP3 session works on.
//
// Implementation notes (invariants every backend keeps; storetest checks them):
//   - Open takes an exclusive lock per maildrop that also holds across
//     processes; a second Open returns ErrInUse until Close.
//   - Messages is a snapshot taken at Open: mail delivered later is not in it
//     and never changes message numbering (RFC 1939 §4).
//   - Size is the octet count of the message in CRLF form, with a final CRLF
//     when the stored message lacks one, before dot-stuffing: exactly the
//     bytes a POP3 server sends for RETR (wire.CRLFSize computes it).
//   - UID is 1-70 characters of 0x21-0x7E, unique within the maildrop, stable
//     across sessions, deliveries and deletes, and never reused (RFC 1939 §7).
//   - Commit removes exactly the given messages, durably, before it returns.
//     Close without Commit deletes nothing (RFC 1939 §6).
//   - Deliver returns only once the message is durable; a failed Deliver
//     leaves nothing that a later Open could see.
package store

import (
	"context"
	"errors"
	"io"

	"github.com/postoffice-mail/postoffice/pop3proto"
)

var (
	// ErrInUse is returned by Open when another session holds the maildrop.
	ErrInUse = errors.New("store: maildrop in use")
	// ErrNoUser is returned when the user has no maildrop and none can be made.
	ErrNoUser = errors.New("store: no such user")
	// ErrNoMessage is returned by Maildrop.Open for a message that has vanished
	// (removed by another agent since the snapshot).
	ErrNoMessage = errors.New("store: message no longer exists")
)

// Message is one entry of a maildrop snapshot:
//
//	Size int64  // octets RETR sends, CRLF form, before dot-stuffing
//	UID  string // unique id listed by UIDL
//
// It is the POP3 vocabulary's pop3proto.MessageInfo, which the engine's
// Mailbox.Messages returns, so a session's snapshot reaches the engine
// without a copy; this package still does not import the engine.
type Message = pop3proto.MessageInfo

// Store is a collection of maildrops, one per user.
type Store interface {
	// Open locks the user's maildrop and returns its snapshot. The maildrop is
	// created if it does not exist yet.
	Open(ctx context.Context, user string) (Maildrop, error)
	// Deliver stores one message for user durably.
	Deliver(ctx context.Context, user string, r io.Reader) error
}

// Idler is an add-on a Maildrop implements to give back, while its session
// waits for the client, the descriptors it can open again (a Maildir's
// directories, an open journal); its next call reopens what it needs. The
// lock is kept.
type Idler interface {
	Idle()
}

// Maildrop is a locked snapshot of one user's messages.
type Maildrop interface {
	// Messages returns the snapshot, in ascending delivery order. The caller
	// must not modify the slice.
	Messages() []Message
	// Open returns the stored bytes of message i (0-based index into
	// Messages), as stored: line ends may be LF or CRLF.
	Open(ctx context.Context, i int) (io.ReadCloser, error)
	// Commit removes the messages with the given indexes durably. On partial
	// failure it returns an error and removes what it can.
	Commit(ctx context.Context, deleted []int) error
	// Close releases the lock. It deletes nothing.
	Close() error
}
