package pop3server_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/md5"
	"crypto/tls"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"net"
	"regexp"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/postoffice-mail/postoffice/pop3proto"
	"github.com/postoffice-mail/postoffice/pop3server"
	"github.com/postoffice-mail/postoffice/pop3server/memserver"
)

// tlsSeen records, at each login, whether the backend's *Conn had TLS.
type tlsSeen struct {
	pop3server.Backend
	logins chan bool
}

type tlsSeenSession struct {
	pop3server.Session
	c      *pop3server.Conn
	logins chan bool
}

func (b tlsSeen) NewSession(ctx context.Context, c *pop3server.Conn) (pop3server.Session, error) {
	s, err := b.Backend.NewSession(ctx, c)
	return tlsSeenSession{s, c, b.logins}, err
}

func (s tlsSeenSession) Login(ctx context.Context, u, p string) (pop3server.Mailbox, error) {
	s.logins <- s.c.TLS != nil
	return s.Session.Login(ctx, u, p)
}

// rawLine reads one line from nc a byte at a time, so nothing after it
// (the TLS handshake) is consumed.
func rawLine(t *testing.T, nc net.Conn) string {
	t.Helper()
	var b []byte
	var one [1]byte
	for {
		if _, err := nc.Read(one[:]); err != nil {
			t.Fatalf("read after %q: %v", b, err)
		}
		b = append(b, one[0])
		if one[0] == '\n' {
			return string(b)
		}
	}
}

// startPipe serves one net.Pipe connection (remote address "pipe", not
// loopback) and returns the client end.
func startPipe(t *testing.T, opts pop3server.Options) (net.Conn, *pop3server.Server) {
	t.Helper()
	if opts.AuthFailDelay == 0 {
		opts.AuthFailDelay = -1
	}
	srv, err := pop3server.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	cli, sv := net.Pipe()
	t.Cleanup(func() { cli.Close() })
	cli.SetDeadline(time.Now().Add(10 * time.Second))
	srv.ServeConn(sv)
	return cli, srv
}

func clientTLS(t *testing.T) *tls.Config {
	p, err := testCert()
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{RootCAs: p.Pool(), ServerName: "localhost"}
}

// readCapa reads a CAPA reply and returns its capability lines.
func readCapa(t *testing.T, br *bufio.Reader) []string {
	t.Helper()
	var caps []string
	for {
		l, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("reading CAPA: %v", err)
		}
		l = strings.TrimSuffix(l, "\r\n")
		switch {
		case l == ".":
			return caps
		case strings.HasPrefix(l, "+OK"):
		case strings.HasPrefix(l, "-ERR"):
			t.Fatalf("CAPA: %q", l)
		default:
			caps = append(caps, l)
		}
	}
}

// RFC 2595 §4, §2.3: STLS upgrades the connection; afterwards CAPA
// drops STLS and, TLS being on, lists USER; the backend's Conn has TLS; a
// USER given before STLS is forgotten.
func TestSTLS(t *testing.T) {
	t.Parallel()
	logins := make(chan bool, 1)
	cli, _ := startPipe(t, pop3server.Options{
		Backend:   tlsSeen{newFixture(t), logins},
		TLSConfig: testTLSConfig(t),
	})
	br := bufio.NewReader(cli)
	if l, _ := br.ReadString('\n'); !strings.HasPrefix(l, "+OK") {
		t.Fatalf("greeting %q", l)
	}
	io.WriteString(cli, "CAPA\r\n")
	caps := readCapa(t, br)
	if !contains(caps, "STLS") || contains(caps, "USER") {
		t.Fatalf("CAPA before STLS on a non-loopback connection = %q, want STLS and no USER", caps)
	}
	io.WriteString(cli, "STLS\r\n")
	if br.Buffered() != 0 {
		t.Fatal("client buffered data before the handshake")
	}
	if l := rawLine(t, cli); l != "+OK Begin TLS negotiation\r\n" {
		t.Fatalf("STLS reply %q", l)
	}
	tc := tls.Client(cli, clientTLS(t))
	if err := tc.Handshake(); err != nil {
		t.Fatalf("handshake: %v", err)
	}
	tbr := bufio.NewReader(tc)
	io.WriteString(tc, "CAPA\r\n")
	caps = readCapa(t, tbr)
	if contains(caps, "STLS") || !contains(caps, "USER") {
		t.Fatalf("CAPA after STLS = %q, want USER and no STLS", caps)
	}
	io.WriteString(tc, "STLS\r\n")
	if l, _ := tbr.ReadString('\n'); l != "-ERR Already using TLS: go on and log in\r\n" {
		t.Fatalf("second STLS: %q", l)
	}
	io.WriteString(tc, "USER alice\r\nPASS secret word\r\n")
	for _, want := range []string{"+OK\r\n", "+OK Logged in, 3 messages\r\n"} {
		if l, _ := tbr.ReadString('\n'); l != want {
			t.Fatalf("got %q, want %q", l, want)
		}
	}
	if !<-logins {
		t.Error("backend's Conn.TLS was nil at login after STLS")
	}
}

