package pop3server_test

import (
	"bufio"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/postoffice-mail/postoffice/pop3server"
)

// endlessLine sends n octets of a command line that never ends and keeps
// the connection open (the write side too). The server must answer at
// once and close: the test's deadline of a few seconds is far below the
// idle timeouts (a minute and more), which is what a server waiting for
// the end of the line would take.
func endlessLine(t *testing.T, nc net.Conn, br *bufio.Reader, prefix string, n int) {
	t.Helper()
	nc.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(nc, prefix+strings.Repeat("A", n-len(prefix))); err != nil {
		t.Fatalf("write: %v", err)
	}
	l, err := br.ReadString('\n')
	if l != "-ERR Line too long, closing connection; reconnect and send shorter lines (a command has at most 255 octets)\r\n" {
		t.Fatalf("after %d octets without a line end: %q, %v; want -ERR Line too long", n, l, err)
	}
	if rest, err := br.ReadString('\n'); err == nil || isTimeout(err) {
		t.Fatalf("after the -ERR: %q, %v; want the connection closed", rest, err)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// lineServer serves with the long default timeouts and SASL (so the 16 KiB AUTH
// limit is in play before login).
func lineServer(t *testing.T, tlsConf bool) string {
	b := newFixture(t)
	b.EnableSASL()
	opts := pop3server.Options{Backend: b, PreLoginTimeout: time.Minute, IdleTimeout: 10 * time.Minute}
	if tlsConf {
		opts.TLSConfig = testTLSConfig(t)
	}
	addr, _ := startServer(t, opts)
	return addr
}

func TestEndlessLine(t *testing.T) {
	t.Parallel()
	plain := func(t *testing.T) *client {
		return dial(t, lineServer(t, false))
	}
	implicit := func(t *testing.T) *client {
		tc, err := tls.Dial("tcp", lineServer(t, true), clientTLS(t))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { tc.Close() })
		tc.SetDeadline(time.Now().Add(10 * time.Second))
		c := &client{t: t, nc: tc, br: bufio.NewReader(tc)}
		c.expect("+OK")
		return c
	}
	login := func(c *client) { c.login("alice", "secret word") }
	none := func(*client) {}
	sasl := func(c *client) { c.cmd("AUTH PLAIN", "+ ") }
	tests := []struct {
		name   string
		dial   func(*testing.T) *client
		before func(*client)
		prefix string
		n      int
	}{
		{"plain/before-login", plain, none, "", 300},
		{"plain/before-login/user", plain, none, "USER ", 300},
		{"plain/after-login", plain, login, "", 300},
		{"plain/after-login/auth", plain, login, "AUTH ", 300},
		{"plain/auth-line", plain, none, "AUTH PLAIN ", 17 << 10},
		{"plain/sasl-response", plain, sasl, "", 17 << 10},
		{"tls/before-login", implicit, none, "", 300},
		{"tls/after-login", implicit, login, "", 300},
		{"tls/sasl-response", implicit, sasl, "", 17 << 10},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := tt.dial(t)
			tt.before(c)
			endlessLine(t, c.nc, c.br, tt.prefix, tt.n)
		})
	}
}

// After STLS the same holds inside the TLS layer.
func TestEndlessLineSTLS(t *testing.T) {
	t.Parallel()
	addr, _, _ := waitServer(t, pop3server.Options{Backend: newFixture(t), TLSConfig: testTLSConfig(t),
		PreLoginTimeout: time.Minute}, nil, false)
	c := dial(t, addr)
	c.cmd("STLS", "+OK Begin TLS negotiation")
	tc := tls.Client(c.nc, clientTLS(t))
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	tcl := &client{t: t, nc: tc, br: bufio.NewReader(tc)}
	tcl.login("alice", "secret word")
	endlessLine(t, tc, tcl.br, "", 300)
}

// countConn counts the octets the server reads.
type countConn struct {
	net.Conn
	n *atomic.Int64
}

func (c countConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// A client that sends an endless line without pause gets its -ERR, and
// the server reads a bounded amount of it: the line up to its limit, a
// read buffer, and what the lingering close discards (64 KiB).
func TestEndlessLineBoundedRead(t *testing.T) {
	t.Parallel()
	for _, loggedIn := range []bool{false, true} {
		b := newFixture(t)
		b.EnableSASL()
		srv, err := pop3server.New(pop3server.Options{Backend: b, AuthFailDelay: -1, AllowPlaintextAuth: true})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { srv.Close() })
		cli, sv := net.Pipe()
		var read atomic.Int64
		srv.ServeConn(countConn{sv, &read})
		cli.SetDeadline(time.Now().Add(10 * time.Second))
		c := &client{t: t, nc: cli, br: bufio.NewReader(cli)}
		c.expect("+OK")
		if loggedIn {
			c.login("alice", "secret word")
		}
		start := read.Load()
		var sent atomic.Int64
		go func() {
			chunk := []byte(strings.Repeat("A", 4096))
			for range 100_000 { // 400 MB at most: bounded even if the server never stops
				n, err := cli.Write(chunk)
				sent.Add(int64(n))
				if err != nil {
					return
				}
			}
		}()
		if l, err := c.br.ReadString('\n'); l != "-ERR Line too long, closing connection; reconnect and send shorter lines (a command has at most 255 octets)\r\n" {
			t.Fatalf("logged in %v: %q, %v; want -ERR Line too long", loggedIn, l, err)
		}
		if _, err := c.br.ReadString('\n'); err == nil || isTimeout(err) {
			t.Fatalf("logged in %v: connection not closed: %v", loggedIn, err)
		}
		if got, max := read.Load()-start, int64(16<<10+1<<10+64<<10+4096); got > max {
			t.Errorf("logged in %v: server read %d octets of an endless line, want at most %d", loggedIn, got, max)
		}
		cli.Close()
	}
}
