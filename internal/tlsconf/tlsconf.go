// Package tlsconf owns the server's TLS settings: the certificates it
// presents (several pairs chosen by SNI, RFC 6066 §3), the CA that client
// certificates are verified against (for SASL EXTERNAL, RFC 4422 Appendix A),
// the protocol and cipher policy, and reloading all of it from disk without a
// restart. The one *tls.Config it hands out serves both implicit TLS (POP3S,
// RFC 8314) and STLS (RFC 2595).
//
// Implementation notes:
//   - Everything loaded from disk lives in one immutable set behind an atomic
//     pointer. The *tls.Config from Config never changes: its
//     GetConfigForClient returns the set current at the ClientHello, so a
//     Reload reaches every new handshake and no established connection.
//   - Reload replaces the whole set or nothing: any unreadable or broken file
//     keeps the previous set, and the error (naming the file) goes back to the
//     caller, which logs it.
//   - Session tickets stay on (RFC 8446 §2.2 resumption). Their keys belong to
//     the outer *tls.Config, which crypto/tls rotates itself, so tickets
//     survive a Reload; crypto/tls re-verifies a resumed session's client
//     certificate against the CA pool of the set in use.
//   - TLS 1.2 is the floor (RFC 8996 deprecates 1.0 and 1.1). TLS 1.2 suites
//     are limited to ECDHE key exchange with AEAD ciphers (AES-GCM,
//     ChaCha20-Poly1305), as RFC 9325 §4.2 recommends; TLS 1.3 suites are not
//     configurable and all qualify.
//   - Private keys and file contents never reach a log; file names, host
//     names and expiry dates do.
package tlsconf

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Pair names a PEM certificate chain file (leaf first) and its PEM private
// key file.
type Pair struct {
	CertFile string
	KeyFile  string
}

// Options configure a Manager.
type Options struct {
	// Pairs are the certificates to present; at least one is required. The
	// first is the default, sent when the client's SNI name matches no pair
	// or it sends none (e.g. it connected to an IP address).
	Pairs []Pair
	// ClientCAFile is a PEM file of CA certificates. When set, the server
	// asks for a client certificate and verifies any the client sends
	// against these CAs (tls.VerifyClientCertIfGiven); a client without one
	// still connects. Empty means client certificates are not requested.
	ClientCAFile string
	// Logger receives a line for each reload and one per certificate at
	// every load, a warning when it has expired or expires within
	// ExpiryWarning. Nil discards them.
	Logger *slog.Logger
}

// Expiry describes one loaded certificate, for a log line or a metric.
type Expiry struct {
	CertFile string
	Names    []string  // the names it is chosen for (DNS SANs, else the CN)
	NotAfter time.Time // the leaf's expiry
}

// ExpiryWarning is how close to its expiry a certificate is reported as
// expiring soon, by the Manager's log and by postoffice check. ACME clients
// renew 30 days before the end (certbot's default), so a certificate with
// less than 14 days left has missed renewals and needs a person.
const ExpiryWarning = 14 * 24 * time.Hour

// ExpiryState classifies a certificate's remaining validity.
type ExpiryState int

const (
	Valid    ExpiryState = iota // more than ExpiryWarning left
	Expiring                    // valid, but ExpiryWarning or less left
	Expired                     // past NotAfter: clients refuse it
)

// State classifies e at now.
func (e Expiry) State(now time.Time) ExpiryState {
	switch left := e.NotAfter.Sub(now); {
	case left < 0:
		return Expired
	case left < ExpiryWarning:
		return Expiring
	}
	return Valid
}

// Manager loads and reloads the server's certificates. It is safe for
// concurrent use.
type Manager struct {
	opts   Options
	log    *slog.Logger
	config *tls.Config // the one Config hands out; never modified after New

	mu  sync.Mutex // serialises Reload
	cur atomic.Pointer[set]
}

// set is one loaded version of the files. It is never modified.
type set struct {
	def    *tls.Certificate
	byName map[string][]*tls.Certificate // lower-case name or "*.domain" -> certificates in Pairs order
	expiry []Expiry
	config *tls.Config // what GetConfigForClient returns while this set is current
}

// cipherSuites are the TLS 1.2 suites offered: ECDHE with AEAD only.
var cipherSuites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
}

