package pop3server_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/postoffice-mail/postoffice/internal/netlimit"
	"github.com/postoffice-mail/postoffice/pop3server"
	"github.com/postoffice-mail/postoffice/pop3server/memserver"
)

// waitServer serves opts on a loopback listener, wrapped by wrap if not
// nil, and returns its address, the server and the states its sessions
// report as they start waiting for input (pop3server.Server.OnWait).
func waitServer(t *testing.T, opts pop3server.Options, wrap func(net.Listener) net.Listener, implicitTLS bool) (string, *pop3server.Server, <-chan pop3server.WaitState) {
	t.Helper()
	if opts.AuthFailDelay == 0 {
		opts.AuthFailDelay = -1
	}
	srv, err := pop3server.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	waits := make(chan pop3server.WaitState, 4096)
	srv.OnWait(func(w pop3server.WaitState) {
		select {
		case waits <- w:
		default:
		}
	})
	var l net.Listener
	l, err = net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if wrap != nil {
		l = wrap(l)
	}
	if implicitTLS {
		go srv.ServeTLS(l)
	} else {
		go srv.Serve(l)
	}
	t.Cleanup(func() { srv.Close() })
	return l.Addr().String(), srv, waits
}

// needRawWait skips a test of waiting on the socket where sessions
// cannot.
func needRawWait(t *testing.T) {
	if !pop3server.RawWait {
		t.Skip("sessions wait for input in Read on this system")
	}
}

// nextWait returns the next wait state a session reports.
func nextWait(t *testing.T, waits <-chan pop3server.WaitState) pop3server.WaitState {
	t.Helper()
	select {
	case w := <-waits:
		return w
	case <-time.After(10 * time.Second):
		t.Fatal("no session started waiting for input")
	}
	panic("unreachable")
}

// loggedInWait returns the first wait state of a logged-in session.
func loggedInWait(t *testing.T, waits <-chan pop3server.WaitState) pop3server.WaitState {
	t.Helper()
	for {
		if w := nextWait(t, waits); w.LoggedIn {
			return w
		}
	}
}

func netlimitWrap(t *testing.T, opts netlimit.Options) func(net.Listener) net.Listener {
	return func(l net.Listener) net.Listener {
		lim, err := netlimit.New(opts)
		if err != nil {
			t.Fatal(err)
		}
		return lim.Listen(l)
	}
}

// An idle session over a socket holds neither its read buffer nor its reply
// buffer (idle memory is a performance target, docs/performance.md),
// directly on TCP and behind internal/netlimit: plain,
// sniffing for an untrusted PROXY header, and behind a trusted proxy whose
// header came in the same segment as the first command. Pipelined input,
// a line split across segments and long replies all work after such a
// wait.
func TestIdleSessionHoldsNoBuffers(t *testing.T) {
	needRawWait(t)
	t.Parallel()
	loopback := []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	tests := []struct {
		name   string
		wrap   func(*testing.T) func(net.Listener) net.Listener
		header string // sent before the first command, in the same write
	}{
		{"tcp", func(*testing.T) func(net.Listener) net.Listener { return nil }, ""},
		{"netlimit", func(t *testing.T) func(net.Listener) net.Listener {
			return netlimitWrap(t, netlimit.Options{})
		}, ""},
		{"netlimit-sniffing", func(t *testing.T) func(net.Listener) net.Listener {
			return netlimitWrap(t, netlimit.Options{ProxyFrom: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}})
		}, ""},
		{"netlimit-proxied", func(t *testing.T) func(net.Listener) net.Listener {
			return netlimitWrap(t, netlimit.Options{ProxyFrom: loopback})
		}, "PROXY TCP4 127.0.0.2 127.0.0.1 40000 110\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			addr, _, waits := waitServer(t, pop3server.Options{Backend: newFixture(t)}, tt.wrap(t), false)
			nc, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer nc.Close()
			nc.SetDeadline(time.Now().Add(10 * time.Second))
			c := &client{t: t, nc: nc, br: bufio.NewReader(nc)}
			io.WriteString(nc, tt.header+"USER alice\r\n")
			c.expect("+OK") // greeting
			c.expect("+OK")
			c.cmd("PASS secret word", "+OK Logged in, 3 messages")
			if w := loggedInWait(t, waits); w.ReadBuf || w.ReplyBuf {
				t.Fatalf("idle logged-in session holds buffers: %+v", w)
			}

			io.WriteString(nc, "STAT\r\nLIST 2\r\nUIDL 3\r\nNOOP\r\n")
			for _, want := range []string{"+OK 3 ", "+OK 2 ", "+OK 3 ", "+OK"} {
				c.expect(want)
			}
			io.WriteString(nc, "NO")
			time.Sleep(20 * time.Millisecond)
			io.WriteString(nc, "OP\r\n")
			c.expect("+OK")
			c.cmd("RETR 1", "+OK")
			for c.line() != "." {
			}
			c.cmd("LIST", "+OK")
			for c.line() != "." {
			}
			for range 10 { // every wait so far, and the next
				select {
				case w := <-waits:
					if w.ReadBuf || w.ReplyBuf {
						t.Fatalf("waiting session holds buffers: %+v", w)
					}
				default:
				}
			}
			c.cmd("QUIT", "+OK")
		})
	}
}

