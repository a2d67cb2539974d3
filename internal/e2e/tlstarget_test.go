package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/postoffice-mail/postoffice/internal/store/maildir"
	"github.com/postoffice-mail/postoffice/internal/testutil/dovecot"
)

// The real-client tests of TLS and every way to log in run each
// client invocation against a target: postoffice, and, where Dovecot
// supports the same thing, a real Dovecot, so that a client invocation is
// known to be right before it is pointed at postoffice.

// tlsMessages are what every client test retrieves: LF line ends with a
// final newline, so that postoffice and Dovecot give the same sizes.
var tlsMessages = []string{
	"From: a@example.org\nTo: alice@example.org\nSubject: one\n\nHello\n.dotted line\n..\nend\n",
	"From: b@example.org\nSubject: two\n\n" + strings.Repeat("a line of the second body\n", 60),
}

// tlsOctets is the size of tlsMessages as POP3 counts it (CRLF).
func tlsOctets() int {
	n := 0
	for _, m := range tlsMessages {
		n += len(crlf(m))
	}
	return n
}

// lf returns msg with LF line ends, as a client writes it to a mailbox.
func lf(msg string) string { return strings.ReplaceAll(crlf(msg), "\r\n", "\n") }

// Login roles of a target: which user a test logs in as, by what the
// mechanism needs stored.
const (
	roleHashed   = "hashed"   // any scheme (SHA512-CRYPT): USER, PLAIN, LOGIN
	rolePlain    = "plain"    // {PLAIN}: APOP, CRAM-MD5, SCRAM-SHA-1
	roleSCRAM256 = "scram256" // {SCRAM-SHA-256}: SCRAM-SHA-256 without plaintext
	roleOAuth    = "oauth"    // the email claim of the tokens
	roleExternal = "external" // the CN of the client certificate
)

// target is a POP3 server under test.
type target struct {
	name  string
	plain string // host:port of the plain listener (STLS offered)
	tls   string // host:port of the implicit-TLS listener
	// proxied: the implicit-TLS listener is a TLS proxy in front of the
	// plain one, so the server does not know the session is encrypted.
	proxied bool
	caFile  string // PEM file a client trusts the server with
	ca      *x509.CertPool
	pass    string
	users   map[string]string // role -> user name
	dir     string            // scratch directory for client files

	// Set for postoffice only.
	site    *site
	srv     *server
	pki     *clientPKI
	oauth   *oauthIssuer
	dovecot *dovecot.Server
}

// user returns the user name for a role.
func (tg *target) user(role string) string {
	u, ok := tg.users[role]
	if !ok {
		panic("no user for role " + role)
	}
	return u
}

// left counts the messages still in user's maildrop.
func (tg *target) left(t *testing.T, user string) int {
	t.Helper()
	if tg.dovecot != nil {
		return tg.dovecot.Files(t, user)
	}
	return len(tg.site.files(user))
}

// logs returns the server's log for failure messages (postoffice only:
// Dovecot's is printed by its harness when a test fails).
func (tg *target) logs() string {
	if tg.srv == nil {
		return "(see the dovecot log below)"
	}
	select {
	case <-tg.srv.done:
		return tg.srv.log.String()
	default:
		return "(server still running)"
	}
}

// checkDelivered checks that got, the messages a client delivered (with
// LF or CRLF line ends), are tlsMessages, each possibly after headers the
// client added (Received:, Delivered-To:, Return-Path:), and that wantLeft
// messages are left on the server for user.
func (tg *target) checkDelivered(t *testing.T, user string, got []string, wantLeft int) {
	t.Helper()
	if len(got) != len(tlsMessages) {
		t.Errorf("%s: client delivered %d messages, want %d", tg.name, len(got), len(tlsMessages))
	}
	for i := 0; i < len(got) && i < len(tlsMessages); i++ {
		g := strings.ReplaceAll(got[i], "\r\n", "\n")
		if !strings.HasSuffix(g, lf(tlsMessages[i])) {
			t.Errorf("%s: delivered message %d = %.300q, want it to end with %.300q", tg.name, i+1, g, lf(tlsMessages[i]))
		}
	}
	if n := tg.left(t, user); n != wantLeft {
		t.Errorf("%s: %d messages left for %s, want %d", tg.name, n, user, wantLeft)
	}
}

