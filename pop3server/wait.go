package pop3server

import (
	"crypto/tls"
	"net"
	"os"
	"syscall"
	"time"

	"github.com/postoffice-mail/postoffice/internal/wire"
)

// Waiting for input without a read buffer. A session spends nearly all its
// life waiting for the client's next command; a read blocked on the
// connection needs the buffer it reads into, so the session waits on the
// socket instead (syscall.RawConn.Read, which honours the read deadline
// and returns when the connection is closed) and takes a read buffer only
// when input has arrived. That is safe only when nothing sits between the
// socket and the session that may hold input of its own: a TLS layer may
// hold decrypted records, a PROXY protocol reader the octets after its
// header. So only a *net.TCPConn, a *net.UnixConn and a rawInputConn that
// says so are waited on this way; the rest keep their read buffer and
// block in Read as before.

// rawInputConn is a net.Conn wrapper that can hand out the socket it reads
// from (internal/netlimit's connections). RawInput reports false while the
// wrapper holds input that the socket no longer has; once it reports true
// it must stay true, with every later Read going to the socket.
type rawInputConn interface {
	RawInput() (syscall.RawConn, bool)
}

// rawWaiter waits until a socket has input, reading none of it.
type rawWaiter struct {
	rc     syscall.RawConn
	ready  func(fd uintptr) bool // w.check, bound once: no allocation per wait
	polled bool
	peek   [1]byte
}

func newRawWaiter(rc syscall.RawConn) *rawWaiter {
	w := &rawWaiter{rc: rc}
	w.ready = w.check
	return w
}

// wait returns when the socket has input, has reached end of file or has
// failed, when its read deadline passes, or when it is closed.
func (w *rawWaiter) wait() error {
	w.polled = false
	return w.rc.Read(w.ready)
}

// check is called by RawConn.Read first, and again each time the poller
// reports the socket readable. The first call must look: input that came
// before the wait began raises no new readiness event. After that, the
// event is the answer; were it spurious, the read after the wait would
// simply block as a read always did. The cost over a plain read is one
// peek when input is already waiting (1-3% of waits in postoffice bench's
// login and download scenarios); when it is not, a read would have failed
// with EAGAIN just the same.
func (w *rawWaiter) check(fd uintptr) bool {
	if w.polled {
		return true
	}
	w.polled = true
	return inputReady(fd, w.peek[:])
}

// waitInput waits for input on the socket. A logged-in session whose
// mailbox can give back descriptors (Idler) waits IdleRelease first; if
// nothing came, it calls Idle and waits out the rest of its deadline.
func (c *conn) waitInput(w *rawWaiter) error {
	idler, ok := c.mbox.(Idler)
	if !ok || c.state != stateTransaction || time.Until(c.deadline) <= IdleRelease {
		return w.wait()
	}
	c.nc.SetReadDeadline(time.Now().Add(IdleRelease))
	err := w.wait()
	if err == nil || !isTimeout(err) {
		c.nc.SetReadDeadline(c.deadline)
		return err
	}
	idler.Idle()
	c.nc.SetReadDeadline(c.deadline)
	if c.evicted.Load() {
		// An evict moved the deadline meanwhile: keep it moved.
		return os.ErrDeadlineExceeded
	}
	return w.wait()
}

// rawInput returns the socket under the session's connection when waiting
// on it is safe now (see above), else nil.
func (c *conn) rawInput() *rawWaiter {
	if !rawWaitSupported || c.tc != nil {
		return nil // c.tc: STLS, the TLS layer may hold input
	}
	if c.raw != nil {
		return c.raw
	}
	var rc syscall.RawConn
	var err error
	switch nc := c.nc.(type) {
	case *tls.Conn:
		return nil
	case *net.TCPConn:
		rc, err = nc.SyscallConn()
	case *net.UnixConn:
		rc, err = nc.SyscallConn()
	case rawInputConn:
		var ok bool
		if rc, ok = nc.RawInput(); !ok {
			return nil // may be true later: asked again at the next wait
		}
	default:
		return nil
	}
	if err != nil {
		return nil
	}
	c.raw = newRawWaiter(rc)
	return c.raw
}

// readLine reads one command line within limit (wire.ReadLineAtMost: a
// line found too long is not read to its end; the session must end).
// When no input is buffered the session gives back its buffers while it
// waits (writer.go): the small reply buffer always, the read buffer when
// rawInput allows. It has them again when readLine returns, whatever the
// outcome, so every caller may write.
func (c *conn) readLine(limit func([]byte) int) (line []byte, n int, err error) {
	if c.br.Buffered() == 0 && c.bw.Buffered() == 0 {
		c.putWriter()
		if w := c.rawInput(); w != nil {
			c.putReader()
			if h := c.srv.testHookWait; h != nil {
				h(c)
			}
			err = c.waitInput(w)
			c.takeReader()
		} else if h := c.srv.testHookWait; h != nil {
			h(c)
		}
		if err == nil {
			line, n, err = wire.ReadLineAtMost(c.br, limit)
		}
		c.takeWriter()
		return line, n, err
	}
	return wire.ReadLineAtMost(c.br, limit)
}
