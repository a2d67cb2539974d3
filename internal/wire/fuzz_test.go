package wire

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
)

// unstuffModel is the reference for DotReader: it splits the input into
// lines, stops at the first "." line (".\r\n" or ".\n"), removes one
// leading "." from the others, and returns the body, the input left after
// the terminator, and whether a terminator was found. A last line without
// LF is unterminated: a lone "." or ".\r" there yields nothing.
func unstuffModel(in []byte) (body, rest []byte, ok bool) {
	for len(in) > 0 {
		i := bytes.IndexByte(in, '\n')
		if i < 0 {
			if string(in) != "." && string(in) != ".\r" {
				body = append(body, bytes.TrimPrefix(in, []byte("."))...)
			}
			return body, nil, false
		}
		line := in[:i+1]
		in = in[i+1:]
		if string(line) == ".\r\n" || string(line) == ".\n" {
			return body, in, true
		}
		body = append(body, bytes.TrimPrefix(line, []byte("."))...)
	}
	return body, nil, false
}

// FuzzDotReader feeds arbitrary server output to DotReader, through
// buffers of several sizes and reads of several sizes, and compares it with
// unstuffModel: the same body, the same error, and the input after the
// terminator left unread for the next response. FuzzDot covers the other
// direction (DotWriter, and the round trip).
func FuzzDotReader(f *testing.F) {
	for _, s := range []string{".\r\n", "a\r\n..b\r\n\r\n.\r\nNEXT", "..\r\n.\n", "x\r\n.", "x\r\n.\r",
		".x", ".\rx\r\n.\r\n", "a\nb\r\n.\n+OK\r\n", "\r\n.\r\n", "...\r\n.\r\n"} {
		f.Add([]byte(s), uint8(16), uint8(7))
	}
	f.Fuzz(func(t *testing.T, in []byte, bufSize, readSize uint8) {
		wantBody, wantRest, wantOK := unstuffModel(in)
		br := bufio.NewReaderSize(bytes.NewReader(in), int(bufSize)+16)
		d := NewDotReader(br)
		var got []byte
		p := make([]byte, int(readSize)%64+1)
		var err error
		for range len(in) + 3 {
			var n int
			n, err = d.Read(p)
			got = append(got, p[:n]...)
			if err != nil {
				break
			}
		}
		if wantOK && err != io.EOF || !wantOK && !errors.Is(err, ErrUnterminated) {
			t.Fatalf("DotReader(%q): err %v, want terminated=%v", in, err, wantOK)
		}
		if !bytes.Equal(got, wantBody) {
			t.Fatalf("DotReader(%q) = %q, want %q", in, got, wantBody)
		}
		if wantOK {
			rest, _ := io.ReadAll(br)
			if !bytes.Equal(rest, wantRest) {
				t.Fatalf("DotReader(%q) left %q unread, want %q", in, rest, wantRest)
			}
		}
	})
}

// FuzzDotWriterExact checks that DotWriter, fed in pieces, sends exactly
// the CRLF form of the message, stuffed, and that DotReader gives that
// CRLF form back byte for byte. (FuzzDot checks only sizes.)
func FuzzDotWriterExact(f *testing.F) {
	for _, s := range []string{"", ".", "a\n.\n", "a\r\n..\r\n", "x\r", "\r\n.\r\n", "H: v\n\nbody\n.", "\x00\r\r\n", "a\rb\n"} {
		f.Add(s, uint8(3))
	}
	f.Fuzz(func(t *testing.T, msg string, chunk uint8) {
		// The CRLF form: bare LF becomes CRLF, and an unterminated last
		// line is completed.
		var want strings.Builder
		for i := 0; i < len(msg); i++ {
			if msg[i] == '\n' && (i == 0 || msg[i-1] != '\r') {
				want.WriteByte('\r')
			}
			want.WriteByte(msg[i])
		}
		if msg != "" && !strings.HasSuffix(msg, "\n") {
			if strings.HasSuffix(msg, "\r") {
				want.WriteByte('\n')
			} else {
				want.WriteString("\r\n")
			}
		}
		var out bytes.Buffer
		bw := bufio.NewWriter(&out)
		d := NewDotWriter(bw)
		step := int(chunk)%7 + 1
		for i := 0; i < len(msg); i += step {
			if _, err := d.Write([]byte(msg[i:min(i+step, len(msg))])); err != nil {
				t.Fatal(err)
			}
		}
		if err := d.Close(); err != nil {
			t.Fatal(err)
		}
		bw.Flush()
		wire := out.String()
		if !strings.HasSuffix(wire, "\r\n.\r\n") && wire != ".\r\n" {
			t.Fatalf("DotWriter(%q) = %q: no terminator", msg, wire)
		}
		if strings.Contains(wire[:len(wire)-3], "\r\n.\r\n") || strings.HasPrefix(wire[:len(wire)-3], ".\r\n") {
			t.Fatalf("DotWriter(%q) = %q: early terminator", msg, wire)
		}
		got, err := io.ReadAll(NewDotReader(bufio.NewReader(strings.NewReader(wire))))
		if err != nil || string(got) != want.String() {
			t.Fatalf("DotWriter(%q) read back as %q, %v; want %q", msg, got, err, want.String())
		}
		if d.Count() != int64(want.Len()) {
			t.Fatalf("DotWriter(%q).Count() = %d, want %d", msg, d.Count(), want.Len())
		}
	})
}
