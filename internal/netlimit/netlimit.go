// Package netlimit wraps net.Listeners with connection limits and the
// PROXY protocol (HAProxy's PROXY protocol v1 and v2,
// https://www.haproxy.org/download/2.9/doc/proxy-protocol.txt).
//
// A Limiter holds the counts; each Listener made by Limiter.Listen draws
// from them, so the POP3, POP3S and any other listener share one global
// limit and one count per client address group (internal/ipgroup: an IPv4
// address, an IPv6 /64 by default).
//
// Implementation notes:
//   - Accept never blocks on a client. A background goroutine accepts; a
//     connection from a trusted proxy has its PROXY header read in a
//     goroutine of its own, bounded by ProxyHeaderTimeout, so a proxy or a
//     client that sends nothing holds one file descriptor for that long and
//     stalls nobody.
//   - The per-address limit counts the real client address: the one from
//     the PROXY header when there is one. Connections from a trusted proxy
//     count toward the global limit from the moment they are accepted.
//   - A connection from ProxyFrom must start with a PROXY header (TCP over
//     IPv4 or IPv6, or LOCAL for health checks); one that does not is
//     closed. A connection from anywhere else is taken as direct, and if it
//     starts with a PROXY header its first Read fails with ErrUntrustedProxy
//     (when ProxyFrom is set at all): the header is never honoured, and the
//     server never mistakes it for commands.
//   - A refused connection gets Options.Refusal written by a goroutine with
//     a deadline, at most MaxRefusing at a time; past that it is closed at
//     once. Its count is never taken, so nothing is released twice.
//   - Every accepted connection releases its counts exactly once, on its
//     first Close or when it is evicted.
//   - With Options.EvictPreLogin, a connection arriving at MaxConns takes
//     the slot of the oldest admitted connection that has not logged in
//     (LoggedIn), as Dovecot's login processes do: idle unauthenticated
//     connections cannot lock users out. The evicted connection's counts
//     pass to the newcomer at once; its server is told through OnEvict to
//     say why and close, and the connection is closed after RefusalTimeout
//     whatever the server does. A connection that has logged in is never
//     evicted; when every slot holds one, the newcomer is refused as
//     without the option. Eviction applies to MaxConns only, never to
//     MaxConnsPerIP, and trusted_networks (Exempt) are evicted like the
//     rest: they are exempt from the per-address cap, not from the global
//     one. A connection still in its PROXY handshake holds a slot but is
//     not evictable yet; a newcomer refused by the per-address cap after
//     taking an evicted slot gives it back.
//   - A connection's RawInput hands out the socket only while nothing
//     between the socket and the caller holds input: the sniffer's few
//     octets and go-proxyproto's header buffer must be read first. A server
//     may then wait for input on the socket without a read buffer of its
//     own (pop3server does for idle sessions).
package netlimit

import (
	"container/list"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	proxyproto "github.com/pires/go-proxyproto"

	"github.com/postoffice-mail/postoffice/internal/ipgroup"
)

// Options configure a Limiter. All zero values are usable: no limits, no
// PROXY protocol.
type Options struct {
	// MaxConns caps open connections over all listeners of the Limiter;
	// 0 means no cap.
	MaxConns int
	// MaxConnsPerIP caps open connections per client address group; 0
	// means no cap.
	MaxConnsPerIP int
	// IPv4Prefix and IPv6Prefix size the address groups; defaults 32, 64.
	IPv4Prefix, IPv6Prefix int
	// Exempt addresses are not subject to MaxConnsPerIP (they still count
	// toward MaxConns).
	Exempt []netip.Prefix

	// EvictPreLogin makes a connection arriving at MaxConns evict the
	// oldest connection that has not logged in, instead of being refused
	// (see the package notes).
	EvictPreLogin bool

	// Refusal is written to a connection refused for a limit, then the
	// connection is closed; nil closes it silently. For POP3:
	// "-ERR [SYS/TEMP] Too many connections; try again in a minute\r\n".
	Refusal []byte
	// RefusalTimeout bounds writing Refusal and the lingering close after
	// it. Default 2s.
	RefusalTimeout time.Duration
	// MaxRefusing caps refusals in flight; further refused connections are
	// closed without a message. Default 64.
	MaxRefusing int

	// ProxyFrom lists the load balancers allowed, and required, to send a
	// PROXY protocol header.
	ProxyFrom []netip.Prefix
	// ProxyHeaderTimeout bounds reading the header. Default 5s.
	ProxyHeaderTimeout time.Duration

	// Logger gets refusals (at most one line per second per reason, with
	// the number suppressed) and rejected PROXY headers. Default: discard.
	Logger *slog.Logger
	// OnRefuse, if set, is called for every connection refused or dropped,
	// e.g. to count it in a metric labelled by reason. Reasons:
	// "max_connections", "max_connections_per_ip", "proxy_header" (missing
	// or bad header from a trusted proxy), "untrusted_proxy" (a header from
	// anyone else).
	OnRefuse func(reason string)
}

