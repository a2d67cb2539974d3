package pop3

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"

	"github.com/postoffice-mail/postoffice/internal/wire"
)

// Stat returns the number of messages and their total size in octets
// (RFC 1939 §5 STAT). Messages marked deleted are not counted.
func (c *Client) Stat(ctx context.Context) (count int, size int64, err error) {
	if err := c.begin(ctx); err != nil {
		return 0, 0, err
	}
	defer c.end()
	text, err := c.cmd("STAT", "")
	if err != nil {
		return 0, 0, err
	}
	count, size, err = parseNumbers(text)
	if err != nil {
		return 0, 0, c.fail(err)
	}
	return count, size, nil
}

// List returns the number and size of every message not marked deleted
// (RFC 1939 §5 LIST).
func (c *Client) List(ctx context.Context) ([]ScanListing, error) {
	return listAll(c, ctx, "LIST", parseScanListing)
}

// ListOne returns the size of message n (LIST n).
func (c *Client) ListOne(ctx context.Context, n int) (ScanListing, error) {
	return listOne(c, ctx, "LIST", n, parseScanListing)
}

// UIDL returns the unique id of every message not marked deleted
// (RFC 1939 §7 UIDL).
func (c *Client) UIDL(ctx context.Context) ([]UIDListing, error) {
	return listAll(c, ctx, "UIDL", parseUIDListing)
}

// UIDLOne returns the unique id of message n (UIDL n).
func (c *Client) UIDLOne(ctx context.Context, n int) (UIDListing, error) {
	return listOne(c, ctx, "UIDL", n, parseUIDListing)
}

