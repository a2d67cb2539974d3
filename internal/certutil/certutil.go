// Package certutil makes self-signed certificates for local trials
// (postoffice serve --dev) and for tests. The certificate is its own CA
// (so a client can trust it with --cacert or a pool of one) and is valid
// for 127.0.0.1, ::1 and localhost. It is not for production: use the
// certificates Postfix, Dovecot or certbot already have.
package certutil

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"time"
)

// Pair is a self-signed certificate and its key.
type Pair struct {
	TLS     tls.Certificate // ready for tls.Config.Certificates, with Leaf set
	CertPEM []byte
	KeyPEM  []byte
}

// SelfSigned makes a P-256 certificate for loopback valid for the given
// time from an hour ago.
func SelfSigned(valid time.Duration) (*Pair, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "localhost"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(valid),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		DNSNames:              []string{"localhost"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	return &Pair{
		TLS:     tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf},
		CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		KeyPEM:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}),
	}, nil
}

// Pool returns a pool trusting only this certificate.
func (p *Pair) Pool() *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AddCert(p.TLS.Leaf)
	return pool
}

// Fingerprint is the SHA-256 of the certificate, lowercase hex.
func (p *Pair) Fingerprint() string {
	sum := sha256.Sum256(p.TLS.Certificate[0])
	return hex.EncodeToString(sum[:])
}

// WriteFiles writes the certificate (0644) and the key (0600).
func (p *Pair) WriteFiles(certPath, keyPath string) error {
	if err := os.WriteFile(keyPath, p.KeyPEM, 0o600); err != nil {
		return err
	}
	return os.WriteFile(certPath, p.CertPEM, 0o644)
}