// ReasonEvicted is logged for a connection evicted to make room
// (Options.EvictPreLogin); it is not passed to OnRefuse, the connection was
// served.
const ReasonEvicted = "evicted"

// Refusal reasons, as passed to Options.OnRefuse.
const (
	ReasonMaxConns       = "max_connections"
	ReasonMaxConnsPerIP  = "max_connections_per_ip"
	ReasonProxyHeader    = "proxy_header"
	ReasonUntrustedProxy = "untrusted_proxy"
)

// ErrUntrustedProxy is returned by Read on a connection that started with
// a PROXY protocol header but does not come from Options.ProxyFrom.
var ErrUntrustedProxy = errors.New("netlimit: PROXY header from an untrusted address")

// Limiter holds connection counts shared by its Listeners.
type Limiter struct {
	opts Options
	grp  ipgroup.Grouper
	log  *slog.Logger

	mu       sync.Mutex
	total    int
	perIP    map[netip.Prefix]int
	preLogin list.List // of *conn admitted and not logged in, oldest first

	refusing atomic.Int32
	logMu    sync.Mutex
	lastLog  map[string]time.Time
	dropped  map[string]int
}

// New returns a Limiter, or an error for unusable options.
func New(opts Options) (*Limiter, error) {
	grp := ipgroup.Grouper{IPv4Prefix: opts.IPv4Prefix, IPv6Prefix: opts.IPv6Prefix}
	if err := grp.Validate(); err != nil {
		return nil, err
	}
	if opts.MaxConns < 0 || opts.MaxConnsPerIP < 0 || opts.MaxRefusing < 0 {
		return nil, errors.New("netlimit: negative MaxConns, MaxConnsPerIP or MaxRefusing")
	}
	if opts.RefusalTimeout <= 0 {
		opts.RefusalTimeout = 2 * time.Second
	}
	if opts.MaxRefusing == 0 {
		opts.MaxRefusing = 64
	}
	if opts.ProxyHeaderTimeout <= 0 {
		opts.ProxyHeaderTimeout = 5 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return &Limiter{
		opts: opts, grp: grp, log: opts.Logger,
		perIP:   make(map[netip.Prefix]int),
		lastLog: make(map[string]time.Time),
		dropped: make(map[string]int),
	}, nil
}

// Open returns the number of connections counted now.
func (lim *Limiter) Open() int {
	lim.mu.Lock()
	defer lim.mu.Unlock()
	return lim.total
}

// acquireGlobal takes a count toward MaxConns. At the cap, with
// EvictPreLogin, it takes the slot of the oldest connection not logged in
// and returns that connection, for the caller to evict (outside the lock).
func (lim *Limiter) acquireGlobal() (ok bool, victim *conn) {
	lim.mu.Lock()
	defer lim.mu.Unlock()
	if lim.opts.MaxConns > 0 && lim.total >= lim.opts.MaxConns {
		if !lim.opts.EvictPreLogin {
			return false, nil
		}
		e := lim.preLogin.Front()
		if e == nil {
			return false, nil
		}
		victim = e.Value.(*conn)
		// Its global count passes to the newcomer: total is unchanged.
		lim.releaseLocked(victim, false)
		victim.evicted = true
		return true, victim
	}
	lim.total++
	return true, nil
}

// evict tells the server of c to end its session, and closes c after
// RefusalTimeout whatever the server does.
func (lim *Limiter) evict(c *conn) {
	lim.noteLog("pre-login connection evicted", ReasonEvicted, c.RemoteAddr())
	lim.mu.Lock()
	f := c.onEvict
	lim.mu.Unlock()
	if f != nil {
		f()
	} else {
		c.Conn.Close()
	}
	time.AfterFunc(lim.opts.RefusalTimeout, func() { c.Conn.Close() })
}

// releaseLocked gives back c's counts (the global one too with global),
// once. lim.mu must be held.
func (lim *Limiter) releaseLocked(c *conn, global bool) {
	if c.released {
		return
	}
	c.released = true
	if c.elem != nil {
		lim.preLogin.Remove(c.elem)
		c.elem = nil
	}
	if c.hasGroup {
		lim.releaseIPLocked(c.group)
	}
	if global {
		lim.total--
	}
}

func (lim *Limiter) releaseGlobal() {
	lim.mu.Lock()
	lim.total--
	lim.mu.Unlock()
}

// SetLimits changes MaxConns, MaxConnsPerIP and Exempt (a configuration
// reload). They apply to connections accepted from now on; connections
// already open keep their counts, released as before.
func (lim *Limiter) SetLimits(maxConns, maxConnsPerIP int, exempt []netip.Prefix) error {
	if maxConns < 0 || maxConnsPerIP < 0 {
		return errors.New("netlimit: negative MaxConns or MaxConnsPerIP")
	}
	lim.mu.Lock()
	defer lim.mu.Unlock()
	lim.opts.MaxConns, lim.opts.MaxConnsPerIP, lim.opts.Exempt = maxConns, maxConnsPerIP, exempt
	return nil
}

// acquireIP counts a connection from src toward MaxConnsPerIP, in one
// lock with reading the limits a reload may change. counted is false when
// src is not subject to the limit (no cap, exempt, no address); ok is false
// when the cap is reached.
func (lim *Limiter) acquireIP(src netip.Addr) (g netip.Prefix, counted, ok bool) {
	lim.mu.Lock()
	defer lim.mu.Unlock()
	m := lim.opts.MaxConnsPerIP
	if m <= 0 || !src.IsValid() || ipgroup.Contains(lim.opts.Exempt, src) {
		return g, false, true
	}
	g = lim.grp.Key(src)
	if lim.perIP[g] >= m {
		return g, false, false
	}
	lim.perIP[g]++
	return g, true, true
}

func (lim *Limiter) releaseIPLocked(g netip.Prefix) {
	if n := lim.perIP[g] - 1; n > 0 {
		lim.perIP[g] = n
	} else {
		delete(lim.perIP, g)
	}
}

// note logs an event, at most once a second per reason, and calls
// OnRefuse.
func (lim *Limiter) note(reason string, remote net.Addr) {
	if lim.opts.OnRefuse != nil {
		lim.opts.OnRefuse(reason)
	}
	lim.noteLog("connection refused", reason, remote)
}

// noteLog logs msg, at most once a second per reason.
func (lim *Limiter) noteLog(msg, reason string, remote net.Addr) {
	lim.logMu.Lock()
	now := time.Now()
	if now.Sub(lim.lastLog[reason]) < time.Second {
		lim.dropped[reason]++
		lim.logMu.Unlock()
		return
	}
	lim.lastLog[reason] = now
	suppressed := lim.dropped[reason]
	lim.dropped[reason] = 0
	lim.logMu.Unlock()
	lim.log.Warn(msg, "remote", addrString(remote), "reason", reason, "suppressed", suppressed)
}

func addrString(a net.Addr) string {
	if a == nil {
		return ""
	}
	return a.String()
}

// refuse sends the refusal message and closes c, without blocking.
func (lim *Limiter) refuse(c net.Conn, reason string) {
	lim.note(reason, c.RemoteAddr())
	if len(lim.opts.Refusal) == 0 || lim.refusing.Add(1) > int32(lim.opts.MaxRefusing) {
		if len(lim.opts.Refusal) != 0 {
			lim.refusing.Add(-1)
		}
		c.Close()
		return
	}
	go func() {
		defer lim.refusing.Add(-1)
		defer c.Close()
		c.SetDeadline(time.Now().Add(lim.opts.RefusalTimeout))
		if _, err := c.Write(lim.opts.Refusal); err != nil {
			return
		}
		// Lingering close: half-close, then read what the client may have
		// sent, so the kernel does not answer it with a RST that could
		// discard the message before the client reads it.
		raw := c
		if pc, ok := c.(*proxyConn); ok {
			raw = pc.Raw()
		}
		if cw, ok := raw.(interface{ CloseWrite() error }); ok {
			cw.CloseWrite()
		}
		io.Copy(io.Discard, io.LimitReader(c, 4096))
	}()
}

// Listener is a net.Listener whose connections are limited and, from
// trusted proxies, carry the real client address.
type Listener struct {
	lim   *Limiter
	inner net.Listener

	ready chan net.Conn
	errc  chan error // temporary Accept errors, handed to the caller
	done  chan struct{}
	dead  chan struct{} // closed when the accept goroutine ends
	err   error         // why it ended; set before dead is closed
	once  sync.Once
}

// Listen wraps inner. The Listener owns inner: closing one closes both.
func (lim *Limiter) Listen(inner net.Listener) *Listener {
	l := &Listener{
		lim: lim, inner: inner,
		ready: make(chan net.Conn),
		errc:  make(chan error),
		done:  make(chan struct{}),
		dead:  make(chan struct{}),
	}
	go l.acceptLoop()
	return l
}

// Accept returns the next admitted connection. Temporary errors of the
// underlying listener (EMFILE) are returned as they are, so the caller's
// back-off applies; after Close it returns net.ErrClosed.
func (l *Listener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ready:
		return c, nil
	case err := <-l.errc:
		return nil, err
	case <-l.done:
		return nil, net.ErrClosed
	case <-l.dead:
		return nil, l.err
	}
}

