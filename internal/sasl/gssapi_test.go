package sasl

import (
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/postoffice-mail/postoffice/internal/auth/kerberos"
)

// testAcceptor returns an acceptor for pop/localhost@TEST over a keytab
// written here with a made-up key: enough for every path that refuses a
// token before a ticket decrypts (the fuzz target, malformed tokens). The
// exchanges with real tickets run against a real KDC in
// internal/auth/kerberos and internal/e2e.
func testAcceptor(t testing.TB) (*kerberos.Acceptor, *kerberos.Mapper) {
	t.Helper()
	str := func(b []byte, s string) []byte {
		b = binary.BigEndian.AppendUint16(b, uint16(len(s)))
		return append(b, s...)
	}
	var e []byte
	e = binary.BigEndian.AppendUint16(e, 2)
	e = str(e, "TEST")
	e = str(e, "pop")
	e = str(e, "localhost")
	e = binary.BigEndian.AppendUint32(e, 3)
	e = binary.BigEndian.AppendUint32(e, 1700000000)
	e = append(e, 2)
	e = binary.BigEndian.AppendUint16(e, 18)
	e = str(e, strings.Repeat("k", 32))
	kt := append([]byte{5, 2}, binary.BigEndian.AppendUint32(nil, uint32(len(e)))...)
	kt = append(kt, e...)
	path := filepath.Join(t.TempDir(), "pop.keytab")
	if err := os.WriteFile(path, kt, 0o600); err != nil {
		t.Fatal(err)
	}
	a, err := kerberos.NewAcceptor(kerberos.AcceptorOptions{Keytab: path})
	if err != nil {
		t.Fatal(err)
	}
	m, err := kerberos.NewMapper(kerberos.MapperOptions{Realm: a.Realm()})
	if err != nil {
		t.Fatal(err)
	}
	return a, m
}

// GSSAPI is offered whenever a keytab is configured, even when Enabled
// does not list it, and never without one.
func TestGSSAPIOffered(t *testing.T) {
	a, mp := testAcceptor(t)
	m, err := New(Options{Users: &fakeDB{}, GSSAPI: a, GSSAPIMapper: mp, Enabled: []string{"PLAIN"}})
	if err != nil {
		t.Fatal(err)
	}
	if got := m.Available(nil); len(got) != 2 || got[0] != GSSAPI {
		t.Errorf("Available = %v, want GSSAPI first, then PLAIN", got)
	}
	m, err = New(Options{Users: &fakeDB{}})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range m.Available(nil) {
		if n == GSSAPI {
			t.Error("GSSAPI offered without a keytab")
		}
	}
	if _, err := New(Options{Users: &fakeDB{}, Enabled: []string{"GSSAPI"}}); err == nil {
		t.Error("GSSAPI enabled without a keytab")
	}
}

// A client without a ticket (an empty response, or anything that is not
// a Kerberos AP-REQ) fails as a refused login, not as a malformed message.
func TestGSSAPINoTicket(t *testing.T) {
	a, mp := testAcceptor(t)
	m, err := New(Options{Users: &fakeDB{}, GSSAPI: a, GSSAPIMapper: mp})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range [][]byte{{}, []byte("not a token"), {0x60, 0x03, 0x06, 0x01, 0x00}} {
		s, err := m.Start(t.Context(), GSSAPI, nil)
		if err != nil {
			t.Fatal(err)
		}
		if ch, done, err := s.Next(t.Context(), nil); err != nil || done || len(ch) != 0 {
			t.Fatalf("first Next without initial response = %q, %v, %v; want an empty challenge", ch, done, err)
		}
		if _, _, err := s.Next(t.Context(), r); !errors.Is(err, ErrAuthFailed) {
			t.Errorf("Next(%q) = %v, want ErrAuthFailed", r, err)
		}
	}
}
