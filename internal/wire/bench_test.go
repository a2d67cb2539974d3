package wire

import (
	"bufio"
	"io"
	"strings"
	"testing"
)

// benchMessages are a text message and a base64 attachment, with LF line
// ends as Postfix stores them and with CRLF. The base64 lines are all of one
// length, as encoders write them, which DotWriter converts as a block (see
// convert); the text lines alternate between two lengths.
func benchMessages() map[string]string {
	text := "Received: from a.example by b.example\nSubject: hi\n\n" +
		strings.Repeat("Some words of a text line, and then a few more of them.\n.dot\n", 500)
	attach := strings.Repeat(strings.Repeat("QUJD", 19)+"\n", 14000) // ~1 MB of 76-octet lines
	return map[string]string{
		"text-lf":     text,
		"text-crlf":   strings.ReplaceAll(text, "\n", "\r\n"),
		"base64-lf":   attach,
		"base64-crlf": strings.ReplaceAll(attach, "\n", "\r\n"),
	}
}

// BenchmarkDotWriter converts messages into a 64 KiB buffer in 32 KiB
// reads, as the server's RETR does.
func BenchmarkDotWriter(b *testing.B) {
	for _, name := range []string{"text-lf", "text-crlf", "base64-lf", "base64-crlf"} {
		msg := []byte(benchMessages()[name])
		b.Run(name, func(b *testing.B) {
			bw := bufio.NewWriterSize(io.Discard, 64<<10)
			var d DotWriter
			b.SetBytes(int64(len(msg)))
			for b.Loop() {
				d.Reset(bw)
				for p := msg; len(p) > 0; {
					n := min(len(p), 32<<10)
					d.Write(p[:n])
					p = p[n:]
				}
				d.Close()
			}
		})
	}
}
