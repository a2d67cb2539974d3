// Package pop4 adds POP4, the 2003 proposal of pop4.org, to the POP3
// engine as a pop3server.Extension: server-side folders, retrieval of one
// MIME part of a message, and message flags, on the Maildir++ folders of
// the store (store.Folders, store.Flagged).
//
// The proposal says: POP4 is POP3 plus commands of four letters valid in
// the TRANSACTION state only, no new authentication; the greeting holds
// "POP4 rev"; its folder commands are LFLD, SFLD, CFLD, DFLD, MOVF, RENF,
// MOVE and COPY. Their full syntax, and the names of its multipart and
// flag commands, were never published; what this package chose is in
// docs/pop4.md and announced in CAPA as
//
//	X-POP4 LFLD SFLD CFLD DFLD RENF MOVF MOVE COPY PART FLAG
//
// (an "X-" name: RFC 2449 §5 reserves unprefixed names for registered
// capabilities). STOR, which takes a message from the client, is not
// implemented: POP has no submission path, and a store that accepted
// arbitrary client data here would bypass the delivery pipeline.
//
// Implementation notes:
//   - Deletion keeps POP3's rule (RFC 1939 §6): DELE and MOVE only mark;
//     the marks are applied at QUIT. Selecting another folder (SFLD) with
//     marks pending is refused, so no mark is lost or applied to the
//     wrong folder.
//   - MOVE is a durable copy into the target folder, then a mark: a
//     session that ends without QUIT leaves the message in both folders,
//     never in neither.
//   - The selected folder is locked as INBOX is at login; a folder open in
//     another session is answered [IN-USE].
package pop4

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"

	"github.com/postoffice-mail/postoffice/internal/store"
	"github.com/postoffice-mail/postoffice/pop3proto"
	"github.com/postoffice-mail/postoffice/pop3server"
)

// Greeting is the engine's greeting text with POP4 on: the proposal
// requires "POP4 rev" in it.
const Greeting = "POP3 POP4 rev 0 server ready"

// Capability is the CAPA line listing the commands.
const Capability = "X-POP4 LFLD SFLD CFLD DFLD RENF MOVF MOVE COPY PART FLAG"

// Options configure New. Folders is required.
type Options struct {
	Folders store.Folders
	Logger  *slog.Logger
}

// Extension implements pop3server.Extension.
type Extension struct {
	folders store.Folders
	log     *slog.Logger
}

var _ pop3server.Extension = (*Extension)(nil)