// readMaildir returns the messages of a Maildir (new/ and cur/) in the
// order their names sort, which is the order clients wrote them in for
// the clients used here (names start with a time stamp).
func readMaildir(t *testing.T, dir string) []string {
	t.Helper()
	type file struct {
		mod  time.Time
		name string
		data string
	}
	var files []file
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
			fi, _ := e.Info()
			files = append(files, file{fi.ModTime(), e.Name(), string(b)})
		}
	}
	// Order by content marker: the tests' messages have distinct subjects.
	var out []string
	for _, m := range tlsMessages {
		subj := m[strings.Index(m, "Subject: "):]
		subj = subj[:strings.IndexByte(subj, '\n')]
		for _, f := range files {
			if strings.Contains(f.data, subj+"\n") || strings.Contains(f.data, subj+"\r\n") {
				out = append(out, f.data)
				break
			}
		}
	}
	if len(out) != len(files) {
		names := make([]string, len(files))
		for i, f := range files {
			names[i] = f.name
		}
		t.Errorf("maildir %s holds %d files %v, %d of them the test's messages", dir, len(files), names, len(out))
	}
	return out
}

// writeFile writes a file in the target's scratch directory.
func (tg *target) writeFile(t *testing.T, name, content string, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(tg.dir, name)
	if err := os.WriteFile(p, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	return p
}

// tlsSiteOptions change the postoffice configuration of a target.
type tlsSiteOptions struct {
	failDelay      string   // pop3.auth_fail_delay; default "0s"
	listen         string   // plain listener; default "127.0.0.1:0"
	allowPlaintext bool     // auth.allow_plaintext
	noAPOP         bool     // leave auth.apop out
	mechanisms     []string // auth.mechanisms; default allMechanisms
}

// allMechanisms are the SASL mechanisms the real-client tests cover: every
// one the postoffice target offers by default in these tests.
var allMechanisms = []string{"PLAIN", "LOGIN", "CRAM-MD5", "SCRAM-SHA-1", "SCRAM-SHA-256",
	"SCRAM-SHA-1-PLUS", "SCRAM-SHA-256-PLUS", "OAUTHBEARER", "XOAUTH2", "EXTERNAL"}

// newPostofficeTarget starts postoffice with a plain listener (STLS), an
// implicit-TLS one, APOP, every SASL mechanism, client certificates of a
// test CA (EXTERNAL, CN as user name) and JWTs of a test issuer
// (OAUTHBEARER, XOAUTH2), with tlsMessages in every user's maildrop.
func newPostofficeTarget(t *testing.T, o tlsSiteOptions) *target {
	t.Helper()
	dir := t.TempDir()
	s := &site{t: t, dir: dir, config: filepath.Join(dir, "postoffice.toml")}
	passwd := filepath.Join(s.dir, "passwd")
	if err := os.WriteFile(passwd, tlsPasswd(t), 0o600); err != nil {
		t.Fatal(err)
	}

	certPath, keyPath := writeCert(t, s.dir)
	pki := newClientPKI(t, s.dir)
	oauth := newOAuthIssuer(t, s.dir)
	tlsAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	if o.failDelay == "" {
		o.failDelay = "0s"
	}
	if o.listen == "" {
		o.listen = "127.0.0.1:0"
	}
	if o.mechanisms == nil {
		o.mechanisms = allMechanisms
	}
	var mechs []string
	for _, m := range o.mechanisms {
		mechs = append(mechs, fmt.Sprintf("%q", m))
	}
	location := filepath.Join(s.dir, "vmail", "%d", "%n", "Maildir")
	st, err := maildir.New(maildir.Options{Location: location})
	if err != nil {
		t.Fatal(err)
	}
	s.store = st
	cfg := fmt.Sprintf(`[pop3]
listen = [%q]
listen_tls = [%q]
auth_fail_delay = %q

[tls]
cert = %q
key = %q
client_ca = %q

[auth]
passwd_file = %q
allow_plaintext = %v
apop = %v
mechanisms = [%s]
external_username = "cn"

[auth.oauth]
jwks_file = %q
issuer = %q
audience = %q

[mail]
location = "maildir:%s"
`, o.listen, tlsAddr, o.failDelay, certPath, keyPath, pki.caFile, passwd, o.allowPlaintext, !o.noAPOP,
		strings.Join(mechs, ", "), oauth.jwksFile, oauth.issuer, oauth.audience, location)
	if err := os.WriteFile(s.config, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	tg := &target{
		name:   "postoffice",
		tls:    tlsAddr,
		caFile: certPath,
		pass:   testPassword,
		users: map[string]string{
			roleHashed: "alice", rolePlain: "pat", roleSCRAM256: "sam",
			roleOAuth: "carol@example.org", roleExternal: "alice",
		},
		dir:   t.TempDir(),
		site:  s,
		pki:   pki,
		oauth: oauth,
	}
	tg.ca = x509.NewCertPool()
	pemData, _ := os.ReadFile(certPath)
	tg.ca.AppendCertsFromPEM(pemData)
	for _, u := range []string{"alice", "pat", "sam", "carol@example.org"} {
		for _, m := range tlsMessages {
			s.deliver(u, m)
		}
	}
	tg.srv = s.start()
	tg.plain = tg.srv.addr
	waitListening(t, tlsAddr, tg.srv)
	return tg
}

// tlsPasswdFile is the passwd-file of every postoffice target, written
// once per test binary by "postoffice user add --scheme" (each run of the
// race-enabled binary costs about a second): alice and carol@example.org
// SHA512-CRYPT (the default), pat {PLAIN}, sam {SCRAM-SHA-256}, all with
// testPassword.
var tlsPasswdFile struct {
	once sync.Once
	data []byte
	err  error
}

func tlsPasswd(t *testing.T) []byte {
	t.Helper()
	tlsPasswdFile.once.Do(func() {
		dir, err := os.MkdirTemp("", "postoffice-passwd-")
		if err != nil {
			tlsPasswdFile.err = err
			return
		}
		defer os.RemoveAll(dir)
		p := filepath.Join(dir, "passwd")
		for _, u := range []struct{ name, scheme string }{
			{"alice", "SHA512-CRYPT"}, {"pat", "PLAIN"}, {"sam", "SCRAM-SHA-256"}, {"carol@example.org", "SHA512-CRYPT"},
		} {
			cmd := exec.Command(binary, "user", "add", "--passwd-file", p, "--scheme", u.scheme, "--password-stdin", u.name)
			cmd.Stdin = strings.NewReader(testPassword + "\n")
			if out, err := cmd.CombinedOutput(); err != nil {
				tlsPasswdFile.err = fmt.Errorf("postoffice user add --scheme %s %s: %v\n%s", u.scheme, u.name, err, out)
				return
			}
		}
		tlsPasswdFile.data, tlsPasswdFile.err = os.ReadFile(p)
	})
	if tlsPasswdFile.err != nil {
		t.Fatal(tlsPasswdFile.err)
	}
	return tlsPasswdFile.data
}

// waitListening waits until addr accepts TCP connections.
func waitListening(t *testing.T, addr string, srv *server) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return
		}
		select {
		case <-srv.done:
			t.Fatalf("server exited:\n%s", srv.log)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("nothing listens on %s: %v", addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// newDovecotTarget is user (and scramUser, stored as {SCRAM-SHA-256}) of
// a running Dovecot (plain with STLS; PLAIN, LOGIN, CRAM-MD5, APOP and,
// after startDovecot, SCRAM-SHA-1 and SCRAM-SHA-256), with tlsMessages
// delivered to both. The Dovecot harness has no POP3S listener, so
// implicit TLS goes through a TLS-terminating proxy with Dovecot's
// certificate: enough to check a client's TLS settings.
func newDovecotTarget(t *testing.T, d *dovecot.Server, user, scramUser string) *target {
	t.Helper()
	d.Deliver(t, user, tlsMessages)
	d.Deliver(t, scramUser, tlsMessages)
	tg := &target{
		name:    "dovecot",
		plain:   d.Addr,
		pass:    dovecot.Password,
		users:   map[string]string{roleHashed: user, rolePlain: user, roleSCRAM256: scramUser},
		dir:     t.TempDir(),
		ca:      d.Cert.Pool(),
		dovecot: d,
	}
	tg.caFile = tg.writeFile(t, "dovecot-ca.pem", string(d.Cert.CertPEM), 0o644)
	tg.tls = tlsProxy(t, d.Cert.TLS, d.Addr)
	tg.proxied = true
	return tg
}

// startDovecot starts Dovecot for n targets: users userI ({PLAIN}) and
// scramI ({SCRAM-SHA-256}), with SCRAM-SHA-1 and SCRAM-SHA-256 offered
// besides the harness's PLAIN, LOGIN, CRAM-MD5 and APOP.
func startDovecot(t *testing.T, n int) *dovecot.Server {
	t.Helper()
	var users []string
	for i := 0; i < n; i++ {
		users = append(users, fmt.Sprintf("user%d", i))
	}
	d := dovecot.Start(t, users...)
	for i := 0; i < n; i++ {
		d.SetScheme(t, fmt.Sprintf("scram%d", i), "SCRAM-SHA-256")
	}
	d.SetMechanisms(t, "plain", "login", "cram-md5", "apop", "scram-sha-1", "scram-sha-256")
	return d
}

// tlsProxy accepts TLS on a loopback port with cert and relays the
// plaintext to backend.
func tlsProxy(t *testing.T, cert tls.Certificate, backend string) string {
	t.Helper()
	l, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { l.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				b, err := net.DialTimeout("tcp", backend, 5*time.Second)
				if err != nil {
					return
				}
				defer b.Close()
				done := make(chan struct{}, 2)
				go func() { io.Copy(b, c); b.(*net.TCPConn).CloseWrite(); done <- struct{}{} }()
				go func() { io.Copy(c, b); c.Close(); done <- struct{}{} }()
				<-done
				<-done
			}()
		}
	}()
	return l.Addr().String()
}

// clientCase is one client invocation; dovecot says it also runs against
// Dovecot.
type clientCase struct {
	name    string
	dovecot bool
	run     func(t *testing.T, tg *target)
}

// runClientCases runs each case against postoffice and, when it says so,
// against Dovecot (subtests "dovecot/NAME", sharing one Dovecot with a
// user per case), all in parallel.
func runClientCases(t *testing.T, cases []clientCase) {
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			c.run(t, newPostofficeTarget(t, tlsSiteOptions{}))
		})
	}
	n := 0
	for _, c := range cases {
		if c.dovecot {
			n++
		}
	}
	if n == 0 {
		return
	}
	t.Run("dovecot", func(t *testing.T) {
		t.Parallel()
		d := startDovecot(t, len(cases))
		for i, c := range cases {
			if !c.dovecot {
				continue
			}
			t.Run(c.name, func(t *testing.T) {
				t.Parallel()
				c.run(t, newDovecotTarget(t, d, fmt.Sprintf("user%d", i), fmt.Sprintf("scram%d", i)))
			})
		}
	})
}

