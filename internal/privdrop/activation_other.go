//go:build !unix

package privdrop

import "net"

// Socket is one listening socket passed by systemd.
type Socket struct {
	Name     string
	Listener net.Listener
}

// Activated returns nil: socket activation exists only on Unix.
func Activated() ([]Socket, error) { return nil, nil }

// Named returns the listeners of socks called name.
func Named(socks []Socket, name string) []net.Listener {
	var ls []net.Listener
	for _, s := range socks {
		if s.Name == name {
			ls = append(ls, s.Listener)
		}
	}
	return ls
}
