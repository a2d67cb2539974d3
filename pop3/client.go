package pop3

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/postoffice-mail/postoffice/internal/wire"
)

// Options configure a Client. A nil *Options means every default.
type Options struct {
	// TLSConfig is used for implicit TLS and STLS. Nil means the system
	// roots; an empty ServerName is set to the host that was dialled, so
	// the certificate is checked against it (RFC 2595 §2.4, RFC 7817).
	TLSConfig *tls.Config
	// Dialer makes the TCP connection; nil means a net.Dialer. Use it to
	// pick a source address, a proxy or a Unix socket.
	Dialer ContextDialer
	// Timeout bounds every single network read and write (so a long
	// message keeps going while data flows); 0 means none. The context of
	// each command bounds the command as a whole.
	Timeout time.Duration
	// DebugWriter, if set, receives a trace of the session ("C: ", "S: "
	// lines). Arguments of PASS, APOP and AUTH, SASL responses and message
	// data are never written to it.
	DebugWriter io.Writer
}

// ContextDialer dials network connections; *net.Dialer is one.
type ContextDialer interface {
	DialContext(ctx context.Context, network, addr string) (net.Conn, error)
}

// Greeting is the server's first line (RFC 1939 §4).
type Greeting struct {
	// Text follows "+OK ".
	Text string
	// Timestamp is the APOP msg-id timestamp ("<...>", RFC 1939 §7), or
	// empty when the server does not offer APOP.
	Timestamp string
}

// ScanListing is one message's line of a LIST reply, what RFC 1939 §5
// calls its scan listing: "n size".
type ScanListing struct {
	Num  int   // message number, 1-based
	Size int64 // octets in CRLF form, before dot-stuffing (RFC 1939 §11)
}

// UIDListing is one message's line of a UIDL reply, what RFC 1939 §7
// calls its unique-id listing: "n uid". Two messages may have the same
// UID on a broken server; clients must cope.
type UIDListing struct {
	Num int // message number, 1-based
	UID string
}

// Client is a POP3 connection. It is safe for use by one goroutine at a
// time; see the package documentation for its life cycle.
type Client struct {
	opts     Options
	host     string // dialled host, for TLS ServerName
	dc       *deadlineConn
	br       *bufio.Reader
	line     []byte // assembles a reply line longer than br's buffer
	bw       *bufio.Writer
	greeting Greeting
	loggedIn bool

	caps   *Caps // cached CAPA answer; nil: not asked since STLS/login
	body   *body // open Retr/Top body
	err    error // sticky: the client is broken
	closed bool
}

// Dial connects to addr ("host:port", usually port 110) without TLS and
// reads the greeting. Use StartTLS or DialStartTLS before sending
// credentials over a network.
func Dial(ctx context.Context, addr string, opts *Options) (*Client, error) {
	conn, host, err := dial(ctx, addr, opts)
	if err != nil {
		return nil, err
	}
	return newClient(ctx, conn, opts, host)
}

// DialTLS connects to addr (usually port 995) with implicit TLS (RFC 8314
// §3.1): the handshake comes first, the greeting inside TLS.
func DialTLS(ctx context.Context, addr string, opts *Options) (*Client, error) {
	conn, host, err := dial(ctx, addr, opts)
	if err != nil {
		return nil, err
	}
	tc := tls.Client(conn, tlsConfig(opts, host))
	if err := handshake(ctx, tc, opts); err != nil {
		conn.Close()
		return nil, err
	}
	return newClient(ctx, tc, opts, host)
}

// DialStartTLS connects to addr (usually port 110) and upgrades to TLS
// with STLS (RFC 2595 §4) before returning. It fails with ErrNoSTLS when
// the server does not advertise STLS in CAPA, rather than go on in clear.
func DialStartTLS(ctx context.Context, addr string, opts *Options) (*Client, error) {
	c, err := Dial(ctx, addr, opts)
	if err != nil {
		return nil, err
	}
	if err := c.StartTLS(ctx); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// NewClient starts a session on an established connection and reads the
// greeting under ctx. A *tls.Conn counts as TLS. opts.TLSConfig needs a
// ServerName for a later StartTLS, since no host was dialled. conn is
// closed when NewClient fails.
func NewClient(ctx context.Context, conn net.Conn, opts *Options) (*Client, error) {
	return newClient(ctx, conn, opts, "")
}

func dial(ctx context.Context, addr string, opts *Options) (net.Conn, string, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, "", fmt.Errorf("pop3: %w", err)
	}
	var d ContextDialer = &net.Dialer{}
	if opts != nil && opts.Dialer != nil {
		d = opts.Dialer
	}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, "", fmt.Errorf("pop3: %w", err)
	}
	return conn, host, nil
}

