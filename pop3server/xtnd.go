package pop3server

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/mail"
	"strconv"
	"strings"
	"time"

	"github.com/postoffice-mail/postoffice/internal/wire"
	"github.com/postoffice-mail/postoffice/pop3proto"
)

// XTND XMIT, the Berkeley popper's way (kept by qpopper) for a client to
// send mail through its POP3 server, which Eudora used:
//
//	C: XTND XMIT
//	S: +OK Start sending message
//	C: (an RFC 5322 message, dot-stuffed, CRLF lines)
//	C: .
//	S: +OK Message sent successfully       or an -ERR saying why not
//
// popper wrote the message to a temporary file and ran "sendmail -t",
// which takes the recipients from the To, Cc and Bcc fields and removes
// Bcc. We do the same, with these decisions:
//   - It is off unless Workarounds.XTNDXMIT is set, and only a logged-in
//     user may use it (popper's state table allowed XTND in TRANSACTION
//     only); before login, with it off, XTND is an unknown command.
//   - The envelope sender is the logged-in user, as the Submitter turns
//     that name into an address; never a From or Sender field, so nobody
//     sends as someone else through it. The header is passed on as
//     written, From included: the relay's policy decides about that.
//   - Recipients are the addresses of the To, Cc and Bcc fields (RFC 5322
//     §3.6.3), each once; Resent-* fields are passed on and not used. The
//     Bcc fields are removed before the message goes on (the first choice
//     of RFC 5322 §3.6.3). At most XMIT.MaxRecipients; a message with
//     none, with an address that does not parse or is not ASCII, or with
//     more, is not sent.
//   - Only the header is held in memory, at most maxXmitHeader octets;
//     the body streams to the Submitter line by line. Lines are at most
//     998 octets before CRLF (RFC 5322 §2.1.1), the message at most
//     XMIT.MaxMessageSize octets (counted as received, dot-unstuffed,
//     CRLF). A message found too large or with too long a line on the way
//     is abandoned before its end (the Submitter's reader fails, so the
//     relay never gets its final dot and keeps nothing), the rest of it is
//     read and dropped up to the "." line, and the reply is -ERR. A client
//     that goes on past twice the size limit (plus the header bound) is
//     cut off.
//   - A "Received:" field naming the client's address and this server is
//     put in front (RFC 5321 §4.4 asks it of every host that passes a
//     message on), so the relay's logs and the recipients can trace it.
//   - The reply comes only once the relay has answered: +OK means the
//     relay has taken the message. A relay that is down or refuses for
//     now gives -ERR [SYS/TEMP]: the client may send again.
//   - CAPA lists "XTND XMIT" after login when it is on. popper never
//     advertised XTND (Eudora sends it without asking); a tag costs
//     nothing, and "XTND" begins with "X" as RFC 2449 §9 wants of
//     unregistered capabilities. Before login it is not listed, as the
//     command is not valid then.

// XMIT turns on XTND XMIT (see above). It is the one workaround that makes
// the POP3 port a way to send mail: a client that can log in can send to
// anyone through the relay, so it is off unless set.
type XMIT struct {
	// Submitter passes the message on; required.
	Submitter Submitter
	// MaxMessageSize bounds a message, in octets as received (CRLF,
	// dot-unstuffed). Default 10 MiB.
	MaxMessageSize int64
	// MaxRecipients bounds the addresses of To, Cc and Bcc together.
	// Default 100.
	MaxRecipients int
}

// Submitter passes a message sent with XTND XMIT on to a mail relay.
type Submitter interface {
	// Submit sends msg from the logged-in user to rcpts (bare addresses,
	// at least one). The envelope sender is user's address, as the
	// Submitter makes it from the login name. msg yields the message with
	// CRLF line ends, unstuffed; it fails (with an error that is not
	// io.EOF) when the message turns out too large or the client goes
	// away, and then nothing may be sent: the relay must not get the end
	// of the data. Submit returns nil only once the relay has accepted the
	// message, having read msg to io.EOF.
	//
	// An *Error is sent to the client as it is ("[SYS/PERM]" for a
	// refusal that sending again will not change); any other error is
	// logged and answered "-ERR [SYS/TEMP]".
	Submit(ctx context.Context, user string, rcpts []string, msg io.Reader) error
}

