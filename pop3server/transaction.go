package pop3server

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/postoffice-mail/postoffice/internal/wire"
)

// The TRANSACTION state (RFC 1939 §5: STAT, LIST, UIDL, RETR, TOP, DELE,
// RSET; NOOP is answered in conn.go) and QUIT, which enters UPDATE (§6).
// The commands of a download allocate nothing (TestCommandsDoNotAllocate).

func (c *conn) cmdQuit(ctx context.Context) error {
	c.quit = true
	if c.state != stateTransaction {
		c.writeLine("+OK Logging out")
		return errClose
	}
	// RFC 1939 §6: UPDATE removes exactly the marked messages.
	if c.nDeleted > 0 {
		del := make([]int, 0, c.nDeleted)
		for i, d := range c.deleted {
			if d {
				del = append(del, i)
			}
		}
		// The commit finishes even if the server is shutting down.
		if err := c.mbox.Commit(context.WithoutCancel(ctx), del); err != nil {
			c.log.Error("commit failed", "err", err)
			c.releaseMailbox()
			c.writeLine("-ERR [SYS/TEMP] Some deleted messages not removed; they are still there: log in again later and delete them")
			return errClose
		}
		for _, i := range del {
			c.delCount++
			c.delBytes += c.msgs[i].Size
		}
	}
	// RFC 1939 §6: the lock is released before the reply, so a client that
	// reconnects as soon as it reads +OK does not find its maildrop in use.
	c.releaseMailbox()
	c.writeLine("+OK Logging out, messages deleted")
	return errClose
}

func (c *conn) cmdStat(args []byte) error {
	if len(args) != 0 {
		return c.badErr("-ERR STAT takes no arguments: send STAT alone")
	}
	c.bw.WriteString("+OK ")
	c.writeInt(int64(len(c.msgs) - c.nDeleted))
	c.bw.WriteByte(' ')
	c.writeInt(c.size - c.deletedSize)
	c.bw.WriteString("\r\n")
	return nil
}

// writeInt writes n in decimal, formatted in the buffer's free space.
func (c *conn) writeInt(n int64) {
	if c.bw.Available() < 20 {
		c.bw.Flush() // as a full buffer would be; an error stays for the next flush
	}
	c.bw.Write(strconv.AppendInt(c.bw.AvailableBuffer(), n, 10))
}

// msgArg parses a message number (RFC 1939 §3: 1..count, not deleted).
// It writes the -ERR itself and returns ok=false on failure. Only a
// malformed number is a bad command; a number naming no message (0, past
// the end, deleted) is an ordinary -ERR (Options.MaxBadCommands).
func (c *conn) msgArg(s []byte) (int, bool, error) {
	n, ok := parseNumber(s)
	if !ok {
		return 0, false, c.badErr("-ERR Invalid message number: use a number from LIST")
	}
	if n < 1 || n > int64(len(c.msgs)) {
		c.writeLine("-ERR No such message: use a number from LIST")
		return 0, false, nil
	}
	i := int(n - 1)
	if c.deleted[i] {
		c.writeLine("-ERR Message already deleted in this session: send RSET to undo the deletions")
		return 0, false, nil
	}
	return i, true, nil
}

// parseNumber accepts 1-10 decimal digits and nothing else.
func parseNumber(s []byte) (int64, bool) {
	if len(s) == 0 || len(s) > 10 {
		return 0, false
	}
	var n int64
	for _, d := range s {
		if d < '0' || d > '9' {
			return 0, false
		}
		n = n*10 + int64(d-'0')
	}
	return n, true
}

// maxListLine is the longest line of a LIST or UIDL listing: a message
// number, a space, a UID (at most 70 octets, RFC 1939 §7) or a size, CRLF.
const maxListLine = 10 + 1 + 70 + 2

func (c *conn) cmdList(args []byte, uidl bool) error {
	if len(args) != 0 {
		i, ok, err := c.msgArg(args)
		if !ok {
			return err
		}
		c.bw.WriteString("+OK ")
		c.writeInt(int64(i + 1))
		c.bw.WriteByte(' ')
		if uidl {
			c.bw.WriteString(c.msgs[i].UID)
		} else {
			c.writeInt(c.msgs[i].Size)
		}
		c.bw.WriteString("\r\n")
		return nil
	}
	c.beginLong()
	if uidl {
		c.writeLine("+OK Unique-ID listing follows")
	} else {
		c.writeLine("+OK Scan listing follows")
	}
	// Each line is built in the buffer's free space and taken in by one
	// Write that only copies it.
	for i, m := range c.msgs {
		if c.deleted[i] {
			continue
		}
		b := c.bw.AvailableBuffer()
		if cap(b) < maxListLine {
			if err := c.bw.Flush(); err != nil {
				return err
			}
			b = c.bw.AvailableBuffer()
		}
		b = strconv.AppendInt(b, int64(i+1), 10)
		b = append(b, ' ')
		if uidl {
			b = append(b, m.UID...)
		} else {
			b = strconv.AppendInt(b, m.Size, 10)
		}
		b = append(b, '\r', '\n')
		c.bw.Write(b)
	}
	c.writeLine(".")
	return nil
}