// The idle timer still fires while a session waits on the socket, and
// every command re-arms it (RFC 1939 §3).
func TestIdleTimeoutOnSocketWait(t *testing.T) {
	needRawWait(t)
	t.Parallel()
	var logs lockedBuffer
	const idle = 300 * time.Millisecond
	addr, _, waits := waitServer(t, pop3server.Options{
		Backend:     newFixture(t),
		Logger:      slog.New(slog.NewTextHandler(&logs, nil)),
		IdleTimeout: idle,
	}, nil, false)
	c := dial(t, addr)
	c.login("alice", "secret word")
	if w := loggedInWait(t, waits); w.ReadBuf {
		t.Fatal("the session did not wait on the socket")
	}
	for range 4 { // 4 x idle/2: longer than idle in all
		time.Sleep(idle / 2)
		c.cmd("NOOP", "+OK")
	}
	start := time.Now()
	if l, err := c.br.ReadString('\n'); err != io.EOF {
		t.Fatalf("read %q, %v after the idle timeout, want EOF", l, err)
	}
	if d := time.Since(start); d < idle*2/3 || d > 5*time.Second {
		t.Errorf("closed after %v, want about %v", d, idle)
	}
	time.Sleep(50 * time.Millisecond) // the log line follows the close
	// The session's attributes come first (log.go), user once logged in.
	for _, re := range []string{
		`msg="logged in" conn=\S+ remote=127\.0\.0\.1:\d+ user=alice messages=3\n`,
		`msg="idle timeout" conn=\S+ remote=127\.0\.0\.1:\d+ user=alice logged_in=true\n`,
	} {
		if !regexp.MustCompile(re).MatchString(logs.String()) {
			t.Errorf("no line matching %s in the log:\n%s", re, logs.String())
		}
	}
}

