//go:build !linux

package pop3server

// setCork does nothing here: TCP_CORK is Linux's (tcpcork_linux.go).
func setCork(rc interface {
	Control(func(fd uintptr)) error
}, on bool) {
}
