package pop3server

import "syscall"

// setCork sets or clears TCP_CORK (tcp(7)) on the socket rc: while set,
// the kernel sends only full segments, and clearing it sends the rest. A
// message sent with sendfile(2) is its status line, the file and the
// terminating line: corked, they leave together, and the client is woken
// once for them instead of three times.
func setCork(rc interface {
	Control(func(fd uintptr)) error
}, on bool) {
	v := 0
	if on {
		v = 1
	}
	rc.Control(func(fd uintptr) {
		syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_CORK, v)
	})
}
