package config

import "net"

// POP2 is the [pop2] table: POP2 (RFC 937) and POP1 (RFC 918) on one
// listener, port 109 in production. Off unless listen is set. Both send
// passwords in the clear and have no TLS: logins from other than loopback
// follow auth.allow_plaintext.
type POP2 struct {
	Listen []string `toml:"listen"` // TCP addresses, e.g. ["0.0.0.0:109"]
}

// POP4 is the [pop4] table: the commands of the 2003 POP4 proposal
// (folders, MIME parts, flags; docs/pop4.md) on the POP3 listeners. Off by
// default; it needs the Maildir store, whose Maildir++ folders it serves.
type POP4 struct {
	Enabled bool `toml:"enabled"`
}

// validateFamily checks [pop2] and [pop4].
func (c *Config) validateFamily() {
	bad := c.file.Bad
	for _, a := range c.POP2.Listen {
		if _, _, err := net.SplitHostPort(a); err != nil {
			bad("pop2.listen", "%q is not host:port", a)
		}
	}
}
