package pop3server

import (
	"bufio"
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
	largeBufSize = 64 << 10
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

// writeChunk bounds each write to the client, so that WriteTimeout is a
// minimum rate: at least writeChunk octets per WriteTimeout. A flush of the
// large buffer is two writes.
const writeChunk = 32 << 10

// deadlineWriter writes to the client with a fresh write deadline for each
// chunk of at most writeChunk octets. A client that stops reading fails the
// write after WriteTimeout; one that keeps reading at a reasonable rate may
// take as long as it needs for a message of any size (a fixed deadline per
// message or per flush would cut a slow 1 GB RETR).
type deadlineWriter struct {
	w  net.Conn // the current layer: nc, or the TLS conn after STLS
	nc net.Conn // the connection the deadline is set on
	d  time.Duration
}

func (w *deadlineWriter) Write(p []byte) (int, error) {
	var n int
	for len(p) > 0 {
		chunk := p[:min(len(p), writeChunk)]
		w.nc.SetWriteDeadline(time.Now().Add(w.d))
		m, err := w.w.Write(chunk)
		n += m
		if err != nil {
			return n, err
		}
		p = p[m:]
	}
	return n, nil
}