// CipherSuites returns the TLS 1.2 cipher suites the server accepts.
func CipherSuites() []uint16 { return slices.Clone(cipherSuites) }

// New loads every file named in opts. It fails, naming the file, if one
// cannot be read or parsed, if a key does not match its certificate, or if
// opts has no pairs.
func New(opts Options) (*Manager, error) {
	if len(opts.Pairs) == 0 {
		return nil, errors.New("tlsconf: no certificate configured")
	}
	m := &Manager{
		opts: Options{Pairs: slices.Clone(opts.Pairs), ClientCAFile: opts.ClientCAFile},
		log:  opts.Logger,
	}
	if m.log == nil {
		m.log = slog.New(slog.DiscardHandler)
	}
	s, err := m.load()
	if err != nil {
		return nil, err
	}
	m.cur.Store(s)
	m.config = m.baseConfig()
	m.config.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
		return m.cur.Load().config, nil
	}
	m.config.GetCertificate = func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
		return m.cur.Load().certificate(hello), nil
	}
	if opts.ClientCAFile != "" {
		// Replaced per handshake by GetConfigForClient; set here so the
		// outer Config also describes the policy on its own.
		m.config.ClientAuth = tls.VerifyClientCertIfGiven
		m.config.ClientCAs = s.config.ClientCAs
	}
	m.logExpiry(s)
	return m, nil
}

// baseConfig returns the protocol and cipher policy shared by the outer
// Config and each set's config.
func (m *Manager) baseConfig() *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		CipherSuites: slices.Clone(cipherSuites),
		// Session tickets stay enabled (SessionTicketsDisabled false) for
		// resumption; their keys come from the outer Config.
	}
}

// Config returns the server *tls.Config, for implicit TLS and STLS alike.
// It is the same value on every call and follows Reload by itself; it must
// not be modified (Clone it to add, say, NextProtos).
func (m *Manager) Config() *tls.Config { return m.config }

// Reload reads every file again and, if all load, makes them the set new
// handshakes use. On any error the previous set stays in use and the error,
// naming the file, is returned for the caller to log. Established
// connections are not affected either way.
func (m *Manager) Reload() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	s, err := m.load()
	if err != nil {
		return err
	}
	m.cur.Store(s)
	m.log.Info("tlsconf: certificates reloaded", "certificates", len(s.expiry))
	m.logExpiry(s)
	return nil
}

// Expiry returns each loaded certificate's names and expiry, in the order of
// Options.Pairs.
func (m *Manager) Expiry() []Expiry {
	src := m.cur.Load().expiry
	out := make([]Expiry, len(src))
	for i, e := range src {
		out[i] = Expiry{CertFile: e.CertFile, Names: slices.Clone(e.Names), NotAfter: e.NotAfter}
	}
	return out
}

// logExpiry logs each certificate of s with its names and expiry: a
// warning when it has expired or expires within ExpiryWarning, else an
// informational line. New and every successful Reload call it, so the
// log says what is being served after each (re)load.
func (m *Manager) logExpiry(s *set) {
	now := time.Now()
	for _, e := range s.expiry {
		attrs := []any{"file", e.CertFile, "names", strings.Join(e.Names, ","), "not_after", e.NotAfter.UTC().Format(time.RFC3339)}
		switch e.State(now) {
		case Expired:
			m.log.Warn("tlsconf: certificate has expired", attrs...)
		case Expiring:
			m.log.Warn("tlsconf: certificate expires soon", attrs...)
		default:
			m.log.Info("tlsconf: certificate loaded", attrs...)
		}
	}
}

// load reads all files into a new set.
func (m *Manager) load() (*set, error) {
	s := &set{byName: make(map[string][]*tls.Certificate)}
	for _, p := range m.opts.Pairs {
		cert, err := loadPair(p)
		if err != nil {
			return nil, err
		}
		if s.def == nil {
			s.def = cert
		}
		names := certNames(cert.Leaf)
		for _, n := range names {
			s.byName[n] = append(s.byName[n], cert)
		}
		s.expiry = append(s.expiry, Expiry{CertFile: p.CertFile, Names: names, NotAfter: cert.Leaf.NotAfter})
	}
	s.config = m.baseConfig()
	s.config.GetCertificate = func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
		return s.certificate(hello), nil
	}
	if m.opts.ClientCAFile != "" {
		pool, err := loadCAs(m.opts.ClientCAFile)
		if err != nil {
			return nil, err
		}
		s.config.ClientAuth = tls.VerifyClientCertIfGiven
		s.config.ClientCAs = pool
	}
	return s, nil
}