// Close stops accepting. Connections already handed out stay open;
// connections still in their PROXY handshake are closed.
func (l *Listener) Close() error {
	var err error
	l.once.Do(func() {
		close(l.done)
		err = l.inner.Close()
	})
	return err
}

// Addr returns the underlying listener's address.
func (l *Listener) Addr() net.Addr { return l.inner.Addr() }

func (l *Listener) acceptLoop() {
	defer close(l.dead)
	for {
		c, err := l.inner.Accept()
		if err != nil {
			if isTemporary(err) {
				select {
				case l.errc <- err:
					continue
				case <-l.done:
					l.err = net.ErrClosed
					return
				}
			}
			select {
			case <-l.done:
				l.err = net.ErrClosed
			default:
				l.err = err
			}
			return
		}
		l.handle(c)
	}
}

func isTemporary(err error) bool {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	var t interface{ Temporary() bool }
	return errors.As(err, &t) && t.Temporary()
}

// handle admits or refuses a freshly accepted connection.
func (l *Listener) handle(c net.Conn) {
	lim := l.lim
	src, _ := ipgroup.Addr(c.RemoteAddr())
	ok, victim := lim.acquireGlobal()
	if !ok {
		lim.refuse(c, ReasonMaxConns)
		return
	}
	if victim != nil {
		lim.evict(victim)
	}
	if len(lim.opts.ProxyFrom) > 0 && ipgroup.Contains(lim.opts.ProxyFrom, src) {
		go l.handshake(c)
		return
	}
	var nc net.Conn = c
	if len(lim.opts.ProxyFrom) > 0 {
		nc = &sniffConn{Conn: c, lim: lim}
	}
	l.admit(nc, src, false)
}

