package store

import (
	"context"
	"errors"
	"io"
)

// Folder errors, matched with errors.Is.
var (
	// ErrNoFolder is returned for a folder that does not exist.
	ErrNoFolder = errors.New("store: no such folder")
	// ErrFolderExists is returned when creating or renaming onto a folder
	// that exists.
	ErrFolderExists = errors.New("store: folder exists")
	// ErrBadFolderName is returned for a name that is not a valid folder
	// name (see Folders), and for operations INBOX does not allow
	// (deleting or renaming it).
	ErrBadFolderName = errors.New("store: invalid folder name")
)

// Inbox is the name of the folder Store.Open opens. Folder names compare
// case-insensitively to it, as IMAP's INBOX does (RFC 3501 §5.1).
const Inbox = "INBOX"

// Folders is an add-on interface of a Store that holds more folders per
// user than the maildrop Open opens (INBOX): the Maildir++ folders of the
// Maildir store. The older members of the Post Office Protocol family use
// it (POP2's FOLD, POP4's folder commands); POP3 itself sees only INBOX.
//
// Folder names are hierarchical with '/' as the separator ("Lists/go").
// Each level is 1-255 octets of printable ASCII other than '/', '\\', '.'
// and '%', not "INBOX" at the top level except for INBOX itself; a store
// may refuse more.
type Folders interface {
	// Folders lists user's folders, INBOX first, then the others sorted.
	Folders(ctx context.Context, user string) ([]string, error)
	// CreateFolder makes an empty folder; ErrFolderExists if it exists.
	CreateFolder(ctx context.Context, user, name string) error
	// DeleteFolder removes a folder and the messages in it. It fails with
	// ErrInUse while a session has the folder open, and refuses INBOX.
	// Subfolders are left alone.
	DeleteFolder(ctx context.Context, user, name string) error
	// RenameFolder renames a folder and its subfolders. It refuses INBOX.
	RenameFolder(ctx context.Context, user, from, to string) error
	// OpenFolder locks and snapshots a folder as Open does for INBOX
	// (OpenFolder(ctx, user, "INBOX") is Open). A folder other than INBOX
	// is not created: ErrNoFolder.
	OpenFolder(ctx context.Context, user, name string) (Maildrop, error)
	// DeliverFolder stores a message into an existing folder, durably, as
	// Deliver does into INBOX.
	DeliverFolder(ctx context.Context, user, name string, r io.Reader) error
}

// Flagged is an add-on interface of a Maildrop whose messages carry
// flags: the Maildir info flags ("2," followed by upper-case letters,
// https://cr.yp.to/proto/maildir.html): D draft, F flagged, P passed
// (forwarded), R replied, S seen, T trashed.
type Flagged interface {
	// Flags returns the flags of message i, sorted, as letters.
	Flags(i int) (string, error)
	// SetFlags replaces the flags of message i with flags (letters among
	// "DFPRST", any order). The change is durable on return.
	SetFlags(ctx context.Context, i int, flags string) error
}
