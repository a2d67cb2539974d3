package wire

import (
	"bytes"
	"io"
)

// CRLFReader reads a stored message in its CRLF form (RFC 1939 §3, RFC
// 5321 §2.3.8): every LF not preceded by CR gains a CR, and a last line
// without LF is completed with CRLF (or only LF after a final CR). That is
// exactly what DotWriter sends for the same message before stuffing and
// the terminating line, so a store that keeps this form can send it as it
// is (pop3server.WireReader), and its length is CRLFSize of the original.
// A CR not followed by LF is passed through as it is, as DotWriter does;
// an empty message stays empty.
//
// Lines are found with bytes.IndexByte and copied as runs; the CR added
// before a bare LF is one octet of output, so reads into buffers of any
// size, even one octet, make progress.
type CRLFReader struct {
	r    io.Reader
	buf  []byte // read from r into
	in   []byte // read from r, not yet converted
	err  error  // r's error, returned once in is empty and the last line completed
	last byte   // last octet returned
	n    int64  // octets returned
}

// NewCRLFReader returns a CRLFReader of r that reads r through buf (which
// must not be empty; 32 KiB reads a file in few system calls).
func NewCRLFReader(r io.Reader, buf []byte) *CRLFReader {
	return &CRLFReader{r: r, buf: buf}
}

// Count returns the octets read so far: after io.EOF, the message's
// CRLFSize.
func (c *CRLFReader) Count() int64 { return c.n }

// Read implements io.Reader. It reads from the underlying reader only when
// it has nothing converted to return, so it never blocks with data in hand.
func (c *CRLFReader) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		if len(c.in) == 0 {
			if c.err != nil {
				if c.err != io.EOF || c.n+int64(n) == 0 || c.last == '\n' {
					break
				}
				// The last line has no LF: complete it, one octet at a
				// time (a CR first unless it ends in one).
				if c.last == '\r' {
					p[n] = '\n'
				} else {
					p[n] = '\r'
				}
				c.last = p[n]
				n++
				continue
			}
			if n > 0 {
				break
			}
			k, err := c.r.Read(c.buf)
			c.in = c.buf[:k]
			if err != nil {
				c.err = err
			} else if k == 0 {
				return 0, nil
			}
			continue
		}
		i := bytes.IndexByte(c.in, '\n')
		if i < 0 {
			i = len(c.in)
		}
		if i > 0 {
			k := copy(p[n:], c.in[:i])
			n += k
			c.last = c.in[k-1]
			c.in = c.in[k:]
			continue
		}
		// c.in starts with LF.
		if c.last != '\r' {
			p[n] = '\r'
		} else {
			p[n] = '\n'
			c.in = c.in[1:]
		}
		c.last = p[n]
		n++
	}
	c.n += int64(n)
	if n == 0 && len(p) > 0 && c.err != nil {
		return 0, c.err
	}
	return n, nil
}