// handshake reads the PROXY header of a connection from a trusted proxy.
func (l *Listener) handshake(c net.Conn) {
	lim := l.lim
	pc := proxyproto.NewConn(c,
		proxyproto.WithPolicy(proxyproto.REQUIRE),
		proxyproto.SetReadHeaderTimeout(lim.opts.ProxyHeaderTimeout),
		proxyproto.ValidateHeader(validHeader))
	// The deadline covers the whole header, not only its first byte: a
	// proxy that trickles it cannot hold the connection longer.
	pc.SetReadDeadline(time.Now().Add(lim.opts.ProxyHeaderTimeout))
	h := pc.ProxyHeader()
	pc.SetReadDeadline(time.Time{})
	if h == nil {
		lim.releaseGlobal()
		lim.note(ReasonProxyHeader, c.RemoteAddr())
		c.Close()
		return
	}
	if h.Command.IsLocal() {
		// A health check of the proxy itself: no client behind it.
		src, _ := ipgroup.Addr(c.RemoteAddr())
		l.admit(&proxyConn{Conn: pc}, src, true)
		return
	}
	src, ok := ipgroup.Addr(h.SourceAddr)
	if !ok {
		lim.releaseGlobal()
		lim.note(ReasonProxyHeader, c.RemoteAddr())
		c.Close()
		return
	}
	l.admit(&proxyConn{Conn: pc}, src, false)
}

