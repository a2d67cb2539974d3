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
		// Blocks of lines of equal length (convertBlock): with a "."
		// line, with LF and CRLF mixed, of empty lines, with a lone CR,
		// and one whose line ends are where predicted but that has an
		// LF more (equalLines says no).
		strings.Repeat("abc\n", 100) + ".bc\n" + strings.Repeat("abc\n", 100) + "..\n.",
		strings.Repeat("ab\r\nabc\n", 100) + ".b\r\n.bc\n",
		strings.Repeat("\n", 300) + strings.Repeat("\r\n", 300) + "\r",
		strings.Repeat("a\rb\n", 200),
		strings.Repeat("abc\n", 50) + "a\nb\n" + strings.Repeat("abc\n", 50) + "\n\n\n",
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

// dotModel is a second reference for DotWriter, independent of wireForm:
// it converts msg octet by octet, the way the protocol states it (a "."
// at the start of a line gains a "."; an LF not after a CR gains a CR),
// and returns the wire form without the final line end and "." line, and
// after each octet the number of CRLF octets sent so far, stuffing
// excluded (counts[i] is the count after msg[:i]).
func dotModel(msg []byte) (wire []byte, counts []int64) {
	counts = make([]int64, len(msg)+1)
	var n int64
	prev := byte('\n') // the octet before msg: a line starts there
	for i, b := range msg {
		if prev == '\n' && b == '.' {
			wire = append(wire, '.')
		}
		if b == '\n' && prev != '\r' {
			wire = append(wire, '\r')
			n++
		}
		wire = append(wire, b)
		n++
		prev = b
		counts[i+1] = n
	}
	return wire, counts
}

// FuzzDotWriterSplits checks DotWriter against dotModel for any message
// cut into Writes at any points (split gives the lengths of the Writes in
// turn, empty ones included) into a buffer of any size: the same output,
// and after each Write the same Count.
func FuzzDotWriterSplits(f *testing.F) {
	for _, s := range []string{"", ".", "a\n.\n..\r\n.\r", "\r\r\n\r\n\n\r.\r\n.\r\r", "H: v\r\nX: y\n\n.body\r\n\r\n\n.\n"} {
		f.Add([]byte(s), []byte{1, 0, 2, 3}, uint16(3))
		f.Add([]byte(s), []byte{5}, uint16(700))
	}
	f.Add([]byte(strings.Repeat("abc\n.\r\n", 200)), []byte{200, 17, 255}, uint16(520))
	f.Add([]byte(strings.Repeat("abcd\n", 200)+".bcd\r\n"+strings.Repeat("abcd\n", 100)), []byte{255, 40, 255}, uint16(600))
	f.Fuzz(func(t *testing.T, msg, split []byte, bufSize uint16) {
		size := int(bufSize)%1100 + 1
		body, counts := dotModel(msg)
		want := string(body)
		switch {
		case len(msg) == 0:
		case msg[len(msg)-1] == '\r':
			want += "\n"
		case msg[len(msg)-1] != '\n':
			want += "\r\n"
		}
		want += ".\r\n"

		var out bytes.Buffer
		bw := bufio.NewWriterSize(&out, size)
		d := NewDotWriter(bw)
		done := 0
		for k := 0; done < len(msg); k++ {
			step := len(msg) - done
			if k < 4*len(split) { // then the rest in one Write
				step = min(step, int(split[k%len(split)]))
			}
			p := msg[done : done+step]
			if n, err := d.Write(p); n != len(p) || err != nil {
				t.Fatalf("Write = %d, %v; want %d, nil", n, err, len(p))
			}
			done += step
			if d.Count() != counts[done] {
				t.Fatalf("DotWriter(%q) buffer %d, splits %v: Count() = %d after %d octets, want %d", msg, size, split, d.Count(), done, counts[done])
			}
		}
		if err := d.Close(); err != nil {
			t.Fatal(err)
		}
		bw.Flush()
		if got := out.String(); got != want {
			t.Fatalf("DotWriter(%q) buffer %d, splits %v = %q, want %q", msg, size, split, got, want)
		}
	})
}

// TestEqualLines checks the block check of convert: the block ends at the
// first line without an LF at its end, and an LF inside it fails it.
func TestEqualLines(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		size int
		n    int
		ok   bool
	}{
		{"", 3, 0, false},
		{"ab", 3, 0, false},
		{"ab\n", 3, 3, true},
		{"ab\ncd\nef", 3, 6, true},
		{"ab\ncd\r\n", 3, 3, true},
		{"ab\n\n\n\n", 3, 6, false}, // the LF at 3
		{"\n\n\nx", 1, 3, true},
		{"a\r\nb\r\n.\r\n", 3, 9, true},
	}
	for _, tt := range tests {
		n, ok := equalLines([]byte(tt.in), tt.size)
		if n != tt.n || ok != tt.ok {
			t.Errorf("equalLines(%q, %d) = %d, %v; want %d, %v", tt.in, tt.size, n, ok, tt.n, tt.ok)
		}
	}
}
