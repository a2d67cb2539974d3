package pop2

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/postoffice-mail/postoffice/internal/store"
	"github.com/postoffice-mail/postoffice/internal/wire"
	"github.com/postoffice-mail/postoffice/pop3proto"
	"github.com/postoffice-mail/postoffice/pop3server"
)

type dialect int

const (
	undecided dialect = iota
	pop2
	pop1
)

// errClose ends the session after the buffered replies.
var errClose = errors.New("close")

// owner is what a login's Mailbox tells of its user (internal/backend).
type owner interface{ User() string }

// maildrop is an open folder: the Mailbox a login returned (INBOX) or a
// store.Maildrop from Folders; both have these methods.
type maildrop interface {
	Messages() []pop3proto.MessageInfo
	Open(ctx context.Context, i int) (io.ReadCloser, error)
	Commit(ctx context.Context, deleted []int) error
	Close() error
}

type session struct {
	s    *Server
	nc   net.Conn
	br   *bufio.Reader
	bw   *bufio.Writer
	info pop3server.Conn
	log  *slog.Logger

	dialect dialect
	sess    pop3server.Session
	user    string // the store's name of the logged-in user; "" before login
	pending string // POP1: the USER name awaiting PASS

	md       maildrop // nil before login, or when no folder could be opened
	folder   string
	msgs     []pop3proto.MessageInfo
	deleted  []bool
	nDeleted int

	cur      int  // POP2: the current message, 1-based
	readable bool // POP2: READ or an ACK answered a length > 0: RETR may follow
	awaitAck bool // POP2: RETR sent a message: ACKS, ACKD or NACK expected

	pop1Kind string // POP1: "RETR" or "RDEL" awaiting RCEV
	pop1Size int64
	pop1Sent bool // RCEV sent the stream: RCVD expected

	bad, authFailures int
}

func newSession(s *Server, nc net.Conn, id string) *session {
	x := &session{s: s, nc: nc, br: bufio.NewReaderSize(nc, 1024),
		info: pop3server.Conn{ID: id, RemoteAddr: nc.RemoteAddr(), RealRemoteAddr: nc.RemoteAddr(), LocalAddr: nc.LocalAddr()}}
	x.bw = bufio.NewWriterSize(deadlineWriter{nc: nc, d: s.opts.WriteTimeout}, 32<<10)
	x.log = s.log.With("conn", id, "remote", nc.RemoteAddr().String(), "proto", "pop2")
	return x
}

// deadlineWriter gives every write to the client its own deadline.
type deadlineWriter struct {
	nc net.Conn
	d  time.Duration
}

func (w deadlineWriter) Write(p []byte) (int, error) {
	w.nc.SetWriteDeadline(time.Now().Add(w.d))
	return w.nc.Write(p)
}

func (x *session) reply(s string) {
	x.bw.WriteString(s)
	x.bw.WriteString("\r\n")
}

// badCmd answers a bad command; too many end the session.
func (x *session) badCmd(reply string) error {
	x.bad++
	if x.bad >= x.s.opts.MaxBadCommands {
		x.reply("- Too many bad commands, closing connection")
		return errClose
	}
	x.reply(reply)
	return nil
}

func (x *session) serve(ctx context.Context) {
	start := time.Now()
	defer x.nc.Close()
	defer func() {
		if r := recover(); r != nil {
			x.log.Error("panic in pop2 session", "panic", r)
		}
		x.finish(start)
	}()
	sess, err := x.s.opts.Backend.NewSession(ctx, &x.info)
	if err != nil {
		x.log.Error("new session failed", "err", err)
		x.reply("- Service unavailable, try again later")
		x.bw.Flush()
		return
	}
	x.sess = sess
	// RFC 937: the greeting is a "+" line; RFC 918's is too.
	x.reply("+ POP2 " + x.s.opts.Hostname + " server ready")
	for {
		if x.br.Buffered() == 0 {
			if err := x.bw.Flush(); err != nil {
				return
			}
		}
		d := x.s.opts.PreLoginTimeout
		if x.user != "" {
			d = x.s.opts.IdleTimeout
		}
		x.nc.SetReadDeadline(time.Now().Add(d))
		line, _, err := wire.ReadLine(x.br, maxLine)
		if err == wire.ErrLineTooLong {
			x.reply("- Line too long, closing connection")
			x.bw.Flush()
			return
		}
		if err != nil {
			return // EOF, reset or timeout: nothing is committed
		}
		if err := x.command(ctx, line); err != nil {
			if err != errClose {
				x.log.Info("session ended", "err", err)
			}
			x.bw.Flush()
			return
		}
	}
}

