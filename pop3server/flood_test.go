//go:build linux

package pop3server_test

import (
	"bufio"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/postoffice-mail/postoffice/internal/netlimit"
	"github.com/postoffice-mail/postoffice/pop3server"
)

// 5,000 connections that never send a command (some stop in the middle of
// a line, none reads its greeting) do not keep a new client from logging
// in: the engine serves each connection on its own and the accept path
// never waits on a client. The server runs behind internal/netlimit as in
// production, with a per-address cap that the flood (spread over 50
// loopback addresses, 100 each) fills exactly; the new client comes from
// another address, and one more from a flooding address is refused.
//
// Not parallel: with -race a test binary may run at most 8,128 goroutines,
// and this one holds 5,000 sessions.
func TestIdleFloodDoesNotBlockLogin(t *testing.T) {
	if testing.Short() {
		t.Skip("5,000 connections; skipped with -short")
	}
	const (
		addrs   = 50
		perAddr = 100
		flood   = addrs * perAddr
	)
	raiseFileLimit(t, 2*flood+512)

	lim, err := netlimit.New(netlimit.Options{
		MaxConns:      flood + 100,
		MaxConnsPerIP: perAddr,
		Refusal:       []byte("-ERR [SYS/TEMP] Too many connections; try again in a minute\r\n"),
	})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := pop3server.New(pop3server.Options{Backend: newFixture(t), AuthFailDelay: -1})
	if err != nil {
		t.Fatal(err)
	}
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(lim.Listen(inner))
	defer srv.Close()
	addr := inner.Addr().(*net.TCPAddr)

	dialFrom := func(ip string) (net.Conn, error) {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 10 * time.Second}
		return d.Dial("tcp", addr.String())
	}
	conns := make([]net.Conn, 0, flood)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	start := time.Now()
	for i := 0; i < flood; i++ {
		c, err := dialFrom(fmtIP(10 + i%addrs))
		if err != nil {
			t.Fatalf("flood connection %d: %v", i, err)
		}
		conns = append(conns, c)
		if i%10 == 0 {
			c.Write([]byte("USER ali")) // half a line
		}
	}
	for i := 0; i < 1000 && srv.Sessions() < flood; i++ {
		time.Sleep(10 * time.Millisecond)
	}
	if n := srv.Sessions(); n != flood {
		t.Fatalf("%d sessions open, want %d", n, flood)
	}
	t.Logf("%d idle sessions open after %v", flood, time.Since(start).Round(time.Millisecond))

	// One more from a flooding address hits the per-address cap.
	extra, err := dialFrom(fmtIP(10))
	if err != nil {
		t.Fatal(err)
	}
	extra.SetDeadline(time.Now().Add(10 * time.Second))
	if l, _ := bufio.NewReader(extra).ReadString('\n'); !strings.HasPrefix(l, "-ERR [SYS/TEMP] Too many connections") {
		t.Errorf("connection over the per-address cap got %q", l)
	}
	extra.Close()

	// A new client from elsewhere logs in and gets its mail.
	start = time.Now()
	nc, err := dialFrom("127.0.0.2")
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	c := &client{t: t, nc: nc, br: bufio.NewReader(nc)}
	c.expect("+OK")
	c.login("alice", "secret word")
	c.cmd("RETR 1", "+OK")
	for c.line() != "." {
	}
	c.cmd("QUIT", "+OK")
	t.Logf("new client logged in and fetched a message in %v", time.Since(start).Round(time.Millisecond))

	for _, c := range conns {
		c.Close()
	}
	conns = nil
	for i := 0; i < 1000 && (srv.Sessions() > 0 || lim.Open() > 0); i++ {
		time.Sleep(10 * time.Millisecond)
	}
	if n, open := srv.Sessions(), lim.Open(); n != 0 || open != 0 {
		t.Errorf("after closing the flood: %d sessions, %d counted connections; want 0", n, open)
	}
}

// fmtIP returns 127.0.0.n.
func fmtIP(n int) string {
	return net.IPv4(127, 0, 0, byte(n)).String()
}