// Defaults and bounds of XTND XMIT.
const (
	DefaultXMITMaxMessageSize = 10 << 20
	DefaultXMITMaxRecipients  = 100
	// maxXmitLine is the longest message line, CRLF included (RFC 5322
	// §2.1.1: 998 octets before it).
	maxXmitLine = 1000
	// maxXmitHeader bounds the header held in memory to find the
	// recipients.
	maxXmitHeader = 64 << 10
	// xmitTimeout bounds a whole XTND XMIT, reading and sending: enough for
	// 10 MiB at 6 KB/s. Each line must also arrive within the idle timeout.
	xmitTimeout = 30 * time.Minute
)

// Replies of XTND XMIT after "+OK Start sending message".
const (
	replyXmitStart       = "+OK Start sending message"
	replyXmitSent        = "+OK Message sent successfully"
	replyXmitLongLine    = "-ERR Message has a line longer than 998 octets, not sent: send it with shorter lines (RFC 5322 §2.1.1)"
	replyXmitBigHeader   = "-ERR Message header too large, not sent: send a message with a shorter header"
	replyXmitNoRcpt      = "-ERR No recipients in To, Cc or Bcc, not sent: add a recipient and send it again"
	replyXmitBadRcpt     = "-ERR Unreadable address in To, Cc or Bcc, not sent: check the addresses and send it again"
	replyXmitManyRcpts   = "-ERR Too many recipients, not sent: send to fewer addresses per message"
	replyXmitUnavailable = "-ERR [SYS/TEMP] Mail relay unavailable, message not sent: try again in a few minutes"
	replyXmitCutOff      = "-ERR Message far too large, closing connection: reconnect and send smaller messages"
)

// Reasons a message read by an xmitReader is not sent.
var (
	errXmitTooLarge  = errors.New("pop3server: XTND XMIT message too large")
	errXmitLongLine  = errors.New("pop3server: XTND XMIT line too long")
	errXmitBigHeader = errors.New("pop3server: XTND XMIT header too large")
)

// xmitOptions returns the XMIT options with defaults, nil when XTND XMIT
// is off.
func (c *conn) xmitOptions() *XMIT {
	x := c.srv.opts.Workarounds.XTNDXMIT
	if x == nil || x.Submitter == nil {
		return nil
	}
	o := *x
	if o.MaxMessageSize <= 0 {
		o.MaxMessageSize = DefaultXMITMaxMessageSize
	}
	if o.MaxRecipients <= 0 {
		o.MaxRecipients = DefaultXMITMaxRecipients
	}
	return &o
}

// cmdXtndNotLoggedIn answers XTND before login.
func (c *conn) cmdXtndNotLoggedIn() error {
	if c.xmitOptions() == nil {
		return c.badErr("-ERR Unknown command: send CAPA for the commands this server supports")
	}
	return c.badErr("-ERR Not logged in: log in first with USER and PASS, APOP or AUTH")
}

// capaXtnd adds the XTND tag after login when XTND XMIT is on.
func (c *conn) capaXtnd() {
	if c.state == stateTransaction && c.xmitOptions() != nil {
		c.writeLine("XTND XMIT")
	}
}

// cmdXtnd is "XTND XMIT" in the TRANSACTION state (see XMIT). A non-nil
// error ends the session.
func (c *conn) cmdXtnd(ctx context.Context, args []byte) error {
	o := c.xmitOptions()
	if o == nil {
		return c.badErr("-ERR Unknown command: send CAPA for the commands this server supports")
	}
	if !wire.EqualFoldASCII(string(args), "XMIT") {
		return c.badErr("-ERR Unknown XTND subcommand: send XTND XMIT, the only one this server supports")
	}
	c.writeLine(replyXmitStart)
	if err := c.flush(); err != nil {
		return err
	}
	start := time.Now()
	r := &xmitReader{c: c, limit: o.MaxMessageSize, deadline: start.Add(xmitTimeout)}
	defer c.nc.SetReadDeadline(time.Time{})

	head, err := r.readHeader()
	var rcpts []string
	var reply string
	if err == nil {
		rcpts, reply = xmitRecipients(head, o.MaxRecipients)
	}
	var sendErr error
	if err == nil && reply == "" {
		msg := io.MultiReader(strings.NewReader(c.receivedField(start)), bytes.NewReader(stripBcc(head)), r)
		sendErr = o.Submitter.Submit(ctx, c.user, rcpts, msg)
	}
	// Whatever happened, read the rest of the message up to its "." line,
	// so the next command is read from the right place.
	if derr := r.drain(); derr != nil {
		if derr == errXmitTooLarge {
			c.log.Info("xtnd xmit cut off", "read", r.read)
			c.writeLine(replyXmitCutOff)
			c.linger = true
			return errClose
		}
		// The client went away or stalled: end as for any dropped session.
		return derr
	}
	if r.err != nil {
		err = r.err
	}
	switch {
	case err == errXmitTooLarge:
		reply = "-ERR Message too large, not sent: send at most " + strconv.FormatInt(o.MaxMessageSize, 10) + " octets per message"
	case err == errXmitLongLine:
		reply = replyXmitLongLine
	case err == errXmitBigHeader:
		reply = replyXmitBigHeader
	case err != nil:
		return err
	case reply == replyXmitManyRcpts:
		reply = "-ERR Too many recipients, not sent: send to at most " + strconv.Itoa(o.MaxRecipients) + " addresses per message"
	case reply != "":
	case sendErr != nil:
		var pe *Error
		if errors.As(sendErr, &pe) && pe.Code != pop3proto.CodeAuth {
			reply = pe.reply()
		} else {
			reply = replyXmitUnavailable
		}
	}
	attrs := []any{"recipients", len(rcpts), "size", r.n, "duration", time.Since(start).Round(time.Millisecond)}
	if reply != "" {
		if sendErr != nil {
			attrs = append(attrs, "err", sendErr)
		}
		c.log.Info("xtnd xmit refused", append(attrs, "reply", reply)...)
		c.writeLine(reply)
		return nil
	}
	c.log.Info("xtnd xmit sent", attrs...)
	c.writeLine(replyXmitSent)
	return nil
}

