package tlsconf

import (
	"bytes"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// socketPair returns the two ends of a loopback TCP connection. Unlike
// net.Pipe it buffers, so a TLS 1.3 server can send its session tickets
// before the client reads.
func socketPair(t *testing.T) (client, server net.Conn) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			accepted <- nil
			return
		}
		accepted <- c
	}()
	client, err = net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server = <-accepted
	if server == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { client.Close(); server.Close() })
	return client, server
}

// handshake runs a TLS handshake between a client with cfg and a server
// with m.Config(). It returns the server's error if it has one (a rejected
// client certificate shows there), else the client's.
func handshake(t *testing.T, m *Manager, cfg *tls.Config) (client, server *tls.Conn, err error) {
	t.Helper()
	cc, sc := socketPair(t)
	client, server = tls.Client(cc, cfg), tls.Server(sc, m.Config())
	serr := make(chan error, 1)
	go func() { serr <- server.Handshake() }()
	cerr := client.Handshake()
	if cerr != nil {
		sc.Close() // the server may be waiting for a flight that never comes
	}
	if err := <-serr; err != nil {
		cc.Close()
		return nil, nil, err
	}
	if cerr != nil {
		return nil, nil, cerr
	}
	return client, server, nil
}

// serverCN is the CN of the certificate the server presents to a client
// that sends name as SNI.
func serverCN(t *testing.T, m *Manager, name string) string {
	t.Helper()
	c, _, err := handshake(t, m, &tls.Config{ServerName: name, InsecureSkipVerify: true})
	if err != nil {
		t.Fatalf("handshake with SNI %q: %v", name, err)
	}
	return c.ConnectionState().PeerCertificates[0].Subject.CommonName
}

// roundTrip checks that data flows both ways over an established pair.
func roundTrip(t *testing.T, client, server *tls.Conn, msg string) {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		buf := make([]byte, len(msg))
		if _, err := io.ReadFull(server, buf); err != nil {
			done <- err
			return
		}
		_, err := server.Write(bytes.ToUpper(buf))
		done <- err
	}()
	if _, err := client.Write([]byte(msg)); err != nil {
		t.Fatalf("client write: %v", err)
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(client, buf); err != nil {
		t.Fatalf("client read: %v", err)
	}
	if err := <-done; err != nil {
		t.Fatalf("server side: %v", err)
	}
	if got, want := string(buf), strings.ToUpper(msg); got != want {
		t.Fatalf("round trip = %q, want %q", got, want)
	}
}

func TestSNI(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ca := newCA(t, "test CA")
	pairs := []Pair{
		ca.issue(t, "default", []string{"pop.example.org"}, false).write(t, dir, "default"),
		ca.issue(t, "wildcard-com", []string{"*.example.com"}, false).write(t, dir, "wildcard"),
		ca.issue(t, "exact-com", []string{"pop.example.com", "Mail.Example.NET"}, false).write(t, dir, "exact"),
		ca.issue(t, "legacy.example", nil, false).write(t, dir, "cn-only"),
	}
	m, err := New(Options{Pairs: pairs})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ sni, want string }{
		{"pop.example.org", "default"},
		{"pop.example.com", "exact-com"}, // an exact name beats a wildcard listed earlier
		{"POP.Example.com.", "exact-com"},
		{"imap.example.com", "wildcard-com"},
		{"a.b.example.com", "default"}, // a wildcard covers one label only
		{"example.com", "default"},
		{"mail.example.net", "exact-com"},
		{"legacy.example", "legacy.example"}, // no SANs: the CN
		{"unknown.example.org", "default"},
		{"", "default"},
	} {
		if got := serverCN(t, m, tt.sni); got != tt.want {
			t.Errorf("handshake with SNI %q: got certificate %q, want %q", tt.sni, got, tt.want)
		}
	}
	// A client that verifies gets a chain that verifies for its name.
	c, _, err := handshake(t, m, &tls.Config{ServerName: "imap.example.com", RootCAs: ca.pool()})
	if err != nil {
		t.Fatalf("verifying client: %v", err)
	}
	c.Close()

	exp := m.Expiry()
	if len(exp) != 4 {
		t.Fatalf("Expiry() = %d entries, want 4", len(exp))
	}
	for i, e := range exp {
		if e.CertFile != pairs[i].CertFile || e.NotAfter.IsZero() {
			t.Errorf("Expiry()[%d] = %+v, want file %s and a NotAfter", i, e, pairs[i].CertFile)
		}
	}
	if want := []string{"pop.example.com", "mail.example.net"}; !slices.Equal(exp[2].Names, want) {
		t.Errorf("Expiry()[2].Names = %q, want %q", exp[2].Names, want)
	}
	if want := []string{"legacy.example"}; !slices.Equal(exp[3].Names, want) {
		t.Errorf("Expiry()[3].Names = %q, want %q", exp[3].Names, want)
	}
}

