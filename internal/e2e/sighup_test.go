package e2e

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/postoffice-mail/postoffice/internal/certutil"
)

// stlsConn is a raw session upgraded with STLS.
type stlsConn struct {
	*conn
	peer []byte // DER of the certificate the server presented
}

func (srv *server) dialSTLS() *stlsConn {
	srv.t.Helper()
	c := srv.dial()
	c.cmd("STLS", "+OK")
	tc := tls.Client(c.nc, &tls.Config{InsecureSkipVerify: true, ServerName: "localhost"})
	if err := tc.Handshake(); err != nil {
		srv.t.Fatalf("TLS handshake after STLS: %v", err)
	}
	c.nc, c.br = tc, bufio.NewReader(tc)
	return &stlsConn{conn: c, peer: tc.ConnectionState().PeerCertificates[0].Raw}
}

// SIGHUP re-reads the certificate files: new sessions get the new
// certificate, a session opened before goes on undisturbed, a broken file
// keeps the previous certificate, and the server is not killed by the
// signal.
func TestSIGHUPReloadsCertificates(t *testing.T) {
	t.Parallel()
	s := newSite(t)
	s.deliver("alice", "Subject: one\n\nbody\n")
	certFile, keyFile := filepath.Join(s.dir, "cert.pem"), filepath.Join(s.dir, "key.pem")
	a, err := certutil.SelfSigned(time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.WriteFiles(certFile, keyFile); err != nil {
		t.Fatal(err)
	}
	cfg, _ := os.ReadFile(s.config)
	cfg = append(cfg, []byte("\n[tls]\ncert = \""+certFile+"\"\nkey = \""+keyFile+"\"\n")...)
	if err := os.WriteFile(s.config, cfg, 0o600); err != nil {
		t.Fatal(err)
	}
	srv := s.start()

	old := srv.dialSTLS()
	if !bytes.Equal(old.peer, a.TLS.Certificate[0]) {
		t.Fatal("first session did not get the configured certificate")
	}
	old.login("alice")

	b, err := certutil.SelfSigned(time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.WriteFiles(certFile, keyFile); err != nil {
		t.Fatal(err)
	}
	srv.cmd.Process.Signal(syscall.SIGHUP)
	waitFor(t, srv, "reloaded", func() bool {
		c := srv.dialSTLS()
		defer c.nc.Close()
		return bytes.Equal(c.peer, b.TLS.Certificate[0])
	})

	// The session from before the reload still works, inside its TLS.
	old.cmd("STAT", "+OK 1 ")
	old.cmd("RETR 1", "+OK")
	var body strings.Builder
	for {
		l := old.expect("")
		if l == "." {
			break
		}
		body.WriteString(l + "\n")
	}
	if !strings.Contains(body.String(), "body") {
		t.Errorf("RETR over the pre-reload session = %q", body.String())
	}
	old.cmd("QUIT", "+OK")

	// A broken certificate file: the reload fails, the old one stays.
	if err := os.WriteFile(certFile, []byte("not a certificate\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	srv.cmd.Process.Signal(syscall.SIGHUP)
	waitFor(t, srv, "reload failure logged", func() bool {
		return strings.Contains(srv.log.String(), "tls reload failed")
	})
	c := srv.dialSTLS()
	if !bytes.Equal(c.peer, b.TLS.Certificate[0]) {
		t.Error("after a failed reload the server no longer presents the last good certificate")
	}
	c.login("alice")
	io.WriteString(c.nc, "QUIT\r\n")
	select {
	case <-srv.done:
		t.Fatalf("server exited after SIGHUP:\n%s", srv.log)
	default:
	}
}

// waitFor polls cond for up to 20s.
func waitFor(t *testing.T, srv *server, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not %s within 20s:\n%s", what, srv.log)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
