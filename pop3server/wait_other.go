//go:build !unix

package pop3server

// Elsewhere RawConn.Read does not wait for readiness: sessions keep their
// read buffer and block in Read.
const rawWaitSupported = false

func inputReady(fd uintptr, b []byte) bool { return true }