// Commands pipelined in plaintext after STLS (the CVE-2011-0411 class of
// command injection), in the same
// write, are discarded. Over net.Pipe the server reads "STLS\r\nCAPA\r\n"
// in one read, so the CAPA sits in the plaintext buffer when STLS runs: the
// handshake then succeeds, and what the server says inside TLS answers the
// client's PASS and QUIT only, not the CAPA. The USER given before STLS is
// forgotten too.
func TestSTLSDiscardsPipelinedPlaintext(t *testing.T) {
	t.Parallel()
	cli, srv := startPipe(t, pop3server.Options{Backend: newFixture(t), TLSConfig: testTLSConfig(t), AllowPlaintextAuth: true})
	if l := rawLine(t, cli); !strings.HasPrefix(l, "+OK") {
		t.Fatalf("greeting %q", l)
	}
	io.WriteString(cli, "USER alice\r\n")
	if l := rawLine(t, cli); l != "+OK\r\n" {
		t.Fatalf("USER reply %q", l)
	}
	io.WriteString(cli, "STLS\r\nCAPA\r\n")
	if l := rawLine(t, cli); l != "+OK Begin TLS negotiation\r\n" {
		t.Fatalf("STLS reply %q", l)
	}
	tc := tls.Client(cli, clientTLS(t))
	if err := tc.Handshake(); err != nil {
		t.Fatalf("handshake: %v (the injected CAPA reached the TLS layer)", err)
	}
	io.WriteString(tc, "PASS secret word\r\nQUIT\r\n")
	all, err := io.ReadAll(tc)
	if err != nil && !errors.Is(err, io.EOF) {
		t.Fatalf("read: %v", err)
	}
	if want := "-ERR PASS must come right after USER: send USER with your name, then PASS\r\n+OK Logging out\r\n"; string(all) != want {
		t.Fatalf("inside TLS the server sent %q, want %q", all, want)
	}
	waitSessions(t, srv, 0)
}

