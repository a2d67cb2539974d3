package pop3server_test

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/postoffice-mail/postoffice/internal/wire"
	"github.com/postoffice-mail/postoffice/pop3server"
	"github.com/postoffice-mail/postoffice/pop3server/memserver"
)

type client struct {
	t  *testing.T
	nc net.Conn
	br *bufio.Reader
}

func dial(t *testing.T, addr string) *client {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	c := &client{t: t, nc: nc, br: bufio.NewReader(nc)}
	c.expect("+OK")
	return c
}

func (c *client) line() string {
	c.t.Helper()
	l, err := c.br.ReadString('\n')
	if err != nil {
		c.t.Fatalf("read: %v", err)
	}
	return strings.TrimSuffix(l, "\r\n")
}

func (c *client) expect(prefix string) string {
	c.t.Helper()
	l := c.line()
	if !strings.HasPrefix(l, prefix) {
		c.t.Fatalf("got %q, want prefix %q", l, prefix)
	}
	return l
}

func (c *client) cmd(s, prefix string) string {
	c.t.Helper()
	io.WriteString(c.nc, s+"\r\n")
	return c.expect(prefix)
}

func (c *client) login(user, pass string) {
	c.t.Helper()
	c.cmd("USER "+user, "+OK")
	c.cmd("PASS "+pass, "+OK")
}

// RFC 1939 §11: for every message, LIST n equals the octets RETR sends
// once un-stuffed, and the body is the CRLF form of what was stored.
func TestListSizeEqualsRetrOctets(t *testing.T) {
	t.Parallel()
	b := memserver.New()
	b.AddUser("u", "p")
	msgs := append([]string{}, fixtureMessages...)
	msgs = append(msgs, "", "\n", ".", "a\r", "x\n.\n..\r\n\r\n.", strings.Repeat("long line ", 10000)+"\n\x00\xff")
	for _, m := range msgs {
		b.Deliver("u", []byte(m))
	}
	addr, _ := startServer(t, pop3server.Options{Backend: b})
	c := dial(t, addr)
	c.login("u", "p")
	for i, m := range msgs {
		n := strconv.Itoa(i + 1)
		size, _ := strconv.ParseInt(strings.Fields(c.cmd("LIST "+n, "+OK"))[2], 10, 64)
		c.cmd("RETR "+n, "+OK")
		got, err := io.ReadAll(wire.NewDotReader(c.br))
		if err != nil {
			t.Fatal(err)
		}
		if int64(len(got)) != size {
			t.Errorf("message %d: LIST %d, RETR sent %d octets", i+1, size, len(got))
		}
		want := strings.ReplaceAll(strings.ReplaceAll(m, "\r\n", "\n"), "\n", "\r\n")
		if m != "" && !strings.HasSuffix(want, "\n") {
			if strings.HasSuffix(want, "\r") {
				want += "\n"
			} else {
				want += "\r\n"
			}
		}
		if string(got) != want {
			t.Errorf("message %d: RETR = %.60q, want %.60q", i+1, got, want)
		}
	}
}

// RFC 1939 §4, RFC 2449 §8.1.2: a second session on a locked maildrop
// gets [IN-USE]; the lock goes with the first session.
func TestInUse(t *testing.T) {
	t.Parallel()
	addr, _ := startServer(t, pop3server.Options{Backend: newFixture(t)})
	c1 := dial(t, addr)
	c1.login("alice", "secret word")
	c2 := dial(t, addr)
	c2.cmd("USER alice", "+OK")
	c2.cmd("PASS secret word", "-ERR [IN-USE] ")
	c1.cmd("QUIT", "+OK")
	c2.cmd("USER alice", "+OK")
	c2.cmd("PASS secret word", "+OK")
}

// RFC 1939 §6: a session that ends without QUIT deletes nothing; QUIT
// deletes exactly the marked messages.
func TestDeleteOnlyOnQuit(t *testing.T) {
	t.Parallel()
	b := newFixture(t)
	addr, srv := startServer(t, pop3server.Options{Backend: b})
	c := dial(t, addr)
	c.login("alice", "secret word")
	c.cmd("DELE 1", "+OK")
	c.cmd("DELE 2", "+OK")
	c.nc.Close()
	waitSessions(t, srv, 0)
	if n := b.Count("alice"); n != 3 {
		t.Fatalf("after drop: %d messages, want 3", n)
	}
	c = dial(t, addr)
	c.login("alice", "secret word")
	c.cmd("DELE 2", "+OK")
	c.cmd("QUIT", "+OK")
	waitSessions(t, srv, 0)
	if n := b.Count("alice"); n != 2 {
		t.Fatalf("after QUIT: %d messages, want 2", n)
	}
	c = dial(t, addr)
	c.login("alice", "secret word")
	if l := c.cmd("UIDL", "+OK"); l == "" {
		t.Fatal()
	}
	want := []string{"1 mem-1", "2 mem-3", "."}
	for _, w := range want {
		if got := c.line(); got != w {
			t.Errorf("UIDL line %q, want %q", got, w)
		}
	}
}