// receivedField is the trace field put in front of a message sent with
// XTND XMIT (RFC 5321 §4.4): the client's address as an address literal,
// this server's name, the time.
func (c *conn) receivedField(now time.Time) string {
	var b strings.Builder
	b.WriteString("Received: ")
	if ta, ok := c.info.RemoteAddr.(*net.TCPAddr); ok {
		if ip := ta.AddrPort().Addr().Unmap(); ip.Is4() {
			b.WriteString("from [" + ip.String() + "] ")
		} else if ip.Is6() {
			b.WriteString("from [IPv6:" + ip.WithZone("").String() + "] ")
		}
	}
	b.WriteString("by " + c.srv.opts.Hostname + " (postoffice XTND XMIT);\r\n\t")
	b.WriteString(now.Format(time.RFC1123Z) + "\r\n")
	return b.String()
}

// xmitReader reads the message of XTND XMIT from the client: lines up to
// the "." line, unstuffed (RFC 1939 §3), with CRLF line ends, bounded in
// line length, total size and time. Its Read is what the Submitter gets
// after the header; it fails with errXmitTooLarge or errXmitLongLine, or
// the network's error, and never returns io.EOF before the "." line.
type xmitReader struct {
	c        *conn
	limit    int64     // largest message accepted
	deadline time.Time // the end of the whole command
	n        int64     // message octets so far (CRLF, unstuffed)
	read     int64     // octets taken from the client, for drain's bound
	line     []byte    // the rest of the current line, CRLF included
	buf      []byte    // line's storage
	done     bool      // the "." line has been read
	err      error     // sticky: why the message is not sent
}

// next reads the next line into r.line. At the "." line it sets done.
func (r *xmitReader) next() error {
	d := time.Now().Add(r.c.srv.opts.IdleTimeout)
	if d.After(r.deadline) {
		d = r.deadline
	}
	r.c.nc.SetReadDeadline(d)
	line, n, err := wire.ReadLine(r.c.br, maxXmitLine)
	r.read += int64(n)
	if err == wire.ErrLineTooLong {
		// ReadLine has consumed the line; its length is not known, so
		// count at least the limit towards drain's bound.
		r.read += maxXmitLine
		r.line = r.line[:0]
		return errXmitLongLine
	}
	if err != nil {
		return err
	}
	if len(line) == 1 && line[0] == '.' {
		r.done = true
		r.line = r.line[:0]
		return nil
	}
	if len(line) > 0 && line[0] == '.' {
		line = line[1:] // RFC 1939 §3: a stuffed line
	}
	r.buf = append(append(r.buf[:0], line...), '\r', '\n')
	r.line = r.buf
	r.n += int64(len(r.buf))
	if r.n > r.limit {
		r.line = r.line[:0]
		return errXmitTooLarge
	}
	return nil
}

// Read gives the message after the header, for the Submitter.
func (r *xmitReader) Read(p []byte) (int, error) {
	for len(r.line) == 0 {
		if r.err != nil {
			return 0, r.err
		}
		if r.done {
			return 0, io.EOF
		}
		if err := r.next(); err != nil {
			r.err = err
		}
	}
	n := copy(p, r.line)
	r.line = r.line[n:]
	return n, nil
}

