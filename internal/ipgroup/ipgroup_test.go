package ipgroup

import (
	"net"
	"net/netip"
	"testing"
)

func TestKey(t *testing.T) {
	t.Parallel()
	tests := []struct {
		g    Grouper
		in   string
		want string
	}{
		{Grouper{}, "192.0.2.7", "192.0.2.7/32"},
		{Grouper{}, "::ffff:192.0.2.7", "192.0.2.7/32"},
		{Grouper{}, "2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"},
		{Grouper{}, "fe80::1%eth0", "fe80::/64"},
		{Grouper{IPv6Prefix: 48}, "2001:db8:1:2:3:4:5:6", "2001:db8:1::/48"},
		{Grouper{IPv4Prefix: 24}, "192.0.2.7", "192.0.2.0/24"},
		{Grouper{IPv6Prefix: 128}, "2001:db8::1", "2001:db8::1/128"},
	}
	for _, tt := range tests {
		got := tt.g.Key(netip.MustParseAddr(tt.in))
		if got.String() != tt.want {
			t.Errorf("%+v.Key(%q) = %v, want %v", tt.g, tt.in, got, tt.want)
		}
	}
	if k := (Grouper{}).Key(netip.Addr{}); k.IsValid() {
		t.Errorf("Key(invalid) = %v, want zero", k)
	}
	if err := (Grouper{IPv6Prefix: 129}).Validate(); err == nil {
		t.Error("Validate(/129) = nil, want error")
	}
}

func TestAddr(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   net.Addr
		want string
		ok   bool
	}{
		{&net.TCPAddr{IP: net.ParseIP("192.0.2.1"), Port: 110}, "192.0.2.1", true},
		{&net.TCPAddr{IP: net.ParseIP("2001:db8::1"), Port: 110, Zone: "eth0"}, "2001:db8::1", true},
		{&net.UnixAddr{Name: "/run/x", Net: "unix"}, "invalid IP", false},
		{nil, "invalid IP", false},
	}
	for _, tt := range tests {
		got, ok := Addr(tt.in)
		if got.String() != tt.want || ok != tt.ok {
			t.Errorf("Addr(%v) = %v, %v; want %v, %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
}

func TestParsePrefixes(t *testing.T) {
	t.Parallel()
	ps, err := ParsePrefixes([]string{"10.0.0.0/8", "192.0.2.1", "2001:db8::/32", "10.1.2.3/8"})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"10.0.0.0/8", "192.0.2.1/32", "2001:db8::/32", "10.0.0.0/8"}
	for i, p := range ps {
		if p.String() != want[i] {
			t.Errorf("ParsePrefixes[%d] = %v, want %v", i, p, want[i])
		}
	}
	if !Contains(ps, netip.MustParseAddr("::ffff:10.9.9.9")) || Contains(ps, netip.MustParseAddr("192.0.2.2")) {
		t.Error("Contains gives wrong answers")
	}
	if _, err := ParsePrefixes([]string{"nope"}); err == nil {
		t.Error("ParsePrefixes(nope) = nil error")
	}
}
