package kerberos

import (
	"bytes"
	"errors"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/postoffice-mail/postoffice/internal/testutil/krbtest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	krbtest.Stop()
	os.Exit(code)
}

var loopback = &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000}

// setup returns an acceptor for pop/localhost and a credential cache of
// alice's.
func setup(t *testing.T, skew time.Duration) (*krbtest.Realm, *Acceptor, InitiatorOptions) {
	r := krbtest.Get(t)
	kt := r.Keytab(t, "pop/"+krbtest.Host)
	r.AddUser(t, "alice", "alice-pw")
	a, err := NewAcceptor(AcceptorOptions{Keytab: kt, Service: "pop", Realm: krbtest.RealmName, Hostname: krbtest.Host, MaxClockSkew: skew})
	if err != nil {
		t.Fatal(err)
	}
	cc := r.Kinit(t, "alice", "alice-pw")
	return r, a, InitiatorOptions{Config: r.Config, CCache: cc}
}

// TestGSSRoundTrip runs our initiator against our acceptor through the real
// KDC: context, AP-REP, and wrap tokens both ways.
func TestGSSRoundTrip(t *testing.T) {
	_, a, io := setup(t, 0)
	ic, tok, err := Initiate(io, "pop", krbtest.Host)
	if err != nil {
		t.Fatal(err)
	}
	ac, rep, err := a.AcceptGSS(tok, loopback)
	if err != nil {
		t.Fatal(err)
	}
	if got := ac.Client.String(); got != krbtest.Principal("alice") {
		t.Errorf("client = %q, want %q", got, krbtest.Principal("alice"))
	}
	if rep == nil {
		t.Fatal("no AP-REP for a mutual request")
	}
	if err := ic.Continue(rep); err != nil {
		t.Fatal(err)
	}
	w, err := ac.Wrap([]byte{1, 0, 0, 0})
	if err != nil {
		t.Fatal(err)
	}
	got, err := ic.Unwrap(w)
	if err != nil || !bytes.Equal(got, []byte{1, 0, 0, 0}) {
		t.Fatalf("initiator Unwrap = %x, %v", got, err)
	}
	w, _ = ic.Wrap([]byte("\x01\x00\x00\x00alice"))
	got, err = ac.Unwrap(w)
	if err != nil || string(got) != "\x01\x00\x00\x00alice" {
		t.Fatalf("acceptor Unwrap = %q, %v", got, err)
	}
	// A token of the acceptor's is not taken back by the acceptor, and a
	// flipped bit fails the checksum.
	if _, err := ac.Unwrap(w[:len(w)-1]); err == nil {
		t.Error("truncated token accepted")
	}
	w2, _ := ac.Wrap([]byte("x"))
	if _, err := ac.Unwrap(w2); err == nil {
		t.Error("acceptor took its own token")
	}
}

// TestReplayRefused sends the same AP-REQ twice.
func TestReplayRefused(t *testing.T) {
	_, a, io := setup(t, 0)
	_, tok, err := Initiate(io, "pop", krbtest.Host)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := a.AcceptGSS(tok, loopback); err != nil {
		t.Fatal(err)
	}
	_, _, err = a.AcceptGSS(tok, loopback)
	var ke *KRBError
	if !errors.Is(err, ErrRefused) || !errors.As(err, &ke) || ke.Code != 34 {
		t.Fatalf("replay: err = %v, want KRB_AP_ERR_REPEAT", err)
	}
}

// TestOtherServiceRefused presents a ticket for host/localhost to the pop
// acceptor whose keytab also holds host/localhost's key: the name check,
// not only the key, must refuse it.
func TestOtherServiceRefused(t *testing.T) {
	r, _, io := setup(t, 0)
	ktHost := r.Keytab(t, "host/"+krbtest.Host)
	ktPop := r.Keytab(t, "pop/"+krbtest.Host)
	both, _ := os.ReadFile(ktHost)
	pop, _ := os.ReadFile(ktPop)
	merged := t.TempDir() + "/merged.keytab"
	os.WriteFile(merged, append(both, pop[2:]...), 0o600) // a two-octet version (05 02), then entries
	a, err := NewAcceptor(AcceptorOptions{Keytab: merged, Service: "pop", Realm: krbtest.RealmName})
	if err != nil {
		t.Fatal(err)
	}
	_, tok, err := Initiate(io, "host", krbtest.Host)
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = a.AcceptGSS(tok, loopback)
	var ke *KRBError
	if !errors.As(err, &ke) || ke.Code != 35 {
		t.Fatalf("ticket for host/: err = %v, want KRB_AP_ERR_NOT_US", err)
	}
}

