package fetch

import (
	"context"
	"crypto/tls"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/postoffice-mail/postoffice/internal/testutil"

	"github.com/postoffice-mail/postoffice/internal/certutil"

	"github.com/postoffice-mail/postoffice/pop3server"
	"github.com/postoffice-mail/postoffice/pop3server/memserver"
)

const (
	testUser = "alice"
	testPass = "secret"
)

// testServer is an in-process POP3 server over memserver.
type testServer struct {
	addr string
	b    *memserver.Backend
}

// startServer serves b on loopback, with implicit TLS when cert is set.
func startServer(t testing.TB, cert *tls.Certificate) *testServer {
	t.Helper()
	b := memserver.New()
	b.AddUser(testUser, testPass)
	var cfg *tls.Config
	if cert != nil {
		cfg = &tls.Config{Certificates: []tls.Certificate{*cert}}
	}
	addr, _ := testutil.ServePOP3(t, pop3server.Options{Backend: b, TLSConfig: cfg})
	return &testServer{addr: addr, b: b}
}

// deliver puts n messages for testUser on the server.
func (s *testServer) deliver(t testing.TB, n int, format string) {
	t.Helper()
	for i := 0; i < n; i++ {
		if !s.b.Deliver(testUser, []byte(fmt.Sprintf(format, i))) {
			t.Fatal("deliver failed")
		}
	}
}

// account parses one [[account]] table with defaults for the required keys
// (server, user, password, state_dir) prepended.
func account(t testing.TB, srv *testServer, extra string) *Account {
	t.Helper()
	dir := t.TempDir()
	conf := fmt.Sprintf("[[account]]\nname = \"test\"\nserver = %q\nuser = %q\npassword = %q\nstate_dir = %q\n%s\n",
		srv.addr, testUser, testPass, filepath.Join(dir, "state"), extra)
	if !strings.Contains(extra, "\ntls") && !strings.HasPrefix(extra, "tls") {
		conf += "tls = \"none\"\n"
	}
	if !strings.Contains(extra, "target") {
		conf += fmt.Sprintf("target = \"maildir:%s\"\n", filepath.Join(dir, "Maildir"))
	}
	c, err := ParseConfig("test.toml", []byte(conf))
	if err != nil {
		t.Fatalf("ParseConfig:\n%s\n%v", conf, err)
	}
	return c.Accounts[0]
}

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// maildirFiles returns the contents of the files in new/ and cur/.
func maildirFiles(t testing.TB, dir string) []string {
	t.Helper()
	var out []string
	for _, sub := range []string{"new", "cur"} {
		es, err := os.ReadDir(filepath.Join(dir, sub))
		if err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		for _, e := range es {
			b, err := os.ReadFile(filepath.Join(dir, sub, e.Name()))
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, string(b))
		}
	}
	return out
}

// selfSigned returns a certificate for 127.0.0.1, its PEM and its
// SHA-256 fingerprint.
func selfSigned(t testing.TB) (tls.Certificate, []byte, string) {
	t.Helper()
	p, err := certutil.SelfSigned(24 * time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return p.TLS, p.CertPEM, p.Fingerprint()
}

// accountTOML is an [[account]] table named name with every required key,
// on seven lines.
func accountTOML(name string) string {
	return fmt.Sprintf(`[[account]]
name = %q
server = "pop.example.org:995"
user = "u"
password = "p"
target = "maildir:/tmp/m"
state_dir = "/tmp/s"
`, name)
}