func waitSessions(t *testing.T, srv *pop3server.Server, n int) {
	t.Helper()
	for i := 0; i < 500 && srv.Sessions() != n; i++ {
		time.Sleep(10 * time.Millisecond)
	}
	if srv.Sessions() != n {
		t.Fatalf("%d sessions open, want %d", srv.Sessions(), n)
	}
}

// countingConn counts Write calls.
type countingConn struct {
	net.Conn
	mu     sync.Mutex
	writes int
}

func (c *countingConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	c.writes++
	c.mu.Unlock()
	return c.Conn.Write(p)
}

// Replies to pipelined commands go out in one write (RFC 2449 §6.6), not one
// write per reply.
func TestPipelinedRepliesBatched(t *testing.T) {
	t.Parallel()
	srv, err := pop3server.New(pop3server.Options{Backend: newFixture(t), AuthFailDelay: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	conns := make(chan *countingConn, 1)
	go func() {
		nc, err := l.Accept()
		if err != nil {
			return
		}
		cc := &countingConn{Conn: nc}
		conns <- cc
		srv.ServeConn(cc)
	}()
	c := dial(t, l.Addr().String())
	c.login("alice", "secret word")
	cc := <-conns
	cc.mu.Lock()
	before := cc.writes
	cc.mu.Unlock()
	io.WriteString(c.nc, "STAT\r\nLIST\r\nUIDL\r\nTOP 1 0\r\nRETR 2\r\nNOOP\r\n")
	var all bytes.Buffer
	for !strings.HasSuffix(all.String(), "\r\n+OK\r\n") {
		l, err := c.br.ReadString('\n')
		if err != nil {
			t.Fatalf("read: %v", err)
		}
		all.WriteString(l)
	}
	cc.mu.Lock()
	defer cc.mu.Unlock()
	if got := cc.writes - before; got != 1 {
		t.Errorf("six pipelined replies took %d writes, want 1", got)
	}
}

// A burst of pipelined RETRs goes out in large writes: the replies share
// the large buffer a long reply borrows (128 KiB, written in one write),
// not one small buffer's or one message's worth per write.
func TestPipelinedRetrBurstBatched(t *testing.T) {
	t.Parallel()
	b := memserver.New()
	b.AddUser("u", "p")
	msg := strings.Repeat("0123456789 line of a message\n", 1600) // 46,400 octets, 48,000 on the wire
	for range 4 {
		b.Deliver("u", []byte(msg))
	}
	srv, err := pop3server.New(pop3server.Options{Backend: b, AuthFailDelay: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	conns := make(chan *countingConn, 1)
	go func() {
		nc, err := l.Accept()
		if err != nil {
			return
		}
		cc := &countingConn{Conn: nc}
		conns <- cc
		srv.ServeConn(cc)
	}()
	c := dial(t, l.Addr().String())
	c.login("u", "p")
	cc := <-conns
	cc.mu.Lock()
	before := cc.writes
	cc.mu.Unlock()
	io.WriteString(c.nc, "RETR 1\r\nRETR 2\r\nRETR 3\r\nRETR 4\r\nNOOP\r\n")
	var all bytes.Buffer
	for !strings.HasSuffix(all.String(), "\r\n.\r\n+OK\r\n") {
		l, err := c.br.ReadString('\n')
		if err != nil {
			t.Fatalf("read: %v", err)
		}
		all.WriteString(l)
	}
	cc.mu.Lock()
	defer cc.mu.Unlock()
	// 192,089 octets: one full chunk of 128 KiB and the rest.
	if got := cc.writes - before; got != 2 {
		t.Errorf("four pipelined RETRs (%d octets) took %d writes, want 2", all.Len(), got)
	}
	// The session is back on its small buffer: a short reply is one write.
	before = cc.writes
	cc.mu.Unlock()
	c.cmd("NOOP", "+OK")
	cc.mu.Lock()
	if got := cc.writes - before; got != 1 {
		t.Errorf("NOOP took %d writes, want 1", got)
	}
}

// RFC 1939 §3: the idle timer closes the connection silently and the
// session deletes nothing.
func TestIdleTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newFixture(t)
		// net.Pipe addresses are not loopback: allow USER/PASS.
		srv, err := pop3server.New(pop3server.Options{Backend: b, AuthFailDelay: -1, AllowPlaintextAuth: true})
		if err != nil {
			t.Fatal(err)
		}
		defer srv.Close()
		cli, sv := net.Pipe()
		defer cli.Close()
		srv.ServeConn(sv)
		br := bufio.NewReader(cli)
		readLine := func() string {
			l, err := br.ReadString('\n')
			if err != nil {
				t.Fatalf("read: %v", err)
			}
			return l
		}
		readLine()
		io.WriteString(cli, "USER alice\r\n")
		readLine()
		io.WriteString(cli, "PASS secret word\r\n")
		readLine()
		io.WriteString(cli, "DELE 1\r\n")
		readLine()
		start := time.Now()
		time.Sleep(9*time.Minute + 59*time.Second)
		synctest.Wait()
		if srv.Sessions() != 1 {
			t.Fatal("session ended before 10 minutes")
		}
		if _, err := br.ReadString('\n'); err != io.EOF {
			t.Fatalf("after idle: err = %v, want EOF (silent close)", err)
		}
		if d := time.Since(start); d != 10*time.Minute {
			t.Errorf("closed after %v, want 10m", d)
		}
		synctest.Wait()
		if n := b.Count("alice"); n != 3 {
			t.Errorf("%d messages after timeout, want 3 (no UPDATE)", n)
		}
	})
}

// An unknown user and a wrong password are answered after the same delay,
// with the same text.
func TestAuthFailDelaySame(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv, err := pop3server.New(pop3server.Options{Backend: newFixture(t), AuthFailDelay: 2 * time.Second, AllowPlaintextAuth: true})
		if err != nil {
			t.Fatal(err)
		}
		defer srv.Close()
		var replies []string
		var delays []time.Duration
		for _, user := range []string{"nobody", "alice"} {
			cli, sv := net.Pipe()
			srv.ServeConn(sv)
			br := bufio.NewReader(cli)
			br.ReadString('\n')
			io.WriteString(cli, "USER "+user+"\r\n")
			br.ReadString('\n')
			start := time.Now()
			io.WriteString(cli, "PASS wrong\r\n")
			l, _ := br.ReadString('\n')
			delays = append(delays, time.Since(start))
			replies = append(replies, l)
			cli.Close()
		}
		if replies[0] != replies[1] || !strings.HasPrefix(replies[0], "-ERR [AUTH]") {
			t.Errorf("replies %q, want the same -ERR [AUTH]", replies)
		}
		if delays[0] != delays[1] || delays[0] != 2*time.Second {
			t.Errorf("delays %v, want 2s both", delays)
		}
	})
}

