package netlimit

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	proxyproto "github.com/pires/go-proxyproto"
)

const refusal = "-ERR [SYS/TEMP] Too many connections\r\n"

// serve starts a Listener on loopback and returns it with a channel of
// accepted connections.
func serve(t *testing.T, opts Options) (*Limiter, *Listener, <-chan net.Conn) {
	t.Helper()
	lim, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := lim.Listen(inner)
	ch := make(chan net.Conn, 16)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				close(ch)
				return
			}
			ch <- c
		}
	}()
	t.Cleanup(func() {
		l.Close()
		for c := range ch {
			c.Close()
		}
	})
	return lim, l, ch
}

func dial(t *testing.T, l *Listener) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	t.Cleanup(func() { c.Close() })
	return c
}

func accepted(t *testing.T, ch <-chan net.Conn) net.Conn {
	t.Helper()
	select {
	case c := <-ch:
		return c
	case <-time.After(5 * time.Second):
		t.Fatal("no connection accepted")
		return nil
	}
}

func notAccepted(t *testing.T, ch <-chan net.Conn, d time.Duration) {
	t.Helper()
	select {
	case c := <-ch:
		t.Fatalf("connection from %v accepted, want refused", c.RemoteAddr())
	case <-time.After(d):
	}
}

// refused reads what a refused client gets.
func refused(t *testing.T, c net.Conn) string {
	t.Helper()
	b, err := io.ReadAll(c)
	if err != nil && !errors.Is(err, net.ErrClosed) && !strings.Contains(err.Error(), "reset") {
		t.Fatalf("reading refusal: %v", err)
	}
	return string(b)
}

func TestMaxConnsPerIP(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var reasons []string
	lim, l, ch := serve(t, Options{MaxConnsPerIP: 2, Refusal: []byte(refusal), OnRefuse: func(r string) {
		mu.Lock()
		reasons = append(reasons, r)
		mu.Unlock()
	}})
	dial(t, l)
	dial(t, l)
	a := accepted(t, ch)
	accepted(t, ch)
	if got := refused(t, dial(t, l)); got != refusal {
		t.Errorf("third connection got %q, want %q", got, refusal)
	}
	notAccepted(t, ch, 50*time.Millisecond)
	if n := lim.Open(); n != 2 {
		t.Errorf("Open = %d, want 2", n)
	}
	// Closing twice releases once.
	a.Close()
	a.Close()
	if n := lim.Open(); n != 1 {
		t.Errorf("Open after Close = %d, want 1", n)
	}
	dial(t, l)
	accepted(t, ch)
	mu.Lock()
	defer mu.Unlock()
	if len(reasons) != 1 || reasons[0] != ReasonMaxConnsPerIP {
		t.Errorf("OnRefuse reasons = %q", reasons)
	}
}

func TestMaxConnsExempt(t *testing.T) {
	t.Parallel()
	// Loopback is exempt from the per-address cap, not from the global one.
	lim, l, ch := serve(t, Options{MaxConns: 3, MaxConnsPerIP: 1, Exempt: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}})
	var cs []net.Conn
	for range 3 {
		dial(t, l)
		cs = append(cs, accepted(t, ch))
	}
	if got := refused(t, dial(t, l)); got != "" {
		t.Errorf("refusal without a message configured: %q", got)
	}
	for _, c := range cs {
		c.Close()
	}
	if n := lim.Open(); n != 0 {
		t.Errorf("Open after closing all = %d, want 0", n)
	}
	dial(t, l)
	accepted(t, ch)
}

// sendHeader writes a PROXY header for src, then data.
func sendHeader(t *testing.T, c net.Conn, version byte, src string, data string) {
	t.Helper()
	h := proxyproto.HeaderProxyFromAddrs(version, net.TCPAddrFromAddrPort(netip.MustParseAddrPort(src)),
		net.TCPAddrFromAddrPort(netip.MustParseAddrPort("192.0.2.1:110")))
	b, err := h.Format()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write(append(b, data...)); err != nil {
		t.Fatal(err)
	}
}

