// Package ipgroup turns client addresses into the keys that postoffice's
// abuse limits count by: an IPv4 address alone (or a configurable prefix),
// an IPv6 address by its /64 (or another prefix length), because one
// subscriber is routinely given a whole /64 (RFC 6177) and could otherwise
// rotate through 2^64 addresses to escape every per-address counter.
//
// It also holds the small helpers shared by internal/ratelimit and
// internal/netlimit: reading a netip.Addr out of a net.Addr and matching
// against a list of trusted prefixes.
package ipgroup

import (
	"fmt"
	"net"
	"net/netip"
)

// Defaults for Grouper's zero values.
const (
	DefaultIPv4Prefix = 32
	DefaultIPv6Prefix = 64
)

// Grouper maps addresses to group keys. The zero value groups IPv4 by /32
// and IPv6 by /64.
type Grouper struct {
	IPv4Prefix int // 1-32; 0 means 32
	IPv6Prefix int // 1-128; 0 means 64 (Dovecot groups by /48)
}

// Validate reports prefix lengths out of range.
func (g Grouper) Validate() error {
	if g.IPv4Prefix < 0 || g.IPv4Prefix > 32 {
		return fmt.Errorf("ipgroup: IPv4 prefix /%d out of range 1-32", g.IPv4Prefix)
	}
	if g.IPv6Prefix < 0 || g.IPv6Prefix > 128 {
		return fmt.Errorf("ipgroup: IPv6 prefix /%d out of range 1-128", g.IPv6Prefix)
	}
	return nil
}

// Key returns the group of a: the masked prefix containing it. IPv4-mapped
// IPv6 addresses (::ffff:192.0.2.1) count as the IPv4 address, and zones
// are dropped. An invalid address gives the zero Prefix.
func (g Grouper) Key(a netip.Addr) netip.Prefix {
	if !a.IsValid() {
		return netip.Prefix{}
	}
	a = a.Unmap().WithZone("")
	bits := g.IPv6Prefix
	if bits <= 0 || bits > 128 {
		bits = DefaultIPv6Prefix
	}
	if a.Is4() {
		bits = g.IPv4Prefix
		if bits <= 0 || bits > 32 {
			bits = DefaultIPv4Prefix
		}
	}
	p, _ := a.Prefix(bits)
	return p
}

// Addr returns the IP address of a *net.TCPAddr, *net.UDPAddr or
// *net.IPAddr, unmapped and without zone; ok is false for anything else
// (net.Pipe, Unix sockets).
func Addr(a net.Addr) (ip netip.Addr, ok bool) {
	switch a := a.(type) {
	case *net.TCPAddr:
		ip, ok = netip.AddrFromSlice(a.IP)
	case *net.UDPAddr:
		ip, ok = netip.AddrFromSlice(a.IP)
	case *net.IPAddr:
		ip, ok = netip.AddrFromSlice(a.IP)
	default:
		if a == nil {
			return netip.Addr{}, false
		}
		ap, err := netip.ParseAddrPort(a.String())
		if err != nil {
			return netip.Addr{}, false
		}
		ip, ok = ap.Addr(), true
	}
	if !ok {
		return netip.Addr{}, false
	}
	return ip.Unmap().WithZone(""), true
}

// Contains reports whether any prefix in ps contains a (unmapped).
func Contains(ps []netip.Prefix, a netip.Addr) bool {
	if !a.IsValid() {
		return false
	}
	a = a.Unmap().WithZone("")
	for _, p := range ps {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// ParsePrefixes parses CIDR prefixes or bare addresses (taken as /32 or
// /128), as written in a config file. The error names the bad entry.
func ParsePrefixes(ss []string) ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(ss))
	for _, s := range ss {
		if p, err := netip.ParsePrefix(s); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(s)
		if err != nil {
			return nil, fmt.Errorf("ipgroup: %q is neither an address nor a CIDR prefix", s)
		}
		a = a.Unmap().WithZone("")
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, nil
}