// TestExpiredTicketRefused uses a service ticket of two seconds' life
// after it ended, with an acceptor whose skew is one second.
func TestExpiredTicketRefused(t *testing.T) {
	r, a, _ := setup(t, time.Second)
	cc := r.Kinit(t, "alice", "alice-pw", "-l", "2s", "-S", "pop/"+krbtest.Host)
	tgt := r.Kinit(t, "alice", "alice-pw", "-l", "2s")
	time.Sleep(4 * time.Second)
	tok := apreqFromCCache(t, cc, "pop/"+krbtest.Host)
	_, _, err := a.AcceptGSS(tok, loopback)
	if !errors.Is(err, ErrRefused) {
		t.Fatalf("expired ticket: err = %v, want ErrRefused", err)
	}
	// The initiator says the user's ticket expired, rather than the
	// KDC's refusal of the expired TGT in gokrb5's words.
	_, _, err = Initiate(InitiatorOptions{Config: r.Config, CCache: tgt}, "pop", krbtest.Host)
	if err == nil || !strings.Contains(err.Error(), "expired") || !strings.Contains(err.Error(), "kinit") {
		t.Fatalf("Initiate with an expired TGT: err = %v, want one saying it expired and to run kinit", err)
	}
}

// apreqFromCCache is APReqFromCCache framed for GSSAPI.
func apreqFromCCache(t *testing.T, path, spn string) []byte {
	t.Helper()
	b, err := APReqFromCCache(path, spn)
	if err != nil {
		t.Fatal(err)
	}
	return GSSToken(b)
}

func TestNewAcceptorWrongPrincipal(t *testing.T) {
	r := krbtest.Get(t)
	kt := r.Keytab(t, "imap/"+krbtest.Host)
	_, err := NewAcceptor(AcceptorOptions{Keytab: kt, Service: "pop", Realm: krbtest.RealmName})
	if err == nil {
		t.Fatal("keytab without pop/ accepted")
	}
	if _, err := NewAcceptor(AcceptorOptions{Keytab: t.TempDir() + "/none"}); err == nil {
		t.Fatal("missing keytab accepted")
	}
}

func TestMapper(t *testing.T) {
	mapf := t.TempDir() + "/map"
	os.WriteFile(mapf, []byte("# comment\nadmin/root@R carol\n"), 0o600)
	for _, tc := range []struct {
		mode string
		p    Principal
		want string // "" means ErrNoUser
	}{
		{MapStripRealm, Principal{[]string{"alice"}, "R"}, "alice"},
		{MapStripRealm, Principal{[]string{"alice"}, "OTHER"}, ""},
		{MapStripRealm, Principal{[]string{"alice", "admin"}, "R"}, ""},
		{MapKeep, Principal{[]string{"alice"}, "R"}, "alice@R"},
		{MapFile, Principal{[]string{"admin", "root"}, "R"}, "carol"},
		{MapFile, Principal{[]string{"alice"}, "R"}, ""},
	} {
		m, err := NewMapper(MapperOptions{Mode: tc.mode, Realm: "R", File: mapf})
		if err != nil {
			t.Fatal(err)
		}
		got, err := m.User(tc.p)
		if tc.want == "" {
			if !errors.Is(err, ErrNoUser) {
				t.Errorf("%s User(%v) = %q, %v; want ErrNoUser", tc.mode, tc.p, got, err)
			}
		} else if got != tc.want || err != nil {
			t.Errorf("%s User(%v) = %q, %v; want %q", tc.mode, tc.p, got, err, tc.want)
		}
	}
	m, _ := NewMapper(MapperOptions{Realm: "R", Authorize: map[string][]string{"admin@R": {"bob"}}})
	a := Principal{[]string{"admin"}, "R"}
	if !m.MayActFor(a, "admin", "bob") || m.MayActFor(a, "admin", "carol") || !m.MayActFor(a, "admin", "admin") {
		t.Error("MayActFor does not follow Authorize")
	}
}
