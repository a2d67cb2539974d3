package certutil

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/tls"
	"testing"
	"time"
)

// SelfSigned makes ECDSA P-256 certificates (what serve --dev, bench seed
// and the Dovecot test harness use): a full TLS handshake signs with the
// key, and a P-256 signature costs a small fraction of an RSA-2048 one.
// The PEM forms load back as the same pair.
func TestSelfSignedIsP256(t *testing.T) {
	p, err := SelfSigned(time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	k, ok := p.TLS.PrivateKey.(*ecdsa.PrivateKey)
	if !ok || k.Curve != elliptic.P256() {
		t.Fatalf("key is %T, want an ECDSA P-256 key", p.TLS.PrivateKey)
	}
	pair, err := tls.X509KeyPair(p.CertPEM, p.KeyPEM)
	if err != nil {
		t.Fatalf("X509KeyPair of the PEM forms: %v", err)
	}
	if _, ok := pair.PrivateKey.(*ecdsa.PrivateKey); !ok {
		t.Errorf("PEM key loads as %T, want *ecdsa.PrivateKey", pair.PrivateKey)
	}
}
