package pop3server

import (
	"context"
	"crypto/tls"
	"io"
	"net"
)

// Backend makes one Session per connection.
type Backend interface {
	// NewSession is called when a client connects, before the greeting. An
	// error refuses the connection with -ERR [SYS/TEMP].
	NewSession(ctx context.Context, c *Conn) (Session, error)
}

// Session is the backend's side of one connection in the AUTHORIZATION
// state (RFC 1939 §4).
type Session interface {
	// Login checks a USER/PASS pair and, on success, opens the user's
	// maildrop under an exclusive lock. A credential failure should be an
	// *Error with CodeAuth; a busy maildrop an *Error with CodeInUse. Any
	// other error is answered with -ERR [SYS/TEMP] and logged.
	Login(ctx context.Context, username, password string) (Mailbox, error)
	// Close is called once when the connection ends, after the mailbox (if
	// any) has been closed.
	Close() error
}

// MessageInfo describes one message of a maildrop snapshot.
type MessageInfo struct {
	Size int64  // octets RETR sends, CRLF form, before dot-stuffing
	UID  string // UIDL: 1-70 characters of 0x21-0x7E, unique, stable
}

// Mailbox is an opened, locked maildrop: the TRANSACTION state.
type Mailbox interface {
	// Messages returns the snapshot taken at login; message n of the
	// session is Messages()[n-1]. It must not change during the session.
	Messages() []MessageInfo
	// Open returns the stored bytes of message i (0-based). Line ends may be
	// LF or CRLF; the engine converts them and dot-stuffs.
	Open(ctx context.Context, i int) (io.ReadCloser, error)
	// Commit removes the listed messages (0-based, ascending) durably. It is
	// called only for QUIT in TRANSACTION (the UPDATE state, RFC 1939 §6).
	Commit(ctx context.Context, deleted []int) error
	// Close releases the maildrop. It deletes nothing.
	Close() error
}

// Conn is what a backend may know about a connection.
type Conn struct {
	ID         string // unique per server process, for logs
	RemoteAddr net.Addr
	LocalAddr  net.Addr
	// TLS is the connection state when TLS is active, else nil.
	TLS *tls.ConnectionState
}