// STLS after waits on the plain socket: the TLS session then keeps its read
// buffer while it waits (the TLS layer may hold input) but not its reply
// buffer; the same on implicit TLS.
func TestTLSWaitKeepsReadBuffer(t *testing.T) {
	needRawWait(t)
	t.Parallel()
	t.Run("stls", func(t *testing.T) {
		t.Parallel()
		addr, _, waits := waitServer(t, pop3server.Options{Backend: newFixture(t), TLSConfig: testTLSConfig(t)}, nil, false)
		c := dial(t, addr)
		if w := nextWait(t, waits); w.ReadBuf || w.ReplyBuf {
			t.Fatalf("plain session before STLS holds buffers: %+v", w)
		}
		c.cmd("CAPA", "+OK")
		for c.line() != "." {
		}
		c.cmd("STLS", "+OK Begin TLS negotiation")
		tc := tls.Client(c.nc, clientTLS(t))
		if err := tc.Handshake(); err != nil {
			t.Fatal(err)
		}
		tlsSession(t, tc, waits)
	})
	t.Run("implicit", func(t *testing.T) {
		t.Parallel()
		addr, _, waits := waitServer(t, pop3server.Options{Backend: newFixture(t), TLSConfig: testTLSConfig(t)}, nil, true)
		tc, err := tls.Dial("tcp", addr, clientTLS(t))
		if err != nil {
			t.Fatal(err)
		}
		defer tc.Close()
		tc.SetDeadline(time.Now().Add(10 * time.Second))
		if l := rawLine(t, tc); !strings.HasPrefix(l, "+OK") {
			t.Fatalf("greeting %q", l)
		}
		tlsSession(t, tc, waits)
	})
}

func tlsSession(t *testing.T, tc *tls.Conn, waits <-chan pop3server.WaitState) {
	c := &client{t: t, nc: tc, br: bufio.NewReader(tc)}
	c.login("alice", "secret word")
	if w := loggedInWait(t, waits); !w.ReadBuf || w.ReplyBuf {
		t.Fatalf("idle TLS session: %+v, want the read buffer only", w)
	}
	io.WriteString(tc, "STAT\r\nNOOP\r\n")
	c.expect("+OK 3 ")
	c.expect("+OK")
	c.cmd("QUIT", "+OK")
}

// A SASL response read after a wait on the socket (readContinuation).
func TestSASLResponseAfterSocketWait(t *testing.T) {
	needRawWait(t)
	t.Parallel()
	b := memserver.New()
	b.AddUser("u", "p")
	b.EnableSASL()
	addr, _, waits := waitServer(t, pop3server.Options{Backend: b}, nil, false)
	c := dial(t, addr)
	nextWait(t, waits)
	c.cmd("AUTH PLAIN", "+ ")
	if w := nextWait(t, waits); w.ReadBuf || w.ReplyBuf {
		t.Fatalf("session waiting for a SASL response holds buffers: %+v", w)
	}
	c.cmd(base64.StdEncoding.EncodeToString([]byte("\x00u\x00p")), "+OK")
	c.cmd("STAT", "+OK 0 0")
}

// Shutdown ends a session waiting on the socket at once, and the server
// stops without waiting for ctx.
func TestShutdownWhileWaitingOnSocket(t *testing.T) {
	needRawWait(t)
	t.Parallel()
	addr, srv, waits := waitServer(t, pop3server.Options{Backend: newFixture(t)}, nil, false)
	c := dial(t, addr)
	c.login("alice", "secret word")
	if w := loggedInWait(t, waits); w.ReadBuf {
		t.Fatal("the session did not wait on the socket")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Shutdown took %v", d)
	}
	if _, err := c.br.ReadString('\n'); !errors.Is(err, io.EOF) {
		t.Fatalf("after Shutdown: %v, want EOF", err)
	}
}

// The memory an idle logged-in session takes (a performance target,
// docs/performance.md): heap and goroutine
// stack, measured in this process over many sessions after GCs, which
// shrink the stacks that login grew (as a real backend's does: deepLogin).
// A session holds no buffers while it waits and parks on a shallow stack,
// which shrinks to 4 KiB: about 6 KiB in all. Holding its buffers and
// blocked in Read, with a stack that could not shrink below 8 KiB, it took
// 15 KiB. Not parallel: it reads the whole process's memory.
func TestIdleSessionMemory(t *testing.T) {
	needRawWait(t)
	testIdleSessionMemory(t, false, 8<<10)
}

