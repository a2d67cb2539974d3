package wire

import (
	"bufio"
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
	line, err := l.R.ReadSlice('\n')
	if err == nil && len(line) <= l.Max {
		return trimEOL(line), nil
	}
	if err == nil || err == bufio.ErrBufferFull {
		// Too long: drop the rest of the line.
		for err == bufio.ErrBufferFull {
			_, err = l.R.ReadSlice('\n')
		}
		if err != nil {
			return nil, eofErr(err)
		}
		return nil, ErrLineTooLong
	}
	if err == io.EOF && len(line) > 0 {
		return nil, io.ErrUnexpectedEOF
	}
	return nil, err
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
