package pop3

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/postoffice-mail/postoffice/pop3proto"
	"github.com/postoffice-mail/postoffice/pop3server/memserver"
)

// fixtures are stored messages with the awkward shapes: bare LF, dot
// lines, no final newline.
var fixtures = []string{
	"From: a@example.org\nSubject: bare LF\n\nline one\nline two\n",
	"Subject: dots\r\n\r\n.\r\n..\r\n.hidden\r\n...\r\nend\r\n",
	"Subject: no final newline\r\n\r\nbody without newline",
	"Subject: top\r\n\r\nb1\r\nb2\r\nb3\r\n",
}

// crlfForm is what RETR sends for a stored message once un-stuffed: CRLF
// line ends and a final CRLF (a bare LF gets its CR and a message without
// a final line end gets one, as Dovecot's POP3 server does).
func crlfForm(m string) string {
	s := strings.ReplaceAll(strings.ReplaceAll(m, "\r\n", "\n"), "\n", "\r\n")
	if s != "" && !strings.HasSuffix(s, "\r\n") {
		s += "\r\n"
	}
	return s
}

func newBackend(msgs ...string) *memserver.Backend {
	b := memserver.New()
	b.AddUser("alice", "secret word")
	for _, m := range msgs {
		b.Deliver("alice", []byte(m))
	}
	return b
}

