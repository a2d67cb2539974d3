//go:build unix

package pop3server

import "syscall"

const rawWaitSupported = true

// inputReady reports whether the socket fd has input, end of file or an
// error waiting, without taking any input (MSG_PEEK; the runtime's sockets
// are non-blocking). Anything but EAGAIN counts as ready: the read after
// the wait reports it.
func inputReady(fd uintptr, b []byte) bool {
	_, _, err := syscall.Recvfrom(int(fd), b, syscall.MSG_PEEK)
	return err != syscall.EAGAIN && err != syscall.EWOULDBLOCK
}
