package wire

import (
	"bufio"
	"bytes"
	"strings"
	"testing"
)

// wireForm is the reference for DotWriter: the CRLF form of msg (bare LF
// becomes CRLF, an unterminated last line is completed), with lines that
// start with "." stuffed, and the "." line.
func wireForm(msg string) string {
	var crlf strings.Builder
	for i := 0; i < len(msg); i++ {
		if msg[i] == '\n' && (i == 0 || msg[i-1] != '\r') {
			crlf.WriteByte('\r')
		}
		crlf.WriteByte(msg[i])
	}
	if msg != "" && !strings.HasSuffix(msg, "\n") {
		if strings.HasSuffix(msg, "\r") {
			crlf.WriteByte('\n')
		} else {
			crlf.WriteString("\r\n")
		}
	}
	var out strings.Builder
	for _, l := range strings.SplitAfter(crlf.String(), "\r\n") {
		if strings.HasPrefix(l, ".") {
			out.WriteByte('.')
		}
		out.WriteString(l)
	}
	out.WriteString(".\r\n")
	return out.String()
}

// dotBuffered writes msg through a DotWriter over a bufio.Writer of size
// bufSize, step octets per Write.
func dotBuffered(t testing.TB, msg string, bufSize, step int) (string, int64) {
	t.Helper()
	var out bytes.Buffer
	bw := bufio.NewWriterSize(&out, bufSize)
	d := NewDotWriter(bw)
	for i := 0; i < len(msg); i += step {
		p := []byte(msg[i:min(i+step, len(msg))])
		if n, err := d.Write(p); n != len(p) || err != nil {
			t.Fatalf("Write = %d, %v; want %d, nil", n, err, len(p))
		}
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	bw.Flush()
	return out.String(), d.Count()
}

// TestDotWriterBuffers checks the bulk conversion where it cuts lines: a
// destination buffer of any size, from too small to convert into to
// larger than the message, and Writes of any size, against wireForm.
func TestDotWriterBuffers(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("y", 1500)
	msgs := []string{
		"",
		".",
		"a\n.\n..\r\n.\r",
		"H: v\r\nX: y\n\n.body\r\n\r\n\n.\n",
		"\r\r\n\r\n\n\r.\r\n.\r\r",
		long + "\n." + long + "\r\n" + long + "\r",
		strings.Repeat(".ab\r\ncd\n\r\n", 300),
		strings.Repeat(strings.Repeat("z", 75)+"\n", 100) + "end",
	}
	for _, msg := range msgs {
		want := wireForm(msg)
		size, _ := CRLFSize(strings.NewReader(msg))
		for _, bufSize := range []int{1, 2, 3, 4, 5, 8, 77, 511, 512, 513, 600, 4096, 64 << 10} {
			for _, step := range []int{1, 2, 3, 5, 64, 1 << 20} {
				got, n := dotBuffered(t, msg, bufSize, step)
				if got != want {
					t.Fatalf("DotWriter(%.40q) buffer %d, writes of %d = %.80q, want %.80q", msg, bufSize, step, got, want)
				}
				if n != size {
					t.Fatalf("DotWriter(%.40q) buffer %d, writes of %d: Count() = %d, want %d", msg, bufSize, step, n, size)
				}
			}
		}
	}
}

// FuzzDotWriterBuffer is TestDotWriterBuffers for any message, buffer size
// and write size.
func FuzzDotWriterBuffer(f *testing.F) {
	for _, s := range []string{"", ".", "a\n.\n", "a\r\n..\r\n", "x\r", "\r\n.\r\n", "H: v\n\nbody\n.", "\x00\r\r\n", "a\rb\n"} {
		f.Add(s, uint16(3), uint8(3))
	}
	f.Fuzz(func(t *testing.T, msg string, bufSize uint16, step uint8) {
		got, n := dotBuffered(t, msg, int(bufSize)%1100+1, int(step)+1)
		if want := wireForm(msg); got != want {
			t.Fatalf("DotWriter(%q) buffer %d, writes of %d = %q, want %q", msg, int(bufSize)%1100+1, int(step)+1, got, want)
		}
		if size, _ := CRLFSize(strings.NewReader(msg)); n != size {
			t.Fatalf("DotWriter(%q): Count() = %d, want %d", msg, n, size)
		}
	})
}
