package dovecot

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/postoffice-mail/postoffice/internal/testutil"
)

// ServeIMAP turns the running Dovecot into an IMAP-only server, as a site
// that moved its POP3 service elsewhere keeps it: protocols = imap, an
// imap-login listener on a fresh loopback port (plain, no implicit TLS),
// maildir_very_dirty_syncs = no (Dovecot's default, stated: with it on,
// Dovecot would not notice files another agent unlinked or added until
// something else made it rescan). It reloads Dovecot with SIGHUP and
// returns the IMAP address once it greets, failing the test after 10 s.
// The same users, passwords, Maildirs and log_path serve IMAP. It skips
// (or fails under POSTOFFICE_REQUIRE_PEERS) without dovecot-imapd.
func (d *Server) ServeIMAP(t testing.TB) string {
	t.Helper()
	if _, err := os.Stat("/usr/lib/dovecot/imap"); err != nil {
		testutil.Missing(t, "dovecot's IMAP server", "dovecot-imapd")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	d.AddConfig(t, fmt.Sprintf(`protocols = imap
maildir_very_dirty_syncs = no
service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = %d
  }
  inet_listener imaps {
    port = 0
  }
}`, port))
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	deadline := time.Now().Add(10 * time.Second)
	for {
		nc, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			nc.SetDeadline(time.Now().Add(2 * time.Second))
			line, rerr := bufio.NewReader(nc).ReadString('\n')
			nc.Close()
			if rerr == nil && strings.HasPrefix(line, "* OK") {
				return addr
			}
			err = rerr
		}
		if time.Now().After(deadline) {
			t.Fatalf("dovecot IMAP did not greet on %s after the reload: %v", addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