// slowClose wraps a backend whose maildrop takes a while to release.
type slowClose struct{ pop3server.Backend }
type slowCloseSession struct{ pop3server.Session }
type slowCloseMailbox struct{ pop3server.Mailbox }

func (b slowClose) NewSession(ctx context.Context, c *pop3server.Conn) (pop3server.Session, error) {
	s, err := b.Backend.NewSession(ctx, c)
	return slowCloseSession{s}, err
}

func (s slowCloseSession) Login(ctx context.Context, u, p string) (pop3server.Mailbox, error) {
	m, err := s.Session.Login(ctx, u, p)
	if err != nil {
		return nil, err
	}
	return slowCloseMailbox{m}, nil
}

func (m slowCloseMailbox) Close() error {
	time.Sleep(200 * time.Millisecond)
	return m.Mailbox.Close()
}

// RFC 1939 §6: QUIT releases the lock before it answers, so a client that
// logs in again as soon as it reads +OK is not told [IN-USE].
func TestQuitReleasesLockBeforeReply(t *testing.T) {
	t.Parallel()
	addr, _ := startServer(t, pop3server.Options{Backend: slowClose{newFixture(t)}})
	c1 := dial(t, addr)
	c1.login("alice", "secret word")
	c2 := dial(t, addr)
	c2.cmd("USER alice", "+OK")
	c1.cmd("QUIT", "+OK")
	c2.cmd("PASS secret word", "+OK")
}