// finish closes the open folder without committing and the session.
func (x *session) finish(start time.Time) {
	x.closeFolder()
	if x.sess != nil {
		x.sess.Close()
	}
	x.log.Info("disconnected", "user", x.user, "duration", time.Since(start).Round(time.Millisecond))
}

func (x *session) closeFolder() {
	if x.md != nil {
		if err := x.md.Close(); err != nil {
			x.log.Error("closing maildrop failed", "err", err)
		}
		x.md, x.msgs, x.deleted, x.nDeleted = nil, nil, nil, 0
	}
}

func (x *session) command(ctx context.Context, line []byte) error {
	kw, args, _ := bytes.Cut(line, []byte(" "))
	k := wire.ToUpperASCII(string(kw))
	a := string(args)
	if x.dialect == undecided {
		switch k {
		case "HELO":
			x.dialect = pop2
		case "USER":
			x.dialect = pop1
		case "QUIT":
			x.reply("+ OK")
			return errClose
		default:
			return x.badCmd("- Unknown command: HELO (POP2) or USER (POP1) first")
		}
	}
	if x.dialect == pop2 {
		return x.pop2(ctx, k, a)
	}
	return x.pop1(ctx, k, a)
}

// plaintextOK reports whether a password may be sent on this connection.
func (x *session) plaintextOK() bool {
	if x.s.opts.AllowPlaintextAuth {
		return true
	}
	switch a := x.info.RemoteAddr.(type) {
	case *net.TCPAddr:
		return a.IP.IsLoopback()
	case *net.UnixAddr:
		return true
	}
	return false
}

// login checks user and pass through the backend and opens INBOX. ok is
// false when the reply has been written (a failure); err ends the session.
func (x *session) login(ctx context.Context, user, pass string) (ok bool, err error) {
	if !x.plaintextOK() {
		x.log.Info("plaintext login refused", "user", user)
		return false, x.badCmd("- Plaintext logins are not allowed on this connection")
	}
	mb, err := x.sess.Login(ctx, user, pass)
	if err == nil {
		o, isOwner := mb.(owner)
		if !isOwner {
			mb.Close()
			x.log.Error("backend mailbox has no User method")
			x.reply("- Temporary failure, try again later")
			return false, errClose
		}
		x.user = o.User()
		x.setFolder(mb, store.Inbox)
		x.log.Info("logged in", "user", x.user, "messages", len(x.msgs))
		return true, nil
	}
	var pe *pop3server.Error
	isErr := errors.As(err, &pe)
	switch {
	case errors.Is(err, pop3server.ErrAuthFailed) || isErr && pe.Code == pop3proto.CodeAuth:
		x.authFailures++
		x.log.Info("authentication failed", "user", user)
		if d := x.s.opts.AuthFailDelay; d > 0 {
			x.bw.Flush()
			time.Sleep(d)
		}
		x.reply("- Authentication failed")
		if x.authFailures >= maxAuthFailures {
			x.reply("- Too many authentication failures, closing connection")
			return false, errClose
		}
		return false, nil
	case isErr:
		x.log.Info("login refused", "user", user, "code", pe.Code, "err", pe.Err)
		x.reply("- " + pe.Text)
		return false, nil
	}
	x.log.Error("login failed", "user", user, "err", err)
	x.reply("- Temporary failure, try again later")
	return false, nil
}

func (x *session) setFolder(md maildrop, name string) {
	x.md, x.folder = md, name
	x.msgs = md.Messages()
	x.deleted = make([]bool, len(x.msgs))
	x.nDeleted = 0
	x.cur = 1
	x.readable, x.awaitAck = false, false
}

// commit removes the messages marked deleted in the open folder. The
// folder must be closed afterwards (Commit is once per maildrop).
func (x *session) commit(ctx context.Context) error {
	if x.md == nil || x.nDeleted == 0 {
		return nil
	}
	var del []int
	for i, d := range x.deleted {
		if d {
			del = append(del, i)
		}
	}
	return x.md.Commit(context.WithoutCancel(ctx), del)
}

