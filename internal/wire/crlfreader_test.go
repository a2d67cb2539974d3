package wire

import (
	"bytes"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

// readCRLF reads msg through a CRLFReader over a buffer of bufSize octets,
// in reads of readSize, from a source that gives one octet at a time when
// oneByte is set.
func readCRLF(t testing.TB, msg string, bufSize, readSize int, oneByte bool) (string, int64) {
	t.Helper()
	var src io.Reader = strings.NewReader(msg)
	if oneByte {
		src = iotest.OneByteReader(src)
	}
	c := NewCRLFReader(src, make([]byte, bufSize))
	var out bytes.Buffer
	p := make([]byte, readSize)
	for range 4*len(msg) + 8 {
		n, err := c.Read(p)
		out.Write(p[:n])
		if err == io.EOF {
			return out.String(), c.Count()
		}
		if err != nil {
			t.Fatalf("Read: %v", err)
		}
	}
	t.Fatalf("CRLFReader(%q) did not end", msg)
	return "", 0
}

// stuffed is s, a message in CRLF form, as RETR sends it: a "." before
// each line that starts with one, and the terminating line.
func stuffed(s string) string {
	var out strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '.' && (i == 0 || s[i-1] == '\n') {
			out.WriteByte('.')
		}
		out.WriteByte(s[i])
	}
	out.WriteString(".\r\n")
	return out.String()
}

// FuzzCRLFReader: the CRLF form of any message, with its stuffing added,
// is what DotWriter sends for it, octet for octet, whatever the buffer and
// read sizes; its length is CRLFSize; and it is its own CRLF form.
func FuzzCRLFReader(f *testing.F) {
	for _, s := range []string{"", ".", "\n", "\r", "\r\n", "a", "a\n.\n", "a\r\n..\r\n", "x\r", "\r\n.\r\n",
		"H: v\n\nbody\n.", "\x00\r\r\n", "a\rb\n", "a\n\r\nb\r\rc\n\n", ".\r\n.\n..\n. \r\n", "no final newline"} {
		f.Add(s, uint8(3), uint8(2), false)
	}
	f.Fuzz(func(t *testing.T, msg string, bufSize, readSize uint8, oneByte bool) {
		got, n := readCRLF(t, msg, int(bufSize)%64+1, int(readSize)%64+1, oneByte)
		if want, _ := dotBuffered(t, msg, 4096, len(msg)+1); stuffed(got) != want {
			t.Fatalf("CRLFReader(%q) = %q: stuffed %q, DotWriter sends %q", msg, got, stuffed(got), want)
		}
		if size, _ := CRLFSize(strings.NewReader(msg)); int64(len(got)) != size || n != size {
			t.Fatalf("CRLFReader(%q): %d octets, Count %d; CRLFSize %d", msg, len(got), n, size)
		}
		if again, _ := readCRLF(t, got, 7, 5, false); again != got {
			t.Fatalf("CRLFReader(%q) = %q, and of that %q: not its own CRLF form", msg, got, again)
		}
	})
}

// TestCRLFReaderError: the source's error comes after the octets read
// before it, and the last line is not completed.
func TestCRLFReaderError(t *testing.T) {
	t.Parallel()
	c := NewCRLFReader(iotest.TimeoutReader(strings.NewReader("a\nb")), make([]byte, 16))
	got, err := io.ReadAll(c)
	if string(got) != "a\r\nb" || err != iotest.ErrTimeout {
		t.Fatalf("ReadAll = %q, %v; want %q, %v", got, err, "a\r\nb", iotest.ErrTimeout)
	}
}
