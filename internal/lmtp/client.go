package lmtp

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// ClientOptions configure Dial. The zero value speaks SMTP.
type ClientOptions struct {
	// LMTP speaks LMTP (RFC 2033: LHLO, one reply per recipient after the
	// message) instead of SMTP (RFC 5321).
	LMTP bool
	// LocalName is the name sent with LHLO or EHLO; "" means "localhost".
	LocalName string
	// Timeout bounds each command's reply and, separately, the reply after
	// the message; 0 means 5 minutes (RFC 5321 §4.5.3.2).
	Timeout time.Duration
	// StartTLS, if set, makes an SMTP client start TLS (RFC 3207) with
	// this configuration before anything else, and fail if the server
	// does not offer it. Not for LMTP.
	StartTLS *tls.Config
	// Username and Password, if set, authenticate (RFC 4954) after
	// STARTTLS, with PLAIN or else LOGIN, whichever the server offers.
	Username, Password string
}

// Client sends messages to one LMTP or SMTP server, one transaction at a
// time. It is the forwarding side of "postoffice fetch" (targets lmtp: and
// smtp:): an LMTP server or local MTA as is, a smarthost with STARTTLS and
// AUTH.
type Client struct {
	c    *smtp.Client
	conn net.Conn
	lmtp bool
	err  error // sticky: the connection is unusable
}

// ReplyError is a refusal by the server: the reply to MAIL, RCPT or, after
// the message, DATA (for LMTP, the reply for the recipient).
type ReplyError struct {
	Stage string // "MAIL", "RCPT" or "DATA"
	// Recipient is the address refused, for a RCPT refusal by SendAll.
	Recipient string
	Code      int    // 4xx or 5xx
	Enhanced  string // RFC 3463 code such as "5.1.1", or ""
	Message   string
}

func (e *ReplyError) Error() string {
	s := fmt.Sprintf("lmtp: %s refused: %d", e.Stage, e.Code)
	if e.Enhanced != "" {
		s += " " + e.Enhanced
	}
	return s + " " + e.Message
}

// Temporary reports a 4xx reply: the same message may succeed later.
func (e *ReplyError) Temporary() bool { return e.Code >= 400 && e.Code < 500 }

// Dial connects to an LMTP or SMTP server: network is "tcp" (addr
// host:port) or "unix" (addr a socket path). It reads the greeting and
// sends LHLO (EHLO, or HELO for an old SMTP server); ctx bounds all that.
func Dial(ctx context.Context, network, addr string, opts ClientOptions) (*Client, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, fmt.Errorf("lmtp: %w", err)
	}
	if opts.Timeout == 0 {
		opts.Timeout = 5 * time.Minute
	}
	if opts.LMTP && (opts.StartTLS != nil || opts.Username != "") {
		conn.Close()
		return nil, errors.New("lmtp: STARTTLS and AUTH are for SMTP only")
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	var c *smtp.Client
	cl := &Client{conn: conn, lmtp: opts.LMTP}
	switch {
	case opts.LMTP:
		c = smtp.NewClientLMTP(conn)
	case opts.StartTLS != nil:
		// EHLO, STARTTLS and the handshake, bounded by ctx; the EHLO
		// below is sent again over TLS (RFC 3207 §4.2).
		conn.SetDeadline(time.Now().Add(opts.Timeout))
		var err error
		if c, err = smtp.NewClientStartTLS(conn, opts.StartTLS); err != nil {
			conn.Close()
			return nil, cl.wrap("STARTTLS", err, ctx)
		}
		conn.SetDeadline(time.Time{})
	default:
		c = smtp.NewClient(conn)
	}
	cl.c = c
	c.CommandTimeout = opts.Timeout
	c.SubmissionTimeout = opts.Timeout
	name := opts.LocalName
	if name == "" {
		name = "localhost"
	}
	if err := c.Hello(name); err != nil {
		c.Close()
		return nil, cl.wrap("LHLO", err, ctx)
	}
	if opts.Username != "" {
		var a sasl.Client
		switch {
		case c.SupportsAuth("PLAIN"):
			a = sasl.NewPlainClient("", opts.Username, opts.Password)
		case c.SupportsAuth("LOGIN"):
			a = sasl.NewLoginClient(opts.Username, opts.Password)
		default:
			c.Close()
			_, mechs := c.Extension("AUTH")
			return nil, fmt.Errorf("lmtp: the server offers neither AUTH PLAIN nor LOGIN (AUTH %q)", mechs)
		}
		if err := c.Auth(a); err != nil {
			c.Close()
			return nil, cl.wrap("AUTH", err, ctx)
		}
	}
	return cl, nil
}

