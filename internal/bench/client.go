package bench

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"time"
)

// TLSMode is how a session is encrypted.
type TLSMode string

// The TLS modes: none, STLS after the greeting (RFC 2595 §4), and implicit
// TLS from the first octet (RFC 8314, POP3S).
const (
	TLSNone     TLSMode = "none"
	TLSStartTLS TLSMode = "starttls"
	TLSImplicit TLSMode = "implicit"
)

// ParseTLSMode parses a --tls value.
func ParseTLSMode(s string) (TLSMode, error) {
	switch m := TLSMode(s); m {
	case TLSNone, TLSStartTLS, TLSImplicit:
		return m, nil
	case "":
		return TLSNone, nil
	}
	return "", fmt.Errorf("bench: --tls must be none, starttls or implicit, not %q", s)
}

// errKind classifies a failed session for the report.
type errKind string

const (
	kindConnect  errKind = "connect"  // dial failed
	kindTLS      errKind = "tls"      // handshake failed
	kindIO       errKind = "io"       // read, write, timeout, connection closed
	kindLogin    errKind = "login"    // -ERR to USER or PASS
	kindProtocol errKind = "protocol" // -ERR or a malformed reply where +OK was due
	kindVerify   errKind = "verify"   // a reply that was wrong: size, count, terminator
)

// sessionError is a failed session: what kind, and what happened.
type sessionError struct {
	kind errKind
	err  error
}

func (e *sessionError) Error() string { return string(e.kind) + ": " + e.err.Error() }
func (e *sessionError) Unwrap() error { return e.err }

func fail(kind errKind, format string, args ...any) error {
	return &sessionError{kind: kind, err: fmt.Errorf(format, args...)}
}

func ioErr(err error) error {
	var se *sessionError
	if errors.As(err, &se) {
		return err
	}
	return &sessionError{kind: kindIO, err: err}
}

// readBufSize is the client's read buffer: large enough for long lines and
// for few read system calls in RETR.
const readBufSize = 64 << 10

// client is a lean POP3 client for the load generator. Replies are read
// out of one buffer; lines are valid until the next read.
type client struct {
	nc      net.Conn
	buf     []byte
	r, w    int
	out     []byte
	timeout time.Duration
	resumed bool // the TLS handshake resumed an earlier session
}

// dialOptions say how to reach the server.
type dialOptions struct {
	addr    string
	tls     TLSMode
	tlsConf *tls.Config
	timeout time.Duration // every read and write
	dialer  net.Dialer
}