// New returns the POP4 extension.
func New(opts Options) (*Extension, error) {
	if opts.Folders == nil {
		return nil, errors.New("pop4: Options.Folders is required (a store with Maildir++ folders)")
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return &Extension{folders: opts.Folders, log: opts.Logger}, nil
}

// Capabilities implements pop3server.Extension: the POP4 line in both
// states, so a client can see it before logging in.
func (e *Extension) Capabilities(loggedIn bool) []string { return []string{Capability} }

// folderBox is a folder other than the login's INBOX, as the engine's
// Mailbox.
type folderBox struct {
	store.Maildrop
	user, name string
}

func (f *folderBox) User() string { return f.user }

func (f *folderBox) Open(ctx context.Context, i int) (io.ReadCloser, error) {
	r, err := f.Maildrop.Open(ctx, i)
	if errors.Is(err, store.ErrNoMessage) {
		return nil, &pop3server.Error{Code: pop3proto.CodeSysPerm, Text: "Message was removed by another program meanwhile; skip it, or QUIT and log in again for a fresh list", Err: err}
	}
	return r, err
}

// current returns the user and the selected folder of s.
func current(s *pop3server.ExtensionSession) (user, folder string, ok bool) {
	switch m := s.Mailbox().(type) {
	case *folderBox:
		return m.user, m.name, true
	case interface{ User() string }:
		return m.User(), store.Inbox, true
	}
	return "", "", false
}

// maildrop returns the store's maildrop of the selected folder.
func maildrop(s *pop3server.ExtensionSession) store.Maildrop {
	switch m := s.Mailbox().(type) {
	case *folderBox:
		return m.Maildrop
	case interface{ Maildrop() store.Maildrop }:
		return m.Maildrop()
	}
	return nil
}

// Command implements pop3server.Extension.
func (e *Extension) Command(ctx context.Context, s *pop3server.ExtensionSession, kw, args string) (bool, error) {
	switch kw {
	case "LFLD", "SFLD", "CFLD", "DFLD", "RENF", "MOVF", "MOVE", "COPY", "PART", "FLAG":
	default:
		return false, nil
	}
	user, folder, ok := current(s)
	if !ok {
		s.Reply("-ERR [SYS/PERM] POP4 is not available for this mailbox; use the POP3 commands, which work as usual")
		return true, nil
	}
	var err error
	switch kw {
	case "LFLD":
		err = e.lfld(ctx, s, user, args)
	case "SFLD":
		err = e.sfld(ctx, s, user, folder, args)
	case "CFLD":
		err = e.cfld(ctx, s, user, args)
	case "DFLD":
		err = e.dfld(ctx, s, user, folder, args)
	case "RENF":
		err = e.renf(ctx, s, user, folder, args)
	case "MOVF":
		err = e.movf(ctx, s, user, folder, args)
	case "MOVE", "COPY":
		err = e.copyMsgs(ctx, s, user, folder, args, kw == "MOVE")
	case "PART":
		err = e.part(ctx, s, args)
	case "FLAG":
		err = e.flag(ctx, s, args)
	}
	return true, err
}

// storeError answers a store error of a folder command.
func (e *Extension) storeError(s *pop3server.ExtensionSession, err error) {
	switch {
	case errors.Is(err, store.ErrNoFolder):
		s.Reply("-ERR No such folder: send LFLD for the folder list")
	case errors.Is(err, store.ErrFolderExists):
		s.Reply("-ERR Folder exists: choose another name, or send SFLD to select it")
	case errors.Is(err, store.ErrBadFolderName):
		s.Reply("-ERR Invalid folder name: use printable ASCII without ., \\ or %, with / between levels; INBOX cannot be created, renamed or deleted")
	case errors.Is(err, store.ErrInUse):
		s.Reply("-ERR [IN-USE] Folder is in use by another session; try again when that client has quit")
	default:
		e.log.Error("pop4 folder operation failed", "conn", s.Conn().ID, "err", err)
		s.Reply("-ERR [SYS/TEMP] Folder operation failed; try again in a few minutes, and tell the administrator if it persists")
	}
}

// within reports whether folder is name or below it.
func within(folder, name string) bool {
	if strings.EqualFold(name, store.Inbox) {
		return strings.EqualFold(folder, store.Inbox)
	}
	return folder == name || strings.HasPrefix(folder, name+"/")
}

func (e *Extension) lfld(ctx context.Context, s *pop3server.ExtensionSession, user, args string) error {
	if args != "" {
		return s.Bad("-ERR LFLD takes no arguments: send LFLD alone")
	}
	names, err := e.folders.Folders(ctx, user)
	if err != nil {
		e.storeError(s, err)
		return nil
	}
	s.Reply("+OK Folder list follows")
	return s.WriteBody(strings.NewReader(strings.Join(names, "\r\n") + "\r\n"))
}

func (e *Extension) sfld(ctx context.Context, s *pop3server.ExtensionSession, user, folder, name string) error {
	if name == "" {
		return s.Bad("-ERR SFLD needs a folder name: send SFLD followed by a name from LFLD")
	}
	if within(folder, name) && within(name, folder) {
		s.Reply("+OK Folder selected, " + itoa(len(s.Messages())) + " messages")
		return nil
	}
	if s.Deletions() > 0 {
		s.Reply("-ERR Messages marked deleted in this folder: QUIT to remove them or RSET first")
		return nil
	}
	md, err := e.folders.OpenFolder(ctx, user, name)
	if err != nil {
		e.storeError(s, err)
		return nil
	}
	if strings.EqualFold(name, store.Inbox) {
		name = store.Inbox
	}
	s.ReplaceMailbox(&folderBox{Maildrop: md, user: user, name: name})
	s.Reply("+OK Folder selected, " + itoa(len(md.Messages())) + " messages")
	return nil
}

func (e *Extension) cfld(ctx context.Context, s *pop3server.ExtensionSession, user, name string) error {
	if name == "" {
		return s.Bad("-ERR CFLD needs a folder name: send CFLD followed by the new folder's name")
	}
	if err := e.folders.CreateFolder(ctx, user, name); err != nil {
		e.storeError(s, err)
		return nil
	}
	s.Reply("+OK Folder created")
	return nil
}

func (e *Extension) dfld(ctx context.Context, s *pop3server.ExtensionSession, user, folder, name string) error {
	if name == "" {
		return s.Bad("-ERR DFLD needs a folder name: send DFLD followed by a name from LFLD")
	}
	if within(folder, name) && within(name, folder) {
		s.Reply("-ERR Folder is selected: send SFLD with another folder first")
		return nil
	}
	if err := e.folders.DeleteFolder(ctx, user, name); err != nil {
		e.storeError(s, err)
		return nil
	}
	s.Reply("+OK Folder deleted")
	return nil
}

func (e *Extension) renf(ctx context.Context, s *pop3server.ExtensionSession, user, folder, args string) error {
	from, to, found := strings.Cut(args, " ")
	if !found || from == "" || to == "" || strings.Contains(to, " ") {
		return s.Bad("-ERR RENF needs a folder name and a new name: send RENF name newname")
	}
	return e.rename(ctx, s, user, folder, from, to)
}

// movf moves a folder below another one: "MOVF Lists Archive" makes
// "Lists" "Archive/Lists".
func (e *Extension) movf(ctx context.Context, s *pop3server.ExtensionSession, user, folder, args string) error {
	from, parent, found := strings.Cut(args, " ")
	if !found || from == "" || parent == "" || strings.Contains(parent, " ") {
		return s.Bad("-ERR MOVF needs a folder name and a parent folder: send MOVF name parent")
	}
	leaf := from[strings.LastIndexByte(from, '/')+1:]
	return e.rename(ctx, s, user, folder, from, parent+"/"+leaf)
}

func (e *Extension) rename(ctx context.Context, s *pop3server.ExtensionSession, user, folder, from, to string) error {
	if within(folder, from) {
		s.Reply("-ERR Folder is selected: send SFLD with another folder first")
		return nil
	}
	if err := e.folders.RenameFolder(ctx, user, from, to); err != nil {
		e.storeError(s, err)
		return nil
	}
	s.Reply("+OK Folder renamed")
	return nil
}

func itoa(n int) string {
	var b [20]byte
	i := len(b)
	for {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
		if n == 0 {
			return string(b[i:])
		}
	}
}
