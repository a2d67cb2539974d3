package pop3server

import (
	"bytes"
	"context"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/postoffice-mail/postoffice/internal/wire"
)

// The older members of the POP3 family that old clients still send, each
// off unless its switch or add-on interface says otherwise:
//   - LAST (RFC 1460 §5), behind Options.EnableLAST;
//   - RPOP (RFC 1081), through the RPOPSession add-on;
//   - SDPS's "*ENV n" (Demon Internet's Standard Dial-up POP3 Service),
//     through the EnvelopeMailbox add-on;
//   - the client workarounds of Options.Workarounds, XTND XMIT among
//     them (xtnd.go).
//
// CAPA names what is on with experimental tags (RFC 2449 §9: a capability
// that is not registered begins with "X"): X-RPOP before login, X-LAST and
// X-SDPS after it; XTND XMIT has its own tag, "XTND XMIT", after login.

// Workarounds are behaviours for old clients, named as Dovecot's
// pop3_client_workarounds where Dovecot has one. Each is off by default:
// a modern client needs none of them.
type Workarounds struct {
	// OutlookNoNULs sends every NUL octet of a message as 0x80 in RETR and
	// TOP (Dovecot's "outlook-no-nuls"): Outlook stops reading a message
	// at a NUL. The size LIST gives is unchanged (one octet for one).
	OutlookNoNULs bool
	// OENSEOH sends a blank line after a message that has no end of
	// header (no empty line: the message is all header), in RETR and TOP
	// (Dovecot's "oe-ns-eoh"): Outlook Express and Netscape Mail show such
	// a message as empty. As in Dovecot, LIST still gives the stored size,
	// so those messages are sent 2 octets longer than listed.
	OENSEOH bool
	// BareAUTH answers AUTH without an argument with the SASL mechanisms,
	// one per line ("+OK", the names, "."): Outlook and Netscape probe with
	// it; Microsoft's [MS-POP3] §2.2.1 documents it, no RFC does. Off, a
	// bare AUTH is a malformed command (RFC 5034 §4 requires a
	// mechanism); CAPA's SASL line says the same to any client that asks.
	BareAUTH bool
	// XTNDXMIT, when set with a Submitter, accepts "XTND XMIT" after
	// login: the Berkeley popper's command (kept by qpopper) through which
	// Eudora sent mail over its POP3 connection (xtnd.go). No Dovecot
	// equivalent. It makes the POP3 port a way to send mail, so it is nil
	// unless a site turns it on.
	XTNDXMIT *XMIT
}

// rewritesMessages reports whether a workaround changes the octets of
// messages sent, so that RETR must go through workaroundWriter.
func (w Workarounds) rewritesMessages() bool { return w.OutlookNoNULs || w.OENSEOH }

// RPOPSession is an add-on a Session implements to accept RPOP (RFC 1081):
// after USER, "RPOP name" instead of PASS, where name is the client's user
// on the client host. No password crosses the wire: the server trusts the
// client host to have checked its user, which is why RFC 1081 itself
// warns that RPOP is insecure and RFC 1460 dropped it. Every check (the
// client's network, its privileged source port, the host-equivalence
// entries) is the backend's: Conn.RemoteAddr is the client. Like APOP, RPOP
// is not subject to Options.AllowPlaintextAuth.
type RPOPSession interface {
	// RPOP opens user's maildrop when clientUser on the client host may
	// act as user, with the errors of Session.Login (a refusal is
	// ErrAuthFailed).
	RPOP(ctx context.Context, user, clientUser string) (Mailbox, error)
}

// EnvelopeMailbox is an add-on a Mailbox implements to answer SDPS's
// "*ENV n" with the SMTP envelope the message was delivered with (its
// reverse path and the one recipient this copy is for).
//
// The answer is multi-line, and a client that asks always gets one (an
// -ERR would leave fetchmail, which reads lines up to ".", waiting):
//
//	+OK Envelope follows
//	n           the message number
//	size        its size, as LIST gives it
//	sender      the envelope sender, bare; an empty line for the null sender
//	recipient   the envelope recipient, bare; empty when not known
//	.
//
// fetchmail's SDPS code takes the sender from the 4th line and the
// recipient from the 5th, counting the status line; those positions are
// what Demon's servers sent. What Demon put on lines 2 and 3 is not
// recorded anywhere we could find: we put the message number and size
// there.
type EnvelopeMailbox interface {
	// Envelope returns the envelope of message i (0-based): the reverse
	// path ("" for the null sender) and the recipient, both without angle
	// brackets; either may be "" when unknown.
	Envelope(ctx context.Context, i int) (from, to string, err error)
}

// capaLegacy adds the tags of the legacy features that are on now.
func (c *conn) capaLegacy() {
	if c.state == stateAuthorization {
		if _, ok := c.sess.(RPOPSession); ok {
			c.writeLine("X-RPOP")
		}
		return
	}
	if c.srv.opts.EnableLAST {
		c.writeLine("X-LAST")
	}
	if _, ok := c.mbox.(EnvelopeMailbox); ok {
		c.writeLine("X-SDPS")
	}
	c.capaXtnd()
}

// cmdLast is RFC 1460 §5 LAST: "+OK n", the highest message number
// retrieved in this session (RETR raises it; RSET sets it back to 0, as
// RFC 1460 says and Dovecot does). TOP and DELE leave it alone, as in
// Dovecot. Messages retrieved in earlier sessions do not count: the
// maildrop keeps no "seen" state for POP3.
func (c *conn) cmdLast(args []byte) error {
	if !c.srv.opts.EnableLAST {
		return c.badErr("-ERR Unknown command: send CAPA for the commands this server supports")
	}
	if len(args) != 0 {
		return c.badErr("-ERR LAST takes no arguments: send LAST alone")
	}
	c.bw.WriteString("+OK ")
	c.writeInt(int64(c.last))
	c.bw.WriteString("\r\n")
	return nil
}

