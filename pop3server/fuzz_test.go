package pop3server_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/postoffice-mail/postoffice/pop3server"
)

// panicHandler counts the engine's "panic in session" log records, so a
// panic the per-connection recover swallowed still fails the fuzzer.
type panicHandler struct{ n *atomic.Int32 }

func (h panicHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h panicHandler) Handle(_ context.Context, r slog.Record) error {
	if r.Message == "panic in session" {
		h.n.Add(1)
	}
	return nil
}
func (h panicHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h panicHandler) WithGroup(string) slog.Handler      { return h }

// FuzzServer feeds arbitrary client input to a whole session. Seeds are the
// client lines of the transcripts (so AUTH, APOP, STLS, UTF8 and LANG are
// among them). The backend offers APOP and SASL PLAIN, STLS is configured
// and plaintext logins are allowed (net.Pipe is not loopback). The engine
// must not panic, hang, or write a line that is not CRLF-terminated; after
// "+OK Begin TLS negotiation" the output is the TLS layer's and is not
// checked.
func FuzzServer(f *testing.F) {
	files, _ := filepath.Glob("testdata/transcripts/*.txt")
	for _, file := range files {
		data, _ := os.ReadFile(file)
		var in strings.Builder
		for _, l := range strings.Split(string(data), "\n") {
			if strings.HasPrefix(l, "C: ") {
				in.WriteString(l[3:] + "\r\n")
			}
			if strings.HasPrefix(l, "P: ") {
				in.WriteString(strings.ReplaceAll(l[3:], "|", "\r\n") + "\r\n")
			}
		}
		f.Add(in.String())
	}
	f.Add("AUTH PLAIN\r\n" + strings.Repeat("QUFB", 5000) + "\r\nAUTH\r\nAUTH PLAIN =\r\n*\r\n")
	f.Add("STLS\r\n\x16\x03\x01\x00\x05hello")
	// Keywords and mechanism names with letters Unicode folds onto ASCII
	// ones (keywords-ascii.txt; FuzzKeyword checks the property itself).
	f.Add("ſtat\r\nuſer alice\r\nlıst\r\n\u212Aapa\r\nAUTH plaın =\r\nUSER alice\r\nPASS secret word\r\nſtat\r\nquıt\r\n")
	tlsConfig := testTLSConfig(f)
	f.Fuzz(func(t *testing.T, input string) {
		var panics atomic.Int32
		b := newFixture(t)
		b.EnableAPOP()
		b.EnableSASL()
		srv, err := pop3server.New(pop3server.Options{
			Backend:            b,
			Logger:             slog.New(panicHandler{&panics}),
			AuthFailDelay:      -1,
			AllowPlaintextAuth: true,
			TLSConfig:          tlsConfig,
			// A handshake fed a partial record waits for more; the
			// client here never sends it.
			TLSHandshakeTimeout: 100 * time.Millisecond,
		})
		if err != nil {
			t.Fatal(err)
		}
		defer srv.Close()
		cli, sv := net.Pipe()
		srv.ServeConn(sv)
		out := make(chan []byte, 1)
		go func() {
			b, _ := io.ReadAll(cli)
			out <- b
		}()
		cli.SetWriteDeadline(time.Now().Add(5 * time.Second))
		io.WriteString(cli, input)
		// "*" cancels an AUTH the input left waiting for a response (else
		// QUIT would be taken as one); otherwise it is a bad command.
		io.WriteString(cli, "\r\n*\r\nQUIT\r\n")
		var got []byte
		select {
		case got = <-out:
		case <-time.After(10 * time.Second):
			t.Fatalf("session did not end for input %q", input)
		}
		cli.Close()
		if panics.Load() > 0 {
			t.Fatalf("panic for input %q", input)
		}
		text := string(got)
		if i := strings.Index(text, "+OK Begin TLS negotiation\r\n"); i >= 0 {
			text = text[:i+len("+OK Begin TLS negotiation\r\n")]
		}
		if len(text) > 0 && !strings.HasSuffix(text, "\r\n") {
			t.Fatalf("output does not end in CRLF: %q", text)
		}
	})
}