// readHeader reads the header, up to and including the empty line that
// ends it (or the whole message when it has none), at most
// maxXmitHeader octets.
func (r *xmitReader) readHeader() ([]byte, error) {
	var head []byte
	for !r.done {
		if err := r.next(); err != nil {
			r.err = err
			return nil, err
		}
		if len(head)+len(r.line) > maxXmitHeader {
			r.err = errXmitBigHeader
			return nil, r.err
		}
		head = append(head, r.line...)
		empty := len(r.line) == 2
		r.line = r.line[:0]
		if empty {
			break
		}
	}
	return head, nil
}

// drain reads and drops what is left of the message up to its "." line.
// A network error ends it with that error, as does a client that sends
// more than twice the size limit in all (errXmitTooLarge): reading on would
// let one command take any amount of input.
func (r *xmitReader) drain() error {
	for !r.done {
		if r.read > 2*r.limit+maxXmitHeader {
			return errXmitTooLarge
		}
		switch err := r.next(); err {
		case nil:
			r.line = r.line[:0]
		case errXmitTooLarge, errXmitLongLine:
			if r.err == nil {
				r.err = err
			}
		default:
			return err
		}
	}
	return nil
}

// headerFields splits a header into its fields, each with its
// continuation lines (RFC 5322 §2.2.3), CRLF included. The empty line at
// its end is a field of its own.
func headerFields(head []byte) [][]byte {
	var fields [][]byte
	for len(head) > 0 {
		end := 0
		for {
			i := bytes.IndexByte(head[end:], '\n')
			if i < 0 {
				end = len(head)
				break
			}
			end += i + 1
			if end >= len(head) || (head[end] != ' ' && head[end] != '\t') {
				break
			}
		}
		fields = append(fields, head[:end])
		head = head[end:]
	}
	return fields
}

// fieldName returns the name of a header field, "" when the line has none.
func fieldName(f []byte) string {
	i := bytes.IndexByte(f, ':')
	if i <= 0 {
		return ""
	}
	return string(bytes.TrimRight(f[:i], " \t"))
}

// xmitRecipients returns the addresses of the To, Cc and Bcc fields of
// head, each once, or the reply that refuses the message.
func xmitRecipients(head []byte, limit int) ([]string, string) {
	var rcpts []string
	seen := make(map[string]bool)
	for _, f := range headerFields(head) {
		name := fieldName(f)
		if !wire.EqualFoldASCII(name, "To") && !wire.EqualFoldASCII(name, "Cc") && !wire.EqualFoldASCII(name, "Bcc") {
			continue
		}
		v := f[bytes.IndexByte(f, ':')+1:]
		// Unfold (RFC 5322 §2.2.3): remove the CRLFs.
		v = bytes.ReplaceAll(bytes.ReplaceAll(v, []byte("\r\n"), nil), []byte("\n"), nil)
		if len(bytes.TrimSpace(v)) == 0 {
			continue // an empty Bcc: is allowed (RFC 5322 §3.6.3)
		}
		list, err := mail.ParseAddressList(string(v))
		if err != nil {
			return nil, replyXmitBadRcpt
		}
		for _, a := range list {
			if !plainAddress(a.Address) {
				return nil, replyXmitBadRcpt
			}
			if seen[a.Address] {
				continue
			}
			seen[a.Address] = true
			if len(rcpts) == limit {
				return nil, replyXmitManyRcpts
			}
			rcpts = append(rcpts, a.Address)
		}
	}
	if len(rcpts) == 0 {
		return nil, replyXmitNoRcpt
	}
	return rcpts, ""
}

// plainAddress reports whether a is an address SMTP can carry without
// extensions: printable ASCII, no spaces or angle brackets, an "@" with
// text on both sides, at most 254 octets (RFC 5321 §4.5.3.1.3 less the
// brackets).
func plainAddress(a string) bool {
	at := strings.LastIndexByte(a, '@')
	if at <= 0 || at == len(a)-1 || len(a) > 254 {
		return false
	}
	for i := 0; i < len(a); i++ {
		if b := a[i]; b <= ' ' || b >= 0x7f || b == '<' || b == '>' {
			return false
		}
	}
	return true
}

// stripBcc returns head without its Bcc fields.
func stripBcc(head []byte) []byte {
	out := make([]byte, 0, len(head))
	for _, f := range headerFields(head) {
		if !wire.EqualFoldASCII(fieldName(f), "Bcc") {
			out = append(out, f...)
		}
	}
	return out
}
