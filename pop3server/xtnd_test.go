package pop3server_test

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/postoffice-mail/postoffice/internal/testutil"
	"github.com/postoffice-mail/postoffice/pop3server"
)

// recordingSubmitter keeps what XTND XMIT hands it: the user, the
// recipients, the message read up to io.EOF, or the reader's error.
type recordingSubmitter struct {
	mu    sync.Mutex
	calls []submission
}

type submission struct {
	User  string
	Rcpts []string
	Msg   string
	Err   string // the reader's error, "" when it reached io.EOF
}

func (s *recordingSubmitter) Submit(ctx context.Context, user string, rcpts []string, msg io.Reader) error {
	b, err := io.ReadAll(msg)
	sub := submission{User: user, Rcpts: rcpts, Msg: string(b)}
	if err != nil {
		sub.Err = err.Error()
	}
	s.mu.Lock()
	s.calls = append(s.calls, sub)
	s.mu.Unlock()
	return err
}

func (s *recordingSubmitter) got() []submission {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]submission(nil), s.calls...)
}

// xmitSession logs in as alice on a server with XTND XMIT handing
// messages to sub, and returns the connection and its reader.
func xmitSession(t *testing.T, x *pop3server.XMIT) (net.Conn, *bufio.Reader) {
	t.Helper()
	addr, _ := testutil.ServePOP3(t, pop3server.Options{
		Backend: newFixture(t), AuthFailDelay: -1, Hostname: "pop.test",
		Workarounds: pop3server.Workarounds{XTNDXMIT: x},
	})
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	nc.SetDeadline(time.Now().Add(20 * time.Second))
	br := bufio.NewReader(nc)
	expect(t, br, "+OK POP3 server ready")
	io.WriteString(nc, "USER alice\r\nPASS secret word\r\n")
	expect(t, br, "+OK")
	expect(t, br, "+OK Logged in, 3 messages")
	return nc, br
}

func expect(t *testing.T, br *bufio.Reader, want string) {
	t.Helper()
	got, err := br.ReadString('\n')
	if err != nil || got != want+"\r\n" {
		t.Fatalf("read %q, %v; want %q", got, err, want)
	}
}

// The Submitter gets the logged-in user as the sender whatever From says,
// the To, Cc and Bcc addresses once each, and the message unstuffed, with
// CRLF line ends, a Received field in front and the Bcc fields (with
// their continuation lines) removed.
func TestXmitEnvelopeAndMessage(t *testing.T) {
	t.Parallel()
	sub := &recordingSubmitter{}
	nc, br := xmitSession(t, &pop3server.XMIT{Submitter: sub})
	io.WriteString(nc, "XTND XMIT\r\n")
	expect(t, br, "+OK Start sending message")
	io.WriteString(nc, "From: Mallory <boss@example.com>\r\n"+
		"To: Bob <bob@example.org>, carol@example.org\r\n"+
		"bcc: secret@example.net,\r\n"+
		"\tsecret2@example.net\r\n"+
		"Cc: \"Dan, D.\" <dan@example.org>,\r\n"+
		" bob@example.org\r\n"+
		"Subject: test\n"+ // a bare LF line end
		"\r\n"+
		"..leading dot\r\n"+
		"...\r\n"+
		"Bcc: in the body, not a field\r\n"+
		".\r\n")
	expect(t, br, "+OK Message sent successfully")
	got := sub.got()
	if len(got) != 1 {
		t.Fatalf("%d submissions, want 1", len(got))
	}
	received, rest, _ := strings.Cut(got[0].Msg, "\r\n\t")
	if !strings.HasPrefix(received, "Received: from [127.0.0.1] by pop.test (postoffice XTND XMIT);") {
		t.Errorf("message starts with %q, want a Received field", received)
	}
	_, msg, _ := strings.Cut(rest, "\r\n")
	want := submission{
		User:  "alice",
		Rcpts: []string{"bob@example.org", "carol@example.org", "secret@example.net", "secret2@example.net", "dan@example.org"},
		Msg: "From: Mallory <boss@example.com>\r\n" +
			"To: Bob <bob@example.org>, carol@example.org\r\n" +
			"Cc: \"Dan, D.\" <dan@example.org>,\r\n" +
			" bob@example.org\r\n" +
			"Subject: test\r\n" +
			"\r\n" +
			".leading dot\r\n" +
			"..\r\n" +
			"Bcc: in the body, not a field\r\n",
	}
	got[0].Msg = msg
	if diff := cmp.Diff(want, got[0]); diff != "" {
		t.Errorf("submission (-want +got):\n%s", diff)
	}
}

// A message over the size limit, or with a line over 998 octets, fails
// the Submitter's reader before its end (so nothing may be sent); the rest
// is read up to "." and the session goes on. A client that sends more
// than twice the limit (and the header bound) is cut off.
func TestXmitLimits(t *testing.T) {
	t.Parallel()
	sub := &recordingSubmitter{}
	nc, br := xmitSession(t, &pop3server.XMIT{Submitter: sub, MaxMessageSize: 1000})
	line := strings.Repeat("x", 98) + "\r\n"

	io.WriteString(nc, "XTND XMIT\r\n")
	expect(t, br, "+OK Start sending message")
	io.WriteString(nc, "To: bob@example.org\r\n\r\n"+strings.Repeat(line, 15)+".\r\n")
	expect(t, br, "-ERR Message too large, not sent: send at most 1000 octets per message")

	io.WriteString(nc, "XTND XMIT\r\n")
	expect(t, br, "+OK Start sending message")
	io.WriteString(nc, "To: bob@example.org\r\n\r\nshort\r\n"+strings.Repeat("y", 999)+"\r\nafter\r\n.\r\n")
	expect(t, br, "-ERR Message has a line longer than 998 octets, not sent: send it with shorter lines (RFC 5322 §2.1.1)")

	io.WriteString(nc, "NOOP\r\n")
	expect(t, br, "+OK")

	got := sub.got()
	if len(got) != 2 || got[0].Err == "" || got[1].Err == "" {
		t.Fatalf("submissions %+v, want two whose reader failed", got)
	}
	if n := len(got[0].Msg); n > 1000+200 {
		t.Errorf("the Submitter read %d octets of a message over the limit", n)
	}

	io.WriteString(nc, "XTND XMIT\r\n")
	expect(t, br, "+OK Start sending message")
	go io.WriteString(nc, "To: bob@example.org\r\n\r\n"+strings.Repeat(line, 1000)+".\r\n")
	expect(t, br, "-ERR Message far too large, closing connection: reconnect and send smaller messages")
}

// A client that goes away in the middle of a message has it abandoned:
// the Submitter's reader fails, it never reaches io.EOF.
func TestXmitClientGone(t *testing.T) {
	t.Parallel()
	sub := &recordingSubmitter{}
	nc, br := xmitSession(t, &pop3server.XMIT{Submitter: sub})
	io.WriteString(nc, "XTND XMIT\r\n")
	expect(t, br, "+OK Start sending message")
	io.WriteString(nc, "To: bob@example.org\r\n\r\nhalf a mess")
	nc.(*net.TCPConn).CloseWrite()
	if _, err := br.ReadString('\n'); !errors.Is(err, io.EOF) {
		t.Fatalf("after a half message the server sent something: %v", err)
	}
	got := sub.got()
	if len(got) != 1 || got[0].Err == "" {
		t.Fatalf("submissions %+v, want one whose reader failed", got)
	}
}