// proxyConn notes when go-proxyproto's header buffer has been read empty.
type proxyConn struct {
	*proxyproto.Conn
	drained bool
}

// Read reads through go-proxyproto, which serves what its header reader
// buffered past the header before anything from the socket, at most what
// that buffer holds, and drops the buffer once it is empty (v0.15.0,
// Conn.Read). A read that returns fewer octets than asked for has
// therefore left nothing buffered (TestRawInput/proxied checks this).
func (c *proxyConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n < len(p) {
		c.drained = true
	}
	return n, err
}

// validHeader accepts PROXY over TCP (v4, v6) and LOCAL.
func validHeader(h *proxyproto.Header) error {
	if h.Command.IsLocal() {
		return nil
	}
	if h.TransportProtocol != proxyproto.TCPv4 && h.TransportProtocol != proxyproto.TCPv6 {
		return errors.New("netlimit: PROXY header is not for TCP")
	}
	return nil
}

// admit applies the per-address limit to a connection that holds a global
// count, and hands it to Accept.
func (l *Listener) admit(c net.Conn, src netip.Addr, exempt bool) {
	lim := l.lim
	lc := &conn{Conn: c, lim: lim}
	if !exempt {
		g, counted, ok := lim.acquireIP(src)
		if !ok {
			lim.releaseGlobal()
			lim.refuse(c, ReasonMaxConnsPerIP)
			return
		}
		lc.group, lc.hasGroup = g, counted
	}
	lim.mu.Lock()
	lc.elem = lim.preLogin.PushBack(lc)
	lim.mu.Unlock()
	select {
	case l.ready <- lc:
	case <-l.done:
		lc.Close()
	}
}

// conn releases its counts on its first Close, or when it is evicted. The
// fields after lim are guarded by lim.mu.
type conn struct {
	net.Conn
	lim      *Limiter
	group    netip.Prefix
	hasGroup bool
	released bool          // counts given back (closed or evicted)
	evicted  bool          // its slot went to a newcomer
	elem     *list.Element // in lim.preLogin until it logs in or goes
	onEvict  func()
}

func (c *conn) Close() error {
	err := c.Conn.Close()
	c.lim.mu.Lock()
	c.lim.releaseLocked(c, !c.evicted)
	c.lim.mu.Unlock()
	return err
}

// OnEvict sets how the server ends the session when the connection is
// evicted (Options.EvictPreLogin): say why and close, promptly. f is called
// from another goroutine, and at once if the connection has already been
// evicted. Without it an evicted connection is closed silently.
func (c *conn) OnEvict(f func()) {
	c.lim.mu.Lock()
	c.onEvict = f
	evicted := c.evicted
	c.lim.mu.Unlock()
	if evicted {
		f()
	}
}