// clientPKI is a test CA for TLS client certificates (EXTERNAL) and a
// certificate from it with CN "alice".
type clientPKI struct {
	caFile, certFile, keyFile string
	cert                      tls.Certificate
}

func newClientPKI(t testing.TB, dir string) *clientPKI {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "postoffice test client CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "alice"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	p := &clientPKI{
		caFile:   filepath.Join(dir, "client-ca.pem"),
		certFile: filepath.Join(dir, "client-cert.pem"),
		keyFile:  filepath.Join(dir, "client-key.pem"),
	}
	write := func(path, typ string, der []byte, mode os.FileMode) {
		if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), mode); err != nil {
			t.Fatal(err)
		}
	}
	write(p.caFile, "CERTIFICATE", caDER, 0o644)
	write(p.certFile, "CERTIFICATE", der, 0o644)
	write(p.keyFile, "PRIVATE KEY", kder, 0o600)
	p.cert = tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
	return p
}

// oauthIssuer signs JWTs (RS256) with a key whose JWKS file the server
// reads.
type oauthIssuer struct {
	jwksFile, issuer, audience string
	signer                     jose.Signer
}

func newOAuthIssuer(t testing.TB, dir string) *oauthIssuer {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	const kid = "postoffice-test-1"
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: jose.JSONWebKey{Key: key, KeyID: kid}},
		(&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		t.Fatal(err)
	}
	set := jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &key.PublicKey, KeyID: kid, Algorithm: string(jose.RS256), Use: "sig"}}}
	data, err := json.Marshal(set)
	if err != nil {
		t.Fatal(err)
	}
	o := &oauthIssuer{
		jwksFile: filepath.Join(dir, "jwks.json"),
		issuer:   "https://issuer.postoffice.test",
		audience: "postoffice-pop3",
		signer:   signer,
	}
	if err := os.WriteFile(o.jwksFile, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return o
}

// token returns a JWT for email, valid for ten minutes.
func (o *oauthIssuer) token(t testing.TB, email string) string {
	t.Helper()
	now := time.Now()
	claims := jwt.Claims{
		Issuer:    o.issuer,
		Subject:   "user-" + email,
		Audience:  jwt.Audience{o.audience},
		IssuedAt:  jwt.NewNumericDate(now.Add(-time.Minute)),
		NotBefore: jwt.NewNumericDate(now.Add(-time.Minute)),
		Expiry:    jwt.NewNumericDate(now.Add(10 * time.Minute)),
	}
	tok, err := jwt.Signed(o.signer).Claims(claims).Claims(map[string]any{"email": email, "email_verified": true}).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}