func TestPolicy(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ca := newCA(t, "test CA")
	m, err := New(Options{Pairs: []Pair{ca.issue(t, "srv", []string{"pop.example.org"}, false).write(t, dir, "srv")}})
	if err != nil {
		t.Fatal(err)
	}
	cfg := m.Config()
	if cfg != m.Config() {
		t.Error("Config() returns a new value on each call")
	}
	if cfg.MinVersion != tls.VersionTLS12 || cfg.SessionTicketsDisabled || cfg.ClientAuth != tls.NoClientCert {
		t.Errorf("Config() = MinVersion %x, SessionTicketsDisabled %v, ClientAuth %v", cfg.MinVersion, cfg.SessionTicketsDisabled, cfg.ClientAuth)
	}
	for _, id := range CipherSuites() {
		name := tls.CipherSuiteName(id)
		if !strings.HasPrefix(name, "TLS_ECDHE_") || !(strings.Contains(name, "_GCM_") || strings.Contains(name, "CHACHA20_POLY1305")) {
			t.Errorf("cipher suite %s is not ECDHE with AEAD", name)
		}
	}
	base := tls.Config{ServerName: "pop.example.org", RootCAs: ca.pool()}
	for _, tt := range []struct {
		name   string
		modify func(*tls.Config)
		ok     bool
	}{
		{"TLS 1.3", func(c *tls.Config) {}, true},
		{"TLS 1.2 ECDHE-ECDSA-AES128-GCM", func(c *tls.Config) {
			c.MaxVersion = tls.VersionTLS12
			c.CipherSuites = []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256}
		}, true},
		{"TLS 1.2 ECDHE-ECDSA-CHACHA20", func(c *tls.Config) {
			c.MaxVersion = tls.VersionTLS12
			c.CipherSuites = []uint16{tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256}
		}, true},
		{"TLS 1.2 CBC", func(c *tls.Config) {
			c.MaxVersion = tls.VersionTLS12
			c.CipherSuites = []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA}
		}, false},
		{"TLS 1.1", func(c *tls.Config) {
			c.MinVersion = tls.VersionTLS10
			c.MaxVersion = tls.VersionTLS11
		}, false},
	} {
		c := base.Clone()
		tt.modify(c)
		client, _, err := handshake(t, m, c)
		if (err == nil) != tt.ok {
			t.Errorf("%s: handshake error %v, want success %v", tt.name, err, tt.ok)
		}
		if client != nil {
			client.Close()
		}
	}
}

