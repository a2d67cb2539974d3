package wire

import (
	"bufio"
	"bytes"
	"errors"
	"io"
)

// DotWriter writes one message as the body of a multi-line response: bare LF
// becomes CRLF, lines starting with "." are stuffed, and Close completes a
// final unterminated line and writes the terminating ".". It counts the
// octets of the CRLF form it sent, stuffing excluded, which equals CRLFSize
// of the same input.
//
// It converts in bulk, straight into the free space of the bufio.Writer
// (AvailableBuffer): each line end is found with bytes.IndexByte, or in a
// block of lines of equal length where the line before predicts it, and
// the input is copied in runs that end only where a CR or a stuffing dot
// is added, so there is no call per octet (see convert). A CR at the end of
// one Write and its LF at the start of the next are one CRLF, and a CR not
// followed by LF is passed through as it is.
type DotWriter struct {
	w   *bufio.Writer
	bol bool  // at beginning of line
	cr  bool  // last octet written was CR (and not yet followed by LF)
	n   int64 // CRLF octets sent, stuffing excluded
}

// NewDotWriter returns a DotWriter over w. It never flushes w except as w
// itself would, when its buffer is (nearly) full: the caller owns w and
// flushes it.
func NewDotWriter(w *bufio.Writer) *DotWriter {
	return &DotWriter{w: w, bol: true}
}

// Reset makes d write a new message to w.
func (d *DotWriter) Reset(w *bufio.Writer) { *d = DotWriter{w: w, bol: true} }

// minRoom is the free space below which Write empties the buffer before
// converting into it, so that lines are not cut into small pieces.
const minRoom = 512

// Write stuffs and converts p.
func (d *DotWriter) Write(p []byte) (int, error) {
	total := len(p)
	for len(p) > 0 {
		out := d.w.AvailableBuffer()
		if cap(out) < minRoom && d.w.Buffered() > 0 {
			if err := d.w.Flush(); err != nil {
				return total - len(p), err
			}
			out = d.w.AvailableBuffer()
		}
		if cap(out) < 3 {
			// A buffer too small to convert into: octet by octet.
			n, err := d.writeSmall(p)
			return total - len(p) + n, err
		}
		var used int
		out, used = d.convert(out, p)
		p = p[used:]
		// out is the free space of d.w: this Write only takes it into
		// the buffer, it cannot flush or fail.
		if _, err := d.w.Write(out); err != nil {
			return total - len(p), err
		}
	}
	return total, nil
}

// convert writes the wire form of a prefix of p into the free space of out
// (from out[0] up to cap(out)), and returns out holding it and the length
// of the prefix.
//
// The input is copied in runs: a run ends only where the output must differ
// from the input, before the LF of a bare LF line end (which gains a CR) and
// before a "." that starts a line (which gains a "."), so lines already in
// wire form are copied together. Output and input advance together within
// a run: k, the octets added so far, is the distance between a position in
// the input and its place in the output, and it changes only where a run
// ends.
//
// Each line end is found with bytes.IndexByte, except in a block of lines
// of equal length (a base64 attachment): there it is where the line before
// predicts it, checked for the whole block at once (see equalLines). This
// pays because IndexByte is fast but each call waits for the one before it
// (the search for a line starts where the last one ended), while the
// predicted ends are known in advance and the copies of the lines overlap.
// The part of p checked for a block is not checked again (tried), so input
// made to fail the check costs at most one more pass over it.
func (d *DotWriter) convert(out, p []byte) ([]byte, int) {
	buf := out[:cap(out)]
	i := 0 // the input converted
	r := 0 // the start of the run not yet copied: p[r:i] goes to buf[r+k:]
	k := 0 // octets added, dots and CRs: buf[:i+k] is the wire form of p[:i]
	bol := d.bol
	size := 0  // the length of the last line, LF included
	tried := 0 // p[:tried] was checked for a block of equal lines
	// Each turn takes one line, or what fits of it, while there is room
	// for a stuffing dot, an octet and a CR to add before an LF.
	for i < len(p) && i+k <= len(buf)-3 {
		if bol && p[i] == '.' {
			copy(buf[r+k:], p[r:i])
			buf[i+k] = '.'
			k++
			d.n-- // a dot: the i+k added to d.n at the end counts it
			r = i
		}
		// Look only as far as fits, leaving room for a CR before the
		// last octet.
		end := min(len(p), len(buf)-k-1)
		j := bytes.IndexByte(p[i:end], '\n')
		if j < 0 {
			// The line goes on past what fits (or past p).
			i = end
			break
		}
		e := i + j // the LF
		if e > 0 && p[e-1] != '\r' || e == 0 && !d.cr {
			copy(buf[r+k:], p[r:e])
			buf[e+k] = '\r'
			k++
			r = e
		}
		i = e + 1
		bol = true
		if j+1 != size || i < tried {
			size = j + 1
			continue
		}
		// Two lines of the same length, and no block tried here yet:
		// take the block of lines of that length that follows them.
		n, ok := equalLines(p[i:end], size)
		tried = i + n
		if ok {
			i, r, k = d.convertBlock(buf, p[:tried], size, i, r, k)
		}
	}
	copy(buf[r+k:], p[r:i])
	if i > 0 {
		d.bol = p[i-1] == '\n'
		d.cr = p[i-1] == '\r'
		d.n += int64(i + k)
	}
	return buf[:i+k], i
}

