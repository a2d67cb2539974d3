package wire

import (
	"bufio"
	"bytes"
	"errors"
	"io"
)

// ErrLineTooLong is returned by LineReader.ReadLine for a line longer than
// the limit. The line has been consumed; the next call reads the next line.
var ErrLineTooLong = errors.New("wire: line too long")

// LineReader reads CRLF- or LF-terminated lines with a length bound.
type LineReader struct {
	R   *bufio.Reader
	Max int // maximum line length in octets, terminator included
}

// NewLineReader returns a LineReader reading from r with the given limit.
func NewLineReader(r *bufio.Reader, max int) *LineReader {
	return &LineReader{R: r, Max: max}
}

// ReadLine returns the next line without its terminator. The slice is valid
// until the next read. At EOF with a partial line pending it returns
// io.ErrUnexpectedEOF.
func (l *LineReader) ReadLine() ([]byte, error) {
	line, _, err := ReadLine(l.R, l.Max)
	return line, err
}

// ReadLine reads one CRLF- or LF-terminated line of at most limit octets,
// terminator included, and returns it without the terminator along with
// its length on the wire. A longer line is consumed and reported as
// ErrLineTooLong; the next call reads the next line. A line that fits r's
// buffer is returned in place (valid until the next read) and costs no
// allocation; a longer one within limit is assembled. At EOF with a
// partial line pending it returns io.ErrUnexpectedEOF.
func ReadLine(r *bufio.Reader, limit int) (line []byte, n int, err error) {
	b, err := r.ReadSlice('\n')
	if err == nil {
		if len(b) > limit {
			return nil, len(b), ErrLineTooLong
		}
		return trimEOL(b), len(b), nil
	}
	var buf []byte
	for err == bufio.ErrBufferFull {
		if len(buf)+len(b) > limit {
			for err == bufio.ErrBufferFull {
				_, err = r.ReadSlice('\n')
			}
			if err != nil {
				return nil, 0, eofErr(err)
			}
			return nil, 0, ErrLineTooLong
		}
		buf = append(buf, b...)
		b, err = r.ReadSlice('\n')
	}
	if err != nil {
		if err == io.EOF && len(buf)+len(b) == 0 {
			return nil, 0, io.EOF
		}
		return nil, 0, eofErr(err)
	}
	if len(buf)+len(b) > limit {
		return nil, 0, ErrLineTooLong
	}
	buf = append(buf, b...)
	return trimEOL(buf), len(buf), nil
}

// ReadLineAtMost reads one CRLF- or LF-terminated line, as ReadLine does,
// but gives up on a line as soon as it is known to be too long: once more
// than limit(head) octets of it have arrived without a line end, or a line
// end arrives beyond that, it returns ErrLineTooLong at once, without
// waiting for the rest of the line and without reading further. head is
// the start of the line received so far: all of it, or at least r.Size()
// octets; limit is called each time more of the line arrives, so it may
// allow a longer line by what it starts with (an AUTH command).
//
// What remains of a too-long line is left unread (at most limit octets of
// it and what r's buffer holds have been taken from the stream): the
// caller cannot find the next line and must answer and end the stream.
// That is the point of it: a peer sending an endless line gets its answer
// after a bounded read, not after a timeout. A line that fits r's buffer is
// returned in place (valid until the next read) and costs no allocation.
// At EOF with a partial line pending it returns io.ErrUnexpectedEOF.
func ReadLineAtMost(r *bufio.Reader, limit func(head []byte) int) (line []byte, n int, err error) {
	var long []byte // a line longer than r's buffer: the part taken from r
	for {
		// Everything buffered, without reading.
		b, _ := r.Peek(r.Buffered())
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			b = b[:i+1]
			head := b
			if long != nil {
				long = append(long, b...)
				head = long
			}
			if len(head) > limit(head) {
				return nil, len(head), ErrLineTooLong
			}
			r.Discard(len(b))
			return trimEOL(head), len(head), nil
		}
		if len(b) > 0 {
			head := b
			if long != nil {
				head = long
			}
			if len(long)+len(b) > limit(head) {
				return nil, len(long) + len(b), ErrLineTooLong
			}
			if len(b) == r.Size() {
				long = append(long, b...)
				r.Discard(len(b))
				b = nil
			}
		}
		// Wait for at least one more octet: Peek returns after the first
		// read that brings any.
		if _, err := r.Peek(len(b) + 1); err != nil {
			if err == io.EOF && len(long)+len(b) == 0 {
				return nil, 0, io.EOF
			}
			return nil, 0, eofErr(err)
		}
	}
}

// Buffered reports whether input is already waiting, so a writer can hold
// its output until the pipelined commands are answered (RFC 2449 §6.6).
func (l *LineReader) Buffered() int { return l.R.Buffered() }

func eofErr(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

func trimEOL(b []byte) []byte {
	n := len(b)
	if n > 0 && b[n-1] == '\n' {
		n--
		if n > 0 && b[n-1] == '\r' {
			n--
		}
	}
	return b[:n]
}