// loadPair reads and checks one certificate and key.
func loadPair(p Pair) (*tls.Certificate, error) {
	if p.CertFile == "" || p.KeyFile == "" {
		return nil, fmt.Errorf("tlsconf: certificate %q and key %q: both files are required", p.CertFile, p.KeyFile)
	}
	certPEM, err := os.ReadFile(p.CertFile)
	if err != nil {
		return nil, fmt.Errorf("tlsconf: certificate: %w", err)
	}
	keyPEM, err := os.ReadFile(p.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("tlsconf: key: %w", err)
	}
	if !hasBlock(certPEM, "CERTIFICATE") {
		return nil, fmt.Errorf("tlsconf: certificate %s: no PEM CERTIFICATE block", p.CertFile)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		// The error says which input is wrong; it never quotes the key.
		return nil, fmt.Errorf("tlsconf: certificate %s with key %s: %v", p.CertFile, p.KeyFile, err)
	}
	if cert.Leaf == nil {
		leaf, err := x509.ParseCertificate(cert.Certificate[0])
		if err != nil {
			return nil, fmt.Errorf("tlsconf: certificate %s: %v", p.CertFile, err)
		}
		cert.Leaf = leaf
	}
	return &cert, nil
}

// loadCAs reads a PEM bundle of CA certificates.
func loadCAs(path string) (*x509.CertPool, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("tlsconf: client CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		return nil, fmt.Errorf("tlsconf: client CA %s: no PEM certificates", path)
	}
	return pool, nil
}

// hasBlock reports whether data holds a PEM block of the given type.
func hasBlock(data []byte, typ string) bool {
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			return false
		}
		if b.Type == typ {
			return true
		}
	}
}

// certNames returns the lower-case names a leaf is chosen for: its DNS
// SANs, or its Common Name when it has none.
func certNames(leaf *x509.Certificate) []string {
	src := leaf.DNSNames
	if len(src) == 0 && leaf.Subject.CommonName != "" {
		src = []string{leaf.Subject.CommonName}
	}
	var names []string
	for _, n := range src {
		n = strings.TrimSuffix(strings.ToLower(n), ".")
		if n != "" && !slices.Contains(names, n) {
			names = append(names, n)
		}
	}
	return names
}

// certificate picks the certificate for a ClientHello: the pairs whose names
// hold the SNI name exactly, then those with a wildcard for its parent
// domain ("*.example.org" for "pop.example.org", one label only, RFC 6125
// §6.4.3), then the default. Among several for one name, the first in
// Options.Pairs that the client supports (key type, signature algorithms)
// wins.
func (s *set) certificate(hello *tls.ClientHelloInfo) *tls.Certificate {
	name := strings.TrimSuffix(strings.ToLower(hello.ServerName), ".")
	if name == "" {
		return s.def
	}
	if c := pick(hello, s.byName[name]); c != nil {
		return c
	}
	if _, parent, ok := strings.Cut(name, "."); ok && parent != "" {
		if c := pick(hello, s.byName["*."+parent]); c != nil {
			return c
		}
	}
	return s.def
}

// pick returns the first of certs the client supports, else the first, or
// nil for none.
func pick(hello *tls.ClientHelloInfo, certs []*tls.Certificate) *tls.Certificate {
	if len(certs) == 0 {
		return nil
	}
	for _, c := range certs {
		if hello.SupportsCertificate(c) == nil {
			return c
		}
	}
	return certs[0]
}

// Leaf returns the leaf certificate the current set serves to a client that
// asked for serverName (SNI; "" for none), for SCRAM's tls-server-end-point
// channel binding (RFC 5929 §4). Where several certificates share a name and
// the choice depended on the client's algorithms, it returns the first; a
// binding computed from the wrong one fails authentication, it never
// succeeds wrongly.
func (m *Manager) Leaf(serverName string) *x509.Certificate {
	c := m.cur.Load().certificate(&tls.ClientHelloInfo{ServerName: serverName})
	if c == nil {
		return nil
	}
	return c.Leaf
}
