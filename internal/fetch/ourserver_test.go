package fetch

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/postoffice-mail/postoffice/internal/auth/passwdfile"
	"github.com/postoffice-mail/postoffice/internal/auth/scheme"
	"github.com/postoffice-mail/postoffice/internal/backend"
	"github.com/postoffice-mail/postoffice/internal/certutil"
	"github.com/postoffice-mail/postoffice/internal/sasl"
	"github.com/postoffice-mail/postoffice/internal/store/maildir"
	"github.com/postoffice-mail/postoffice/internal/tlsconf"
	"github.com/postoffice-mail/postoffice/pop3server"
)

// ourServer is the real server stack in process: passwd-file, Maildir,
// backend with APOP, every SASL mechanism but OAuth, and TLS with client
// certificates for EXTERNAL.
type ourServer struct {
	addr        string
	fingerprint string
	clientCert  string // PEM files of a client certificate with CN "ext"
	clientKey   string
}

func startOurServer(t *testing.T, users map[string]string, msgs []string) *ourServer {
	t.Helper()
	dir := t.TempDir()
	var pw strings.Builder
	for u, s := range users {
		h, err := scheme.Hash(s, testPass)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&pw, "%s:%s\n", u, h)
	}
	pwFile := filepath.Join(dir, "passwd")
	if err := os.WriteFile(pwFile, []byte(pw.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	db, err := passwdfile.Open(pwFile, passwdfile.Options{})
	if err != nil {
		t.Fatal(err)
	}
	st, err := maildir.New(maildir.Options{Location: filepath.Join(dir, "mail", "%u"), NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	for u := range users {
		for _, m := range msgs {
			if err := st.Deliver(context.Background(), u, strings.NewReader(m)); err != nil {
				t.Fatal(err)
			}
		}
	}
	srvPair, err := certutil.SelfSigned(time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	srvCert, srvKey := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := srvPair.WriteFiles(srvCert, srvKey); err != nil {
		t.Fatal(err)
	}
	s := &ourServer{fingerprint: srvPair.Fingerprint()}
	s.clientCert, s.clientKey = clientCertFiles(t, dir, "ext")
	tlsm, err := tlsconf.New(tlsconf.Options{Pairs: []tlsconf.Pair{{CertFile: srvCert, KeyFile: srvKey}}, ClientCAFile: s.clientCert})
	if err != nil {
		t.Fatal(err)
	}
	mechs, err := sasl.New(sasl.Options{Users: db, Enabled: []string{
		"SCRAM-SHA-256-PLUS", "SCRAM-SHA-256", "SCRAM-SHA-1-PLUS", "SCRAM-SHA-1", "CRAM-MD5", "PLAIN", "LOGIN", "EXTERNAL",
	}, Secret: []byte("fetch test decoy secret")})
	if err != nil {
		t.Fatal(err)
	}
	be, err := backend.New(backend.Options{Users: db, Store: st, APOP: true, SASL: mechs})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := pop3server.New(pop3server.Options{Backend: be, TLSConfig: tlsm.Config(), AuthFailDelay: -1})
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	s.addr = l.Addr().String()
	return s
}

// clientCertFiles writes a self-signed client certificate (its own CA).
func clientCertFiles(t *testing.T, dir, cn string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(7),
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, cn+"-cert.pem"), filepath.Join(dir, cn+"-key.pem")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600)
	return certFile, keyFile
}

// The fetcher against our own server with every mechanism it offers, each
// from a stored scheme that can serve it, over STLS and plain loopback: a
// first run gets all, a second nothing new.
func TestOurServerFetch(t *testing.T) {
	t.Parallel()
	msgs := []string{"Subject: 1\n\none\n", "Subject: 2\n\n.dot\nFrom x\n", "Subject: 3\n\nthree\n"}
	srv := startOurServer(t, map[string]string{
		"plain":  "PLAIN",
		"scram1": "SCRAM-SHA-1",
		"scram":  "SCRAM-SHA-256",
		"crypt":  "SHA512-CRYPT",
		"ext":    "SHA512-CRYPT",
	}, msgs)
	for _, tc := range []struct{ user, mech, tls string }{
		{"plain", "auto", "starttls"}, // picks SCRAM-SHA-256-PLUS, served from {PLAIN}
		{"plain", "user", "starttls"}, {"plain", "user", "none"}, {"plain", "plain", "starttls"},
		{"plain", "login", "starttls"}, {"plain", "cram-md5", "none"}, {"plain", "apop", "none"},
		{"plain", "scram-sha-1", "none"}, {"plain", "scram-sha-256", "none"},
		{"plain", "scram-sha-256-plus", "starttls"}, {"plain", "scram-sha-1-plus", "starttls"},
		{"scram1", "scram-sha-1", "none"}, {"scram1", "scram-sha-1-plus", "starttls"}, {"scram1", "plain", "starttls"},
		{"scram", "scram-sha-256", "none"}, {"scram", "scram-sha-256-plus", "starttls"}, {"scram", "auto", "starttls"},
		{"crypt", "plain", "starttls"}, {"crypt", "user", "starttls"}, {"crypt", "login", "none"},
		{"ext", "external", "starttls"},
	} {
		// Not parallel: sessions of one user would find the maildrop
		// locked ([IN-USE]), as they should.
		t.Run(tc.user+"/"+tc.mech+"/"+tc.tls, func(t *testing.T) {
			extra := fmt.Sprintf("tls = %q\nauth = %q\n", tc.tls, tc.mech)
			if tc.tls != "none" {
				extra += fmt.Sprintf("fingerprint = %q\n", srv.fingerprint)
			}
			if tc.mech == "external" {
				extra += fmt.Sprintf("cert_file = %q\nkey_file = %q\n", srv.clientCert, srv.clientKey)
			}
			a := account(t, &testServer{addr: srv.addr}, extra)
			a.User = tc.user
			if res := run1(t, a, Options{}); res.Fetched != 3 {
				t.Fatalf("first run = %+v, want 3 fetched", res)
			}
			if res := run1(t, a, Options{}); res.Fetched != 0 {
				t.Fatalf("second run = %+v, want nothing new", res)
			}
		})
	}
}

// Where the stored scheme cannot serve the mechanism, or the password is
// wrong, the fetch fails with an authentication error rather than fetching.
func TestOurServerFetchRefused(t *testing.T) {
	t.Parallel()
	srv := startOurServer(t, map[string]string{"crypt": "SHA512-CRYPT", "plain": "PLAIN"}, []string{"Subject: x\n\nx\n"})
	for _, tc := range []struct{ user, mech, pass string }{
		{"crypt", "scram-sha-256", testPass}, {"crypt", "cram-md5", testPass}, {"crypt", "apop", testPass},
		{"plain", "scram-sha-256", "wrong"}, {"plain", "plain", "wrong"}, {"nobody", "scram-sha-1", testPass},
	} {
		t.Run(tc.user+"/"+tc.mech, func(t *testing.T) {
			a := account(t, &testServer{addr: srv.addr}, fmt.Sprintf("auth = %q\n", tc.mech))
			a.User, a.Password = tc.user, tc.pass
			res, err := Run(testCtx(t), a, Options{})
			if err == nil || res.Fetched != 0 || ExitCode(err) != ExitNoPerm {
				t.Fatalf("Run = %+v, %v (exit %d); want an authentication failure (exit %d)", res, err, ExitCode(err), ExitNoPerm)
			}
		})
	}
}