// openFolder opens folder name of the logged-in user.
func (x *session) openFolder(ctx context.Context, name string) (maildrop, error) {
	if x.s.opts.Folders == nil {
		if strings.EqualFold(name, store.Inbox) {
			return nil, store.ErrInUse // the session's own INBOX is the only one
		}
		return nil, store.ErrNoFolder
	}
	return x.s.opts.Folders.OpenFolder(ctx, x.user, name)
}

// sameFolder reports whether a and b name one folder.
func sameFolder(a, b string) bool {
	if strings.EqualFold(a, store.Inbox) {
		return strings.EqualFold(b, store.Inbox)
	}
	return a == b
}

// switchFolder commits the open folder's deletions, closes it and opens
// name. When name is another folder it is opened first, so a failure
// leaves the session where it was. reply is false when the error reply has
// been written.
func (x *session) switchFolder(ctx context.Context, name string) (ok bool) {
	if x.md != nil && !sameFolder(x.folder, name) {
		md, err := x.openFolder(ctx, name)
		if err != nil {
			x.folderError(name, err)
			return false
		}
		if err := x.commit(ctx); err != nil {
			md.Close()
			x.log.Error("commit failed", "err", err)
			x.reply("- Deleted messages not removed, try again later")
			return false
		}
		x.closeFolder()
		x.setFolder(md, name)
		return true
	}
	if err := x.commit(ctx); err != nil {
		x.log.Error("commit failed", "err", err)
		x.reply("- Deleted messages not removed, try again later")
		return false
	}
	x.closeFolder()
	md, err := x.openFolder(ctx, name)
	if err != nil {
		x.folderError(name, err)
		return false
	}
	x.setFolder(md, name)
	return true
}

func (x *session) folderError(name string, err error) {
	switch {
	case errors.Is(err, store.ErrNoFolder), errors.Is(err, store.ErrBadFolderName):
		x.reply("- No such folder")
	case errors.Is(err, store.ErrInUse):
		x.reply("- Folder is in use by another session")
	default:
		x.log.Error("opening folder failed", "folder", name, "err", err)
		x.reply("- Cannot open folder, try again later")
	}
}

// size returns the length of message n (1-based) of the open folder, 0
// for none or a deleted one.
func (x *session) size(n int) int64 {
	if n < 1 || n > len(x.msgs) || x.deleted[n-1] {
		return 0
	}
	return x.msgs[n-1].Size
}

// pop2 runs a POP2 command (RFC 937).
func (x *session) pop2(ctx context.Context, k, a string) error {
	if x.user == "" {
		switch k {
		case "HELO":
			user, pass, found := strings.Cut(a, " ")
			if !found || user == "" {
				return x.badCmd("- HELO needs a user name and a password")
			}
			ok, err := x.login(ctx, user, pass)
			if ok {
				x.reply("#" + strconv.Itoa(len(x.msgs)))
			}
			return err
		case "QUIT":
			x.reply("+ OK")
			return errClose
		case "FOLD", "READ", "RETR", "ACKS", "ACKD", "NACK":
			return x.badCmd("- Not logged in")
		}
		return x.badCmd("- Unknown command")
	}
	switch k {
	case "HELO":
		return x.badCmd("- Already logged in")
	case "QUIT":
		if err := x.commit(ctx); err != nil {
			x.log.Error("commit failed", "err", err)
			x.closeFolder()
			x.reply("- Some deleted messages not removed")
			return errClose
		}
		x.closeFolder()
		x.reply("+ OK")
		return errClose
	case "FOLD":
		if a == "" {
			return x.badCmd("- FOLD needs a folder name")
		}
		if x.switchFolder(ctx, a) {
			x.reply("#" + strconv.Itoa(len(x.msgs)))
		}
		return nil
	case "READ":
		if a != "" {
			n, err := strconv.Atoi(a)
			if err != nil || n < 0 || len(a) > 10 {
				return x.badCmd("- Invalid message number")
			}
			x.cur = n
		}
		return x.answerLength()
	case "RETR":
		if a != "" {
			return x.badCmd("- RETR takes no argument")
		}
		if !x.readable {
			return x.badCmd("- No message to retrieve: READ first")
		}
		if err := x.sendMessage(ctx, x.cur-1); err != nil {
			return err
		}
		x.readable, x.awaitAck = false, true
		return nil
	case "ACKS", "ACKD", "NACK":
		if a != "" {
			return x.badCmd("- " + k + " takes no argument")
		}
		if !x.awaitAck {
			return x.badCmd("- No message retrieved to acknowledge")
		}
		x.awaitAck = false
		switch k {
		case "ACKD":
			x.deleted[x.cur-1] = true
			x.nDeleted++
			x.cur++
		case "ACKS":
			x.cur++
		}
		return x.answerLength()
	}
	return x.badCmd("- Unknown command")
}

