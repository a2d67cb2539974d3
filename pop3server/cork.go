package pop3server

import (
	"net"
	"sync"
)

// corkConn sits under a TLS layer (crypto/tls writes each record of at
// most 16 KiB to its connection with its own write) and, while corked,
// gathers the records of one large write so that they leave in one system
// call: a 128 KiB chunk of a RETR is one write instead of eight. Uncorked,
// it writes straight through, so the handshake and the alerts go out as
// crypto/tls sends them.
//
// The session corks around each chunk it hands to the TLS layer and
// writes what was gathered itself (deadlineWriter.writeCorked). The mutex
// serialises the buffer with a write from another goroutine (a
// close_notify sent while the session writes): such a write joins the
// buffer and leaves with it.
type corkConn struct {
	net.Conn
	mu  sync.Mutex
	buf *[]byte // while corked, else nil
}

// corkBufSize holds one chunk's records: the plaintext plus 5 octets of
// header and up to 17 of tag and padding per record, and room to spare for
// an alert.
const corkBufSize = writeChunk + writeChunk/16 + 512

var corkBufs = sync.Pool{New: func() any { b := make([]byte, 0, corkBufSize); return &b }}

// corkOf wraps nc for a TLS layer to sit on.
func corkOf(nc net.Conn) *corkConn { return &corkConn{Conn: nc} }

// NetConn returns the connection under c, for code that looks through
// wrappers for the socket (the peer address, a half-close).
func (c *corkConn) NetConn() net.Conn { return c.Conn }

func (c *corkConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	if c.buf == nil {
		c.mu.Unlock()
		return c.Conn.Write(p)
	}
	*c.buf = append(*c.buf, p...)
	c.mu.Unlock()
	return len(p), nil
}

// cork starts gathering writes into a pooled buffer, which it returns.
func (c *corkConn) cork() *[]byte {
	b := corkBufs.Get().(*[]byte)
	c.mu.Lock()
	c.buf = b
	c.mu.Unlock()
	return b
}

// uncork goes back to writing through; what was gathered stays in the
// buffer cork returned, for the caller to write.
func (c *corkConn) uncork() {
	c.mu.Lock()
	c.buf = nil
	c.mu.Unlock()
}

// releaseCorkBuf gives a buffer from cork back to the pool once written.
func releaseCorkBuf(b *[]byte) {
	if cap(*b) <= 2*corkBufSize {
		*b = (*b)[:0]
		corkBufs.Put(b)
	}
}
