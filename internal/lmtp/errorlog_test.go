package lmtp

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// logBuffer is a slog text log shared by the server's goroutines.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// loud returns the lines of the log at warn level or above.
func (b *logBuffer) loud() []string {
	var out []string
	for _, l := range strings.Split(b.String(), "\n") {
		if strings.Contains(l, "level=WARN") || strings.Contains(l, "level=ERROR") {
			out = append(out, l)
		}
	}
	return out
}

func newLogBuffer() (*logBuffer, *slog.Logger) {
	b := &logBuffer{}
	return b, slog.New(slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// TestPeerResetIsNotAnError: a client that resets the connection (Python's
// smtplib.LMTP closing right after QUIT, before or after the server has
// read it; an MTA's connection cut while idle) ended its own session. The
// server logs it at debug level, never as a server error.
func TestPeerResetIsNotAnError(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name string
		talk func(c *client)
	}{
		// The reset reaches a server waiting for the next command: a
		// read error for certain.
		{"idle", func(c *client) {}},
		// The reset follows QUIT at once; the server may read QUIT and
		// close first, or read the reset.
		{"after QUIT", func(c *client) { fmt.Fprintf(c.nc, "QUIT\r\n") }},
		{"after a delivery and QUIT", func(c *client) {
			c.cmd("MAIL FROM:<sender@example.net>", "250 ")
			c.cmd("RCPT TO:<alice@example.org>", "250 ")
			c.cmd("DATA", "354 ")
			c.cmd("Subject: x\r\n\r\nbody\r\n.", "250 ")
			fmt.Fprintf(c.nc, "QUIT\r\n")
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			logs, logger := newLogBuffer()
			srv, err := New(Options{Users: f.users, Store: f.store, Hostname: "lmtp.test", Logger: logger})
			if err != nil {
				t.Fatal(err)
			}
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- srv.Serve(l) }()
			c := dial(t, l.Addr().String())
			c.lhlo()
			tt.talk(c)
			// SO_LINGER 0: close sends RST instead of FIN.
			if err := c.nc.(*net.TCPConn).SetLinger(0); err != nil {
				t.Fatal(err)
			}
			c.nc.Close()
			// Wait (bounded) until the server has seen the end of the
			// session, so that Shutdown does not end it instead.
			for i := 0; i < 1000 && srv.active() > 0; i++ {
				time.Sleep(10 * time.Millisecond)
			}
			if n := srv.active(); n > 0 {
				t.Fatalf("%d sessions still open 10s after the reset", n)
			}
			// Shutdown waits for the connection's goroutine, which logs.
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := srv.Shutdown(ctx); err != nil {
				t.Fatalf("Shutdown = %v", err)
			}
			if err := <-done; err != nil {
				t.Errorf("Serve = %v", err)
			}
			if loud := logs.loud(); len(loud) > 0 {
				t.Errorf("a client's reset logged at warn or above:\n%s", strings.Join(loud, "\n"))
			}
		})
	}
}

// TestLibraryErrorsStayErrors: what go-smtp reports that is not the peer
// ending the connection (a panic in a session, a failed TLS handshake, an
// accept that keeps failing) is still an error.
func TestLibraryErrorsStayErrors(t *testing.T) {
	t.Parallel()
	addr := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 2525}
	for _, tt := range []struct {
		format string
		args   []any
		level  string
	}{
		{"panic serving %v: %v\n%s", []any{addr, "runtime error: index out of range", "stack"}, "ERROR"},
		{"panic serving %v: %v\n%s", []any{addr, net.ErrClosed, "stack"}, "ERROR"},
		{"error handling %v: %s", []any{addr, errors.New("tls: first record does not look like a TLS handshake")}, "ERROR"},
		{"accept error: %s; retrying in %s", []any{errors.New("accept4: too many open files"), "5ms"}, "ERROR"},
		{"error handling %v: %s", []any{addr, &net.OpError{Op: "read", Net: "tcp", Err: syscall.ECONNRESET}}, "DEBUG"},
		{"error handling %v: %s", []any{addr, &net.OpError{Op: "write", Net: "tcp", Err: syscall.EPIPE}}, "DEBUG"},
		{"error handling %v: %s", []any{addr, fmt.Errorf("tls handshake: %w", io.EOF)}, "DEBUG"},
		{"error handling %v: %s", []any{addr, &net.OpError{Op: "read", Net: "tcp", Err: errTimeout{}}}, "DEBUG"},
		{"error handling %v: %s", []any{addr, net.ErrClosed}, "DEBUG"},
	} {
		logs, logger := newLogBuffer()
		slogAdapter{logger}.Printf(tt.format, tt.args...)
		if got := logs.String(); !strings.Contains(got, "level="+tt.level+" ") {
			t.Errorf("Printf(%q, %v) logged %q, want level %s", tt.format, tt.args, got, tt.level)
		}
	}
}

// errTimeout is a net.Error that timed out.
type errTimeout struct{}

func (errTimeout) Error() string   { return "i/o timeout" }
func (errTimeout) Timeout() bool   { return true }
func (errTimeout) Temporary() bool { return true }

// active returns the number of open sessions.
func (s *Server) active() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.sessions)
}
