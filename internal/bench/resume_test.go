package bench

import (
	"context"
	"crypto/tls"
	"net"
	"testing"
	"time"

	"github.com/postoffice-mail/postoffice/internal/certutil"
)

// startTLSResponder serves msgs over implicit TLS with cert until the test
// ends.
func startTLSResponder(t *testing.T, msgs [][]byte, conf *tls.Config) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- NewResponder(msgs, conf).Serve(ctx, l) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("responder: %v", err)
		}
	})
	return l.Addr().String()
}

// The resume scenario counts a session only if its TLS handshake resumed
// the worker's previous session: against a server with session tickets
// every session resumes; against one without, every session is an error of
// kind tls, and none counts.
func TestResume(t *testing.T) {
	t.Parallel()
	p, err := certutil.SelfSigned(time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	client := &tls.Config{ServerName: "localhost", RootCAs: p.Pool(), MinVersion: tls.VersionTLS12}
	for _, tc := range []struct {
		name      string
		server    *tls.Config
		wantOK    int
		wantTLSEr int
	}{
		{"tickets", &tls.Config{Certificates: []tls.Certificate{p.TLS}}, 6, 0},
		{"tickets TLS 1.2", &tls.Config{Certificates: []tls.Certificate{p.TLS}, MaxVersion: tls.VersionTLS12}, 6, 0},
		{"no tickets", &tls.Config{Certificates: []tls.Certificate{p.TLS}, SessionTicketsDisabled: true}, 0, 6},
	} {
		addr := startTLSResponder(t, tricky, tc.server)
		res, err := Run(context.Background(), Options{
			Addr: addr, TLS: TLSImplicit, TLSConf: client, Users: users(2), Scenario: Resume,
			Concurrency: 2, Sessions: 6, Timeout: 10 * time.Second,
		})
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if res.Sessions != tc.wantOK || res.Errors != tc.wantTLSEr || res.ErrorKinds[string(kindTLS)] != tc.wantTLSEr {
			t.Errorf("%s: %d sessions, %d errors %v %q; want %d sessions, %d tls errors",
				tc.name, res.Sessions, res.Errors, res.ErrorKinds, res.ErrorSamples, tc.wantOK, tc.wantTLSEr)
		}
	}
	if _, err := Run(context.Background(), Options{Addr: "127.0.0.1:1", Users: users(1), Scenario: Resume, Sessions: 1}); err == nil {
		t.Error("resume without TLS: no error, want one")
	}
}