// dial connects, performs the TLS handshake the mode asks for, and reads the
// greeting.
func dial(ctx context.Context, o *dialOptions) (*client, error) {
	dctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	nc, err := o.dialer.DialContext(dctx, "tcp", o.addr)
	if err != nil {
		return nil, &sessionError{kind: kindConnect, err: err}
	}
	c := &client{nc: nc, buf: make([]byte, readBufSize), timeout: o.timeout}
	if o.tls == TLSImplicit {
		if err := c.startTLS(dctx, nc, o); err != nil {
			return nil, err
		}
	}
	if _, err := c.status(); err != nil {
		c.close()
		return nil, err
	}
	if o.tls == TLSStartTLS {
		if err := c.cmdOK("STLS"); err != nil {
			c.close()
			return nil, err
		}
		if c.r != c.w {
			c.close()
			return nil, fail(kindProtocol, "data after the STLS reply (RFC 2595 §4 forbids it)")
		}
		if err := c.startTLS(dctx, nc, o); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// startTLS runs the TLS handshake on nc within the timeout and makes the
// client speak through it; on failure nc is closed.
func (c *client) startTLS(ctx context.Context, nc net.Conn, o *dialOptions) error {
	tc := tls.Client(nc, o.tlsConf)
	nc.SetDeadline(time.Now().Add(o.timeout))
	if err := tc.HandshakeContext(ctx); err != nil {
		nc.Close()
		return &sessionError{kind: kindTLS, err: err}
	}
	c.nc = tc
	c.resumed = tc.ConnectionState().DidResume
	return nil
}

func (c *client) close() { c.nc.Close() }

// send writes one command line.
func (c *client) send(parts ...string) error {
	c.out = c.out[:0]
	for _, p := range parts {
		c.out = append(c.out, p...)
	}
	c.out = append(c.out, '\r', '\n')
	c.nc.SetDeadline(time.Now().Add(c.timeout))
	if _, err := c.nc.Write(c.out); err != nil {
		return ioErr(err)
	}
	return nil
}

// sendNum writes "CMD n" or "CMD n k" without allocating.
func (c *client) sendNum(cmd string, n int, k int) error {
	c.out = append(c.out[:0], cmd...)
	c.out = append(c.out, ' ')
	c.out = strconv.AppendInt(c.out, int64(n), 10)
	if k >= 0 {
		c.out = append(c.out, ' ')
		c.out = strconv.AppendInt(c.out, int64(k), 10)
	}
	c.out = append(c.out, '\r', '\n')
	c.nc.SetDeadline(time.Now().Add(c.timeout))
	if _, err := c.nc.Write(c.out); err != nil {
		return ioErr(err)
	}
	return nil
}

// fill reads more input, keeping the unread part, until at least need
// octets are buffered.
func (c *client) fill(need int) error {
	for c.w-c.r < need {
		if c.r > 0 && (c.r == c.w || len(c.buf)-c.w < need) {
			c.w = copy(c.buf, c.buf[c.r:c.w])
			c.r = 0
		}
		if c.w == len(c.buf) {
			return fail(kindProtocol, "line longer than %d octets", len(c.buf))
		}
		n, err := c.nc.Read(c.buf[c.w:])
		c.w += n
		if err != nil && c.w-c.r < need {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return ioErr(err)
		}
	}
	return nil
}

// line returns the next line without its CRLF.
func (c *client) line() ([]byte, error) {
	for {
		if i := bytes.IndexByte(c.buf[c.r:c.w], '\n'); i >= 0 {
			l := c.buf[c.r : c.r+i]
			c.r += i + 1
			return bytes.TrimSuffix(l, []byte{'\r'}), nil
		}
		if err := c.fill(c.w - c.r + 1); err != nil {
			return nil, err
		}
	}
}

// status reads a status line and returns its text after "+OK". A "-ERR" is
// a protocol error.
func (c *client) status() ([]byte, error) {
	l, err := c.line()
	if err != nil {
		return nil, err
	}
	if bytes.HasPrefix(l, []byte("+OK")) {
		return bytes.TrimPrefix(l[3:], []byte{' '}), nil
	}
	return nil, fail(kindProtocol, "reply %.80q", l)
}

// cmdOK sends a command and wants +OK.
func (c *client) cmdOK(parts ...string) error {
	if err := c.send(parts...); err != nil {
		return err
	}
	_, err := c.status()
	return err
}

// login runs USER and PASS (RFC 1939 §7).
func (c *client) login(user, pass string) error {
	if err := c.send("USER ", user); err != nil {
		return err
	}
	if _, err := c.status(); err != nil {
		return relabel(err, kindLogin)
	}
	if err := c.send("PASS ", pass); err != nil {
		return err
	}
	if _, err := c.status(); err != nil {
		return relabel(err, kindLogin)
	}
	return nil
}

func relabel(err error, kind errKind) error {
	var se *sessionError
	if errors.As(err, &se) && se.kind == kindProtocol {
		return &sessionError{kind: kind, err: se.err}
	}
	return err
}

// stat runs STAT and returns the count and size.
func (c *client) stat() (int, int64, error) {
	if err := c.send("STAT"); err != nil {
		return 0, 0, err
	}
	t, err := c.status()
	if err != nil {
		return 0, 0, err
	}
	f := bytes.Fields(t)
	if len(f) < 2 {
		return 0, 0, fail(kindProtocol, "STAT reply %q", t)
	}
	n, err1 := strconv.Atoi(string(f[0]))
	size, err2 := strconv.ParseInt(string(f[1]), 10, 64)
	if err1 != nil || err2 != nil || n < 0 || size < 0 {
		return 0, 0, fail(kindProtocol, "STAT reply %q", t)
	}
	return n, size, nil
}

// listing reads the lines of a multi-line reply whose lines are short
// ("n value"), calling fn with each, terminator excluded and un-stuffed.
func (c *client) listing(fn func(l []byte) error) error {
	for {
		l, err := c.line()
		if err != nil {
			return err
		}
		if len(l) > 0 && l[0] == '.' {
			if len(l) == 1 {
				return nil
			}
			l = l[1:]
		}
		if err := fn(l); err != nil {
			return err
		}
	}
}

// body reads a multi-line reply to its terminating "." line. It returns
// the octets of the body after un-stuffing (line ends included, terminator
// excluded), the number of lines, and the length of the last line
// (without its CRLF; -1 if there was none). It reads straight out of the
// buffer, copying nothing.
func (c *client) body() (octets int64, lines int, last int, err error) {
	bol := true
	cur := 0        // octets of the current line so far
	prevCR := false // the octet before c.r was CR
	last = -1
	for {
		if c.r == c.w {
			if err := c.fill(1); err != nil {
				return octets, lines, last, err
			}
		}
		if bol {
			if c.buf[c.r] == '.' {
				if c.w-c.r < 3 {
					if err := c.fill(3); err != nil {
						return octets, lines, last, err
					}
				}
				if c.buf[c.r+1] == '\r' && c.buf[c.r+2] == '\n' {
					c.r += 3
					return octets, lines, last, nil
				}
				c.r++ // RFC 1939 §3: a stuffed "." is removed
			}
			bol, cur = false, 0
			if c.r == c.w {
				continue
			}
		}
		b := c.buf[c.r:c.w]
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			octets += int64(len(b))
			cur += len(b)
			c.r = c.w
			prevCR = b[len(b)-1] == '\r'
			continue
		}
		octets += int64(i + 1)
		cur += i + 1
		c.r += i + 1
		lines++
		last = cur - 2 // without CRLF
		if (i == 0 && !prevCR) || (i > 0 && b[i-1] != '\r') {
			return octets, lines, last, fail(kindVerify, "bare LF in a multi-line reply (line %d)", lines)
		}
		bol, prevCR = true, false
	}
}

// quit sends QUIT and wants +OK (RFC 1939 §6: the UPDATE state).
func (c *client) quit() error {
	err := c.cmdOK("QUIT")
	c.close()
	return err
}
