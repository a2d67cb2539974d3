// Package testutil holds helpers shared by the tests of several packages;
// nothing in it is used outside tests. The Dovecot harness lives in its
// subpackage dovecot.
package testutil

import (
	"net"
	"os"
	"os/exec"
	"testing"

	"github.com/postoffice-mail/postoffice/pop3server"
)

// ServePOP3 runs a POP3 server with opts on a loopback port until the test
// ends and returns its address. A zero AuthFailDelay means no delay (tests
// should not sleep); with opts.TLSConfig set it serves implicit TLS.
func ServePOP3(t testing.TB, opts pop3server.Options) (string, *pop3server.Server) {
	t.Helper()
	if opts.AuthFailDelay == 0 {
		opts.AuthFailDelay = -1
	}
	srv, err := pop3server.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if opts.TLSConfig != nil {
		go srv.ServeTLS(l)
	} else {
		go srv.Serve(l)
	}
	t.Cleanup(func() { srv.Close() })
	return l.Addr().String(), srv
}

// Missing skips the test because a peer (a program, a file it installs) is
// absent, naming the Debian package; with POSTOFFICE_REQUIRE_PEERS set (as
// .ci/run does) it fails instead, so CI never passes by skipping.
func Missing(t testing.TB, what, pkg string) {
	t.Helper()
	if os.Getenv("POSTOFFICE_REQUIRE_PEERS") != "" {
		t.Fatalf("%s not installed (apt-get install %s) and POSTOFFICE_REQUIRE_PEERS is set", what, pkg)
	}
	t.Skipf("%s not installed: apt-get install %s", what, pkg)
}

// Need returns the path of program prog, or calls Missing.
func Need(t testing.TB, prog, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(prog)
	if err != nil {
		Missing(t, prog, pkg)
	}
	return p
}