// LoggedIn marks the connection as logged in: it is never evicted from
// now on. It reports false when the connection has been evicted already;
// the server must then refuse the login and close.
func (c *conn) LoggedIn() bool {
	c.lim.mu.Lock()
	defer c.lim.mu.Unlock()
	if c.evicted {
		return false
	}
	if c.elem != nil {
		c.lim.preLogin.Remove(c.elem)
		c.elem = nil
	}
	return true
}

// NetConn returns the wrapped connection.
func (c *conn) NetConn() net.Conn { return c.Conn }

// RawInput returns the socket c reads from, for waiting until it has input
// (syscall.RawConn.Read) before reading c, when nothing between the socket
// and c's reader holds input: a direct connection once the sniffer's
// octets are read, a proxied one once go-proxyproto's header buffer is
// read empty. It reports false until then; once true it stays true. The
// caller must read c itself, never the socket, and not concurrently.
func (c *conn) RawInput() (syscall.RawConn, bool) {
	var sock net.Conn
	switch inner := c.Conn.(type) {
	case *sniffConn:
		if !inner.checked || inner.bad || len(inner.pending) > 0 {
			return nil, false
		}
		sock = inner.Conn
	case *proxyConn:
		if !inner.drained {
			return nil, false
		}
		sock = inner.Raw()
	default:
		sock = inner
	}
	var rc syscall.RawConn
	var err error
	switch s := sock.(type) {
	case *net.TCPConn:
		rc, err = s.SyscallConn()
	case *net.UnixConn:
		rc, err = s.SyscallConn()
	default:
		return nil, false
	}
	return rc, err == nil
}

// RawOutput returns the socket c writes to, for sending to it directly
// (sendfile(2)): nothing between c's writer and the socket holds output,
// so a write to the socket keeps its order with c's. The caller must not
// write to c concurrently.
func (c *conn) RawOutput() (syscall.RawConn, bool) {
	sock := c.Conn
	switch inner := sock.(type) {
	case *sniffConn:
		sock = inner.Conn
	case *proxyConn:
		sock = inner.Raw()
	}
	tc, ok := sock.(*net.TCPConn)
	if !ok {
		return nil, false
	}
	rc, err := tc.SyscallConn()
	return rc, err == nil
}

var (
	sigV1 = []byte("PROXY ")
	sigV2 = []byte("\r\n\r\n\x00\r\nQUIT\n")
)

// sniffConn fails the first Read of a connection that starts with a PROXY
// header. It reads only when the server reads, so it never delays the
// greeting of a protocol where the server speaks first.
type sniffConn struct {
	net.Conn
	lim     *Limiter
	checked bool
	bad     bool
	pending []byte
}

func (c *sniffConn) Read(p []byte) (int, error) {
	if !c.checked {
		if err := c.sniff(); err != nil {
			return 0, err
		}
	}
	if c.bad {
		return 0, ErrUntrustedProxy
	}
	if len(c.pending) > 0 {
		n := copy(p, c.pending)
		if c.pending = c.pending[n:]; len(c.pending) == 0 {
			c.pending = nil
		}
		return n, nil
	}
	return c.Conn.Read(p)
}

// sniff reads until the input either differs from both signatures or
// matches one.
func (c *sniffConn) sniff() error {
	var buf [16]byte
	n := 0
	for {
		m, err := c.Conn.Read(buf[n:])
		n += m
		b := buf[:n]
		switch {
		case hasPrefix(b, sigV1) || hasPrefix(b, sigV2):
			c.checked, c.bad = true, true
			c.lim.note(ReasonUntrustedProxy, c.RemoteAddr())
			return nil
		case !hasPrefix(sigV1, b) && !hasPrefix(sigV2, b):
			c.checked, c.pending = true, b
			return nil
		}
		if err != nil {
			if n == 0 {
				return err // nothing read: sniff again next time
			}
			// Ended inside a possible signature: give what came.
			c.checked, c.pending = true, b
			return nil
		}
	}
}

func hasPrefix(b, prefix []byte) bool {
	return len(b) >= len(prefix) && string(b[:len(prefix)]) == string(prefix)
}
