package sasl

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	gosasl "github.com/emersion/go-sasl"
	"github.com/xdg-go/scram"

	"github.com/postoffice-mail/postoffice/internal/auth"
	"github.com/postoffice-mail/postoffice/internal/auth/oauth"
	"github.com/postoffice-mail/postoffice/internal/auth/scheme"
)

// fakeDB is an auth.CredentialDB over a map of stored passwords.
type fakeDB struct {
	users map[string]string // name -> "{SCHEME}data"
	down  bool              // every call fails temporarily
}

var errDown = errors.New("fakedb: down")

func (db *fakeDB) Authenticate(ctx context.Context, user, password string) (auth.User, error) {
	if db.down {
		return auth.User{}, errDown
	}
	stored, ok := db.users[user]
	if !ok {
		return auth.User{}, auth.ErrFailed
	}
	if ok, err := scheme.Verify(stored, password, "PLAIN"); err != nil || !ok {
		return auth.User{}, auth.ErrFailed
	}
	return auth.User{Name: user}, nil
}

func (db *fakeDB) Lookup(ctx context.Context, user string) (auth.User, error) {
	if db.down {
		return auth.User{}, errDown
	}
	if _, ok := db.users[user]; !ok {
		return auth.User{}, auth.ErrUnknownUser
	}
	return auth.User{Name: user}, nil
}

func (db *fakeDB) Credentials(ctx context.Context, user string) (auth.User, string, error) {
	if db.down {
		return auth.User{}, "", errDown
	}
	stored, ok := db.users[user]
	if !ok {
		return auth.User{}, "", auth.ErrUnknownUser
	}
	return auth.User{Name: user}, stored, nil
}

// plainDB hides Credentials.
type plainDB struct{ db *fakeDB }

func (p plainDB) Authenticate(ctx context.Context, u, pw string) (auth.User, error) {
	return p.db.Authenticate(ctx, u, pw)
}
func (p plainDB) Lookup(ctx context.Context, u string) (auth.User, error) { return p.db.Lookup(ctx, u) }