func tlsConfig(opts *Options, host string) *tls.Config {
	var cfg *tls.Config
	if opts != nil && opts.TLSConfig != nil {
		cfg = opts.TLSConfig.Clone()
	} else {
		cfg = &tls.Config{}
	}
	if cfg.ServerName == "" {
		cfg.ServerName = host
	}
	if cfg.MinVersion == 0 {
		cfg.MinVersion = tls.VersionTLS12 // RFC 8996
	}
	return cfg
}

func handshake(ctx context.Context, tc *tls.Conn, opts *Options) error {
	if opts != nil && opts.Timeout > 0 {
		tc.SetDeadline(time.Now().Add(opts.Timeout))
		defer tc.SetDeadline(time.Time{})
	}
	if err := tc.HandshakeContext(ctx); err != nil {
		return fmt.Errorf("pop3: tls handshake: %w", err)
	}
	return nil
}

func newClient(ctx context.Context, conn net.Conn, opts *Options, host string) (*Client, error) {
	c := &Client{host: host}
	if opts != nil {
		c.opts = *opts
	}
	c.dc = &deadlineConn{Conn: conn, timeout: c.opts.Timeout}
	c.setStreams()
	if err := c.begin(ctx); err != nil {
		conn.Close()
		return nil, err
	}
	defer c.end()
	line, err := c.readLine()
	if err != nil {
		conn.Close()
		return nil, err
	}
	st, text, err := parseReply(line)
	if err == nil && st == statusCont {
		err = fmt.Errorf("%w: unexpected greeting %q", ErrProtocol, clip(line))
	}
	if err != nil {
		conn.Close()
		return nil, err
	}
	if st == statusErr {
		conn.Close()
		return nil, parseError(text)
	}
	c.greeting = Greeting{Text: text, Timestamp: apopTimestamp(text)}
	return c, nil
}

func (c *Client) setStreams() {
	c.br = bufio.NewReader(c.dc)
	c.bw = bufio.NewWriter(c.dc)
}

// Greeting returns the server's greeting.
func (c *Client) Greeting() Greeting { return c.greeting }

// TLS returns the TLS state, or nil when the connection is not encrypted.
func (c *Client) TLS() *tls.ConnectionState {
	// The connection is TLS exactly when it is a *tls.Conn: DialTLS,
	// StartTLS or a *tls.Conn given to NewClient.
	if tc, ok := c.dc.current().(*tls.Conn); ok {
		st := tc.ConnectionState()
		return &st
	}
	return nil
}

// Capabilities returns the server's CAPA list (RFC 2449 §5), cached until
// STLS or login. A server that answers -ERR knows no CAPA: the result is
// the zero Caps and no error, so the caller probes the RFC 1939 way
// (RFC 2449 §5).
func (c *Client) Capabilities(ctx context.Context) (Caps, error) {
	if c.caps != nil && c.usable() == nil {
		return Caps{Lines: slices.Clone(c.caps.Lines)}, nil
	}
	if err := c.begin(ctx); err != nil {
		return Caps{}, err
	}
	defer c.end()
	var lines []string
	err := c.cmdMulti("CAPA", "", func(l []byte) error {
		lines = append(lines, string(l))
		return nil
	})
	var perr *Error
	if errors.As(err, &perr) {
		lines, err = nil, nil
	}
	if err != nil {
		return Caps{}, err
	}
	caps := parseCaps(lines)
	c.caps = &caps
	return Caps{Lines: slices.Clone(caps.Lines)}, nil
}

// StartTLS upgrades the connection with STLS (RFC 2595 §4), using
// Options.TLSConfig. It fails with ErrNoSTLS when the server does not list
// STLS. The cached capabilities are dropped: the server may list others
// once TLS is up (RFC 2595 §4).
func (c *Client) StartTLS(ctx context.Context) error {
	if c.TLS() != nil {
		return errors.New("pop3: TLS already active")
	}
	if c.loggedIn {
		return errors.New("pop3: STLS is only valid before login") // RFC 2595 §4
	}
	// Checked before STLS is sent, so the session is not lost to a
	// configuration mistake.
	if c.host == "" && (c.opts.TLSConfig == nil || c.opts.TLSConfig.ServerName == "") {
		if c.opts.TLSConfig == nil || !c.opts.TLSConfig.InsecureSkipVerify {
			return errors.New("pop3: StartTLS needs Options.TLSConfig.ServerName")
		}
	}
	caps, err := c.Capabilities(ctx)
	if err != nil {
		return err
	}
	if !caps.STLS() {
		return ErrNoSTLS
	}
	if err := c.begin(ctx); err != nil {
		return err
	}
	defer c.end()
	if _, err := c.cmd("STLS", ""); err != nil {
		return err
	}
	// Anything already received after the +OK was sent before the
	// handshake, by the server or by someone in the path: it would be
	// read as if it came over TLS (CVE-2021-22947, curl's test982).
	if c.br.Buffered() > 0 {
		return c.fail(ErrSTLSInjection)
	}
	tc := tls.Client(c.dc.current(), tlsConfig(&c.opts, c.host))
	c.dc.setConn(tc)
	if err := handshake(ctx, tc, &c.opts); err != nil {
		return c.fail(err)
	}
	// Fresh buffers: nothing from before the handshake survives.
	c.setStreams()
	c.caps = nil
	c.trace("-- TLS started")
	return nil
}