// Reload changes the certificate of new handshakes only: a connection made
// before it keeps working, and session tickets issued before it still resume.
func TestReload(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ca := newCA(t, "test CA")
	logs := &bytes.Buffer{}
	pair := ca.issue(t, "old", []string{"pop.example.org"}, false).write(t, dir, "srv")
	m, err := New(Options{Pairs: []Pair{pair}, Logger: slog.New(slog.NewTextHandler(logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	cache := tls.NewLRUClientSessionCache(4)
	ccfg := &tls.Config{ServerName: "pop.example.org", RootCAs: ca.pool(), ClientSessionCache: cache}
	oldClient, oldServer, err := handshake(t, m, ccfg)
	if err != nil {
		t.Fatal(err)
	}
	roundTrip(t, oldClient, oldServer, "before reload") // the client takes its session ticket here
	oldExpiry := m.Expiry()[0].NotAfter

	ca.issue(t, "new-certificate", []string{"pop.example.org"}, false).write(t, dir, "srv")
	if err := m.Reload(); err != nil {
		t.Fatalf("Reload() = %v", err)
	}
	if got := serverCN(t, m, "pop.example.org"); got != "new-certificate" {
		t.Errorf("after Reload, new handshakes get %q, want new-certificate", got)
	}
	if got := m.Expiry()[0].NotAfter; got.Equal(oldExpiry) {
		t.Errorf("Expiry() after Reload still %v", got)
	}
	roundTrip(t, oldClient, oldServer, "after reload")
	if got := oldClient.ConnectionState().PeerCertificates[0].Subject.CommonName; got != "old" {
		t.Errorf("established connection now reports certificate %q, want old", got)
	}
	resumed, _, err := handshake(t, m, ccfg)
	if err != nil {
		t.Fatal(err)
	}
	if !resumed.ConnectionState().DidResume {
		t.Error("a session from before Reload did not resume")
	}
	if !strings.Contains(logs.String(), "certificates reloaded") {
		t.Errorf("log lacks the reload line:\n%s", logs)
	}
}

// A Reload that meets a bad file keeps every certificate it had.
func TestReloadKeepsOldOnError(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ca := newCA(t, "test CA")
	first := ca.issue(t, "first", []string{"pop.example.org"}, false).write(t, dir, "first")
	second := ca.issue(t, "second", []string{"pop.example.net"}, false).write(t, dir, "second")
	caFile := filepath.Join(dir, "client-ca.pem")
	writeFile(t, caFile, ca.pem)
	m, err := New(Options{Pairs: []Pair{first, second}, ClientCAFile: caFile})
	if err != nil {
		t.Fatal(err)
	}
	other := ca.issue(t, "other", []string{"pop.example.net"}, false)
	for _, tt := range []struct {
		name  string
		spoil func()
		want  string
	}{
		{"garbage certificate", func() { writeFile(t, second.CertFile, []byte("not a certificate\n")) }, second.CertFile},
		{"key of another certificate", func() { writeFile(t, second.KeyFile, other.keyPEM) }, second.KeyFile},
		{"empty key file", func() { writeFile(t, second.KeyFile, nil) }, second.KeyFile},
		{"deleted certificate", func() { os.Remove(second.CertFile) }, second.CertFile},
		{"empty client CA", func() { writeFile(t, caFile, []byte("# nothing\n")) }, caFile},
	} {
		ca.issue(t, "second", []string{"pop.example.net"}, false).write(t, dir, "second")
		writeFile(t, caFile, ca.pem)
		if err := m.Reload(); err != nil {
			t.Fatalf("%s: Reload() of good files = %v", tt.name, err)
		}
		tt.spoil()
		err := m.Reload()
		if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.HasPrefix(err.Error(), "tlsconf: ") {
			t.Errorf("%s: Reload() = %v, want an error naming %s", tt.name, err, tt.want)
		}
		if got := serverCN(t, m, "pop.example.net"); got != "second" {
			t.Errorf("%s: after a failed Reload, SNI pop.example.net gets %q, want second", tt.name, got)
		}
		if got := serverCN(t, m, "pop.example.org"); got != "first" {
			t.Errorf("%s: after a failed Reload, SNI pop.example.org gets %q, want first", tt.name, got)
		}
		if got := m.Config().GetConfigForClient; got == nil {
			t.Fatal("Config().GetConfigForClient is nil")
		}
		sc, err := m.Config().GetConfigForClient(&tls.ClientHelloInfo{})
		if err != nil || sc.ClientCAs == nil || sc.ClientAuth != tls.VerifyClientCertIfGiven {
			t.Errorf("%s: after a failed Reload the client CA is lost: %v, %+v", tt.name, err, sc)
		}
	}
}

func TestClientCertificates(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	serverCA := newCA(t, "server CA")
	clientCA := newCA(t, "client CA")
	otherCA := newCA(t, "other CA")
	caFile := filepath.Join(dir, "client-ca.pem")
	writeFile(t, caFile, clientCA.pem)
	m, err := New(Options{
		Pairs:        []Pair{serverCA.issue(t, "srv", []string{"pop.example.org"}, false).write(t, dir, "srv")},
		ClientCAFile: caFile,
	})
	if err != nil {
		t.Fatal(err)
	}
	if m.Config().ClientAuth != tls.VerifyClientCertIfGiven {
		t.Errorf("Config().ClientAuth = %v, want VerifyClientCertIfGiven", m.Config().ClientAuth)
	}
	alice := clientCA.issue(t, "alice", nil, true)
	mallory := otherCA.issue(t, "mallory", nil, true)
	connect := func(cert *leaf) (*x509.Certificate, error) {
		cfg := &tls.Config{ServerName: "pop.example.org", RootCAs: serverCA.pool()}
		if cert != nil {
			// Sent even when the server does not list its issuer, as a
			// hostile client would.
			cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &cert.tls, nil }
		}
		_, server, err := handshake(t, m, cfg)
		if err != nil {
			return nil, err
		}
		if pc := server.ConnectionState().PeerCertificates; len(pc) > 0 {
			return pc[0], nil
		}
		return nil, nil
	}
	if got, err := connect(alice); err != nil || got == nil || got.Subject.CommonName != "alice" {
		t.Errorf("client certificate from the client CA: %v, %v, want alice verified", got, err)
	}
	if got, err := connect(nil); err != nil || got != nil {
		t.Errorf("no client certificate: %v, %v, want a connection without one", got, err)
	}
	if got, err := connect(mallory); err == nil {
		t.Errorf("client certificate from another CA accepted: %v", got.Subject)
	}
	// The client CA file is reloaded too.
	writeFile(t, caFile, append(clientCA.pem, otherCA.pem...))
	if err := m.Reload(); err != nil {
		t.Fatal(err)
	}
	if got, err := connect(mallory); err != nil || got == nil {
		t.Errorf("after adding its CA, mallory's certificate: %v, %v, want accepted", got, err)
	}
	writeFile(t, caFile, otherCA.pem)
	if err := m.Reload(); err != nil {
		t.Fatal(err)
	}
	if _, err := connect(alice); err == nil {
		t.Error("after removing its CA, alice's certificate is still accepted")
	}
}

func TestNewErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ca := newCA(t, "test CA")
	good := ca.issue(t, "srv", []string{"pop.example.org"}, false).write(t, dir, "srv")
	other := ca.issue(t, "other", []string{"pop.example.org"}, false).write(t, dir, "other")
	garbage := filepath.Join(dir, "garbage")
	writeFile(t, garbage, []byte("-----BEGIN NOTHING-----\n"))
	keyOnly := filepath.Join(dir, "key-only.pem")
	writeFile(t, keyOnly, mustRead(t, good.KeyFile))
	for _, tt := range []struct {
		name string
		opts Options
		want string
	}{
		{"no pairs", Options{}, "tlsconf: no certificate"},
		{"missing certificate", Options{Pairs: []Pair{{filepath.Join(dir, "nope.pem"), good.KeyFile}}}, "nope.pem"},
		{"missing key", Options{Pairs: []Pair{{good.CertFile, filepath.Join(dir, "nope.key")}}}, "nope.key"},
		{"empty name", Options{Pairs: []Pair{{good.CertFile, ""}}}, "both files are required"},
		{"key as certificate", Options{Pairs: []Pair{{keyOnly, good.KeyFile}}}, keyOnly + ": no PEM CERTIFICATE"},
		{"garbage key", Options{Pairs: []Pair{{good.CertFile, garbage}}}, garbage},
		{"mismatched key", Options{Pairs: []Pair{good, {good.CertFile, other.KeyFile}}}, other.KeyFile},
		{"missing client CA", Options{Pairs: []Pair{good}, ClientCAFile: filepath.Join(dir, "ca.pem")}, "ca.pem"},
		{"garbage client CA", Options{Pairs: []Pair{good}, ClientCAFile: garbage}, garbage + ": no PEM certificates"},
	} {
		m, err := New(tt.opts)
		if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.HasPrefix(err.Error(), "tlsconf: ") {
			t.Errorf("%s: New = %v, %v, want an error containing %q", tt.name, m, err, tt.want)
		}
		if err != nil && strings.Contains(err.Error(), "PRIVATE KEY-----") {
			t.Errorf("%s: error quotes the key: %v", tt.name, err)
		}
	}
}

func TestExpiredCertificateWarns(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ca := newCA(t, "test CA")
	l := ca.issue(t, "srv", []string{"pop.example.org"}, false)
	tmpl := *l.tls.Leaf
	tmpl.NotBefore = time.Now().Add(-48 * time.Hour)
	tmpl.NotAfter = time.Now().Add(-24 * time.Hour)
	der, err := x509.CreateCertificate(rand.Reader, &tmpl, ca.cert, l.tls.Leaf.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	l.certPEM = pemCert(der)
	logs := &bytes.Buffer{}
	m, err := New(Options{Pairs: []Pair{l.write(t, dir, "srv")}, Logger: slog.New(slog.NewTextHandler(logs, nil))})
	if err != nil {
		t.Fatalf("New with an expired certificate = %v; want it loaded (with a warning)", err)
	}
	if !m.Expiry()[0].NotAfter.Before(time.Now()) {
		t.Errorf("Expiry() = %v, want a time in the past", m.Expiry()[0].NotAfter)
	}
	if !strings.Contains(logs.String(), "certificate has expired") || !strings.Contains(logs.String(), "srv.pem") {
		t.Errorf("log lacks an expiry warning naming the file:\n%s", logs)
	}
}

// Leaf names the certificate served for an SNI name, and the default one
// without SNI.
func TestLeaf(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ca := newCA(t, "test CA")
	a := ca.issue(t, "pop", []string{"pop.example.org"}, false).write(t, dir, "a")
	b := ca.issue(t, "mail", []string{"mail.example.net"}, false).write(t, dir, "b")
	m, err := New(Options{Pairs: []Pair{a, b}})
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{"": "pop.example.org", "mail.example.net": "mail.example.net", "other.test": "pop.example.org"} {
		l := m.Leaf(name)
		if l == nil || l.DNSNames[0] != want {
			t.Errorf("Leaf(%q) = %v, want the certificate for %s", name, l, want)
		}
	}
}

// A certificate within ExpiryWarning of its end is logged as a warning at
// load; one further away as information; State classifies both, and an
// expired one, as postoffice check reports them.
func TestExpiringCertificateWarns(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ca := newCA(t, "test CA")
	l := ca.issue(t, "srv", []string{"pop.example.org"}, false) // valid 3 hours
	logs := &bytes.Buffer{}
	m, err := New(Options{Pairs: []Pair{l.write(t, dir, "srv")}, Logger: slog.New(slog.NewTextHandler(logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), "level=WARN msg=\"tlsconf: certificate expires soon\" file="+filepath.Join(dir, "srv.pem")+" names=pop.example.org") {
		t.Errorf("log lacks the expiring-soon warning naming the file and names:\n%s", logs)
	}
	now := time.Now()
	e := m.Expiry()[0]
	for _, tt := range []struct {
		at   time.Time
		want ExpiryState
	}{
		{now, Expiring},
		{e.NotAfter.Add(-ExpiryWarning - time.Minute), Valid},
		{e.NotAfter.Add(-ExpiryWarning + time.Minute), Expiring},
		{e.NotAfter.Add(time.Second), Expired},
	} {
		if got := e.State(tt.at); got != tt.want {
			t.Errorf("State(NotAfter%+v) = %d, want %d", tt.at.Sub(e.NotAfter), got, tt.want)
		}
	}
}
