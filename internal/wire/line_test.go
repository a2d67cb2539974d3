package wire

import (
	"bufio"
	"errors"
	"io"
	"strings"
	"testing"
	"time"
)

func fixedLimit(n int) func([]byte) int { return func([]byte) int { return n } }

func TestReadLineAtMost(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("x", 100)
	type result struct {
		line string
		n    int
		err  error
	}
	tests := []struct {
		in    string
		limit int
		size  int // bufio size (16 is bufio's minimum)
		want  []result
	}{
		{"a\r\nbb\n", 10, 16, []result{{"a", 3, nil}, {"bb", 3, nil}, {"", 0, io.EOF}}},
		{"abc", 10, 16, []result{{"", 0, io.ErrUnexpectedEOF}}},
		{"abcdefghij\r\n", 12, 16, []result{{"abcdefghij", 12, nil}}},
		{"abcdefghijk\r\n", 12, 16, []result{{"", 13, ErrLineTooLong}}},
		// Longer than the buffer, within the limit: assembled.
		{long + "\r\n", 200, 16, []result{{long, 102, nil}, {"", 0, io.EOF}}},
		// Longer than the buffer and the limit, no line end: refused at once.
		{long, 50, 16, []result{{"", 64, ErrLineTooLong}}},
	}
	for _, tt := range tests {
		r := bufio.NewReaderSize(strings.NewReader(tt.in), tt.size)
		for i, w := range tt.want {
			line, n, err := ReadLineAtMost(r, fixedLimit(tt.limit))
			if string(line) != w.line || n != w.n || !errors.Is(err, w.err) {
				t.Errorf("ReadLineAtMost(%q, %d) #%d = %q, %d, %v; want %q, %d, %v",
					tt.in, tt.limit, i, line, n, err, w.line, w.n, w.err)
			}
		}
	}
}

// An endless line is refused once the limit is passed, not when its end
// (which never comes) arrives: the writer sends 300 octets, then nothing,
// and keeps the stream open.
func TestReadLineAtMostEndlessLine(t *testing.T) {
	t.Parallel()
	for _, size := range []int{16, 1024, 4096} {
		pr, pw := io.Pipe()
		go pw.Write([]byte(strings.Repeat("A", 300)))
		done := make(chan error, 1)
		go func() {
			_, _, err := ReadLineAtMost(bufio.NewReaderSize(pr, size), fixedLimit(255))
			done <- err
		}()
		select {
		case err := <-done:
			if err != ErrLineTooLong {
				t.Errorf("buffer %d: ReadLineAtMost = %v, want ErrLineTooLong", size, err)
			}
		case <-time.After(5 * time.Second):
			t.Errorf("buffer %d: ReadLineAtMost still waiting for the end of an endless line", size)
		}
		pr.Close()
	}
}

// limit sees the start of the line and may allow more for some lines.
func TestReadLineAtMostLimitByHead(t *testing.T) {
	t.Parallel()
	limit := func(head []byte) int {
		if strings.HasPrefix(string(head), "AUTH ") {
			return 1000
		}
		return 20
	}
	in := "AUTH " + strings.Repeat("b", 500) + "\r\nUSER " + strings.Repeat("u", 30) + "\r\n"
	r := bufio.NewReaderSize(strings.NewReader(in), 64)
	line, _, err := ReadLineAtMost(r, limit)
	if err != nil || len(line) != 505 {
		t.Fatalf("AUTH line: %d octets, %v; want 505, nil", len(line), err)
	}
	if _, _, err := ReadLineAtMost(r, limit); err != ErrLineTooLong {
		t.Fatalf("long USER line: %v, want ErrLineTooLong", err)
	}
}

// Lines that fit the buffer cost no allocation.
func TestReadLineAtMostAllocs(t *testing.T) {
	in := strings.Repeat("RETR 1\r\n", 1000)
	sr := strings.NewReader(in)
	r := bufio.NewReaderSize(sr, 1024)
	lim := fixedLimit(255)
	allocs := testing.AllocsPerRun(100, func() {
		if _, _, err := ReadLineAtMost(r, lim); err != nil {
			sr.Reset(in)
			r.Reset(sr)
		}
	})
	if allocs != 0 {
		t.Errorf("ReadLineAtMost allocates %v times per line, want 0", allocs)
	}
}
