package pop3server

import (
	"context"
	"io"

	"github.com/postoffice-mail/postoffice/pop3proto"
)

// Extension adds commands to the TRANSACTION state and lines to CAPA: the
// hook through which a protocol built on POP3 (POP4, internal/legacy/pop4)
// joins the engine without the engine knowing it. The engine offers the
// extension only keywords it does not know itself, so an extension can
// neither replace nor shadow a POP3 command, and only after login.
type Extension interface {
	// Capabilities returns lines to add to CAPA (RFC 2449 §5) in the
	// current state.
	Capabilities(loggedIn bool) []string
	// Command runs a command the engine does not know; keyword is upper
	// case, args the rest of the line. handled false answers "-ERR
	// Unknown command"; an error ends the session, as the engine's own
	// commands do.
	Command(ctx context.Context, s *ExtensionSession, keyword, args string) (handled bool, err error)
}

// ExtensionSession is what an Extension sees of the session running its
// command. It is valid only during the Command call.
type ExtensionSession struct{ c *conn }

// Conn is the connection's information.
func (s *ExtensionSession) Conn() *Conn { return &s.c.info }

// Mailbox is the open mailbox.
func (s *ExtensionSession) Mailbox() Mailbox { return s.c.mbox }

// Messages is the open mailbox's snapshot.
func (s *ExtensionSession) Messages() []pop3proto.MessageInfo { return s.c.msgs }

// Message parses a message number as the engine's commands do (RFC 1939
// §3: 1..count, not deleted). When ok is false the -ERR has been written;
// err ends the session (too many bad commands).
func (s *ExtensionSession) Message(arg string) (i int, ok bool, err error) {
	return s.c.msgArg([]byte(arg))
}

// Reply writes one reply line (without CRLF).
func (s *ExtensionSession) Reply(line string) { s.c.writeLine(line) }

// Bad answers a bad command (counted towards Options.MaxBadCommands);
// a non-nil error ends the session.
func (s *ExtensionSession) Bad(reply string) error { return s.c.badErr(reply) }

// WriteBody sends r as a multi-line response body: CRLF line ends,
// dot-stuffed, then the terminating ".". The "+OK" line goes first, by
// Reply. An error in the middle cannot be reported and ends the session.
func (s *ExtensionSession) WriteBody(r io.Reader) error {
	c := s.c
	c.beginLong()
	c.dw.Reset(c.bw)
	buf := copyBufs.Get().(*[]byte)
	_, err := copyMessage(&c.dw, r, *buf)
	copyBufs.Put(buf)
	if err != nil {
		return err
	}
	return c.dw.Close()
}

// MarkDeleted marks message i (0-based) deleted, as DELE does; it is
// removed in UPDATE (RFC 1939 §6), with the others.
func (s *ExtensionSession) MarkDeleted(i int) {
	c := s.c
	if !c.deleted[i] {
		c.deleted[i] = true
		c.nDeleted++
		c.deletedSize += c.msgs[i].Size
	}
}

// Deletions is the number of messages marked deleted.
func (s *ExtensionSession) Deletions() int { return s.c.nDeleted }

// ReplaceMailbox makes m the session's mailbox (another folder) and closes
// the one open. It is only done with no message marked deleted, since the
// marks belong to the old mailbox and would otherwise be lost or applied
// to the wrong messages: the caller checks Deletions first.
func (s *ExtensionSession) ReplaceMailbox(m Mailbox) {
	c := s.c
	if c.nDeleted > 0 {
		panic("pop3server: ReplaceMailbox with deletions pending")
	}
	c.releaseMailbox()
	c.mbox = m
	c.msgs = m.Messages()
	c.deleted = make([]bool, len(c.msgs))
	c.size, c.deletedSize = 0, 0
	for _, msg := range c.msgs {
		c.size += msg.Size
	}
}

// extCommand offers an unknown command to Options.Extension.
func (c *conn) extCommand(ctx context.Context, kw, args []byte) (handled bool, err error) {
	x := c.srv.opts.Extension
	if x == nil || len(kw) > 16 {
		return false, nil
	}
	k := make([]byte, len(kw))
	for i, ch := range kw {
		if 'a' <= ch && ch <= 'z' {
			ch -= 'a' - 'A'
		}
		k[i] = ch
	}
	return x.Command(ctx, &ExtensionSession{c: c}, string(k), string(args))
}

// extCapa writes the Extension's CAPA lines.
func (c *conn) extCapa() {
	if x := c.srv.opts.Extension; x != nil {
		for _, l := range x.Capabilities(c.state == stateTransaction) {
			c.writeLine(l)
		}
	}
}