// usable reports why no command can be sent now.
func (c *Client) usable() error {
	switch {
	case c.closed:
		return ErrClosed
	case c.err != nil:
		return c.err
	case c.body != nil:
		return ErrBodyOpen
	}
	return nil
}

// begin starts a command: it checks the client is usable and arms the
// context on the connection until end.
func (c *Client) begin(ctx context.Context) error {
	if err := c.usable(); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("pop3: %w", err)
	}
	c.dc.arm(ctx)
	return nil
}

// end releases the context of a command.
func (c *Client) end() { c.dc.disarm() }

// fail marks the client broken with err and returns it.
func (c *Client) fail(err error) error {
	if c.err == nil {
		c.err = err
		c.dc.Close()
	}
	return err
}

// ioFail wraps an I/O error and marks the client broken.
func (c *Client) ioFail(err error) error {
	if errors.Is(err, wire.ErrLineTooLong) {
		return c.fail(fmt.Errorf("%w: reply line longer than %d octets", ErrProtocol, MaxReplyLine))
	}
	if cerr := c.dc.ctxErr(); cerr != nil {
		err = cerr
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		err = fmt.Errorf("connection closed by server: %w", io.ErrUnexpectedEOF)
	}
	return c.fail(fmt.Errorf("pop3: %w", err))
}

// writeCmd sends one command line. secret is written to the wire but
// replaced in the trace.
func (c *Client) writeCmd(cmd, args string, secret bool) error {
	if strings.ContainsAny(args, "\r\n\x00") {
		return errors.New("pop3: argument contains CR, LF or NUL")
	}
	line := cmd
	if args != "" {
		line += " " + args
	}
	if secret {
		c.trace("C: " + cmd + " <redacted>")
	} else {
		c.trace("C: " + line)
	}
	return c.writeRaw(line)
}

// readLine reads one reply line, bounded by MaxReplyLine.
func (c *Client) readLine() ([]byte, error) {
	line, err := c.rawLine()
	if err != nil {
		return nil, c.ioFail(err)
	}
	c.traceLine("S: ", line)
	return line, nil
}

// rawLine reads one CRLF- or LF-terminated reply line of at most
// MaxReplyLine octets, terminator included, and returns it without the
// terminator; the slice is valid until the next read. A longer line is
// wire.ErrLineTooLong as soon as the limit is passed: unlike the server's
// line reader, which skips the rest of an over-long command to stay in
// step, the client gives up on the connection (ioFail closes it), so it
// never reads the rest. A server sending an endless line thus costs at
// most MaxReplyLine octets and one buffer, not a read that lasts as long
// as the server keeps sending.
func (c *Client) rawLine() ([]byte, error) {
	b, err := c.br.ReadSlice('\n')
	if err == nil && len(b) <= MaxReplyLine {
		return trimEOL(b), nil // the common case: no copy
	}
	c.line = c.line[:0]
	for {
		if len(c.line)+len(b) > MaxReplyLine {
			return nil, wire.ErrLineTooLong
		}
		c.line = append(c.line, b...)
		if err != bufio.ErrBufferFull {
			break
		}
		b, err = c.br.ReadSlice('\n')
	}
	switch {
	case err == io.EOF && len(c.line) == 0:
		return nil, io.EOF
	case err == io.EOF:
		return nil, io.ErrUnexpectedEOF
	case err != nil:
		return nil, err
	}
	return trimEOL(c.line), nil
}

// trimEOL cuts a final LF or CRLF.
func trimEOL(b []byte) []byte {
	b = bytes.TrimSuffix(b, []byte("\n"))
	return bytes.TrimSuffix(b, []byte("\r"))
}

// readStatus reads a status line: the +OK text, an *Error, or a protocol
// error. A SASL continuation is a protocol error here.
func (c *Client) readStatus() (string, error) {
	line, err := c.readLine()
	if err != nil {
		return "", err
	}
	st, text, err := parseReply(line)
	if err != nil {
		return "", c.fail(err)
	}
	switch st {
	case statusOK:
		return text, nil
	case statusErr:
		return "", parseError(text)
	}
	return "", c.fail(fmt.Errorf("%w: unexpected continuation %q", ErrProtocol, clip(line)))
}

// cmd sends a command and reads its single-line reply.
func (c *Client) cmd(cmd, args string) (string, error) {
	if err := c.writeCmd(cmd, args, false); err != nil {
		return "", err
	}
	return c.readStatus()
}

