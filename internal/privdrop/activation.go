//go:build unix

package privdrop

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// listenFDsStart is SD_LISTEN_FDS_START: the first passed descriptor.
const listenFDsStart = 3

// Socket is one listening socket passed by systemd.
type Socket struct {
	// Name is the socket's FileDescriptorName= (systemd.socket(5)), by
	// default the socket unit's name; "unknown" when systemd passed none.
	Name     string
	Listener net.Listener
}

// Activated returns the listening sockets systemd passed to this process,
// in order, or nil when it passed none. It unsets LISTEN_PID, LISTEN_FDS
// and LISTEN_FDNAMES, and closes the passed descriptors once duplicated
// (the listeners hold close-on-exec duplicates). Only stream sockets are accepted; a datagram socket
// is an error (configure postoffice's units with ListenStream=).
func Activated() ([]Socket, error) {
	return activated(os.Getenv, os.Unsetenv, os.Getpid(), listenFDsStart)
}

// activated is Activated with its environment, pid and first descriptor
// injected, for tests.
func activated(getenv func(string) string, unsetenv func(string) error, pid, start int) ([]Socket, error) {
	pidStr, nStr, names := getenv("LISTEN_PID"), getenv("LISTEN_FDS"), getenv("LISTEN_FDNAMES")
	if pidStr == "" && nStr == "" {
		return nil, nil
	}
	defer func() {
		unsetenv("LISTEN_PID")
		unsetenv("LISTEN_FDS")
		unsetenv("LISTEN_FDNAMES")
	}()
	if p, err := strconv.Atoi(pidStr); err != nil || p != pid {
		// Meant for another process (we were exec'd by the one systemd
		// started): take nothing.
		return nil, nil
	}
	n, err := strconv.Atoi(nStr)
	if err != nil || n < 0 || n > 1024 {
		return nil, fmt.Errorf("privdrop: bad LISTEN_FDS %q", nStr)
	}
	var nameList []string
	if names != "" {
		nameList = strings.Split(names, ":")
	}
	socks := make([]Socket, 0, n)
	fail := func(err error) ([]Socket, error) {
		for _, s := range socks {
			s.Listener.Close()
		}
		return nil, err
	}
	for i := range n {
		fd := start + i
		syscall.CloseOnExec(fd)
		name := "unknown"
		if i < len(nameList) && nameList[i] != "" {
			name = nameList[i]
		}
		f := os.NewFile(uintptr(fd), name)
		if f == nil {
			return fail(fmt.Errorf("privdrop: LISTEN_FDS descriptor %d (%s) is not open", fd, name))
		}
		l, err := net.FileListener(f) // dups fd
		f.Close()
		if err != nil {
			return fail(fmt.Errorf("privdrop: socket %d (%s): %w", fd, name, err))
		}
		socks = append(socks, Socket{Name: name, Listener: l})
	}
	return socks, nil
}

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