// cmdRPOP is "RPOP name" (RFC 1081), valid right after USER, as PASS is.
// A session without RPOPSession does not know the command.
func (c *conn) cmdRPOP(ctx context.Context, clientUser string, afterUser bool) error {
	rs, ok := c.sess.(RPOPSession)
	if !ok {
		return c.badErr("-ERR Unknown command: send CAPA for the commands this server supports")
	}
	if !afterUser {
		return c.badErr("-ERR RPOP must follow USER: send USER first, then RPOP")
	}
	if clientUser == "" || strings.IndexByte(clientUser, 0) >= 0 || !c.validText(clientUser) {
		return c.badErr("-ERR RPOP needs a client user name: send RPOP followed by your user name on the client host")
	}
	if err := c.beforeLogin(c.user, "RPOP"); err != nil {
		return err
	}
	start := time.Now()
	mbox, err := rs.RPOP(ctx, c.user, clientUser)
	a := loginAttempt{method: "RPOP", d: time.Since(start)}
	if err != nil {
		return c.loginFailed(err, a, c.user, nil)
	}
	return c.enterTransaction(mbox, a)
}

// cmdEnv is SDPS's "*ENV n" (see EnvelopeMailbox). A maildrop without
// envelopes does not know the command.
func (c *conn) cmdEnv(ctx context.Context, args []byte) error {
	em, ok := c.mbox.(EnvelopeMailbox)
	if !ok {
		return c.badErr("-ERR Unknown command: send CAPA for the commands this server supports")
	}
	i, ok, err := c.msgArg(args)
	if !ok {
		return err
	}
	from, to, err := em.Envelope(ctx, i)
	if err != nil {
		// Still the multi-line answer the client waits for, with the
		// envelope unknown; the log gets the cause.
		c.log.Warn("reading envelope failed", "msg", i+1, "err", err)
		from, to = "", ""
	}
	c.writeLine("+OK Envelope follows")
	c.writeLine(strconv.Itoa(i + 1))
	c.writeLine(strconv.FormatInt(c.msgs[i].Size, 10))
	c.writeLine(envelopeLine(from))
	c.writeLine(envelopeLine(to))
	c.writeLine(".")
	return nil
}

// maxEnvelopeLine bounds an address line of *ENV (RFC 5321 §4.5.3.1.3:
// a path is at most 256 octets).
const maxEnvelopeLine = 256

// envelopeLine makes an address safe as one line of a multi-line reply:
// no control characters or angle brackets, at most maxEnvelopeLine
// octets, and dot-stuffed (RFC 1939 §3), so "." alone cannot end the
// reply early.
func envelopeLine(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || r == '<' || r == '>' {
			return -1
		}
		return r
	}, s)
	s = strings.TrimSpace(s)
	if len(s) > maxEnvelopeLine {
		s = s[:maxEnvelopeLine]
	}
	if strings.HasPrefix(s, ".") {
		s = "." + s
	}
	return s
}

// workaroundWriter applies Options.Workarounds to a message on its way
// to the DotWriter: NUL octets become 0x80 (OutlookNoNULs), and it
// tracks the end of the header and the last octet, for finish (OENSEOH).
type workaroundWriter struct {
	w       io.Writer
	noNULs  bool
	inBody  bool // an empty line has been seen
	lineLen int  // octets of the current line so far, CR excluded
	last    byte // the last octet written; 0 before any
	any     bool // an octet has been written
}

var octet80 = []byte{0x80}

func (ww *workaroundWriter) Write(p []byte) (int, error) {
	ww.track(p)
	if !ww.noNULs {
		return ww.w.Write(p)
	}
	n := 0
	for len(p) > 0 {
		i := bytes.IndexByte(p, 0)
		if i < 0 {
			m, err := ww.w.Write(p)
			return n + m, err
		}
		m, err := ww.w.Write(p[:i])
		n += m
		if err != nil {
			return n, err
		}
		if _, err := ww.w.Write(octet80); err != nil {
			return n, err
		}
		n++
		p = p[i+1:]
	}
	return n, nil
}

// track follows line ends to find the empty line that ends the header.
func (ww *workaroundWriter) track(p []byte) {
	if len(p) == 0 {
		return
	}
	ww.any = true
	ww.last = p[len(p)-1]
	if ww.inBody {
		return
	}
	for _, b := range p {
		switch b {
		case '\n':
			if ww.lineLen == 0 {
				ww.inBody = true
				return
			}
			ww.lineLen = 0
		case '\r':
		default:
			ww.lineLen++
		}
	}
}

// finish ends a message that had no end of header with an empty line
// (OENSEOH), completing its last line first.
func (ww *workaroundWriter) finish(enabled bool) error {
	if !enabled || ww.inBody {
		return nil
	}
	var err error
	switch {
	case ww.any && ww.last == '\r':
		_, err = io.WriteString(ww.w, "\n\r\n")
	case ww.any && ww.last != '\n':
		_, err = io.WriteString(ww.w, "\r\n\r\n")
	default:
		_, err = io.WriteString(ww.w, "\r\n")
	}
	if err == wire.ErrTopDone {
		// TOP n 0: the added empty line is the end of what it sends.
		err = nil
	}
	return err
}