// listAll sends cmd (LIST or UIDL) without argument and parses every line
// of its multi-line reply.
func listAll[T any](c *Client, ctx context.Context, cmd string, parse func(string) (T, error)) ([]T, error) {
	if err := c.begin(ctx); err != nil {
		return nil, err
	}
	defer c.end()
	var list []T
	err := c.cmdMulti(cmd, "", func(l []byte) error {
		v, err := parse(string(l))
		if err != nil {
			return err
		}
		list = append(list, v)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return list, nil
}

// listOne sends "cmd n" and parses its single-line reply; a reply that
// does not parse breaks the client.
func listOne[T any](c *Client, ctx context.Context, cmd string, n int, parse func(string) (T, error)) (T, error) {
	var zero T
	if err := c.begin(ctx); err != nil {
		return zero, err
	}
	defer c.end()
	text, err := c.cmd(cmd, strconv.Itoa(n))
	if err != nil {
		return zero, err
	}
	v, err := parse(text)
	if err != nil {
		return zero, c.fail(err)
	}
	return v, nil
}

func parseScanListing(text string) (ScanListing, error) {
	n, size, err := parseNumbers(text)
	return ScanListing{Num: n, Size: size}, err
}

func parseUIDListing(text string) (UIDListing, error) {
	n, uid, err := parseUID(text)
	return UIDListing{Num: n, UID: uid}, err
}

// Retr starts retrieving message n (RFC 1939 §5 RETR) and returns its
// body as a stream: dot-unstuffed, line ends as the server sent them
// (CRLF), any line length. The body must be read to io.EOF or closed
// before the next command; Close reads and discards what is left. ctx
// governs the body's reads too.
func (c *Client) Retr(ctx context.Context, n int) (io.ReadCloser, error) {
	return c.multiBody(ctx, "RETR", strconv.Itoa(n))
}

// Top starts retrieving the header of message n and the first lines lines
// of its body (RFC 1939 §7 TOP), as a stream like Retr's.
func (c *Client) Top(ctx context.Context, n, lines int) (io.ReadCloser, error) {
	if lines < 0 {
		return nil, errors.New("pop3: TOP needs a non-negative line count")
	}
	return c.multiBody(ctx, "TOP", strconv.Itoa(n)+" "+strconv.Itoa(lines))
}

func (c *Client) multiBody(ctx context.Context, cmd, args string) (io.ReadCloser, error) {
	if err := c.begin(ctx); err != nil {
		return nil, err
	}
	if _, err := c.cmd(cmd, args); err != nil {
		c.end()
		return nil, err
	}
	c.trace("S: <message data>")
	b := &body{client: c, dr: wire.NewDotReader(c.br)}
	c.body = b
	return b, nil
}

// body streams one multi-line response; the command stays armed until it
// ends.
type body struct {
	client *Client // nil once finished
	dr     *wire.DotReader
	err    error
	armed  bool // RetrMany's: the context stays armed after the body
}

func (b *body) Read(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	c := b.client
	if c == nil {
		return 0, io.EOF
	}
	n, err := b.dr.Read(p)
	switch {
	case err == io.EOF:
		b.finish()
		c.trace("S: .")
	case err != nil:
		// wire.ErrUnterminated: the connection ended inside the body.
		if cerr := c.dc.ctxErr(); cerr != nil {
			err = cerr
		}
		b.err = c.fail(fmt.Errorf("pop3: reading message: %w", err))
		b.finish()
		err = b.err
	}
	return n, err
}

func (b *body) finish() {
	if c := b.client; c != nil {
		b.client = nil
		c.body = nil
		if !b.armed {
			c.end()
		}
	}
}

// Close reads and discards the rest of the body, so the session stays in
// step.
func (b *body) Close() error {
	if b.client == nil {
		return b.err
	}
	_, err := io.Copy(io.Discard, struct{ io.Reader }{b})
	return err
}

// Dele marks message n deleted (RFC 1939 §5 DELE). The server removes it
// only when Quit succeeds.
func (c *Client) Dele(ctx context.Context, n int) error {
	if err := c.begin(ctx); err != nil {
		return err
	}
	defer c.end()
	_, err := c.cmd("DELE", strconv.Itoa(n))
	return err
}

// pipelineWindow is how many commands go out in one write before their
// replies are read; a bounded window keeps both sides from blocking on full
// socket buffers (mpop uses windows of 20 to 100).
const pipelineWindow = 64

// DeleMany marks the given messages deleted. When the server advertises
// PIPELINING (RFC 2449 §6.6) the DELEs go out in batches in one write
// each, otherwise one by one. Every reply is read; the error joins one
// error per message that was not marked (each wrapping the *Error).
func (c *Client) DeleMany(ctx context.Context, nums []int) error {
	caps, err := c.Capabilities(ctx)
	if err != nil {
		return err
	}
	if err := c.begin(ctx); err != nil {
		return err
	}
	defer c.end()
	window := 1
	if caps.Pipelining() {
		window = pipelineWindow
	}
	var errs []error
	for len(nums) > 0 {
		batch := nums[:min(window, len(nums))]
		nums = nums[len(batch):]
		for _, n := range batch {
			c.trace("C: DELE " + strconv.Itoa(n))
			c.bw.WriteString("DELE " + strconv.Itoa(n) + "\r\n")
		}
		if err := c.bw.Flush(); err != nil {
			return c.ioFail(err)
		}
		for _, n := range batch {
			_, err := c.readStatus()
			var perr *Error
			if errors.As(err, &perr) {
				errs = append(errs, fmt.Errorf("pop3: DELE %d: %w", n, err))
				continue
			}
			if err != nil {
				return err
			}
		}
	}
	return errors.Join(errs...)
}

// Rset unmarks every message marked deleted (RFC 1939 §5 RSET).
func (c *Client) Rset(ctx context.Context) error {
	if err := c.begin(ctx); err != nil {
		return err
	}
	defer c.end()
	_, err := c.cmd("RSET", "")
	return err
}

// Noop does nothing but keep the session alive (RFC 1939 §5 NOOP).
func (c *Client) Noop(ctx context.Context) error {
	if err := c.begin(ctx); err != nil {
		return err
	}
	defer c.end()
	_, err := c.cmd("NOOP", "")
	return err
}

// Quit ends the session (RFC 1939 §6): in TRANSACTION the server enters
// UPDATE and removes the messages marked deleted. A nil error means the
// server answered +OK, so the deletions are done; an *Error means they
// may not be. The connection is closed in any case.
func (c *Client) Quit(ctx context.Context) error {
	if err := c.begin(ctx); err != nil {
		if !errors.Is(err, ErrClosed) {
			c.Close()
		}
		return err
	}
	_, err := c.cmd("QUIT", "")
	c.end()
	c.Close()
	return err
}

// BodyRequest names one message for RetrMany: RETR n when Lines < 0, else
// TOP n Lines (RFC 1939 §7).
type BodyRequest struct {
	Num   int
	Lines int
}

// RetrMany retrieves the messages of reqs in order and calls fn with each
// one's index in reqs and its body (a stream like Retr's, valid until fn
// returns; what fn leaves unread is discarded), or with a nil body and
// the *Error of a -ERR reply (then the other messages still come). When
// the server advertises PIPELINING (RFC 2449 §6.6) up to a window of
// commands is on the wire ahead of the reply being read, so the server
// never waits for the client between two messages; otherwise the commands
// go one by one. The client only ever has command lines of a few octets
// in flight, which the server's socket buffer holds, so neither side can
// block the other with a full buffer.
//
// When fn returns an error, no further command is sent, the replies to
// those already sent are read and discarded (so the session stays in step
// and a later Dele or Quit works), and RetrMany returns fn's error.
func (c *Client) RetrMany(ctx context.Context, reqs []BodyRequest, fn func(i int, body io.Reader, err error) error) error {
	caps, err := c.Capabilities(ctx)
	if err != nil {
		return err
	}
	if err := c.begin(ctx); err != nil {
		return err
	}
	defer c.end()
	window := 1
	if caps.Pipelining() {
		window = pipelineWindow
	}
	sent := 0
	send := func(upto int) error {
		if upto <= sent {
			return nil
		}
		for ; sent < upto; sent++ {
			r := reqs[sent]
			line := "RETR " + strconv.Itoa(r.Num)
			if r.Lines >= 0 {
				line = "TOP " + strconv.Itoa(r.Num) + " " + strconv.Itoa(r.Lines)
			}
			c.trace("C: " + line)
			c.bw.WriteString(line + "\r\n")
		}
		if err := c.bw.Flush(); err != nil {
			return c.ioFail(err)
		}
		return nil
	}
	var fnErr error
	for i := range reqs {
		if fnErr == nil {
			if err := send(min(i+window, len(reqs))); err != nil {
				return err
			}
		} else if i >= sent {
			break // the rest was never sent
		}
		_, err := c.readStatus()
		var perr *Error
		switch {
		case errors.As(err, &perr):
			if fnErr == nil {
				fnErr = fn(i, nil, err)
			}
			continue
		case err != nil:
			return err
		}
		c.trace("S: <message data>")
		b := &body{client: c, dr: wire.NewDotReader(c.br), armed: true}
		c.body = b
		if fnErr == nil {
			fnErr = fn(i, b, nil)
		}
		if err := b.Close(); err != nil {
			if fnErr != nil {
				return fnErr
			}
			return err
		}
	}
	return fnErr
}