// TestIdleTLSSessionMemory: the same over implicit TLS (RFC 8314). A TLS
// session also holds its crypto/tls connection (record layer, cipher
// state, what crypto/tls keeps between records), and it waits in the TLS
// Read rather than on the socket, so its stack stays at 8 KiB: about 9 KiB
// of heap and 8 of stack with Go 1.26, 17-18 KiB in all. The bound leaves
// a margin over that; a server process holding 2,000 such sessions
// measured 41 KiB PSS per session (the runtime's spans and free space
// around the objects), within the 64 KiB performance target.
func TestIdleTLSSessionMemory(t *testing.T) {
	testIdleSessionMemory(t, true, 22<<10)
}

func testIdleSessionMemory(t *testing.T, implicitTLS bool, limit float64) {
	if raceEnabled {
		t.Skip("the race detector changes memory use")
	}
	if testing.Short() {
		t.Skip("500 connections; skipped with -short")
	}
	const n = 500
	raiseFileLimit(t, 2*n+256)
	b := memserver.New()
	users := make([]string, n)
	for i := range users {
		users[i] = "u" + strings.Repeat("x", i%7) + string(rune('a'+i%26)) + "-" + strings.Repeat("y", i/26)
		b.AddUser(users[i], "p")
	}
	opts := pop3server.Options{Backend: deepLogin{b}}
	var client *tls.Config
	if implicitTLS {
		opts.TLSConfig = testTLSConfig(t)
		client = &tls.Config{InsecureSkipVerify: true}
	}
	addr, _, waits := waitServer(t, opts, nil, implicitTLS)
	conns := make([]net.Conn, 0, n)
	defer func() {
		for _, nc := range conns {
			nc.Close()
		}
	}()
	buf := make([]byte, 512)
	readReply := func(nc net.Conn) {
		if _, err := nc.Read(buf); err != nil || buf[0] != '+' {
			t.Fatalf("reply %q, %v", buf, err)
		}
	}
	before := idleMemory()
	for _, u := range users {
		raw, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		// Only the socket is kept: the client's crypto/tls state, in this
		// process too, is garbage once the session is logged in, so what
		// grew is the server's.
		conns = append(conns, raw)
		nc := raw
		if implicitTLS {
			nc = tls.Client(raw, client)
		}
		nc.SetDeadline(time.Now().Add(10 * time.Second))
		readReply(nc)
		io.WriteString(nc, "USER "+u+"\r\n")
		readReply(nc)
		io.WriteString(nc, "PASS p\r\n")
		readReply(nc)
	}
	for range n {
		loggedInWait(t, waits)
	}
	after := idleMemory()
	heap := float64(after.HeapAlloc-before.HeapAlloc) / n
	stack := float64(after.StackInuse-before.StackInuse) / n
	t.Logf("per idle session: %.0f octets of heap, %.0f of stack", heap, stack)
	if perSession := heap + stack; perSession > limit {
		t.Errorf("an idle session takes %.0f octets of heap and stack, want at most %.0f", perSession, limit)
	}
}

// idleMemory reads the memory statistics after two GCs (the first may
// leave stacks to shrink and objects to free).
func idleMemory() *runtime.MemStats {
	var ms runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&ms)
	return &ms
}

// deepLogin grows the stack of every session that logs in to 8 KiB, as
// the maildir store and the logger do in production.
type deepLogin struct{ *memserver.Backend }

func (b deepLogin) NewSession(ctx context.Context, c *pop3server.Conn) (pop3server.Session, error) {
	s, err := b.Backend.NewSession(ctx, c)
	return deepSession{s}, err
}

type deepSession struct{ pop3server.Session }

func (s deepSession) Login(ctx context.Context, user, pass string) (pop3server.Mailbox, error) {
	useStack(8)
	return s.Session.Login(ctx, user, pass)
}

// useStack takes about n*600 octets of stack.
//
//go:noinline
func useStack(n int) byte {
	var b [512]byte
	b[n] = byte(n)
	if n > 0 {
		b[0] = useStack(n - 1)
	}
	return b[n] + b[0]
}