func (c *conn) cmdDele(args []byte) error {
	i, ok, err := c.msgArg(args)
	if !ok {
		return err
	}
	c.deleted[i] = true
	c.nDeleted++
	c.deletedSize += c.msgs[i].Size
	c.writeLine("+OK Message deleted")
	return nil
}

func (c *conn) cmdRset(args []byte) error {
	if len(args) != 0 {
		return c.badErr("-ERR RSET takes no arguments: send RSET alone")
	}
	clear(c.deleted)
	c.last = 0 // RFC 1460 §5
	c.nDeleted = 0
	c.deletedSize = 0
	c.writeLine("+OK")
	return nil
}

func (c *conn) cmdRetr(ctx context.Context, args []byte) error {
	i, ok, err := c.msgArg(args)
	if !ok {
		return err
	}
	n, sent, err := c.sendMessage(ctx, i, -1)
	if sent {
		// RFC 1460 §5: RETR raises the highest message number accessed.
		c.last = max(c.last, i+1)
		c.retrCount++
		c.retrBytes += n
	}
	if sent && err == nil {
		if o, ok := c.mbox.(RetrievalObserver); ok {
			o.Retrieved(i)
		}
	}
	return err
}

func (c *conn) cmdTop(ctx context.Context, args []byte) error {
	num, lines, found := bytes.Cut(args, []byte(" "))
	if !found {
		return c.badErr("-ERR TOP needs a message number and a line count: send TOP msg lines")
	}
	i, ok, err := c.msgArg(num)
	if !ok {
		return err
	}
	k, ok := parseNumber(lines)
	if !ok {
		return c.badErr("-ERR Invalid line count: send the number of body lines, 0 or more")
	}
	n, sent, err := c.sendMessage(ctx, i, k)
	if sent {
		c.topCount++
		c.topBytes += n
	}
	return err
}

// copyBufs holds the buffers RETR and TOP read stored messages through,
// shared by all sessions so an idle session holds none.
var copyBufs = sync.Pool{New: func() any { b := make([]byte, copyBufSize); return &b }}

const copyBufSize = 64 << 10

// sendMessage sends message i whole (lines < 0, RETR) or its TOP cut. A
// failure before the first byte is an -ERR; a failure in the middle of the
// body cannot be reported in the protocol and ends the session.
func (c *conn) sendMessage(ctx context.Context, i int, lines int64) (n int64, sent bool, err error) {
	r, err := c.mbox.Open(ctx, i)
	if err != nil {
		var pe *Error
		if errors.As(err, &pe) {
			c.log.Warn("opening message failed", "msg", i+1, "err", err)
			c.writeLine(pe.reply())
			return 0, false, nil
		}
		// The engine does not interpret storage errors (a missing file
		// means nothing to it): the backend says [SYS/PERM] with an *Error
		// when a message is gone for good.
		c.log.Error("opening message failed", "msg", i+1, "err", err)
		c.writeLine("-ERR [SYS/TEMP] Cannot read the message now; try again in a few minutes, and tell the administrator if it persists")
		return 0, false, nil
	}
	defer r.Close()
	if lines < 0 && !c.srv.opts.Workarounds.rewritesMessages() {
		if wr, ok := r.(WireReader); ok {
			// From here on r gives the wire form: it must be sent as
			// such, with its own size in the status line.
			if size, ok := wr.Wire(); ok {
				if size != c.msgs[i].Size {
					c.log.Warn("message size changed since listing", "msg", i+1,
						"listed", c.msgs[i].Size, "sent", size)
				}
				return c.sendWire(r, size)
			}
		}
	}
	c.beginLong()
	if lines < 0 {
		c.bw.WriteString("+OK ")
		c.writeInt(c.msgs[i].Size)
		c.bw.WriteString(" octets\r\n")
	} else {
		c.writeLine("+OK Top of message follows")
	}
	c.dw.Reset(c.bw)
	var dst io.Writer = &c.dw
	if lines >= 0 {
		c.tw = wire.TopWriter{W: &c.dw, Lines: lines}
		dst = &c.tw
	}
	if wa := c.srv.opts.Workarounds; wa.rewritesMessages() {
		c.ww = workaroundWriter{w: dst, noNULs: wa.OutlookNoNULs}
		dst = &c.ww
	}
	// No deadline for the whole message: each write has its own
	// (deadlineWriter), so a slow but steady reader gets any size.
	buf := copyBufs.Get().(*[]byte)
	_, err = copyMessage(dst, r, *buf)
	copyBufs.Put(buf)
	if err != nil && err != wire.ErrTopDone {
		return c.dw.Count(), true, fmt.Errorf("sending message %d: %w", i+1, err)
	}
	if dst == &c.ww {
		if err := c.ww.finish(c.srv.opts.Workarounds.OENSEOH); err != nil {
			return c.dw.Count(), true, fmt.Errorf("sending message %d: %w", i+1, err)
		}
	}
	if err := c.dw.Close(); err != nil {
		return c.dw.Count(), true, err
	}
	if sent, listed := c.dw.Count(), c.msgs[i].Size; lines < 0 && sent != listed {
		if d := sent - listed; d == 1 || d == 2 {
			// The CR or CRLF the terminator needs after a message
			// without a final newline, which a size taken from a
			// Maildir ,W= field does not count (as with Dovecot).
			c.log.Debug("message sent with completed last line", "msg", i+1,
				"listed", listed, "sent", sent)
		} else {
			// The stored message changed under us; the client got a
			// size that does not match. Worth an admin's attention.
			c.log.Warn("message size changed since listing", "msg", i+1,
				"listed", listed, "sent", sent)
		}
	}
	return c.dw.Count(), true, nil
}

