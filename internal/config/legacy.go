package config

import (
	"net/netip"
	"slices"
	"strings"

	"github.com/postoffice-mail/postoffice/internal/ipgroup"
)

// SDPS is the [sdps] table: Demon Internet's Standard Dial-up POP3 Service
// multi-drops. Each domain is one maildrop, the passwd-file user named
// after the domain; LMTP delivers any local part at the domain into it,
// and "USER john@domain" (or "john+domain") with the drop's password sees
// only john's part. Off (no domains) by default.
type SDPS struct {
	Domains []string `toml:"domains"` // e.g. ["host.example"]
}

// RPOP is the [rpop] table: RPOP logins (RFC 1081), insecure by design
// (docs/security.md). Off by default; when on, a login needs a client in
// trusted_networks, on a source port below 1024, allowed by the map.
type RPOP struct {
	// Enabled turns RPOP on; default false.
	Enabled bool `toml:"enabled"`
	// TrustedNetworks (CIDR prefixes or addresses) are where RPOP clients
	// may connect from; required when enabled.
	TrustedNetworks []string `toml:"trusted_networks"`
	// Map is a file of "LOCALUSER CLIENTHOST CLIENTUSER" lines (CLIENTHOST
	// an address or CIDR prefix); required when enabled.
	Map string `toml:"map"`
}

// Trusted returns rpop.trusted_networks parsed (valid after Parse).
func (r RPOP) Trusted() []netip.Prefix {
	ps, _ := ipgroup.ParsePrefixes(r.TrustedNetworks)
	return ps
}

// KnownWorkarounds are the names pop3.client_workarounds accepts: Dovecot's
// pop3_client_workarounds names, and bare-auth.
func KnownWorkarounds() []string {
	return []string{"outlook-no-nuls", "oe-ns-eoh", "bare-auth"}
}

// validateLegacy checks [sdps], [rpop] and the legacy keys of [pop3].
func (c *Config) validateLegacy() {
	bad := c.file.Bad
	for _, w := range c.POP3.ClientWorkarounds {
		if !slices.Contains(KnownWorkarounds(), w) {
			bad("pop3.client_workarounds", "unknown workaround %q (known: %s)", w, strings.Join(KnownWorkarounds(), ", "))
		}
	}
	for _, d := range c.SDPS.Domains {
		if !validDomain(d) {
			bad("sdps.domains", "%q is not a domain name", d)
		}
	}
	r := c.RPOP
	for _, s := range r.TrustedNetworks {
		if _, err := ipgroup.ParsePrefixes([]string{s}); err != nil {
			bad("rpop.trusted_networks", "%q is neither an address nor a CIDR prefix", s)
		}
	}
	if r.Enabled && len(r.TrustedNetworks) == 0 {
		bad("rpop.trusted_networks", "is required when rpop.enabled is true")
	}
	if r.Enabled && r.Map == "" {
		bad("rpop.map", "is required when rpop.enabled is true")
	}
	if r.Map != "" && !strings.HasPrefix(r.Map, "/") {
		bad("rpop.map", "must be an absolute path, not %q", r.Map)
	}
}

// validDomain reports whether d is a host name: LDH labels and dots.
func validDomain(d string) bool {
	if d == "" || len(d) > 253 || d[0] == '.' || d[0] == '-' || d[len(d)-1] == '.' || strings.Contains(d, "..") {
		return false
	}
	for i := 0; i < len(d); i++ {
		b := d[i]
		if !('a' <= b && b <= 'z' || 'A' <= b && b <= 'Z' || '0' <= b && b <= '9' || b == '-' || b == '.') {
			return false
		}
	}
	return true
}