// convertBlock is the loop of convert over p[i:], lines of size octets
// each, LF included, that have no other LF (equalLines said so) and follow
// a line (i > 0): each line as in convert, but with no search for its LF.
// It stops at the end of p or at the first line that might not fit, with a
// dot and a CR added, and returns the new i, r and k of convert.
func (d *DotWriter) convertBlock(buf, p []byte, size, i, r, k int) (int, int, int) {
	for i < len(p) && i+k+size+2 <= len(buf) {
		if p[i] == '.' {
			copy(buf[r+k:], p[r:i])
			buf[i+k] = '.'
			k++
			d.n-- // a dot, as in convert
			r = i
		}
		e := i + size - 1 // the LF
		if p[e-1] != '\r' {
			copy(buf[r+k:], p[r:e])
			buf[e+k] = '\r'
			k++
			r = e
		}
		i = e + 1
	}
	return i, r, k
}

// equalLines measures the block of lines of size octets each, LF included,
// at the start of p: it returns the length n of the longest prefix of p
// that has an LF at the end of each such line, and whether the prefix has
// no other LF, which one bytes.Count checks for the whole block.
func equalLines(p []byte, size int) (n int, ok bool) {
	for n+size <= len(p) && p[n+size-1] == '\n' {
		n += size
	}
	return n, n > 0 && bytes.Count(p[:n], []byte{'\n'}) == n/size
}

// writeSmall is Write for a buffer of fewer than 3 octets.
func (d *DotWriter) writeSmall(p []byte) (int, error) {
	for i, b := range p {
		if d.bol && b == '.' {
			if err := d.w.WriteByte('.'); err != nil {
				return i, err
			}
		}
		if b == '\n' && !d.cr {
			if err := d.w.WriteByte('\r'); err != nil {
				return i, err
			}
			d.n++
		}
		if err := d.w.WriteByte(b); err != nil {
			return i, err
		}
		d.n++
		d.bol = b == '\n'
		d.cr = b == '\r'
	}
	return len(p), nil
}

// Close ends the message: it completes an unterminated last line and writes
// the "." line. It does not close or flush the underlying writer.
func (d *DotWriter) Close() error {
	if !d.bol {
		if d.cr {
			d.n++
			if err := d.w.WriteByte('\n'); err != nil {
				return err
			}
		} else {
			d.n += 2
			if _, err := d.w.WriteString("\r\n"); err != nil {
				return err
			}
		}
		d.bol = true
	}
	_, err := d.w.WriteString(".\r\n")
	return err
}

// Count returns the CRLF octets sent so far, stuffing excluded.
func (d *DotWriter) Count() int64 { return d.n }

// ErrTopDone is returned by TopWriter.Write once the headers and the
// requested number of body lines have been written; the caller stops
// reading the message.
var ErrTopDone = errors.New("wire: top complete")