// A client that goes on in plaintext after "+OK Begin TLS negotiation"
// fails the handshake, and the session ends without another reply.
func TestSTLSFailedHandshakeEndsSession(t *testing.T) {
	t.Parallel()
	cli, srv := startPipe(t, pop3server.Options{Backend: newFixture(t), TLSConfig: testTLSConfig(t)})
	rawLine(t, cli)
	io.WriteString(cli, "STLS\r\n")
	if l := rawLine(t, cli); l != "+OK Begin TLS negotiation\r\n" {
		t.Fatalf("STLS reply %q", l)
	}
	go io.WriteString(cli, "CAPA\r\n")
	rest, _ := io.ReadAll(cli)
	if len(rest) != 0 {
		t.Fatalf("after a failed handshake the server sent %q", rest)
	}
	waitSessions(t, srv, 0)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

var timestampRE = regexp.MustCompile(`^\+OK POP3 server ready (<[0-9]+\.[0-9a-f]+@mail\.example\.org>)$`)

// RFC 1939 §7: the APOP timestamp is an RFC 822 msg-id, without '=',
// new on every connection; the right digest logs in.
func TestAPOP(t *testing.T) {
	t.Parallel()
	b := newFixture(t)
	b.EnableAPOP()
	addr, _ := startServer(t, pop3server.Options{Backend: b, Hostname: "mail.example.org"})
	seen := map[string]bool{}
	for i := 0; i < 3; i++ {
		nc, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		nc.SetDeadline(time.Now().Add(10 * time.Second))
		br := bufio.NewReader(nc)
		g, _ := br.ReadString('\n')
		m := timestampRE.FindStringSubmatch(strings.TrimSuffix(g, "\r\n"))
		if m == nil || strings.Contains(g, "=") {
			t.Fatalf("greeting %q is not an APOP greeting", g)
		}
		ts := m[1]
		if seen[ts] {
			t.Fatalf("timestamp %s repeated", ts)
		}
		seen[ts] = true
		if i == 0 {
			continue
		}
		sum := md5.Sum([]byte(ts + "secret word"))
		digest := hex.EncodeToString(sum[:])
		if i == 2 {
			digest = strings.ToUpper(digest) // the engine lower-cases it
		}
		io.WriteString(nc, "APOP alice "+digest+"\r\nQUIT\r\n")
		if l, _ := br.ReadString('\n'); l != "+OK Logged in, 3 messages\r\n" {
			t.Fatalf("APOP: %q", l)
		}
		br.ReadString('\n')
	}
}

// RFC 1939 §7's example, against memserver's APOP.
func TestMemserverAPOPVector(t *testing.T) {
	t.Parallel()
	b := memserver.New()
	b.AddUser("mrose", "tanstaaf")
	b.EnableAPOP()
	s, err := b.NewSession(t.Context(), &pop3server.Conn{})
	if err != nil {
		t.Fatal(err)
	}
	as, ok := s.(pop3server.APOPSession)
	if !ok {
		t.Fatal("session does not implement APOPSession")
	}
	mb, err := as.APOP(t.Context(), "mrose", "<1896.697170952@dbc.mtview.ca.us>", "c4c9334bac560ecc979e58001b3e22fb")
	if err != nil {
		t.Fatalf("APOP: %v", err)
	}
	mb.Close()
}

func TestHostnameChecked(t *testing.T) {
	t.Parallel()
	for _, h := range []string{"a=b", "host name", "<x>", "a..b", ".a"} {
		if _, err := pop3server.New(pop3server.Options{Backend: memserver.New(), Hostname: h}); err == nil {
			t.Errorf("New(Hostname: %q) = nil error", h)
		}
	}
}

type fakeAddr string

func (a fakeAddr) Network() string { return "fake" }
func (a fakeAddr) String() string  { return string(a) }

// RFC 2595 §2.3: USER is refused unless TLS, loopback or a Unix socket.
func TestPlaintextPolicy(t *testing.T) {
	t.Parallel()
	tests := []struct {
		addr net.Addr
		ok   bool
	}{
		{&net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1}, true},
		{&net.TCPAddr{IP: net.IPv4(127, 9, 8, 7), Port: 1}, true},
		{&net.TCPAddr{IP: net.IPv6loopback, Port: 1}, true},
		{fakeAddr("[::ffff:127.0.0.1]:110"), true},
		{fakeAddr("127.0.0.1"), true},
		{&net.UnixAddr{Name: "@", Net: "unix"}, true},
		{&net.TCPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 1}, false},
		{&net.TCPAddr{IP: net.ParseIP("2001:db8::1"), Port: 1}, false},
		{fakeAddr("localhost:110"), false}, // names are not resolved
		{fakeAddr("pipe"), false},
	}
	for _, tt := range tests {
		srv, err := pop3server.New(pop3server.Options{Backend: newFixture(t), AuthFailDelay: -1})
		if err != nil {
			t.Fatal(err)
		}
		cli, sv := net.Pipe()
		cli.SetDeadline(time.Now().Add(10 * time.Second))
		srv.ServeConn(remoteAddrConn{sv, tt.addr})
		br := bufio.NewReader(cli)
		br.ReadString('\n')
		io.WriteString(cli, "USER alice\r\n")
		l, _ := br.ReadString('\n')
		if got := l == "+OK\r\n"; got != tt.ok {
			t.Errorf("remote %v: USER -> %q, want allowed=%v", tt.addr, l, tt.ok)
		}
		cli.Close()
		srv.Close()
	}
}