// sendWire sends a message stored in wire form (WireReader): the octets as
// the reader gives them (with their stuffing dots), then the terminating
// line. It returns the message's octets, stuffing excluded, as the
// DotWriter counts them. On a plain TCP socket a
// SocketSender sends them itself, after the replies buffered so far; else
// they are read and written through the session's buffer (and TLS layer)
// without the DotWriter.
func (c *conn) sendWire(r io.Reader, size int64) (int64, bool, error) {
	c.beginLong()
	c.bw.WriteString("+OK ")
	c.writeInt(size)
	c.bw.WriteString(" octets\r\n")
	var sent int64
	var err error
	if ss, ok := r.(SocketSender); ok && !c.srv.opts.NoSendfile {
		if rc := c.rawOutput(); rc != nil {
			// Corked, the replies buffered so far (this status line
			// among them), the file and the terminator leave together.
			setCork(rc, true)
			defer setCork(rc, false)
			if err := c.flush(); err != nil {
				return 0, true, err
			}
			sent, err = c.sendSocket(ss, rc, size)
			if sent == 0 && errors.Is(err, errors.ErrUnsupported) {
				return c.copyWire(r, size, true)
			}
			if err != nil {
				return sent, true, fmt.Errorf("sending message: %w", err)
			}
			c.bw.WriteString(".\r\n")
			return size, true, c.flush()
		}
	}
	return c.copyWire(r, size, false)
}

// copyWire is sendWire through the session's buffer; flush sends the
// message at once (as sendWire does when corked).
func (c *conn) copyWire(r io.Reader, size int64, flush bool) (int64, bool, error) {
	c.beginLong()
	buf := copyBufs.Get().(*[]byte)
	sent, err := copyMessage(c.bw, r, *buf)
	copyBufs.Put(buf)
	if err != nil {
		return sent, true, fmt.Errorf("sending message: %w", err)
	}
	if sent < size {
		// Shorter than at open: the client got fewer octets than
		// listed, and the session cannot say so.
		return sent, true, fmt.Errorf("sending message: %d octets, %d listed", sent, size)
	}
	c.bw.WriteString(".\r\n")
	if flush {
		return size, true, c.flush()
	}
	return size, true, nil
}

// sendSocket sends size octets with ss to the socket rc, under the same
// floor as every write (deadlineWriter): a client must take at least
// minProgress octets per WriteTimeout.
func (c *conn) sendSocket(ss SocketSender, rc syscall.RawConn, size int64) (int64, error) {
	var sent int64
	for sent < size {
		c.nc.SetWriteDeadline(time.Now().Add(c.srv.opts.WriteTimeout))
		n, err := ss.SendTo(rc, size-sent)
		sent += n
		if err != nil && (n < minProgress || !isTimeout(err)) {
			return sent, err
		}
		if err == nil && n == 0 {
			return sent, io.ErrUnexpectedEOF
		}
	}
	return sent, nil
}

// rawOutput returns the socket of a plain TCP connection, for a
// SocketSender to write to directly, or nil: over TLS, or when the
// connection is not a TCP socket or hides it.
func (c *conn) rawOutput() syscall.RawConn {
	if c.tc != nil || c.info.TLS != nil {
		return nil
	}
	switch nc := c.nc.(type) {
	case *net.TCPConn:
		rc, err := nc.SyscallConn()
		if err != nil {
			return nil
		}
		return rc
	case interface {
		RawOutput() (syscall.RawConn, bool)
	}:
		if rc, ok := nc.RawOutput(); ok {
			return rc
		}
	}
	return nil
}

// copyMessage copies r to dst through buf, as io.CopyBuffer does but
// without asking r for WriteTo: an *os.File's would allocate 32 KiB per
// message. It returns the octets written.
func copyMessage(dst io.Writer, r io.Reader, buf []byte) (int64, error) {
	var written int64
	for {
		n, err := r.Read(buf)
		if n > 0 {
			m, werr := dst.Write(buf[:n])
			written += int64(m)
			if werr != nil {
				return written, werr
			}
		}
		if err == io.EOF {
			return written, nil
		}
		if err != nil {
			return written, err
		}
	}
}
