package rpop

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
)

func newPolicy(t *testing.T, trusted []string, mapText string) (*Policy, error) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "map")
	if err := os.WriteFile(path, []byte(mapText), 0o600); err != nil {
		t.Fatal(err)
	}
	var ps []netip.Prefix
	for _, s := range trusted {
		ps = append(ps, netip.MustParsePrefix(s))
	}
	return New(Options{TrustedNetworks: ps, MapFile: path})
}

func TestAllow(t *testing.T) {
	p, err := newPolicy(t, []string{"192.0.2.0/24", "2001:db8::/32"},
		"# comment\nalice 192.0.2.10 root\nbob 192.0.2.0/28 bob # trailing\n\ncarol 2001:db8::1 carol\n")
	if err != nil {
		t.Fatal(err)
	}
	tcp := func(s string) net.Addr { return net.TCPAddrFromAddrPort(netip.MustParseAddrPort(s)) }
	for _, c := range []struct {
		remote           net.Addr
		user, clientUser string
		want             error
	}{
		{tcp("192.0.2.10:1023"), "alice", "root", nil},
		{tcp("[::ffff:192.0.2.10]:600"), "alice", "root", nil},
		{tcp("192.0.2.3:700"), "bob", "bob", nil},
		{tcp("[2001:db8::1]:513"), "carol", "carol", nil},
		{tcp("192.0.2.10:1024"), "alice", "root", ErrUnprivileged},
		{tcp("198.51.100.1:600"), "alice", "root", ErrUntrusted},
		{tcp("192.0.2.11:600"), "alice", "root", ErrNotMapped},
		{tcp("192.0.2.10:600"), "alice", "bob", ErrNotMapped},
		{tcp("192.0.2.10:600"), "bob", "root", ErrNotMapped},
		{tcp("192.0.2.20:600"), "bob", "bob", ErrNotMapped},
		{&net.UnixAddr{Name: "/x", Net: "unix"}, "alice", "root", ErrNotTCP},
		{nil, "alice", "root", ErrNotTCP},
	} {
		if err := p.Allow(c.remote, c.user, c.clientUser); !errors.Is(err, c.want) && err != c.want {
			t.Errorf("Allow(%v, %q, %q) = %v, want %v", c.remote, c.user, c.clientUser, err, c.want)
		}
	}
}

func TestNewRefuses(t *testing.T) {
	for _, m := range []string{
		"alice host.example root\n", // host names are not accepted
		"alice + root\n",            // nor .rhosts wildcards
		"alice 192.0.2.1\n",         // three fields
		"alice 192.0.2.1/99 root\n",
	} {
		if _, err := newPolicy(t, []string{"192.0.2.0/24"}, m); err == nil {
			t.Errorf("New accepted map %q", m)
		}
	}
	if _, err := New(Options{MapFile: filepath.Join(t.TempDir(), "missing")}); err == nil {
		t.Error("New accepted a missing map file")
	}
	// No trusted network: nobody.
	p, err := newPolicy(t, nil, "alice 192.0.2.10 root\n")
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Allow(net.TCPAddrFromAddrPort(netip.MustParseAddrPort("192.0.2.10:600")), "alice", "root"); err != ErrUntrusted {
		t.Errorf("Allow without trusted networks = %v", err)
	}
}