// TopWriter passes through the header of a message, the blank line after
// it, and the first Lines lines of its body, then returns ErrTopDone
// (RFC 1939 §7 TOP). A message without a blank line is all header and is
// passed through whole.
type TopWriter struct {
	W       io.Writer
	Lines   int64 // body lines still wanted
	inBody  bool
	lineLen int // octets of the current line seen so far, CR excluded
}

// Write passes through the part of p that belongs to the TOP output.
func (t *TopWriter) Write(p []byte) (int, error) {
	for i := 0; i < len(p); {
		j := bytes.IndexByte(p[i:], '\n')
		if j < 0 {
			t.lineLen += countNonCR(p[i:])
			break
		}
		end := i + j + 1
		t.lineLen += countNonCR(p[i : i+j])
		empty := t.lineLen == 0
		t.lineLen = 0
		if !t.inBody {
			if empty {
				t.inBody = true
				if t.Lines == 0 {
					n, err := t.W.Write(p[:end])
					if err != nil {
						return n, err
					}
					return n, ErrTopDone
				}
			}
		} else {
			t.Lines--
			if t.Lines == 0 {
				n, err := t.W.Write(p[:end])
				if err != nil {
					return n, err
				}
				return n, ErrTopDone
			}
		}
		i = end
	}
	return t.W.Write(p)
}

func countNonCR(b []byte) int {
	n := len(b)
	if n > 0 && b[n-1] == '\r' {
		n--
	}
	return n
}

// DotReader reads the body of a multi-line response up to the "." line,
// removing one leading "." from stuffed lines. Line ends are returned as
// sent (CRLF), and lines of any length are passed through.
type DotReader struct {
	r    *bufio.Reader
	bol  bool
	done bool
	err  error
}

// NewDotReader returns a reader of one multi-line response body from r.
func NewDotReader(r *bufio.Reader) *DotReader { return &DotReader{r: r, bol: true} }

// ErrUnterminated reports a connection that ended inside a multi-line response.
var ErrUnterminated = errors.New("wire: multi-line response not terminated")

// Read implements io.Reader.
func (d *DotReader) Read(p []byte) (int, error) {
	if d.done {
		return 0, io.EOF
	}
	if d.err != nil {
		return 0, d.err
	}
	n := 0
	for n < len(p) {
		if d.bol {
			// Need to look at the start of the line to see "." handling.
			b, err := d.r.Peek(1)
			if err != nil {
				d.err = unterminated(err)
				break
			}
			if b[0] == '.' {
				// Either the terminator ".\r\n" / ".\n" or a stuffed line.
				b, err = d.r.Peek(2)
				if err != nil {
					d.err = unterminated(err)
					break
				}
				if b[1] == '\n' {
					d.r.Discard(2)
					d.done = true
					break
				}
				if b[1] == '\r' {
					b, err = d.r.Peek(3)
					if err != nil {
						d.err = unterminated(err)
						break
					}
					if b[2] == '\n' {
						d.r.Discard(3)
						d.done = true
						break
					}
				}
				d.r.Discard(1) // un-stuff
			}
			d.bol = false
		}
		// Copy up to the end of the line or of p.
		buf, err := d.r.Peek(1)
		if err != nil {
			d.err = unterminated(err)
			break
		}
		_ = buf
		avail := d.r.Buffered()
		if avail > len(p)-n {
			avail = len(p) - n
		}
		chunk, _ := d.r.Peek(avail)
		if i := bytes.IndexByte(chunk, '\n'); i >= 0 {
			chunk = chunk[:i+1]
			d.bol = true
		}
		copy(p[n:], chunk)
		d.r.Discard(len(chunk))
		n += len(chunk)
		if d.bol {
			// Stop at a line boundary only if more input is not buffered,
			// so small reads don't block on the network needlessly.
			if d.r.Buffered() == 0 {
				break
			}
		}
	}
	if n > 0 {
		return n, nil
	}
	if d.done {
		return 0, io.EOF
	}
	return 0, d.err
}

func unterminated(err error) error {
	if err == io.EOF {
		return ErrUnterminated
	}
	return err
}