// RFC 5034 §4 lets AUTH lines and SASL responses exceed 255 octets
// (the 255-octet limit of RFC 2449 §4 still holds for every other
// command); 16 KiB is the cap.
// A line over its limit ends the session (TestEndlessLine has the limits
// one by one).
func TestLongLines(t *testing.T) {
	t.Parallel()
	b := newFixture(t)
	b.EnableSASL()
	addr, _ := startServer(t, pop3server.Options{Backend: b})
	long := base64.StdEncoding.EncodeToString([]byte("\x00alice\x00" + strings.Repeat("x", 9000)))
	c := dial(t, addr)
	c.cmd("AUTH PLAIN "+long, "-ERR [AUTH] ")
	c.cmd("AUTH PLAIN", "+ ")
	c.cmd(long, "-ERR [AUTH] ")
	c.cmd("AUTH PLAIN "+base64.StdEncoding.EncodeToString([]byte("\x00alice\x00secret word")), "+OK Logged in")
	c.cmd("QUIT", "+OK")

	for _, tt := range []struct {
		before []string
		line   string
	}{
		{nil, "USER " + strings.Repeat("a", 300)},
		{nil, "AUTH PLAIN " + strings.Repeat("A", 17<<10)},
		{[]string{"AUTH PLAIN"}, strings.Repeat("A", 17<<10)},
		// In TRANSACTION the 255-octet limit applies to AUTH as well.
		{[]string{"USER alice", "PASS secret word"}, "AUTH " + strings.Repeat("A", 300)},
	} {
		c := dial(t, addr)
		for _, l := range tt.before {
			c.cmd(l, "+")
		}
		c.cmd(tt.line, "-ERR Line too long, closing connection; reconnect and send shorter lines (a command has at most 255 octets)")
		if l, err := c.br.ReadString('\n'); err == nil {
			t.Errorf("after %.20q...: %q, want the connection closed", tt.line, l)
		}
	}
}

// scripted offers test mechanisms on top of memserver's sessions:
// X-LOOP challenges forever, X-FINAL ends with additional data, X-BAD calls
// its first response malformed, X-SYS fails with a non-protocol error.
// PLAIN is memserver's (its SASL must be enabled).
type scripted struct{ pop3server.Backend }

type scriptedSession struct{ pop3server.Session }

func (b scripted) NewSession(ctx context.Context, c *pop3server.Conn) (pop3server.Session, error) {
	s, err := b.Backend.NewSession(ctx, c)
	return scriptedSession{s}, err
}

func (s scriptedSession) Mechanisms() []string {
	return []string{"X-LOOP", "X-FINAL", "X-BAD", "X-SYS", "PLAIN"}
}

func (s scriptedSession) StartSASL(ctx context.Context, mech string) (pop3server.SASLExchange, error) {
	if mech == "PLAIN" {
		return s.Session.(pop3server.SASLSession).StartSASL(ctx, mech)
	}
	return &scriptedExchange{s: s.Session, mech: mech}, nil
}

type scriptedExchange struct {
	s    pop3server.Session
	mech string
	n    int
}

func (e *scriptedExchange) Next(ctx context.Context, resp []byte) ([]byte, bool, error) {
	e.n++
	switch e.mech {
	case "X-LOOP":
		return []byte("again"), false, nil
	case "X-FINAL":
		if e.n == 1 {
			return []byte("challenge"), false, nil
		}
		if string(resp) != "answer" {
			return nil, false, &pop3server.Error{Code: pop3proto.CodeAuth, Text: "Authentication failed"}
		}
		return []byte("server-final"), true, nil
	case "X-BAD":
		return nil, false, &pop3server.Error{Text: "Malformed message"}
	case "X-SYS":
		return nil, false, errors.New("database on fire")
	}
	return nil, false, errors.New("unexpected mechanism")
}

func (e *scriptedExchange) Login(ctx context.Context) (pop3server.Mailbox, error) {
	return e.s.Login(ctx, "alice", "secret word")
}

func (e *scriptedExchange) User() string { return "alice" }

// lockedBuffer is a log sink the sessions may write to concurrently.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (w *lockedBuffer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (w *lockedBuffer) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}

