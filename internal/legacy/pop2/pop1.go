package pop2

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/postoffice-mail/postoffice/internal/store"
)

// pop1 runs a POP1 command (RFC 918, as reconstructed in the package doc).
func (x *session) pop1(ctx context.Context, k, a string) error {
	if x.user == "" {
		switch k {
		case "USER":
			if a == "" {
				return x.badCmd("- USER needs a user name")
			}
			x.pending = a
			x.reply("+ OK")
			return nil
		case "PASS":
			if x.pending == "" {
				return x.badCmd("- PASS must follow USER")
			}
			user := x.pending
			x.pending = ""
			ok, err := x.login(ctx, user, a)
			if ok {
				x.reply("+ OK")
			}
			return err
		case "NOOP":
			x.reply("+ OK")
			return nil
		case "QUIT":
			x.reply("+ OK")
			return errClose
		case "RETR", "RDEL", "RCEV", "RCVD":
			return x.badCmd("- Not logged in")
		}
		return x.badCmd("- Unknown command")
	}
	switch k {
	case "USER", "PASS":
		return x.badCmd("- Already logged in")
	case "NOOP":
		x.reply("+ OK")
		return nil
	case "QUIT":
		// Nothing to commit: RDEL removes at RCVD.
		x.closeFolder()
		x.reply("+ OK")
		return errClose
	case "RETR", "RDEL":
		name := a
		if name == "" || name == x.user || strings.EqualFold(name, store.Inbox) {
			name = store.Inbox
		}
		if x.md == nil || !sameFolder(x.folder, name) {
			if x.pop1Kind != "" || x.pop1Sent {
				x.pop1Kind, x.pop1Sent = "", false
			}
			if !x.switchFolder(ctx, name) {
				return nil
			}
		}
		n, err := x.writeStream(ctx, io.Discard)
		if err != nil {
			x.log.Error("reading mailbox failed", "err", err)
			x.reply("- Cannot read mailbox, try again later")
			return nil
		}
		x.pop1Kind, x.pop1Size, x.pop1Sent = k, n, false
		x.reply("+" + strconv.FormatInt(n, 10))
		return nil
	case "RCEV":
		if x.pop1Kind == "" {
			return x.badCmd("- RETR or RDEL first")
		}
		ew := &exactWriter{w: x.bw, left: x.pop1Size}
		_, err := x.writeStream(ctx, ew)
		if err == nil && ew.left != 0 || ew.over {
			x.log.Warn("mailbox changed since RETR; closing")
			return errClose
		}
		if err != nil {
			return fmt.Errorf("sending mailbox: %w", err)
		}
		x.pop1Sent = true
		return nil
	case "RCVD":
		if !x.pop1Sent {
			return x.badCmd("- Nothing sent to confirm: RCEV first")
		}
		kind := x.pop1Kind
		x.pop1Kind, x.pop1Sent = "", false
		if kind == "RDEL" {
			for i := range x.deleted {
				if !x.deleted[i] {
					x.deleted[i] = true
					x.nDeleted++
				}
			}
			folder := x.folder
			if err := x.commit(ctx); err != nil {
				x.log.Error("commit failed", "err", err)
				x.closeFolder()
				x.reply("- Messages not removed, try again later")
				return nil
			}
			// The maildrop committed once; open the folder again (empty
			// now but for new mail) for the rest of the session.
			x.closeFolder()
			if md, err := x.openFolder(ctx, folder); err == nil {
				x.setFolder(md, folder)
			}
		}
		x.reply("+ OK")
		return nil
	}
	return x.badCmd("- Unknown command")
}

// writeStream writes the open folder's messages not removed as one
// mailbox stream (mboxrd, CRLF; see the package doc) and returns its
// length.
func (x *session) writeStream(ctx context.Context, w io.Writer) (int64, error) {
	var n int64
	from := "From MAILER-DAEMON " + x.s.opts.Now().UTC().Format(time.ANSIC) + "\r\n"
	for i := range x.msgs {
		if x.deleted[i] {
			continue
		}
		m, err := io.WriteString(w, from)
		n += int64(m)
		if err != nil {
			return n, err
		}
		r, err := x.md.Open(ctx, i)
		if err != nil {
			return n, err
		}
		c, err := copyCRLF(w, r, true)
		r.Close()
		n += c
		if err != nil {
			return n, err
		}
		m, err = io.WriteString(w, "\r\n")
		n += int64(m)
		if err != nil {
			return n, err
		}
	}
	return n, nil
}
