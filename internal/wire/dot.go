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
// It converts in bulk: each line is found with bytes.IndexByte and copied,
// its line end fixed up, straight into the free space of the bufio.Writer
// (AvailableBuffer), so a line costs one scan and one copy and no call per
// octet. A CR at the end of one Write and its LF at the start of the next
// are one CRLF, and a CR not followed by LF is passed through as it is.
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

// convert appends the wire form of a prefix of p to out, within out's
// capacity, and returns out and the length of the prefix. Lines already in
// wire form (ending in CRLF, the next one not starting with ".") are
// copied as one run.
func (d *DotWriter) convert(out, p []byte) ([]byte, int) {
	used := 0
	for used < len(p) {
		room := cap(out) - len(out)
		if room < 3 { // a stuffing dot, a CR and the LF
			break
		}
		q := p[used:]
		if d.bol && q[0] == '.' {
			out = append(out, '.')
			room--
		}
		// Look only as far as what fits: the lines, and a CR before
		// the LF of the last one.
		win := q[:min(len(q), room-1)]
		s := 0 // start of the current line in win
		for {
			i := bytes.IndexByte(win[s:], '\n')
			if i < 0 {
				// The line goes on past win: copy what fits.
				out = append(out, win...)
				used += len(win)
				d.n += int64(len(win))
				d.cr = win[len(win)-1] == '\r'
				d.bol = false
				break
			}
			e := s + i // the LF
			if e > 0 && win[e-1] != '\r' || e == 0 && !d.cr {
				out = append(out, win[:e]...)
				out = append(out, '\r', '\n')
				used += e + 1
				d.n += int64(e) + 2
				d.bol, d.cr = true, false
				break
			}
			s = e + 1
			if s == len(win) || win[s] == '.' {
				out = append(out, win[:s]...)
				used += s
				d.n += int64(s)
				d.bol, d.cr = true, false
				break
			}
		}
	}
	return out, used
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