func TestProxyTrusted(t *testing.T) {
	t.Parallel()
	trusted := []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	lim, l, ch := serve(t, Options{ProxyFrom: trusted, MaxConnsPerIP: 1, Refusal: []byte(refusal)})
	for _, tt := range []struct {
		version byte
		src     string
	}{{1, "203.0.113.5:40000"}, {2, "[2001:db8::5]:40001"}} {
		c := dial(t, l)
		sendHeader(t, c, tt.version, tt.src, "USER alice\r\n")
		s := accepted(t, ch)
		if got := s.RemoteAddr().String(); got != tt.src {
			t.Errorf("v%d: RemoteAddr = %s, want %s", tt.version, got, tt.src)
		}
		line, err := bufio.NewReader(s).ReadString('\n')
		if line != "USER alice\r\n" || err != nil {
			t.Errorf("v%d: read %q, %v after the header", tt.version, line, err)
		}
		s.Write([]byte("+OK\r\n"))
		if line, _ := bufio.NewReader(c).ReadString('\n'); line != "+OK\r\n" {
			t.Errorf("v%d: client read %q", tt.version, line)
		}
	}
	// The per-address cap counts the real client, not the proxy.
	c := dial(t, l)
	sendHeader(t, c, 2, "203.0.113.5:40002", "")
	if got := refused(t, c); got != refusal {
		t.Errorf("second connection of 203.0.113.5 got %q, want refusal", got)
	}
	c = dial(t, l)
	sendHeader(t, c, 1, "203.0.113.6:40003", "")
	if s := accepted(t, ch); s.RemoteAddr().String() != "203.0.113.6:40003" {
		t.Errorf("RemoteAddr = %v", s.RemoteAddr())
	}
	if n := lim.Open(); n != 3 {
		t.Errorf("Open = %d, want 3", n)
	}
}

func TestProxyLocalCommand(t *testing.T) {
	t.Parallel()
	_, l, ch := serve(t, Options{ProxyFrom: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}})
	c := dial(t, l)
	h := &proxyproto.Header{Version: 2, Command: proxyproto.LOCAL, TransportProtocol: proxyproto.UNSPEC}
	if _, err := h.WriteTo(c); err != nil {
		t.Fatal(err)
	}
	s := accepted(t, ch)
	if ap, _ := netip.ParseAddrPort(s.RemoteAddr().String()); ap.Addr() != netip.MustParseAddr("127.0.0.1") {
		t.Errorf("LOCAL: RemoteAddr = %v, want the proxy's", s.RemoteAddr())
	}
}

func TestProxyRequiredFromTrusted(t *testing.T) {
	t.Parallel()
	reasons := make(chan string, 4)
	lim, l, ch := serve(t, Options{ProxyFrom: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
		OnRefuse: func(r string) { reasons <- r }})
	c := dial(t, l)
	io.WriteString(c, "USER alice\r\n")
	if got := refused(t, c); got != "" {
		t.Errorf("trusted source without header got %q", got)
	}
	notAccepted(t, ch, 50*time.Millisecond)
	if r := <-reasons; r != ReasonProxyHeader {
		t.Errorf("reason = %q", r)
	}
	if n := lim.Open(); n != 0 {
		t.Errorf("Open = %d, want 0", n)
	}
}

func TestProxyUntrusted(t *testing.T) {
	t.Parallel()
	_, l, ch := serve(t, Options{ProxyFrom: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}})
	for _, version := range []byte{1, 2} {
		c := dial(t, l)
		s := accepted(t, ch)
		// The server speaks first: nothing waits for the client.
		if _, err := s.Write([]byte("+OK ready\r\n")); err != nil {
			t.Fatal(err)
		}
		sendHeader(t, c, version, "203.0.113.5:40000", "USER alice\r\n")
		if ap, _ := netip.ParseAddrPort(s.RemoteAddr().String()); !ap.Addr().IsLoopback() {
			t.Errorf("v%d: RemoteAddr = %v, want the direct peer", version, s.RemoteAddr())
		}
		s.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := s.Read(make([]byte, 100)); !errors.Is(err, ErrUntrustedProxy) {
			t.Errorf("v%d: Read = %v, want ErrUntrustedProxy", version, err)
		}
	}
	// A normal client is read unchanged, even in small reads.
	c := dial(t, l)
	s := accepted(t, ch)
	io.WriteString(c, "PROXYX\r\nQUIT\r\n")
	c.(*net.TCPConn).CloseWrite()
	var got []byte
	buf := make([]byte, 3)
	s.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		n, err := s.Read(buf)
		got = append(got, buf[:n]...)
		if err != nil {
			break
		}
	}
	if string(got) != "PROXYX\r\nQUIT\r\n" {
		t.Errorf("read %q", got)
	}
}

