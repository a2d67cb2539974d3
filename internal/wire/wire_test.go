package wire

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
)

func dot(t testing.TB, msg string) (out string, count int64) {
	t.Helper()
	var b bytes.Buffer
	bw := bufio.NewWriter(&b)
	d := NewDotWriter(bw)
	if _, err := io.Copy(d, strings.NewReader(msg)); err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	bw.Flush()
	return b.String(), d.Count()
}

// RFC 1939 §3: byte-stuffing and the CRLF.CRLF end; §11: sizes of the CRLF
// form; bare LFs and a missing final line end become CRLF, as Dovecot sends
// them.
func TestDotWriter(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in, want string
		size     int64
	}{
		{"", ".\r\n", 0},
		{"a\r\nb\r\n", "a\r\nb\r\n.\r\n", 6},
		{"a\nb\n", "a\r\nb\r\n.\r\n", 6},
		{"a\nb", "a\r\nb\r\n.\r\n", 6},
		{"a\r", "a\r\n.\r\n", 3},
		{".\n", "..\r\n.\r\n", 3},
		{"..x\r\n.\r\n", "...x\r\n..\r\n.\r\n", 8},
		{"a\n.b\n\n.", "a\r\n..b\r\n\r\n..\r\n.\r\n", 12},
		{"x\r\r\n", "x\r\r\n.\r\n", 4},
		{"\x00\xff\n", "\x00\xff\r\n.\r\n", 4},
	}
	for _, tt := range tests {
		got, n := dot(t, tt.in)
		if got != tt.want {
			t.Errorf("DotWriter(%q) = %q, want %q", tt.in, got, tt.want)
		}
		if n != tt.size {
			t.Errorf("DotWriter(%q).Count() = %d, want %d", tt.in, n, tt.size)
		}
		if s, _ := CRLFSize(strings.NewReader(tt.in)); s != tt.size {
			t.Errorf("CRLFSize(%q) = %d, want %d", tt.in, s, tt.size)
		}
	}
}

func TestDotWriterSplitWrites(t *testing.T) {
	t.Parallel()
	msg := "a\r\n.b\n\r\n..\r\nend"
	whole, _ := dot(t, msg)
	for split := 0; split <= len(msg); split++ {
		var b bytes.Buffer
		bw := bufio.NewWriter(&b)
		d := NewDotWriter(bw)
		d.Write([]byte(msg[:split]))
		d.Write([]byte(msg[split:]))
		d.Close()
		bw.Flush()
		if b.String() != whole {
			t.Errorf("split at %d: %q, want %q", split, b.String(), whole)
		}
		var c CRLFCounter
		c.Write([]byte(msg[:split]))
		c.Write([]byte(msg[split:]))
		if c.Size() != d.Count() {
			t.Errorf("split at %d: counter %d, writer %d", split, c.Size(), d.Count())
		}
	}
}

// RFC 1939 §3: one leading dot is stripped and a lone dot ends the reply.
func TestDotReader(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, want string }{
		{".\r\n", ""},
		{"a\r\n..b\r\n\r\n.\r\nNEXT", "a\r\n.b\r\n\r\n"},
		{"..\r\n.\n", ".\r\n"},
		{strings.Repeat("x", 100000) + "\r\n.\r\n", strings.Repeat("x", 100000) + "\r\n"},
	}
	for _, tt := range tests {
		br := bufio.NewReaderSize(strings.NewReader(tt.in), 16)
		got, err := io.ReadAll(NewDotReader(br))
		if err != nil || string(got) != tt.want {
			t.Errorf("DotReader(%.40q) = %.40q, %v; want %.40q", tt.in, got, err, tt.want)
		}
	}
	_, err := io.ReadAll(NewDotReader(bufio.NewReader(strings.NewReader("a\r\n"))))
	if !errors.Is(err, ErrUnterminated) {
		t.Errorf("unterminated: err = %v, want ErrUnterminated", err)
	}
}

// RFC 1939 §7: TOP sends the headers, the blank line and the first n body
// lines.
func TestTopWriter(t *testing.T) {
	t.Parallel()
	msg := "H: 1\r\nH2: 2\r\n\r\nl1\r\nl2\r\nl3\r\n"
	tests := []struct {
		msg   string
		lines int64
		want  string
	}{
		{msg, 0, "H: 1\r\nH2: 2\r\n\r\n"},
		{msg, 2, "H: 1\r\nH2: 2\r\n\r\nl1\r\nl2\r\n"},
		{msg, 10, msg},
		{"H: 1\nH: 2\n", 0, "H: 1\nH: 2\n"},
		{"H: 1\n\nbody", 5, "H: 1\n\nbody"},
	}
	for _, tt := range tests {
		for chunk := 1; chunk <= len(tt.msg); chunk++ {
			var b bytes.Buffer
			tw := &TopWriter{W: &b, Lines: tt.lines}
			for i := 0; i < len(tt.msg); i += chunk {
				end := min(i+chunk, len(tt.msg))
				if _, err := tw.Write([]byte(tt.msg[i:end])); err != nil {
					if err != ErrTopDone {
						t.Fatal(err)
					}
					break
				}
			}
			if b.String() != tt.want {
				t.Errorf("Top(%q, %d) chunk %d = %q, want %q", tt.msg, tt.lines, chunk, b.String(), tt.want)
				break
			}
		}
	}
}

func TestLineReader(t *testing.T) {
	t.Parallel()
	in := "USER a\r\n" + strings.Repeat("x", 300) + "\r\nNOOP\nPART"
	lr := NewLineReader(bufio.NewReaderSize(strings.NewReader(in), 64), 255)
	want := []struct {
		line string
		err  error
	}{{"USER a", nil}, {"", ErrLineTooLong}, {"NOOP", nil}, {"", io.ErrUnexpectedEOF}}
	for i, w := range want {
		line, err := lr.ReadLine()
		if string(line) != w.line || err != w.err {
			t.Errorf("ReadLine #%d = %q, %v; want %q, %v", i, line, err, w.line, w.err)
		}
	}
}

// FuzzDot checks the round trip writer -> reader and that the writer's
// count equals CRLFSize for any input.
func FuzzDot(f *testing.F) {
	for _, s := range []string{"", ".", "a\n.\n", "a\r\n..\r\n", "x\r", "\r\n.\r\n", "H: v\n\nbody\n.", "\x00\r\r\n"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, msg string) {
		out, n := dot(t, msg)
		size, _ := CRLFSize(strings.NewReader(msg))
		if n != size {
			t.Fatalf("count %d != CRLFSize %d for %q", n, size, msg)
		}
		got, err := io.ReadAll(NewDotReader(bufio.NewReaderSize(strings.NewReader(out), 16)))
		if err != nil {
			t.Fatal(err)
		}
		if int64(len(got)) != size {
			t.Fatalf("read back %d octets, size %d, for %q", len(got), size, msg)
		}
		// The read-back is the CRLF form: no bare LF.
		if bytes.Contains(bytes.ReplaceAll(got, []byte("\r\n"), nil), []byte("\n")) {
			t.Fatalf("bare LF in %q", got)
		}
	})
}