func login(t *testing.T, addr string, opts *Options) *Client {
	t.Helper()
	c, err := Dial(testCtx(t), addr, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.Login(testCtx(t), "alice", "secret word"); err != nil {
		t.Fatal(err)
	}
	return c
}

func readAll(t *testing.T, rc io.ReadCloser, err error) string {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	if err := rc.Close(); err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// A whole session against our server: STAT, LIST, RETR, TOP, UIDL (RFC
// 1939 §5, §7), CAPA in both states (RFC 2449 §5), dot un-stuffing (RFC
// 1939 §3) and CAPA again after STLS (RFC 2595 §4).
func TestSessionOurServer(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	addr := startServer(t, newBackend(fixtures...), nil)
	var trace bytes.Buffer
	c, err := Dial(ctx, addr, &Options{DebugWriter: &trace})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if g := c.Greeting(); g.Text != "POP3 server ready" || g.Timestamp != "" {
		t.Errorf("Greeting() = %+v", g)
	}
	caps, err := c.Capabilities(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"TOP", "UIDL", "USER", "RESP-CODES", "PIPELINING", "top"} {
		if !caps.Has(name) {
			t.Errorf("Caps.Has(%q) = false; caps %q", name, caps.Lines)
		}
	}
	if !caps.Pipelining() || !caps.RespCodes() || !caps.AuthRespCode() || caps.STLS() {
		t.Errorf("caps helpers wrong for %q", caps.Lines)
	}
	if got := caps.Implementation(); got != "postoffice" {
		t.Errorf("Implementation() = %q", got)
	}
	if err := c.Login(ctx, "alice", "secret word"); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(trace.String(), "secret") {
		t.Errorf("trace shows the password:\n%s", trace.String())
	}
	// After login the cache is gone and USER is no longer listed.
	caps, err = c.Capabilities(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if caps.Has("USER") || !caps.Has("TOP") {
		t.Errorf("CAPA after login = %q, want it re-read (no USER)", caps.Lines)
	}

	count, size, err := c.Stat(ctx)
	var wantSize int64
	var wantList []ScanListing
	for i, m := range fixtures {
		wantSize += int64(len(crlfForm(m)))
		wantList = append(wantList, ScanListing{Num: i + 1, Size: int64(len(crlfForm(m)))})
	}
	if err != nil || count != len(fixtures) || size != wantSize {
		t.Errorf("Stat() = %d, %d, %v; want %d, %d", count, size, err, len(fixtures), wantSize)
	}
	list, err := c.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(wantList, list); diff != "" {
		t.Errorf("List() diff (-want +got):\n%s", diff)
	}
	one, err := c.ListOne(ctx, 2)
	if err != nil || one != wantList[1] {
		t.Errorf("ListOne(2) = %+v, %v; want %+v", one, err, wantList[1])
	}
	uids, err := c.UIDL(ctx)
	if err != nil {
		t.Fatal(err)
	}
	wantUIDs := []UIDListing{{1, "mem-1"}, {2, "mem-2"}, {3, "mem-3"}, {4, "mem-4"}}
	if diff := cmp.Diff(wantUIDs, uids); diff != "" {
		t.Errorf("UIDL() diff (-want +got):\n%s", diff)
	}
	u, err := c.UIDLOne(ctx, 3)
	if err != nil || u != wantUIDs[2] {
		t.Errorf("UidlOne(3) = %+v, %v", u, err)
	}
	for i, m := range fixtures {
		rc, err := c.Retr(ctx, i+1)
		if got := readAll(t, rc, err); got != crlfForm(m) {
			t.Errorf("Retr(%d) = %q, want %q", i+1, got, crlfForm(m))
		}
	}
	if strings.Contains(trace.String(), "line one") {
		t.Errorf("trace shows message data")
	}
	tops := []struct {
		lines int
		want  string
	}{
		{0, "Subject: top\r\n\r\n"},
		{2, "Subject: top\r\n\r\nb1\r\nb2\r\n"},
		{99, "Subject: top\r\n\r\nb1\r\nb2\r\nb3\r\n"},
	}
	for _, tc := range tops {
		rc, err := c.Top(ctx, 4, tc.lines)
		if got := readAll(t, rc, err); got != tc.want {
			t.Errorf("Top(4, %d) = %q, want %q", tc.lines, got, tc.want)
		}
	}
	if _, err := c.Top(ctx, 4, -1); err == nil {
		t.Error("Top(4, -1) succeeded")
	}
	// A -ERR leaves the client usable.
	_, err = c.Retr(ctx, 99)
	var perr *Error
	if !errors.As(err, &perr) {
		t.Fatalf("Retr(99) = %v, want *Error", err)
	}
	if err := c.Noop(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.Rset(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.Quit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.Noop(ctx); !errors.Is(err, ErrClosed) {
		t.Errorf("Noop after Quit = %v, want ErrClosed", err)
	}
}

// A body left open blocks the next command; Close drains it and the
// session goes on in step.
func TestBodyMustBeClosed(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	c := login(t, startServer(t, newBackend(fixtures...), nil), nil)
	rc, err := c.Retr(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 5)
	if _, err := io.ReadFull(rc, buf); err != nil {
		t.Fatal(err)
	}
	if err := c.Noop(ctx); !errors.Is(err, ErrBodyOpen) {
		t.Errorf("Noop with open body = %v, want ErrBodyOpen", err)
	}
	if err := rc.Close(); err != nil {
		t.Fatal(err)
	}
	if err := rc.Close(); err != nil {
		t.Errorf("second Close = %v", err)
	}
	rc, err = c.Retr(ctx, 2)
	if got := readAll(t, rc, err); got != crlfForm(fixtures[1]) {
		t.Errorf("Retr(2) after drained Retr(1) = %q", got)
	}
}

// A LIST of 1000+ lines (curl's test993 checks the same).
func TestLongList(t *testing.T) {
	t.Parallel()
	msgs := make([]string, 1500)
	for i := range msgs {
		msgs[i] = fmt.Sprintf("Subject: %d\n\nx\n", i)
	}
	ctx := testCtx(t)
	c := login(t, startServer(t, newBackend(msgs...), nil), nil)
	list, err := c.List(ctx)
	if err != nil || len(list) != 1500 || list[1499].Num != 1500 {
		t.Fatalf("List() = %d entries, %v", len(list), err)
	}
	uids, err := c.UIDL(ctx)
	if err != nil || len(uids) != 1500 {
		t.Fatalf("UIDL() = %d entries, %v", len(uids), err)
	}
}

// A 5 MB message with a 1 MB line streams through a small buffer: the
// bytes match (by hash) and the client never holds the message. Not
// parallel, so the allocation count is this test's alone.
func TestBigMessageStreams(t *testing.T) {
	var msg bytes.Buffer
	msg.WriteString("Subject: big\r\n\r\n")
	msg.WriteString(strings.Repeat("x", 1<<20) + "\r\n")
	for msg.Len() < 5<<20 {
		msg.WriteString(".dotted line that needs stuffing\r\nplain line of text\r\n")
	}
	want := sha256.Sum256(msg.Bytes())
	ctx := testCtx(t)
	c := login(t, startServer(t, newBackend(msg.String()), nil), nil)
	info, err := c.ListOne(ctx, 1)
	if err != nil || info.Size != int64(msg.Len()) {
		t.Fatalf("ListOne(1) = %+v, %v; want size %d", info, err, msg.Len())
	}

	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	rc, err := c.Retr(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	n, err := io.CopyBuffer(h, struct{ io.Reader }{rc}, make([]byte, 4096))
	if err != nil {
		t.Fatal(err)
	}
	rc.Close()
	runtime.ReadMemStats(&after)
	if n != int64(msg.Len()) || !bytes.Equal(h.Sum(nil), want[:]) {
		t.Errorf("Retr(1): %d octets, hash mismatch=%v; want %d", n, !bytes.Equal(h.Sum(nil), want[:]), msg.Len())
	}
	// The server side (same process) streams too; together they must stay
	// well under the message size.
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 2<<20 {
		t.Errorf("Retr of a %d-octet message allocated %d octets", msg.Len(), alloc)
	}
}

// DELE marks, QUIT removes (RFC 1939 §5, §6).
func TestDeleQuit(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	b := newBackend(fixtures...)
	addr := startServer(t, b, nil)
	c := login(t, addr, nil)
	if err := c.Dele(ctx, 2); err != nil {
		t.Fatal(err)
	}
	var perr *Error
	if err := c.Dele(ctx, 2); !errors.As(err, &perr) {
		t.Errorf("second Dele(2) = %v, want *Error", err)
	}
	if _, err := c.Retr(ctx, 2); !errors.As(err, &perr) {
		t.Errorf("Retr of deleted = %v, want *Error", err)
	}
	if n, _, err := c.Stat(ctx); err != nil || n != 3 {
		t.Errorf("Stat after Dele = %d, %v", n, err)
	}
	if err := c.Quit(ctx); err != nil {
		t.Fatal(err)
	}
	if got := b.Count("alice"); got != 3 {
		t.Errorf("after QUIT: %d messages, want 3", got)
	}
	c = login(t, addr, nil)
	uids, _ := c.UIDL(ctx)
	if len(uids) != 3 || uids[1].UID != "mem-3" {
		t.Errorf("Uidl after QUIT = %v", uids)
	}
}

// Close without QUIT deletes nothing (RFC 1939 §6); neither does
// Rset+Quit.
func TestCloseWithoutQuitDeletesNothing(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	b := newBackend(fixtures...)
	addr := startServer(t, b, nil)
	c := login(t, addr, nil)
	var err error
	for i := range fixtures {
		if err := c.Dele(ctx, i+1); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	// The server releases the lock when it sees the connection end, which
	// may take a moment: retry on [IN-USE].
	for i := 0; ; i++ {
		c, err = Dial(ctx, addr, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		var perr *Error
		err = c.Login(ctx, "alice", "secret word")
		if errors.As(err, &perr) && perr.InUse() && i < 100 {
			c.Close()
			time.Sleep(10 * time.Millisecond)
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		break
	}
	if n, _, _ := c.Stat(ctx); n != len(fixtures) {
		t.Errorf("after Close: %d messages, want %d", n, len(fixtures))
	}
	c.Dele(ctx, 1)
	c.Rset(ctx)
	if err := c.Quit(ctx); err != nil {
		t.Fatal(err)
	}
	if got := b.Count("alice"); got != len(fixtures) {
		t.Errorf("after Rset+Quit: %d messages", got)
	}
}

// [AUTH] and [IN-USE] reach the caller as codes (RFC 3206 §5, RFC 2449
// §8.1.2).
func TestAuthAndInUseCodes(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	addr := startServer(t, newBackend(fixtures...), nil)
	c, err := Dial(ctx, addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	err = c.Login(ctx, "alice", "wrong")
	var perr *Error
	if !errors.As(err, &perr) || perr.Code != pop3proto.CodeAuth || !perr.IsAuth() || perr.Temporary() {
		t.Fatalf("Login with wrong password = %#v", err)
	}
	// The session stays usable after a failed login (RFC 1939 §4).
	if err := c.Login(ctx, "alice", "secret word"); err != nil {
		t.Fatal(err)
	}
	c2, err := Dial(ctx, addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	err = c2.Login(ctx, "alice", "secret word")
	if !errors.As(err, &perr) || perr.Code != pop3proto.CodeInUse || !perr.InUse() || !perr.Temporary() || perr.IsAuth() {
		t.Fatalf("second Login = %#v, want [IN-USE]", err)
	}
}

// countConn counts writes, to see pipelining.
type countConn struct {
	net.Conn
	writes *atomic.Int32
}

func (c countConn) Write(p []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(p)
}

type countDialer struct{ writes *atomic.Int32 }

func (d countDialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	nc, err := (&net.Dialer{}).DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	return countConn{nc, d.writes}, nil
}

// With PIPELINING (RFC 2449 §6.6) the DELEs go out in one write; every
// reply is read, failures are reported per message.
func TestDeleManyPipelined(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	msgs := make([]string, 10)
	for i := range msgs {
		msgs[i] = fmt.Sprintf("Subject: %d\n\nbody\n", i)
	}
	b := newBackend(msgs...)
	writes := new(atomic.Int32)
	c := login(t, startServer(t, b, nil), &Options{Dialer: countDialer{writes}})
	if _, err := c.Capabilities(ctx); err != nil {
		t.Fatal(err)
	}
	before := writes.Load()
	if err := c.DeleMany(ctx, []int{1, 3, 5, 7, 9}); err != nil {
		t.Fatal(err)
	}
	if n := writes.Load() - before; n != 1 {
		t.Errorf("DeleMany of 5 used %d writes, want 1", n)
	}
	err := c.DeleMany(ctx, []int{2, 3, 42, 4})
	var perr *Error
	if !errors.As(err, &perr) || !strings.Contains(err.Error(), "DELE 3") || !strings.Contains(err.Error(), "DELE 42") || strings.Contains(err.Error(), "DELE 4:") {
		t.Errorf("DeleMany with bad numbers = %v", err)
	}
	if n, _, err := c.Stat(ctx); err != nil || n != 3 {
		t.Errorf("Stat = %d, %v; want 3 left", n, err)
	}
	if err := c.Quit(ctx); err != nil {
		t.Fatal(err)
	}
	if got := b.Count("alice"); got != 3 {
		t.Errorf("after QUIT: %d messages, want 3", got)
	}
}

// Implicit TLS (RFC 8314 §3.1) with the certificate checked against the
// dialled host (RFC 2595 §2.4).
func TestImplicitTLS(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	cert := getCert(t)
	addr := startServer(t, newBackend(fixtures...), &tls.Config{Certificates: []tls.Certificate{cert.TLS}})
	c, err := DialTLS(ctx, addr, &Options{TLSConfig: &tls.Config{RootCAs: cert.Pool()}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.TLS() == nil {
		t.Error("TLS() = nil on an implicit TLS connection")
	}
	if err := c.StartTLS(ctx); err == nil {
		t.Error("StartTLS on a TLS connection succeeded")
	}
	if err := c.Login(ctx, "alice", "secret word"); err != nil {
		t.Fatal(err)
	}
	rc, err := c.Retr(ctx, 2)
	if got := readAll(t, rc, err); got != crlfForm(fixtures[1]) {
		t.Errorf("Retr(2) over TLS = %q", got)
	}
	if err := c.Quit(ctx); err != nil {
		t.Fatal(err)
	}

	// The wrong name, or no trust in the CA, fails the handshake.
	for _, cfg := range []*tls.Config{
		{RootCAs: cert.Pool(), ServerName: "mail.example.org"},
		{},
	} {
		if c, err := DialTLS(ctx, addr, &Options{TLSConfig: cfg}); err == nil {
			c.Close()
			t.Errorf("DialTLS with %+v succeeded", cfg)
		}
	}
}