// TestSilentClientsDoNotBlock: connections from a trusted proxy that send
// nothing do not stop others from being accepted, and are dropped after
// ProxyHeaderTimeout.
func TestSilentClientsDoNotBlock(t *testing.T) {
	t.Parallel()
	lim, l, ch := serve(t, Options{ProxyFrom: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
		ProxyHeaderTimeout: 500 * time.Millisecond})
	var silent []net.Conn
	for range 50 {
		silent = append(silent, dial(t, l))
	}
	start := time.Now()
	c := dial(t, l)
	sendHeader(t, c, 2, "198.51.100.7:1234", "")
	if s := accepted(t, ch); s.RemoteAddr().String() != "198.51.100.7:1234" {
		t.Errorf("RemoteAddr = %v", s.RemoteAddr())
	}
	if d := time.Since(start); d > 400*time.Millisecond {
		t.Errorf("accept took %v behind silent connections", d)
	}
	for _, s := range silent {
		if _, err := s.Read(make([]byte, 1)); err == nil {
			t.Fatal("silent connection got data")
		}
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("silent connections closed after %v, want about 500ms", d)
	}
	deadline := time.Now().Add(5 * time.Second)
	for lim.Open() != 1 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := lim.Open(); n != 1 {
		t.Errorf("Open = %d, want 1", n)
	}
}

func TestRefusalDoesNotBlockAccept(t *testing.T) {
	t.Parallel()
	// Refused clients that never read nor close: the next client is
	// still accepted at once.
	_, l, ch := serve(t, Options{MaxConnsPerIP: 1, Refusal: []byte(refusal), MaxRefusing: 2,
		Exempt: nil})
	dial(t, l)
	first := accepted(t, ch)
	for range 20 {
		dial(t, l)
	}
	first.Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		c := dial(t, l)
		c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		select {
		case <-ch:
			return
		case <-time.After(300 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("no connection accepted after the flood")
		}
	}
}

func TestCloseListener(t *testing.T) {
	t.Parallel()
	lim, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	inner, _ := net.Listen("tcp", "127.0.0.1:0")
	l := lim.Listen(inner)
	done := make(chan error)
	go func() {
		_, err := l.Accept()
		done <- err
	}()
	l.Close()
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Errorf("Accept after Close = %v, want net.ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Accept did not return after Close")
	}
	if _, err := l.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("second Accept = %v", err)
	}
	if _, err := New(Options{IPv6Prefix: 200}); err == nil {
		t.Error("New(IPv6Prefix 200) = nil error")
	}
}

// rawInput asks an accepted connection for its socket.
func rawInput(t *testing.T, s net.Conn) bool {
	t.Helper()
	ri, ok := s.(interface {
		RawInput() (syscall.RawConn, bool)
	})
	if !ok {
		t.Fatalf("%T has no RawInput", s)
	}
	_, ok = ri.RawInput()
	return ok
}

// holdsNothing checks that a Read of s finds nothing: the client has sent
// nothing more, so anything read would have been held by a wrapper.
func holdsNothing(t *testing.T, s net.Conn) {
	t.Helper()
	s.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	defer s.SetReadDeadline(time.Time{})
	var ne net.Error
	if n, err := s.Read(make([]byte, 100)); !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("RawInput said nothing is buffered, but Read returned %d octets, %v", n, err)
	}
}

// readUntilShort reads s in chunks of size until a read returns less, and
// returns all it read.
func readUntilShort(t *testing.T, s net.Conn, size int) string {
	t.Helper()
	var all []byte
	for {
		p := make([]byte, size)
		n, err := s.Read(p)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, p[:n]...)
		if n < size {
			return string(all)
		}
	}
}

