package pop3server

import (
	"bufio"
	"crypto/tls"
	"errors"
	"net"
	"sync"
	"time"
)

// Session buffers. A session writes its replies through a small buffer
// (smallBufSize) and reads commands through a read buffer (readBufSize); a
// long reply (RETR, TOP, a LIST or UIDL listing) borrows a large one
// (largeBufSize) and gives it back at the next flush. Flushes happen only
// when no pipelined command is waiting (RFC 2449 §6.6), so a burst of
// pipelined RETRs keeps the large buffer and goes out in large writes.
//
// All three come from pools shared by all sessions. A session waiting for
// its client holds none: it gives back the small buffer, and the read
// buffer too where it can wait for input on the socket itself (wait.go),
// and takes them again when input arrives. c.bw, c.small and c.br are nil
// only inside that wait (readLine): every other path may write and read.
const (
	smallBufSize = 4 << 10
	readBufSize  = 1 << 10
	largeBufSize = 128 << 10
)

var (
	smallBufs = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, smallBufSize) }}
	readBufs  = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, readBufSize) }}
	largeBufs = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, largeBufSize) }}
)

// replyWriter is where the session's buffered writers send their octets:
// the client, through deadlineWriter; while a large buffer is borrowed the
// small buffer empties into that instead, so replies keep their order
// without a system call for the few octets written before the switch.
type replyWriter struct {
	large *bufio.Writer // borrowed, else nil
	dw    deadlineWriter
}

func (w *replyWriter) Write(p []byte) (int, error) {
	if w.large != nil {
		return w.large.Write(p)
	}
	return w.dw.Write(p)
}

// setLayer makes the session read and write through rw. Every write has
// its own deadline (deadlineWriter).
func (c *conn) setLayer(rw net.Conn) {
	c.releaseLarge()
	c.layer = rw
	c.out.dw = deadlineWriter{w: rw, nc: c.nc, d: c.srv.opts.WriteTimeout}
	if tc, ok := rw.(*tls.Conn); ok {
		c.out.dw.cork, _ = tc.NetConn().(*corkConn)
	}
	// A fresh read buffer: anything the client pipelined on the old layer
	// is dropped (STLS).
	c.putReader()
	c.takeReader()
	c.takeWriter()
}

// takeReader gives the session a read buffer on the current layer.
func (c *conn) takeReader() {
	if c.br == nil {
		c.br = readBufs.Get().(*bufio.Reader)
		c.br.Reset(c.layer)
	}
}

// putReader gives the read buffer back. What it holds is dropped: call it
// only when nothing is buffered, or at the end.
func (c *conn) putReader() {
	if c.br != nil {
		c.br.Reset(nil)
		readBufs.Put(c.br)
		c.br = nil
	}
}

// takeWriter gives the session a small reply buffer.
func (c *conn) takeWriter() {
	if c.small == nil {
		c.small = smallBufs.Get().(*bufio.Writer)
		c.small.Reset(&c.out)
		c.bw = c.small
	}
}

// putWriter gives the small buffer back, and a large one if borrowed.
// What they hold is dropped: call it only after a flush, or at the end.
func (c *conn) putWriter() {
	c.releaseLarge()
	if c.small != nil {
		c.small.Reset(nil)
		smallBufs.Put(c.small)
		c.small, c.bw = nil, nil
	}
}

// beginLong prepares a long reply: the replies buffered so far move to a
// large buffer, which later ones go to until the next flush.
func (c *conn) beginLong() {
	if c.out.large != nil {
		return
	}
	l := largeBufs.Get().(*bufio.Writer)
	l.Reset(&c.out.dw)
	c.out.large = l
	c.small.Flush() // into l: it cannot fail
	c.bw = l
}

// flush sends the buffered replies, each write bounded by WriteTimeout so
// a client that stops reading cannot hold the session, and gives back the
// large buffer if one was borrowed.
func (c *conn) flush() error {
	err := c.bw.Flush()
	c.releaseLarge()
	return err
}

// releaseLarge returns the borrowed large buffer to the pool, dropping
// what it holds (nothing after a successful flush).
func (c *conn) releaseLarge() {
	if l := c.out.large; l != nil {
		c.out.large = nil
		l.Reset(nil)
		largeBufs.Put(l)
		c.bw = c.small
	}
}

// writeChunk is the largest write to the client: a flush of the large
// buffer is one write. On loopback and fast links each write wakes the
// reader, and the wake-ups cost the server more than the octets do
// (docs/performance.md).
const writeChunk = 128 << 10

// minProgress is the floor of a client's reading rate: at least this many
// octets per WriteTimeout.
const minProgress = 32 << 10

// deadlineWriter writes to the client under a write deadline that moves
// with progress: a write that has not completed WriteTimeout after it
// started goes on, with a fresh deadline, only if the client took at least
// minProgress octets of it meanwhile. A client that stops reading fails
// after WriteTimeout; one that keeps reading at a reasonable rate may take
// as long as it needs for a message of any size (a fixed deadline per
// message or per flush would cut a slow 1 GB RETR).
//
// Over TLS (cork set), the records of one chunk are gathered under the TLS
// layer and written to the socket by the same loop: crypto/tls gives up
// on a connection after one failed write, so the deadline must not fall
// inside it.
type deadlineWriter struct {
	w    net.Conn  // the current layer: nc, or the TLS conn after STLS
	nc   net.Conn  // the connection the deadline is set on
	cork *corkConn // under the TLS layer w, else nil
	d    time.Duration
}

func (w *deadlineWriter) Write(p []byte) (int, error) {
	var n int
	for len(p) > 0 {
		chunk := p[:min(len(p), writeChunk)]
		var m int
		var err error
		if w.cork != nil && len(chunk) > smallBufSize {
			m, err = w.writeCorked(chunk)
		} else if w.cork != nil {
			// A short reply through TLS: one record, one deadline.
			w.nc.SetWriteDeadline(time.Now().Add(w.d))
			m, err = w.w.Write(chunk)
		} else {
			m, err = w.writeProgress(w.w, w.nc, chunk)
		}
		n += m
		if err != nil {
			return n, err
		}
		p = p[m:]
	}
	return n, nil
}

// writeProgress writes p to conn, the deadline set on dl, renewed while
// the client takes at least minProgress octets per WriteTimeout.
func (w *deadlineWriter) writeProgress(conn, dl net.Conn, p []byte) (int, error) {
	var n int
	for {
		dl.SetWriteDeadline(time.Now().Add(w.d))
		m, err := conn.Write(p[n:])
		n += m
		if err == nil || m < minProgress || !isTimeout(err) {
			return n, err
		}
	}
}

// writeCorked writes chunk through the TLS layer, its records gathered
// and then written to the socket in one go.
func (w *deadlineWriter) writeCorked(chunk []byte) (int, error) {
	b := w.cork.cork()
	// Into the buffer: crypto/tls cannot fail here but for a
	// connection it has already given up.
	m, err := w.w.Write(chunk)
	w.cork.uncork()
	if _, werr := w.writeProgress(w.cork.Conn, w.cork.Conn, *b); err == nil && werr != nil {
		// The client has part of the records: the TLS stream is broken,
		// and a close_notify would wait 5 s more (crypto/tls) for a
		// client that does not read. The socket goes now.
		w.cork.Conn.Close()
		return 0, werr
	}
	releaseCorkBuf(b)
	return m, err
}

// isTimeout reports whether err is a deadline's.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
