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
// client lines of the transcripts. The engine must not panic, hang, or
// write a line that is not CRLF-terminated.
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
	f.Fuzz(func(t *testing.T, input string) {
		var panics atomic.Int32
		srv, err := pop3server.New(pop3server.Options{
			Backend:       newFixture(t),
			Logger:        slog.New(panicHandler{&panics}),
			AuthFailDelay: -1,
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
		io.WriteString(cli, "\r\nQUIT\r\n")
		var b []byte
		select {
		case b = <-out:
		case <-time.After(10 * time.Second):
			t.Fatalf("session did not end for input %q", input)
		}
		cli.Close()
		if panics.Load() > 0 {
			t.Fatalf("panic for input %q", input)
		}
		if len(b) > 0 && !strings.HasSuffix(string(b), "\r\n") {
			t.Fatalf("output does not end in CRLF: %q", b)
		}
	})
}
