package pop2

import (
	"bufio"
	"context"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/postoffice-mail/postoffice/internal/auth"
	"github.com/postoffice-mail/postoffice/internal/backend"
	"github.com/postoffice-mail/postoffice/internal/store/maildir"
)

// users is a fake user database: ann with password "secret".
type users struct{}

func (users) Authenticate(ctx context.Context, name, pass string) (auth.User, error) {
	if name == "ann" && pass == "secret" {
		return auth.User{Name: "ann"}, nil
	}
	return auth.User{}, auth.ErrFailed
}

func (users) Lookup(ctx context.Context, name string) (auth.User, error) {
	return auth.User{}, auth.ErrUnknownUser
}

type fixture struct {
	st   *maildir.Store
	srv  *Server
	addr string
}

func newFixture(t *testing.T, msgs ...string) *fixture {
	t.Helper()
	st, err := maildir.New(maildir.Options{Location: t.TempDir() + "/%u/Maildir", NoSync: true, Hostname: "test"})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range msgs {
		if err := st.Deliver(context.Background(), "ann", strings.NewReader(m)); err != nil {
			t.Fatal(err)
		}
	}
	b, err := backend.New(backend.Options{Users: users{}, Store: st})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := New(Options{Backend: b, Folders: st, Hostname: "mail.example", AuthFailDelay: -1,
		Now: func() time.Time { return time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC) }})
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { srv.Serve(l); close(done) }()
	t.Cleanup(func() { srv.Close(); <-done })
	return &fixture{st: st, srv: srv, addr: l.Addr().String()}
}

// client is one connection driven by a transcript.
type client struct {
	t  *testing.T
	nc net.Conn
	br *bufio.Reader
}