// answerLength answers "=ccc" for the current message.
func (x *session) answerLength() error {
	n := x.size(x.cur)
	x.readable = n > 0
	x.awaitAck = false
	x.reply("=" + strconv.FormatInt(n, 10))
	return nil
}

// sendMessage writes message i with CRLF line ends, exactly its listed
// size in octets (see the package doc for a mismatch).
func (x *session) sendMessage(ctx context.Context, i int) error {
	r, err := x.md.Open(ctx, i)
	if err != nil {
		// No length-prefixed data can be sent; the client would wait for
		// it, so the session ends (RFC 937 has no error reply for RETR).
		x.log.Error("opening message failed", "msg", i+1, "err", err)
		return errClose
	}
	defer r.Close()
	want := x.msgs[i].Size
	ew := &exactWriter{w: x.bw, left: want}
	_, err = copyCRLF(ew, r, false)
	if err == nil && ew.left != 0 || ew.over {
		x.log.Warn("message size changed since listing; closing", "msg", i+1, "listed", want)
		return errClose
	}
	if err != nil {
		return fmt.Errorf("sending message %d: %w", i+1, err)
	}
	return nil
}

// exactWriter passes at most left octets to w and records any excess.
type exactWriter struct {
	w    io.Writer
	left int64
	over bool
}

func (e *exactWriter) Write(p []byte) (int, error) {
	n := len(p)
	if int64(len(p)) > e.left {
		p = p[:e.left]
		e.over = true
	}
	if len(p) > 0 {
		if _, err := e.w.Write(p); err != nil {
			return 0, err
		}
		e.left -= int64(len(p))
	}
	return n, nil
}

// copyCRLF copies a stored message to w with every line ending in CRLF and
// a final CRLF (CR only, after a final CR) when the message lacks one: the
// octets store.Message.Size counts. With quoteFrom, a line matching
// ">*From " gets one more '>' (mboxrd). It returns the octets written.
func copyCRLF(w io.Writer, r io.Reader, quoteFrom bool) (int64, error) {
	br := bufio.NewReaderSize(r, 32<<10)
	var n int64
	bol := true        // at the start of a line
	pendingCR := false // a CR ended the last chunk of a line longer than the buffer
	write := func(b []byte) error {
		m, err := w.Write(b)
		n += int64(m)
		return err
	}
	for {
		chunk, err := br.ReadSlice('\n')
		if len(chunk) > 0 {
			var werr error
			if bol && quoteFrom && isFromLine(chunk) {
				werr = write([]byte{'>'})
			}
			if pendingCR && chunk[0] != '\n' && werr == nil {
				werr = write([]byte{'\r'})
			}
			pendingCR = false
			switch {
			case werr != nil:
			case chunk[len(chunk)-1] == '\n':
				body := bytes.TrimSuffix(chunk[:len(chunk)-1], []byte{'\r'})
				if werr = write(body); werr == nil {
					werr = write([]byte("\r\n"))
				}
				bol = true
			case chunk[len(chunk)-1] == '\r':
				werr = write(chunk[:len(chunk)-1])
				pendingCR, bol = true, false
			default:
				werr = write(chunk)
				bol = false
			}
			if werr != nil {
				return n, werr
			}
		}
		switch {
		case err == bufio.ErrBufferFull:
		case err == io.EOF:
			if !bol {
				// A last line without LF is completed: CR LF, or the LF
				// after a final CR.
				if err := write([]byte("\r\n")); err != nil {
					return n, err
				}
			}
			return n, nil
		case err != nil:
			return n, err
		}
	}
}

// isFromLine reports whether line starts with ">*From " (mboxrd).
func isFromLine(line []byte) bool {
	line = bytes.TrimLeft(line, ">")
	return bytes.HasPrefix(line, []byte("From "))
}