// RFC 5034 §4: challenges, additional data with success, the round
// cap, malformed messages and backend failures; no payload reaches the log.
func TestSASLFraming(t *testing.T) {
	t.Parallel()
	var logs lockedBuffer
	addr, srv := startServer(t, pop3server.Options{
		Backend:        scripted{saslFixture(t)},
		Logger:         slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		MaxBadCommands: 20,
	})
	c := dial(t, addr)
	b64 := base64.StdEncoding.EncodeToString

	c.cmd("AUTH X-LOOP", "+ "+b64([]byte("again")))
	for i := 1; i < 10; i++ {
		c.cmd("", "+ "+b64([]byte("again")))
	}
	c.cmd("", "-ERR Too many SASL round trips, authentication aborted: start again with AUTH")

	badIR := b64([]byte("secret-payload"))
	c.cmd("AUTH X-BAD "+badIR, "-ERR Malformed message")
	c.cmd("AUTH X-SYS", "-ERR [SYS/TEMP] ")

	// Additional data with success must be answered by an empty line.
	c.cmd("AUTH X-FINAL", "+ "+b64([]byte("challenge")))
	c.cmd(b64([]byte("answer")), "+ "+b64([]byte("server-final")))
	c.cmd(b64([]byte("not empty")), "-ERR Expected an empty response: send an empty line to finish, or * to cancel")

	c.cmd("AUTH X-FINAL", "+ "+b64([]byte("challenge")))
	c.cmd(b64([]byte("answer")), "+ "+b64([]byte("server-final")))
	c.cmd("", "+OK Logged in, 3 messages")
	c.cmd("QUIT", "+OK")

	c2 := dial(t, addr)
	secret := b64([]byte("\x00alice\x00secret word"))
	c2.cmd("AUTH PLAIN "+secret, "+OK Logged in")
	c2.cmd("QUIT", "+OK")
	c2.nc.Close()
	c.nc.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{secret, badIR, "secret-payload", b64([]byte("answer")), "secret word", "database on fire"} {
		if s == "database on fire" {
			// The backend's error detail is logged, by design.
			if !strings.Contains(logs.String(), s) {
				t.Errorf("log lacks the backend error %q", s)
			}
			continue
		}
		if strings.Contains(logs.String(), s) {
			t.Errorf("log contains AUTH payload %q:\n%s", s, logs.String())
		}
	}
}

// A failed APOP or AUTH waits AuthFailDelay like PASS; bad base64 and a
// cancel are not credential failures and are answered at once.
func TestSASLAndAPOPDelays(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newFixture(t)
		b.EnableAPOP()
		b.EnableSASL()
		srv, err := pop3server.New(pop3server.Options{Backend: b, AuthFailDelay: 2 * time.Second, AllowPlaintextAuth: true})
		if err != nil {
			t.Fatal(err)
		}
		defer srv.Close()
		cli, sv := net.Pipe()
		defer cli.Close()
		srv.ServeConn(sv)
		br := bufio.NewReader(cli)
		br.ReadString('\n')
		wrong := base64.StdEncoding.EncodeToString([]byte("\x00alice\x00wrong"))
		for _, tt := range []struct {
			send  string
			reply string
			delay time.Duration
		}{
			{"APOP alice 00000000000000000000000000000000", "-ERR [AUTH] Authentication failed: check the user name and password", 2 * time.Second},
			{"AUTH PLAIN " + wrong, "-ERR [AUTH] Authentication failed: check the user name and password", 2 * time.Second},
			{"AUTH PLAIN ###", "-ERR Invalid base64 data: send the SASL response in base64, or * to cancel", 0},
			{"AUTH PLAIN\r\n*", "+ ", 0},
		} {
			start := time.Now()
			io.WriteString(cli, tt.send+"\r\n")
			l, _ := br.ReadString('\n')
			if got := strings.TrimSuffix(l, "\r\n"); got != tt.reply || time.Since(start) != tt.delay {
				t.Errorf("%q -> %q after %v, want %q after %v", tt.send, got, time.Since(start), tt.reply, tt.delay)
			}
		}
		if l, _ := br.ReadString('\n'); l != "-ERR Authentication aborted by the client: start again with AUTH or USER\r\n" {
			t.Errorf("cancel -> %q", l)
		}
	})
}

func saslFixture(t *testing.T) *memserver.Backend {
	b := newFixture(t)
	b.EnableSASL()
	return b
}