func (f *fixture) dial(t *testing.T) *client {
	t.Helper()
	nc, err := net.Dial("tcp", f.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	// A safety net against a hang, not a timing assertion.
	nc.SetDeadline(time.Now().Add(30 * time.Second))
	c := &client{t: t, nc: nc, br: bufio.NewReader(nc)}
	c.expect("+ POP2 mail.example server ready\r\n")
	return c
}

// expect reads exactly len(want) octets and compares them.
func (c *client) expect(want string) {
	c.t.Helper()
	got := make([]byte, len(want))
	if _, err := io.ReadFull(c.br, got); err != nil {
		c.t.Fatalf("reading %q: got %q, %v", want, got, err)
	}
	if string(got) != want {
		c.t.Fatalf("S: got %q, want %q", got, want)
	}
}

// run sends each C: line and expects the S: octets after it.
func (c *client) run(script ...string) {
	c.t.Helper()
	for i := 0; i < len(script); i += 2 {
		if _, err := io.WriteString(c.nc, script[i]+"\r\n"); err != nil {
			c.t.Fatal(err)
		}
		c.expect(script[i+1])
	}
}

func (c *client) closed() {
	c.t.Helper()
	if b, err := c.br.ReadByte(); err == nil {
		c.t.Fatalf("connection still open, read %q", b)
	}
}

func uids(t *testing.T, st *maildir.Store, folder string) int {
	t.Helper()
	md, err := st.OpenFolder(context.Background(), "ann", folder)
	if err != nil {
		t.Fatal(err)
	}
	defer md.Close()
	return len(md.Messages())
}

const (
	msg1 = "Subject: one\n\nfirst\n.dot line\n"
	msg2 = "Subject: two\r\n\r\nsecond, no final newline"
)

var (
	wire1 = "Subject: one\r\n\r\nfirst\r\n.dot line\r\n"
	wire2 = "Subject: two\r\n\r\nsecond, no final newline\r\n"
)

func ln(n int) string {
	return strconv.Itoa(len(func() string { return []string{"", wire1, wire2}[n] }()))
}

// TestFetchmailSequence replays what fetchmail's POP2 driver sends
// (pop2.c): HELO, then per message READ n, RETR (no reply line: exactly
// the announced octets), ACKD (or ACKS with "keep"), and QUIT.
func TestFetchmailSequence(t *testing.T) {
	t.Parallel()
	f := newFixture(t, msg1, msg2)
	c := f.dial(t)
	c.run(
		"HELO ann secret", "#2\r\n",
		"READ 1", "="+ln(1)+"\r\n",
		"RETR", wire1,
		"ACKD", "="+ln(2)+"\r\n",
		"READ 2", "="+ln(2)+"\r\n",
		"RETR", wire2,
		"ACKS", "=0\r\n",
		"QUIT", "+ OK\r\n",
	)
	c.closed()
	if n := uids(t, f.st, "INBOX"); n != 1 {
		t.Errorf("INBOX holds %d messages after ACKD of one of two, want 1", n)
	}
}

// TestRFC937Transcript follows the RFC's example session: READ without a
// number, ACKS moving on, NACK keeping the message, a deleted message
// reading as =0, FOLD to a folder and back.
func TestRFC937Transcript(t *testing.T) {
	t.Parallel()
	f := newFixture(t, msg1, msg2)
	ctx := context.Background()
	if err := f.st.CreateFolder(ctx, "ann", "Sent"); err != nil {
		t.Fatal(err)
	}
	if err := f.st.DeliverFolder(ctx, "ann", "Sent", strings.NewReader(msg1)); err != nil {
		t.Fatal(err)
	}
	c := f.dial(t)
	c.run(
		"helo ann secret", "#2\r\n",
		"READ", "="+ln(1)+"\r\n",
		"RETR", wire1,
		"NACK", "="+ln(1)+"\r\n",
		"RETR", wire1,
		"ACKD", "="+ln(2)+"\r\n",
		"READ 1", "=0\r\n", // deleted in this session
		"READ 3", "=0\r\n",
		"READ 0", "=0\r\n",
		"FOLD Sent", "#1\r\n", // commits the ACKD of INBOX
		"READ", "="+ln(1)+"\r\n",
		"RETR", wire1,
		"ACKD", "=0\r\n",
		"FOLD INBOX", "#1\r\n",
		"QUIT", "+ OK\r\n",
	)
	if n := uids(t, f.st, "Sent"); n != 0 {
		t.Errorf("Sent holds %d messages, want 0", n)
	}
	if n := uids(t, f.st, "INBOX"); n != 1 {
		t.Errorf("INBOX holds %d messages, want 1", n)
	}
}

func TestPOP2Errors(t *testing.T) {
	t.Parallel()
	f := newFixture(t, msg1)
	c := f.dial(t)
	c.run(
		"READ 1", "- Unknown command: HELO (POP2) or USER (POP1) first\r\n",
		"HELO ann", "- HELO needs a user name and a password\r\n",
		"HELO ann wrong", "- Authentication failed\r\n",
		"READ 1", "- Not logged in\r\n",
		"RETR", "- Not logged in\r\n",
		"FOLD x", "- Not logged in\r\n",
		"USER ann", "- Unknown command\r\n", // the first command chose POP2
		"HELO ann secret", "#1\r\n",
		"HELO ann secret", "- Already logged in\r\n",
		"RETR", "- No message to retrieve: READ first\r\n",
		"ACKS", "- No message retrieved to acknowledge\r\n",
		"READ x", "- Invalid message number\r\n",
		"READ 9", "=0\r\n",
		"RETR", "- No message to retrieve: READ first\r\n",
		"FOLD", "- FOLD needs a folder name\r\n",
		"FOLD Nope", "- No such folder\r\n",
		"FOLD a.b", "- No such folder\r\n",
		"READ 1", "="+ln(1)+"\r\n", // still in INBOX
		"RETR x", "- RETR takes no argument\r\n",
		"RETR", wire1,
		"ACKD x", "- ACKD takes no argument\r\n",
		"ACKD", "=0\r\n",
		"XYZZY", "- Unknown command\r\n",
	)
	// The session ends without QUIT: the ACKD is not committed.
	c.nc.Close()
	waitSessions(t, f.srv)
	if n := uids(t, f.st, "INBOX"); n != 1 {
		t.Errorf("INBOX holds %d messages after a dropped session, want 1", n)
	}
}

// waitSessions waits (bounded) until the server has no session left.
func waitSessions(t *testing.T, s *Server) {
	t.Helper()
	for range 1000 {
		s.mu.Lock()
		n := len(s.conns)
		s.mu.Unlock()
		if n == 0 {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatal("session did not end")
}

func TestAuthFailuresEndSession(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	c := f.dial(t)
	c.run(
		"HELO ann a", "- Authentication failed\r\n",
		"HELO ann b", "- Authentication failed\r\n",
		"HELO ann c", "- Authentication failed\r\n- Too many authentication failures, closing connection\r\n",
	)
	c.closed()
}

func TestPlaintextRefused(t *testing.T) {
	t.Parallel()
	f := newFixture(t, msg1)
	// A net.Pipe has no loopback address: a remote client as far as the
	// plaintext rule goes.
	cl, sv := net.Pipe()
	defer cl.Close()
	f.srv.ServeConn(sv)
	c := &client{t: t, nc: cl, br: bufio.NewReader(cl)}
	cl.SetDeadline(time.Now().Add(30 * time.Second))
	c.expect("+ POP2 mail.example server ready\r\n")
	c.run("HELO ann secret", "- Plaintext logins are not allowed on this connection\r\n",
		"QUIT", "+ OK\r\n")
}

func TestPOP1Transcript(t *testing.T) {
	t.Parallel()
	f := newFixture(t, msg1, "From me\n>From you\nx\n")
	stream := "From MAILER-DAEMON Tue Jan  2 03:04:05 2024\r\n" + wire1 + "\r\n" +
		"From MAILER-DAEMON Tue Jan  2 03:04:05 2024\r\n>From me\r\n>>From you\r\nx\r\n\r\n"
	c := f.dial(t)
	c.run(
		"RCEV", "- Unknown command: HELO (POP2) or USER (POP1) first\r\n",
		"USER ann", "+ OK\r\n",
		"RETR", "- Not logged in\r\n",
		"PASS wrong", "- Authentication failed\r\n",
		"PASS secret", "- PASS must follow USER\r\n",
		"USER ann", "+ OK\r\n",
		"PASS secret", "+ OK\r\n",
		"USER ann", "- Already logged in\r\n",
		"NOOP", "+ OK\r\n",
		"RCEV", "- RETR or RDEL first\r\n",
		"RCVD", "- Nothing sent to confirm: RCEV first\r\n",
		"RETR", "+"+strconv.Itoa(len(stream))+"\r\n",
		"RCEV", stream,
		"RCVD", "+ OK\r\n",
		"RETR Nope", "- No such folder\r\n",
		"RDEL ann", "+"+strconv.Itoa(len(stream))+"\r\n",
		"RCEV", stream,
	)
	// Dropped before RCVD: nothing removed.
	c.nc.Close()
	waitSessions(t, f.srv)
	if n := uids(t, f.st, "INBOX"); n != 2 {
		t.Fatalf("INBOX holds %d messages after RDEL without RCVD, want 2", n)
	}
	c = f.dial(t)
	c.run(
		"USER ann", "+ OK\r\n",
		"PASS secret", "+ OK\r\n",
		"RDEL INBOX", "+"+strconv.Itoa(len(stream))+"\r\n",
		"RCEV", stream,
		"RCVD", "+ OK\r\n",
		"RETR", "+0\r\n",
		"QUIT", "+ OK\r\n",
	)
	if n := uids(t, f.st, "INBOX"); n != 0 {
		t.Errorf("INBOX holds %d messages after RDEL and RCVD, want 0", n)
	}
}

func TestCopyCRLF(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("a", 40<<10)
	for _, tc := range []struct{ in, want string }{
		{"", ""},
		{"a", "a\r\n"},
		{"a\r", "a\r\n"},
		{"a\nb\r\n", "a\r\nb\r\n"},
		{"a\rb\n", "a\rb\r\n"},
		{long + "\r\n", long + "\r\n"},
		{long + "\r", long + "\r\n"},
		{long + "\rx\n", long + "\rx\r\n"},
	} {
		var b strings.Builder
		n, err := copyCRLF(&b, strings.NewReader(tc.in), false)
		if err != nil || b.String() != tc.want || n != int64(len(tc.want)) {
			t.Errorf("copyCRLF(%.20q) = %.20q, %d, %v, want %.20q", tc.in, b.String(), n, err, tc.want)
		}
	}
	var got []bool
	for _, l := range []string{"From x", ">>From x", "Fromx", "> From x"} {
		got = append(got, isFromLine([]byte(l)))
	}
	if diff := cmp.Diff([]bool{true, true, false, false}, got); diff != "" {
		t.Errorf("isFromLine (-want +got):\n%s", diff)
	}
}
