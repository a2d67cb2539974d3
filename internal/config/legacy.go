package config

import (
	"net"
	"net/netip"
	"slices"
	"strconv"
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

// XTND is the [xtnd] table: where the messages a client sends with XTND
// XMIT go (pop3.client_workarounds "xtnd-xmit", which needs relay). The
// envelope sender is always the logged-in user, never the From field.
type XTND struct {
	// Relay is the host:port of the SMTP server that takes the messages:
	// a submission service (port 587) or the local MTA. Required for
	// "xtnd-xmit".
	Relay string `toml:"relay"`
	// StartTLS starts TLS (RFC 3207) before anything else, and fails
	// without it; required unless relay is a loopback address.
	StartTLS bool `toml:"starttls"`
	// CAFile holds PEM roots to verify the relay with, instead of the
	// system's; needs starttls.
	CAFile string `toml:"ca_file"`
	// User is the name to authenticate as (AUTH PLAIN, else LOGIN); needs
	// starttls and password_file.
	User string `toml:"user"`
	// PasswordFile holds user's password on its first line.
	PasswordFile string `toml:"password_file"`
	// SenderDomain completes a login name without "@" into the envelope
	// sender (alice becomes alice@sender_domain); a bare login name
	// cannot send without it.
	SenderDomain string `toml:"sender_domain"`
	// MaxMessageSize bounds a message in octets. Default 10 MiB.
	MaxMessageSize int64 `toml:"max_message_size"`
	// MaxRecipients bounds the addresses of To, Cc and Bcc together.
	// Default 100.
	MaxRecipients int `toml:"max_recipients"`
}

// KnownWorkarounds are the names pop3.client_workarounds accepts: Dovecot's
// pop3_client_workarounds names, bare-auth and xtnd-xmit.
func KnownWorkarounds() []string {
	return []string{"outlook-no-nuls", "oe-ns-eoh", "bare-auth", "xtnd-xmit"}
}

// validateLegacy checks [sdps], [rpop] and the legacy keys of [pop3].
func (c *Config) validateLegacy() {
	bad := c.file.Bad
	for _, w := range c.POP3.ClientWorkarounds {
		if !slices.Contains(KnownWorkarounds(), w) {
			bad("pop3.client_workarounds", "unknown workaround %q (known: %s)", w, strings.Join(KnownWorkarounds(), ", "))
		}
	}
	c.validateXTND()
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

// validateXTND checks [xtnd] as the fetch accounts' smtp_* keys are
// checked: no password in the clear over the network, files by absolute
// path, and "xtnd-xmit" only with a relay.
func (c *Config) validateXTND() {
	bad := c.file.Bad
	x := c.XTND
	if slices.Contains(c.POP3.ClientWorkarounds, "xtnd-xmit") && x.Relay == "" {
		bad("pop3.client_workarounds", `"xtnd-xmit" needs xtnd.relay (the SMTP server that sends the messages)`)
	}
	if x.Relay != "" {
		host, port, err := net.SplitHostPort(x.Relay)
		if n, perr := strconv.Atoi(port); err != nil || host == "" || perr != nil || n < 1 || n > 65535 {
			bad("xtnd.relay", "%q is not host:port", x.Relay)
		} else if !x.StartTLS && !loopbackHost(host) {
			bad("xtnd.starttls", "is required for a relay that is not on loopback: messages and the relay password would cross the network in the clear")
		}
	}
	if x.CAFile != "" && !x.StartTLS {
		bad("xtnd.ca_file", "needs xtnd.starttls = true")
	}
	if (x.User == "") != (x.PasswordFile == "") {
		bad("xtnd.user", "xtnd.user and xtnd.password_file go together")
	}
	if x.User != "" && !x.StartTLS {
		bad("xtnd.user", "needs xtnd.starttls = true: the password would cross the network in the clear")
	}
	for _, k := range []struct{ key, path string }{{"xtnd.ca_file", x.CAFile}, {"xtnd.password_file", x.PasswordFile}} {
		if k.path != "" && !strings.HasPrefix(k.path, "/") {
			bad(k.key, "must be an absolute path, not %q", k.path)
		}
	}
	if x.SenderDomain != "" && !validDomain(x.SenderDomain) {
		bad("xtnd.sender_domain", "%q is not a domain name", x.SenderDomain)
	}
	if x.MaxMessageSize < 1 {
		bad("xtnd.max_message_size", "must be at least 1")
	}
	if x.MaxRecipients < 1 {
		bad("xtnd.max_recipients", "must be at least 1")
	}
}

// loopbackHost reports whether host is "localhost" or a loopback address.
func loopbackHost(host string) bool {
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}
