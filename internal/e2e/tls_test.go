package e2e

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/postoffice-mail/postoffice/internal/certutil"
)

// writeCert writes a self-signed certificate for loopback and returns the
// paths of the certificate and the key.
func writeCert(t testing.TB, dir string) (certPath, keyPath string) {
	t.Helper()
	p, err := certutil.SelfSigned(time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	certPath, keyPath = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := p.WriteFiles(certPath, keyPath); err != nil {
		t.Fatal(err)
	}
	return certPath, keyPath
}

// enableTLS adds an implicit-TLS listener (pop3.listen_tls) on a free
// loopback port and returns its address and the certificate path.
func (s *site) enableTLS() (addr, certPath string) {
	s.t.Helper()
	certPath, keyPath := writeCert(s.t, s.dir)
	addr = fmt.Sprintf("127.0.0.1:%d", freePort(s.t))
	data, err := os.ReadFile(s.config)
	if err != nil {
		s.t.Fatal(err)
	}
	cfg := strings.Replace(string(data), "[pop3]\n", fmt.Sprintf("[pop3]\nlisten_tls = [%q]\n", addr), 1)
	cfg += fmt.Sprintf("\n[tls]\ncert = %q\nkey = %q\n", certPath, keyPath)
	if err := os.WriteFile(s.config, []byte(cfg), 0o600); err != nil {
		s.t.Fatal(err)
	}
	return addr, certPath
}

// POP3S (RFC 8314): the greeting comes inside TLS; curl retrieves a message
// byte for byte over pop3s:// with the certificate as its CA; TLS below 1.2
// is refused.
func TestImplicitTLS(t *testing.T) {
	t.Parallel()
	curl := need(t, "curl", "curl")
	s := newSite(t)
	msg := "Subject: over TLS\n\n.dot line\nbody\n"
	s.deliver("alice", msg)
	addr, certPath := s.enableTLS()
	srv := s.start()

	url := "pop3s://alice:" + strings.ReplaceAll(testPassword, " ", "%20") + "@" + addr + "/1"
	out, err := exec.Command(curl, "-sS", "--max-time", "30", "--cacert", certPath, url).Output()
	if err != nil {
		t.Fatalf("curl pop3s: %v\n%s\nserver log:\n%s", err, stderrOf(err), srv.log)
	}
	if string(out) != crlf(msg) {
		t.Errorf("curl pop3s RETR = %q, want %q", out, crlf(msg))
	}

	pool := x509.NewCertPool()
	pem, _ := os.ReadFile(certPath)
	pool.AppendCertsFromPEM(pem)
	tc, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: pool})
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	tc.SetDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 512)
	n, _ := tc.Read(buf)
	if !strings.HasPrefix(string(buf[:n]), "+OK ") {
		t.Errorf("greeting over TLS = %q", buf[:n])
	}
	if v := tc.ConnectionState().Version; v < tls.VersionTLS12 {
		t.Errorf("negotiated TLS version %x", v)
	}

	old, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: pool, MaxVersion: tls.VersionTLS11})
	if err == nil {
		old.Close()
		t.Error("a TLS 1.1 handshake succeeded; want TLS 1.2 at least")
	}
}