// cmdMulti sends a command with a multi-line reply and calls fn for each
// un-stuffed line (RFC 1939 §3). An error from fn stops fn's calls but the
// rest of the reply is still read, so the session stays in step.
func (c *Client) cmdMulti(cmd, args string, fn func([]byte) error) error {
	if _, err := c.cmd(cmd, args); err != nil {
		return err
	}
	return c.readMulti(fn)
}

func (c *Client) readMulti(fn func([]byte) error) error {
	var ferr error
	for {
		line, err := c.rawLine()
		if err != nil {
			return c.ioFail(err)
		}
		if len(line) > 0 && line[0] == '.' {
			if len(line) == 1 {
				c.trace("S: .")
				break
			}
			line = line[1:] // RFC 1939 §3: strip one leading dot
		}
		c.traceLine("S: ", line)
		if ferr == nil {
			ferr = fn(line)
		}
	}
	if ferr != nil {
		return c.fail(ferr)
	}
	return nil
}

func (c *Client) trace(s string) {
	if c.opts.DebugWriter != nil {
		io.WriteString(c.opts.DebugWriter, s+"\n")
	}
}

// traceLine traces a reply line; without a DebugWriter it builds nothing,
// so a long LIST or UIDL costs no string per line.
func (c *Client) traceLine(prefix string, line []byte) {
	if c.opts.DebugWriter != nil {
		c.trace(prefix + string(line))
	}
}

// Close closes the connection without QUIT: the server does not enter
// UPDATE, so messages marked with Dele stay (RFC 1939 §6).
func (c *Client) Close() error {
	if c.closed {
		return nil
	}
	c.closed = true
	if c.body != nil {
		// A half-read body must not look complete.
		c.body.err = ErrClosed
		c.body.client = nil
		c.body = nil
	}
	c.dc.disarm()
	err := c.dc.Close()
	if c.err != nil {
		return nil // already closed when it broke
	}
	return err
}

// deadlineConn applies the current command's context and the per-I/O
// timeout to every read and write of the connection under it.
type deadlineConn struct {
	timeout time.Duration

	mu       sync.Mutex
	net.Conn // raw or *tls.Conn; replaced by StartTLS
	ctx      context.Context
	deadline time.Time // ctx's deadline, zero if none
	gen      uint64    // command generation, so a late AfterFunc is ignored
	canceled bool
	stop     func() bool
}

func (d *deadlineConn) current() net.Conn {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.Conn
}

func (d *deadlineConn) setConn(c net.Conn) {
	d.mu.Lock()
	d.Conn = c
	d.mu.Unlock()
}

// arm makes ctx govern I/O until disarm. On cancellation the connection's
// deadline is moved into the past, which interrupts a blocked read.
func (d *deadlineConn) arm(ctx context.Context) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.gen++
	gen := d.gen
	d.ctx = ctx
	d.deadline, _ = ctx.Deadline()
	d.canceled = false
	if ctx.Done() != nil {
		d.stop = context.AfterFunc(ctx, func() {
			d.mu.Lock()
			defer d.mu.Unlock()
			if d.gen == gen {
				d.canceled = true
				d.Conn.SetDeadline(time.Unix(1, 0))
			}
		})
	}
}

func (d *deadlineConn) disarm() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.stop != nil {
		d.stop()
		d.stop = nil
	}
	d.gen++
	d.ctx = nil
	d.deadline = time.Time{}
	d.canceled = false
}

// ctxErr returns the command context's error once it is done.
func (d *deadlineConn) ctxErr() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.ctx == nil {
		return nil
	}
	if err := d.ctx.Err(); err != nil {
		return err
	}
	// The connection deadline may fire a moment before the context's timer.
	if !d.deadline.IsZero() && !time.Now().Before(d.deadline) {
		return context.DeadlineExceeded
	}
	return nil
}

func (d *deadlineConn) set(read bool) (net.Conn, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.canceled {
		return nil, d.ctx.Err()
	}
	dl := d.deadline
	if d.timeout > 0 {
		if t := time.Now().Add(d.timeout); dl.IsZero() || t.Before(dl) {
			dl = t
		}
	}
	if read {
		d.Conn.SetReadDeadline(dl)
	} else {
		d.Conn.SetWriteDeadline(dl)
	}
	return d.Conn, nil
}

func (d *deadlineConn) Read(p []byte) (int, error) {
	conn, err := d.set(true)
	if err != nil {
		return 0, err
	}
	return conn.Read(p)
}

func (d *deadlineConn) Write(p []byte) (int, error) {
	conn, err := d.set(false)
	if err != nil {
		return 0, err
	}
	return conn.Write(p)
}

func (d *deadlineConn) Close() error { return d.current().Close() }