// Send runs one transaction: MAIL FROM:<from> ("" is the null sender <>),
// RCPT TO:<rcpt>, DATA with the message read from r (CRLF line ends; it is
// dot-stuffed on the way and never held whole). It returns nil only once
// the server accepted the message for rcpt with 250 (for LMTP, rcpt's own
// reply after the message, RFC 2033 §4.2): then the server has it.
//
// A refusal is a *ReplyError, and the client stays usable. An error of r
// aborts the transaction without the final dot (the server must not take a
// truncated message) and is returned as it is; that, a cancelled ctx and a
// network error leave the Client broken: Close it.
func (c *Client) Send(ctx context.Context, from, rcpt string, r io.Reader) error {
	return c.send(ctx, from, []string{rcpt}, r)
}

// SendAll is Send for several recipients, over SMTP only: one MAIL FROM,
// one RCPT TO for each of rcpts, and the message once. It is all or
// nothing: when the server refuses any recipient, the transaction is
// reset (RSET) before the message is sent and the refusal is returned as
// a *ReplyError with Stage "RCPT" and Recipient set, so a caller never has
// a message delivered to some recipients and refused for others. Over
// LMTP each recipient has its own reply after the message (RFC 2033
// §4.2), which would break that promise, so SendAll refuses LMTP.
func (c *Client) SendAll(ctx context.Context, from string, rcpts []string, r io.Reader) error {
	if c.lmtp {
		return errors.New("lmtp: SendAll is for SMTP only: send to one LMTP recipient at a time")
	}
	if len(rcpts) == 0 {
		return errors.New("lmtp: SendAll needs at least one recipient")
	}
	return c.send(ctx, from, rcpts, r)
}

// send runs one transaction for Send and SendAll.
func (c *Client) send(ctx context.Context, from string, rcpts []string, r io.Reader) error {
	if c.err != nil {
		return c.err
	}
	for _, rcpt := range rcpts {
		if strings.ContainsAny(from+rcpt, "<>\r\n \t") {
			return fmt.Errorf("lmtp: bad address in MAIL FROM:<%q> or RCPT TO:<%q>", from, rcpt)
		}
	}
	stop := context.AfterFunc(ctx, func() { c.conn.Close() })
	defer stop()
	if err := c.c.Mail(from, nil); err != nil {
		return c.wrap("MAIL", err, ctx)
	}
	for _, rcpt := range rcpts {
		if err := c.c.Rcpt(rcpt, nil); err != nil {
			err = c.wrap("RCPT", err, ctx)
			if re, ok := err.(*ReplyError); ok {
				re.Recipient = rcpt
			}
			c.reset()
			return err
		}
	}
	w, err := c.c.Data()
	if err != nil {
		err = c.wrap("DATA", err, ctx)
		c.reset()
		return err
	}
	src := &srcReader{r: r}
	if _, err := io.Copy(w, src); err != nil {
		// Never send the final dot after a short message.
		c.conn.Close()
		if src.err != nil {
			c.err = fmt.Errorf("lmtp: message source failed: %w", src.err)
			return src.err
		}
		return c.wrap("DATA", err, ctx)
	}
	if c.lmtp {
		_, err = w.CloseWithLMTPResponse()
		var le smtp.LMTPDataError
		if errors.As(err, &le) {
			if se, ok := le[rcpts[0]]; ok {
				return replyError("DATA", se)
			}
		}
	} else {
		_, err = w.CloseWithResponse()
	}
	if err != nil {
		return c.wrap("DATA", err, ctx)
	}
	return nil
}

// reset ends a refused transaction (RSET), so the next one starts clean.
func (c *Client) reset() {
	if c.err == nil {
		if err := c.c.Reset(); err != nil {
			c.err = fmt.Errorf("lmtp: RSET: %w", err)
		}
	}
}

// wrap turns a go-smtp error into a *ReplyError, or marks the client broken.
func (c *Client) wrap(stage string, err error, ctx context.Context) error {
	var se *smtp.SMTPError
	if errors.As(err, &se) && se.Code >= 400 && se.Code < 600 {
		return replyError(stage, se)
	}
	if cerr := ctx.Err(); cerr != nil {
		err = cerr
	}
	c.err = fmt.Errorf("lmtp: %s: %w", stage, err)
	c.conn.Close()
	return c.err
}

func replyError(stage string, se *smtp.SMTPError) *ReplyError {
	e := &ReplyError{Stage: stage, Code: se.Code, Message: se.Message}
	if se.EnhancedCode != (smtp.EnhancedCode{}) && se.EnhancedCode != smtp.NoEnhancedCode {
		ec := se.EnhancedCode
		e.Enhanced = fmt.Sprintf("%d.%d.%d", ec[0], ec[1], ec[2])
	}
	return e
}

// Close sends QUIT (if the connection still works) and closes it.
func (c *Client) Close() error {
	if c.err == nil {
		c.err = errors.New("lmtp: client closed")
		c.conn.SetDeadline(time.Now().Add(10 * time.Second))
		if c.c.Quit() == nil {
			return nil
		}
	}
	c.conn.Close()
	return nil
}

// srcReader remembers the error of the message source, to tell it from a
// failed write to the server.
type srcReader struct {
	r   io.Reader
	err error
}

func (s *srcReader) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if err != nil && err != io.EOF {
		s.err = err
	}
	return n, err
}
