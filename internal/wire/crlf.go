package wire

import "io"

// CRLFSize returns the number of octets r occupies on the wire in CRLF form,
// before dot-stuffing: every LF not preceded by CR gains a CR, and a final
// line without LF gains CRLF (or only LF if it ends in CR). This is the size
// LIST and STAT report, and exactly what DotWriter sends before stuffing
// (RFC 1939 §11).
func CRLFSize(r io.Reader) (int64, error) {
	var c CRLFCounter
	if _, err := io.Copy(&c, r); err != nil {
		return 0, err
	}
	return c.Size(), nil
}

// CRLFCounter is an io.Writer that counts what CRLFSize counts, for callers
// that see the bytes anyway (a delivery that writes them to disk).
type CRLFCounter struct {
	n      int64 // octets written
	bareLF int64 // LFs not preceded by CR
	last   byte  // last octet written, 0 if none
	any    bool
}

// Write counts p. It never fails.
func (c *CRLFCounter) Write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	prev := c.last
	for i, b := range p {
		if b == '\n' {
			if i == 0 {
				if prev != '\r' {
					c.bareLF++
				}
			} else if p[i-1] != '\r' {
				c.bareLF++
			}
		}
	}
	c.n += int64(len(p))
	c.last = p[len(p)-1]
	c.any = true
	return len(p), nil
}

// Size returns the CRLF size of everything written so far.
func (c *CRLFCounter) Size() int64 {
	s := c.n + c.bareLF
	if c.any && c.last != '\n' {
		if c.last == '\r' {
			s++ // "…\r" is completed by "\n"
		} else {
			s += 2
		}
	}
	return s
}
