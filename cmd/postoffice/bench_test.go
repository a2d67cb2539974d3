package main

import (
	"bytes"
	"crypto/tls"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// bench seed --crlf stores every message with CRLF line ends, named with
// S= equal to W=; the default stays LF; --crlf=F takes a fraction, and a
// fraction out of 0..1 or written after a space is refused with a message.
func TestBenchSeedCRLF(t *testing.T) {
	dir := t.TempDir()
	sizes := regexp.MustCompile(`,S=(\d+),W=(\d+)$`)
	for _, tc := range []struct {
		name string
		args []string
		crlf bool
	}{
		{"default", nil, false},
		{"crlf", []string{"--crlf"}, true},
		{"all", []string{"--crlf=1"}, true},
		{"none", []string{"--crlf=false"}, false},
	} {
		d := filepath.Join(dir, tc.name)
		args := append([]string{"bench", "seed", "--maildir", d, "--messages", "6", "--size-dist", "fixed:2000", "--with-sizes"}, tc.args...)
		if code, _, errs := runCmd(t, "", args...); code != 0 {
			t.Fatalf("%s: bench seed = %d, %q", tc.name, code, errs)
		}
		newDir := filepath.Join(d, "mail", "user00001", "Maildir", "new")
		ents, err := os.ReadDir(newDir)
		if err != nil || len(ents) != 6 {
			t.Fatalf("%s: %d files in new/, %v", tc.name, len(ents), err)
		}
		for _, e := range ents {
			b, err := os.ReadFile(filepath.Join(newDir, e.Name()))
			if err != nil {
				t.Fatal(err)
			}
			lfs, crlfs := bytes.Count(b, []byte("\n")), bytes.Count(b, []byte("\r\n"))
			m := sizes.FindStringSubmatch(e.Name())
			if m == nil {
				t.Fatalf("%s: name %q without S= and W=", tc.name, e.Name())
			}
			if tc.crlf && (crlfs != lfs || m[1] != m[2]) || !tc.crlf && (crlfs != 0 || m[1] == m[2]) {
				t.Errorf("%s: %q has %d LF of which %d CRLF; want CRLF %v (and S=W only then)", tc.name, e.Name(), lfs, crlfs, tc.crlf)
			}
		}
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--crlf", "0.5"}, "--crlf=0.5"},
		{[]string{"--crlf=2"}, "fraction 0..1"},
		{[]string{"--crlf=half"}, "fraction 0..1"},
	} {
		args := append([]string{"bench", "seed", "--maildir", filepath.Join(dir, "bad"), "--messages", "1"}, tc.args...)
		if code, _, errs := runCmd(t, "", args...); code == 0 || !strings.Contains(errs, tc.want) {
			t.Errorf("bench seed %v = %d, %q; want an error saying %q", tc.args, code, errs, tc.want)
		}
	}
}

// bench responder --tls --cert --key serves the given certificate (the
// seed's, so that its handshakes cost what the servers' do); --tls alone a
// fresh self-signed one; mistakes are refused.
func TestBenchResponderTLS(t *testing.T) {
	dir := t.TempDir()
	if code, _, errs := runCmd(t, "", "bench", "seed", "--maildir", dir, "--messages", "1"); code != 0 {
		t.Fatalf("bench seed = %d, %q", code, errs)
	}
	cert, key := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	want, err := tls.LoadX509KeyPair(cert, key)
	if err != nil {
		t.Fatal(err)
	}
	tc, err := responderTLS(true, cert, key)
	if err != nil {
		t.Fatal(err)
	}
	if len(tc.Certificates) != 1 || !bytes.Equal(tc.Certificates[0].Certificate[0], want.Certificate[0]) {
		t.Errorf("responderTLS(--cert %s) does not serve that certificate", cert)
	}
	tc, err = responderTLS(true, "", "")
	if err != nil || len(tc.Certificates) != 1 || bytes.Equal(tc.Certificates[0].Certificate[0], want.Certificate[0]) {
		t.Errorf("responderTLS(--tls) = %v, %v; want a fresh self-signed certificate", tc, err)
	}
	if tc, err := responderTLS(false, "", ""); tc != nil || err != nil {
		t.Errorf("responderTLS(no --tls) = %v, %v; want nil, nil", tc, err)
	}
	for _, bad := range []struct {
		implicit  bool
		cert, key string
		want      string
	}{
		{true, cert, "", "go together"},
		{true, "", key, "go together"},
		{false, cert, key, "need --tls"},
		{true, cert, filepath.Join(dir, "missing.pem"), "missing.pem"},
		{true, key, cert, "--cert"},
	} {
		if _, err := responderTLS(bad.implicit, bad.cert, bad.key); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("responderTLS(%v, %q, %q) = %v; want an error saying %q", bad.implicit, bad.cert, bad.key, err, bad.want)
		}
	}
}