// RawInput hands out the socket only once no wrapper holds input: at once
// for a direct connection, after the sniffed octets for one that may carry
// an untrusted PROXY header (never if it did), after go-proxyproto's header
// buffer for a proxied one. The proxied case checks go-proxyproto's
// behaviour that proxyConn relies on: a short read leaves nothing buffered,
// with more input sent with the header, in one segment, than its buffer
// takes.
func TestRawInput(t *testing.T) {
	t.Parallel()
	t.Run("direct", func(t *testing.T) {
		t.Parallel()
		_, l, ch := serve(t, Options{})
		dial(t, l)
		if s := accepted(t, ch); !rawInput(t, s) {
			t.Error("RawInput of a direct connection = false")
		}
	})
	t.Run("sniffing", func(t *testing.T) {
		t.Parallel()
		_, l, ch := serve(t, Options{ProxyFrom: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}})
		c := dial(t, l)
		s := accepted(t, ch)
		if rawInput(t, s) {
			t.Fatal("RawInput before the sniffer has read = true")
		}
		io.WriteString(c, "USER alice\r\n")
		if _, err := io.ReadFull(s, make([]byte, 4)); err != nil {
			t.Fatal(err)
		}
		if rawInput(t, s) {
			t.Fatal("RawInput with sniffed octets pending = true")
		}
		if got := readUntilShort(t, s, 100); got != " alice\r\n" {
			t.Fatalf("read %q", got)
		}
		if !rawInput(t, s) {
			t.Fatal("RawInput after the sniffed octets = false")
		}
		holdsNothing(t, s)

		c = dial(t, l)
		sendHeader(t, c, 1, "203.0.113.5:40000", "USER alice\r\n")
		s = accepted(t, ch)
		if _, err := s.Read(make([]byte, 100)); err != ErrUntrustedProxy {
			t.Fatalf("read after an untrusted header: %v", err)
		}
		if rawInput(t, s) {
			t.Error("RawInput after an untrusted header = true")
		}
	})
	t.Run("proxied", func(t *testing.T) {
		t.Parallel()
		_, l, ch := serve(t, Options{ProxyFrom: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}})
		c := dial(t, l)
		data := "USER alice\r\n" + strings.Repeat("x", 1000) + "\r\n"
		sendHeader(t, c, 2, "203.0.113.5:40000", data)
		s := accepted(t, ch)
		if rawInput(t, s) {
			t.Fatal("RawInput before reading = true")
		}
		// go-proxyproto's buffer holds the first part of data (its size);
		// the first short read empties it, the rest is in the socket.
		got := readUntilShort(t, s, 10)
		if !strings.HasPrefix(data, got) {
			t.Fatalf("read %q, want a prefix of %q", got, data)
		}
		if !rawInput(t, s) {
			t.Fatal("RawInput after a short read = false")
		}
		// Nothing is left above the socket: reading the socket itself,
		// past go-proxyproto, gets the rest.
		sock := s.(*conn).Conn.(*proxyConn).Raw()
		rest := make([]byte, len(data)-len(got))
		if _, err := io.ReadFull(sock, rest); err != nil || got+string(rest) != data {
			t.Fatalf("read %q then %q, %v; want %q", got, rest, err, data)
		}
		holdsNothing(t, s)
		io.WriteString(c, "QUIT\r\n")
		if got := readUntilShort(t, s, 100); got != "QUIT\r\n" {
			t.Fatalf("read %q after RawInput", got)
		}
	})
}

// At MaxConns with EvictPreLogin, a newcomer takes the slot of the oldest
// connection that has not logged in; logged-in connections are never
// evicted, and when every slot holds one the newcomer is refused.
func TestEvictPreLogin(t *testing.T) {
	t.Parallel()
	lim, l, ch := serve(t, Options{MaxConns: 2, EvictPreLogin: true, Refusal: []byte(refusal)})
	evicted := make(chan string, 8)
	accept := func(name string) *conn {
		t.Helper()
		c := accepted(t, ch).(*conn)
		c.OnEvict(func() { evicted <- name; c.Close() })
		return c
	}
	dial(t, l)
	a := accept("a")
	dial(t, l)
	b := accept("b")
	dial(t, l) // at the cap: a, the oldest not logged in, goes
	c := accept("c")
	if got := <-evicted; got != "a" {
		t.Fatalf("evicted %s, want a", got)
	}
	if a.LoggedIn() {
		t.Error("LoggedIn on an evicted connection = true, want false")
	}
	if !b.LoggedIn() || !c.LoggedIn() {
		t.Fatal("LoggedIn = false on a live connection")
	}
	if n := lim.Open(); n != 2 {
		t.Errorf("Open() = %d, want 2", n)
	}
	// Every slot is logged in: the newcomer is refused, nobody evicted.
	d := dial(t, l)
	if line, _ := bufio.NewReader(d).ReadString('\n'); line != refusal {
		t.Errorf("newcomer with all slots logged in got %q, want the refusal", line)
	}
	notAccepted(t, ch, 100*time.Millisecond)
	select {
	case name := <-evicted:
		t.Errorf("%s evicted, want nobody: it logged in", name)
	default:
	}
	// A slot freed by a logged-in session serves the next newcomer.
	b.Close()
	dial(t, l)
	accept("e")
	if n := lim.Open(); n != 2 {
		t.Errorf("Open() = %d, want 2", n)
	}
	a.Close() // evicted, closed again: releases nothing twice
	if n := lim.Open(); n != 2 {
		t.Errorf("Open() after closing the evicted connection = %d, want 2", n)
	}
}

// Without EvictPreLogin the cap refuses as before.
func TestNoEvictByDefault(t *testing.T) {
	t.Parallel()
	_, l, ch := serve(t, Options{MaxConns: 1, Refusal: []byte(refusal)})
	dial(t, l)
	accepted(t, ch)
	d := dial(t, l)
	if line, _ := bufio.NewReader(d).ReadString('\n'); line != refusal {
		t.Errorf("got %q, want the refusal", line)
	}
}
