package pop3server_test

import (
	"bufio"
	"crypto/tls"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/postoffice-mail/postoffice/internal/netlimit"
	"github.com/postoffice-mail/postoffice/pop3server"
)

// At the connection cap, the oldest connection that has not logged in is
// closed with -ERR [SYS/TEMP] and the newcomer is served; a logged-in
// session is never evicted (internal/netlimit, EvictPreLogin).
func TestEvictPreLogin(t *testing.T) {
	t.Parallel()
	for _, implicitTLS := range []bool{false, true} {
		opts := pop3server.Options{Backend: newFixture(t), PreLoginTimeout: time.Minute}
		if implicitTLS {
			opts.TLSConfig = testTLSConfig(t)
		}
		addr, _, _ := waitServer(t, opts, netlimitWrap(t, netlimit.Options{MaxConns: 2, EvictPreLogin: true}), implicitTLS)
		open := func() *client {
			var nc net.Conn
			var err error
			if implicitTLS {
				nc, err = tls.Dial("tcp", addr, clientTLS(t))
			} else {
				nc, err = net.Dial("tcp", addr)
			}
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { nc.Close() })
			nc.SetDeadline(time.Now().Add(10 * time.Second))
			c := &client{t: t, nc: nc, br: bufio.NewReader(nc)}
			c.expect("+OK")
			return c
		}
		in := open()
		in.login("alice", "secret word")
		idle := open()
		// At the cap: the idle one goes, the newcomer logs in.
		fresh := open()
		if l, err := idle.br.ReadString('\n'); !strings.HasPrefix(l, "-ERR [SYS/TEMP] ") {
			t.Fatalf("tls %v: evicted client read %q, %v; want -ERR [SYS/TEMP]", implicitTLS, l, err)
		}
		if _, err := idle.br.ReadString('\n'); err == nil {
			t.Errorf("tls %v: evicted connection still open", implicitTLS)
		}
		fresh.login("bob@example.org", "pw")
		// Both slots are logged in: a newcomer is refused, nobody evicted.
		nc, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		nc.SetDeadline(time.Now().Add(10 * time.Second))
		buf := make([]byte, 64)
		nc.Read(buf) // refusal or EOF; the sessions below must be intact
		nc.Close()
		in.cmd("STAT", "+OK 3 ")
		fresh.cmd("STAT", "+OK")
		in.cmd("QUIT", "+OK")
		fresh.cmd("QUIT", "+OK")
	}
}
