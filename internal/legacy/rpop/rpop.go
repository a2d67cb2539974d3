// Package rpop decides RPOP logins (RFC 1081): "USER name" then "RPOP
// clientuser" instead of PASS. No password crosses the wire; the server
// believes the client host, which says which of its users is asking, and
// believes it only because the connection comes from a privileged port
// (below 1024), which only root can bind on a Unix host. That is the
// whole of RPOP's security, and RFC 1081 itself warns that it is
// insecure: anyone who is root on a trusted host, or who controls a
// machine on a trusted network, or who can spoof its address, reads the
// mail of every user the map lets that host speak for. RFC 1460 dropped
// it. Use it only on a closed network between hosts under one
// administration.
//
// A login is accepted only when all of these hold (Policy.Allow):
//   - the client's address is in the trusted networks;
//   - its source port is below 1024;
//   - the map file has a line "LOCALUSER CLIENTHOST CLIENTUSER" (the
//     format of .rhosts and hosts.equiv with the local user in front)
//     whose local user is USER's name, whose client user is RPOP's
//     argument, and whose host matches the client's address.
//
// CLIENTHOST is an IP address or a CIDR prefix, never a host name: a name
// would be checked through reverse DNS, which whoever controls the
// client's reverse zone answers. "+" and other .rhosts wildcards are not
// accepted. Names are compared exactly. The file is read when the Policy
// is made (when the server starts); '#' starts a comment.
package rpop

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
)

// Options configure New.
type Options struct {
	// TrustedNetworks are where RPOP clients may connect from; none
	// means no client is trusted.
	TrustedNetworks []netip.Prefix
	// MapFile is the path of the "LOCALUSER CLIENTHOST CLIENTUSER" file.
	MapFile string
}

// Policy is the RPOP policy: trusted networks and the user map.
type Policy struct {
	trusted []netip.Prefix
	entries []entry
}

type entry struct {
	local, client string
	host          netip.Prefix
}

// New reads the map file.
func New(opts Options) (*Policy, error) {
	f, err := os.Open(opts.MapFile)
	if err != nil {
		return nil, fmt.Errorf("rpop: %w", err)
	}
	defer f.Close()
	p := &Policy{trusted: opts.TrustedNetworks}
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		if len(fields) != 3 {
			return nil, fmt.Errorf("rpop: %s:%d: want LOCALUSER CLIENTHOST CLIENTUSER", opts.MapFile, n)
		}
		host, err := parseHost(fields[1])
		if err != nil {
			return nil, fmt.Errorf("rpop: %s:%d: %w", opts.MapFile, n, err)
		}
		p.entries = append(p.entries, entry{local: fields[0], host: host, client: fields[2]})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("rpop: %s: %w", opts.MapFile, err)
	}
	return p, nil
}

// parseHost reads CLIENTHOST: an address or a prefix.
func parseHost(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("client host %q is not an address or prefix", s)
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("client host %q is not an address or prefix (host names are not accepted)", s)
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// Reasons for a refusal, for the log.
var (
	ErrNotTCP       = errors.New("rpop: client address is not TCP")
	ErrUntrusted    = errors.New("rpop: client address is not in rpop.trusted_networks")
	ErrUnprivileged = errors.New("rpop: client port is not below 1024")
	ErrNotMapped    = errors.New("rpop: no rpop.map line allows this client user for this user")
)

// Allow reports whether clientUser at remote may log in as user: nil, or
// the reason it may not.
func (p *Policy) Allow(remote net.Addr, user, clientUser string) error {
	ap, ok := addrPort(remote)
	if !ok {
		return ErrNotTCP
	}
	ip := ap.Addr().Unmap()
	trusted := false
	for _, t := range p.trusted {
		trusted = trusted || t.Contains(ip)
	}
	if !trusted {
		return ErrUntrusted
	}
	if ap.Port() >= 1024 {
		return ErrUnprivileged
	}
	for _, e := range p.entries {
		if e.local == user && e.client == clientUser && e.host.Contains(ip) {
			return nil
		}
	}
	return ErrNotMapped
}

// addrPort reads a TCP address, also from a wrapper's String form (a
// PROXY protocol address).
func addrPort(a net.Addr) (netip.AddrPort, bool) {
	switch v := a.(type) {
	case nil:
		return netip.AddrPort{}, false
	case *net.TCPAddr:
		return v.AddrPort(), true
	case *net.UnixAddr:
		return netip.AddrPort{}, false
	}
	ap, err := netip.ParseAddrPort(a.String())
	return ap, err == nil
}