// The users every test shares; each one's password is "secret" unless said.
func newFakeDB(t testing.TB) *fakeDB {
	t.Helper()
	hash := func(s, pw string) string {
		h, err := scheme.Hash(s, pw)
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	return &fakeDB{users: map[string]string{
		"alice": "{PLAIN}secret",
		// doveadm pw -s SCRAM-SHA-256 -p secret, -s SCRAM-SHA-1, -s SHA512-CRYPT (Dovecot 2.3.19.1)
		"bob":               "{SCRAM-SHA-256}4096,MoebiMZviRfzX27A703XNg==,LcmQ/fe15LPoIrrzobUX/iD+KflkRMlPZN7gXUfLLTk=,rG89uTcfvx9230TtNsLO54QAHA/0OnpAVLyD1Fv/2dY=",
		"carol":             "{SCRAM-SHA-1}4096,H59FBji5l6HTmj8WnI8Gqg==,0j99oLAxpf6r1k8sTvDD8ZiATh0=,G5ebERTpi+u+iqhVqRW4pJeKgNY=",
		"dave":              "{SHA512-CRYPT}$6$83pS5P19hTfBDguR$izCsoGVFrKExTWEdi5Doorud1zC.wZu/bHW6INz.C0Mj00FaRlcLIwC75v.Z6YPCaQcgh.k/ScXCRyTKatTNN/",
		"henry":             hash("SCRAM-SHA-256", "secret"),                                              // made by scheme.Hash
		"erin":              "{CRAM-MD5}cd3ba7deaad6e5ca23448ba42e379747a9e0f7f1fbc00c8a81bbaac395731b56", // doveadm pw -s CRAM-MD5 -p secret
		"frank@example.org": "{PLAIN}secret",
		"gina":              hash("CRAM-MD5", "secret"),
	}}
}

// fakeVerifier accepts "token-for-<user>" tokens.
type fakeVerifier struct{ down bool }

func (v fakeVerifier) Verify(ctx context.Context, token string) (string, error) {
	if v.down {
		return "", errors.New("fakeverifier: down")
	}
	const p = "token-for-"
	if len(token) > len(p) && token[:len(p)] == p {
		return token[len(p):], nil
	}
	return "", fmt.Errorf("%w: unknown", oauth.ErrInvalidToken)
}

func newMechs(t testing.TB, mod func(*Options)) *Mechanisms {
	t.Helper()
	opts := Options{Users: newFakeDB(t), OAuth: fakeVerifier{}, Secret: []byte("0123456789abcdef"),
		Hostname: "pop.example.org", Enabled: slices.DeleteFunc(slices.Clone(known), func(n string) bool { return n == GSSAPI })}
	if mod != nil {
		mod(&opts)
	}
	m, err := New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return m
}

// run drives srv with a client until done or an error. A challenge that
// comes with done goes to the client too (SCRAM's server-final check).
func run(ctx context.Context, srv Server, c gosasl.Client) error {
	_, resp, err := c.Start()
	if err != nil {
		return fmt.Errorf("client start: %w", err)
	}
	for range 10 {
		ch, done, err := srv.Next(ctx, resp)
		if err != nil {
			return err
		}
		if done {
			if ch != nil {
				if _, err := c.Next(ch); err != nil {
					return fmt.Errorf("client rejects the server's final message: %w", err)
				}
			}
			return nil
		}
		if resp, err = c.Next(ch); err != nil {
			return fmt.Errorf("client: %w", err)
		}
		if resp == nil {
			resp = []byte{}
		}
	}
	return errors.New("exchange did not finish")
}

// scramClient adapts an xdg-go/scram client conversation to gosasl.Client.
type scramClient struct {
	mech string
	conv *scram.ClientConversation
}

func (c *scramClient) Start() (string, []byte, error) {
	first, err := c.conv.Step("")
	return c.mech, []byte(first), err
}

func (c *scramClient) Next(ch []byte) ([]byte, error) {
	r, err := c.conv.Step(string(ch))
	if err == nil && c.conv.Done() && !c.conv.Valid() {
		err = errors.New("server signature invalid")
	}
	return []byte(r), err
}

func newSCRAMClient(t testing.TB, mech, user, pass string, cb *scram.ChannelBinding, advertise bool) *scramClient {
	t.Helper()
	h := scram.SHA256
	if mech == ScramSHA1 || mech == ScramSHA1Plus {
		h = scram.SHA1
	}
	c, err := h.NewClient(user, pass, "")
	if err != nil {
		t.Fatal(err)
	}
	var conv *scram.ClientConversation
	switch {
	case cb != nil:
		conv = c.NewConversationWithChannelBinding(*cb)
	case advertise:
		conv = c.NewConversationAdvertisingChannelBinding()
	default:
		conv = c.NewConversation()
	}
	return &scramClient{mech: mech, conv: conv}
}

// certs is a CA with a server and a client certificate.
type certs struct {
	pool   *x509.CertPool
	server tls.Certificate
	client tls.Certificate
}

var (
	certsOnce sync.Once
	testCerts certs
)

func getCerts(t testing.TB) certs {
	t.Helper()
	certsOnce.Do(func() {
		caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
		caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
		if err != nil {
			panic(err)
		}
		ca, _ := x509.ParseCertificate(caDER)
		leaf := func(n int64, tmpl *x509.Certificate) tls.Certificate {
			k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			tmpl.SerialNumber = big.NewInt(n)
			tmpl.NotBefore, tmpl.NotAfter = time.Now().Add(-time.Hour), time.Now().Add(time.Hour)
			der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &k.PublicKey, caKey)
			if err != nil {
				panic(err)
			}
			c, _ := x509.ParseCertificate(der)
			return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: k, Leaf: c}
		}
		testCerts.pool = x509.NewCertPool()
		testCerts.pool.AddCert(ca)
		testCerts.server = leaf(2, &x509.Certificate{Subject: pkix.Name{CommonName: "pop.example.org"},
			DNSNames: []string{"pop.example.org"}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
		testCerts.client = leaf(3, &x509.Certificate{Subject: pkix.Name{CommonName: "alice"},
			EmailAddresses: []string{"frank@example.org"}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	})
	return testCerts
}

// tlsPair handshakes a real TLS connection over net.Pipe and returns both
// ends' states.
func tlsPair(t testing.TB, version uint16, clientCert bool) (srv, cli tls.ConnectionState) {
	t.Helper()
	c := getCerts(t)
	a, b := net.Pipe()
	t.Cleanup(func() { a.Close(); b.Close() })
	sconf := &tls.Config{Certificates: []tls.Certificate{c.server}, MinVersion: version, MaxVersion: version,
		ClientCAs: c.pool, ClientAuth: tls.VerifyClientCertIfGiven}
	cconf := &tls.Config{RootCAs: c.pool, ServerName: "pop.example.org", MinVersion: version, MaxVersion: version}
	if clientCert {
		cconf.Certificates = []tls.Certificate{c.client}
	}
	ss, cs := tls.Server(a, sconf), tls.Client(b, cconf)
	errc := make(chan error, 1)
	go func() { errc <- ss.Handshake() }()
	if err := cs.Handshake(); err != nil {
		t.Fatalf("client handshake: %v", err)
	}
	if err := <-errc; err != nil {
		t.Fatalf("server handshake: %v", err)
	}
	return ss.ConnectionState(), cs.ConnectionState()
}

// serverCert is an Options.ServerCertificate for the test certificate.
func serverCert(*tls.ConnectionState) *x509.Certificate { return testCerts.server.Leaf }
