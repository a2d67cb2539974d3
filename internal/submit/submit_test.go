package submit

import (
	"bufio"
	"encoding/base64"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/postoffice-mail/postoffice/internal/replytext"
	"github.com/postoffice-mail/postoffice/internal/testutil"
	"github.com/postoffice-mail/postoffice/pop3server"
	"github.com/postoffice-mail/postoffice/pop3server/memserver"
)

// fakeRelay is a tiny SMTP server written here (no SMTP library, so the
// test checks the bytes our client sends): it offers AUTH PLAIN, refuses
// RCPT for a local part "refused" (550), answers 451 after the data for a
// local part "tempfail", and keeps every message it accepts.
type fakeRelay struct {
	addr string
	mu   sync.Mutex
	got  []delivery
	auth []string // the AUTH PLAIN responses, decoded
	data int      // DATA commands answered 354
}

type delivery struct {
	From  string
	Rcpts []string
	Data  string // unstuffed, CRLF
}

func startRelay(t *testing.T) *fakeRelay {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	r := &fakeRelay{addr: l.Addr().String()}
	go func() {
		for {
			nc, err := l.Accept()
			if err != nil {
				return
			}
			go r.serve(nc)
		}
	}()
	return r
}

func (r *fakeRelay) serve(nc net.Conn) {
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(20 * time.Second))
	br := bufio.NewReader(nc)
	say := func(s string) { io.WriteString(nc, s+"\r\n") }
	say("220 relay.test ESMTP")
	var d delivery
	for range 1000 {
		line, err := br.ReadString('\n')
		if err != nil {
			return
		}
		line = strings.TrimRight(line, "\r\n")
		verb, arg, _ := strings.Cut(line, " ")
		switch strings.ToUpper(verb) {
		case "EHLO":
			say("250-relay.test")
			say("250 AUTH PLAIN")
		case "AUTH":
			b, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(arg, "PLAIN "))
			r.mu.Lock()
			r.auth = append(r.auth, string(b))
			r.mu.Unlock()
			say("235 2.7.0 ok")
		case "MAIL":
			d = delivery{From: strings.Trim(strings.TrimPrefix(arg, "FROM:"), "<>")}
			say("250 2.1.0 ok")
		case "RCPT":
			to := strings.Trim(strings.TrimPrefix(arg, "TO:"), "<>")
			if strings.HasPrefix(to, "refused@") {
				say("550 5.1.1 no such user")
				continue
			}
			d.Rcpts = append(d.Rcpts, to)
			say("250 2.1.5 ok")
		case "DATA":
			r.mu.Lock()
			r.data++
			r.mu.Unlock()
			say("354 go on")
			var data strings.Builder
			for {
				l, err := br.ReadString('\n')
				if err != nil {
					return // no final dot: nothing kept
				}
				if l == ".\r\n" {
					break
				}
				data.WriteString(strings.TrimPrefix(l, "."))
			}
			d.Data = data.String()
			if len(d.Rcpts) > 0 && strings.HasPrefix(d.Rcpts[0], "tempfail@") {
				say("451 4.3.0 try later")
				continue
			}
			r.mu.Lock()
			r.got = append(r.got, d)
			r.mu.Unlock()
			say("250 2.0.0 queued")
		case "RSET", "NOOP":
			say("250 ok")
		case "QUIT":
			say("221 bye")
			return
		default:
			say("502 5.5.2 unknown")
		}
	}
}

func (r *fakeRelay) state() ([]delivery, []string, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]delivery(nil), r.got...), append([]string(nil), r.auth...), r.data
}

// pop3Session serves POP3 with XTND XMIT to relay and logs user in.
func pop3Session(t *testing.T, relay *Relay, user string, maxSize int64) (net.Conn, *bufio.Reader) {
	t.Helper()
	b := memserver.New()
	b.AddUser(user, "pw")
	addr, _ := testutil.ServePOP3(t, pop3server.Options{
		Backend: b, AuthFailDelay: -1, Hostname: "pop.test",
		Workarounds: pop3server.Workarounds{XTNDXMIT: &pop3server.XMIT{Submitter: relay, MaxMessageSize: maxSize}},
	})
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	nc.SetDeadline(time.Now().Add(30 * time.Second))
	br := bufio.NewReader(nc)
	expect(t, br, "+OK POP3 server ready")
	io.WriteString(nc, "USER "+user+"\r\nPASS pw\r\n")
	expect(t, br, "+OK")
	expect(t, br, "+OK Logged in, 0 messages")
	return nc, br
}

func expect(t *testing.T, br *bufio.Reader, want string) {
	t.Helper()
	got, err := br.ReadString('\n')
	if err != nil || got != want+"\r\n" {
		t.Fatalf("read %q, %v; want %q", got, err, want)
	}
}

// xmit sends msg (already dot-stuffed, CRLF, without the "." line) with
// XTND XMIT and returns the final reply.
func xmit(t *testing.T, nc net.Conn, br *bufio.Reader, msg string) string {
	t.Helper()
	io.WriteString(nc, "XTND XMIT\r\n")
	expect(t, br, "+OK Start sending message")
	go io.WriteString(nc, msg+".\r\n")
	got, err := br.ReadString('\n')
	if err != nil {
		t.Fatalf("reading the reply to XTND XMIT: %v", err)
	}
	return strings.TrimSuffix(got, "\r\n")
}

// The whole path: a POP3 client sends with XTND XMIT, the relay gets MAIL
// FROM the logged-in user (not the From field), RCPT TO each To, Cc and
// Bcc address, AUTH PLAIN with the configured account, and the message
// unstuffed with the Bcc field gone.
func TestXmitThroughRelay(t *testing.T) {
	t.Parallel()
	fr := startRelay(t)
	relay, err := New(Options{Addr: fr.addr, Username: "postoffice", Password: "relay secret", LocalName: "pop.test"})
	if err != nil {
		t.Fatal(err)
	}
	nc, br := pop3Session(t, relay, "alice@example.org", 0)
	reply := xmit(t, nc, br, "From: The Boss <boss@example.com>\r\n"+
		"To: bob@example.org\r\n"+
		"Cc: Carol <carol@example.net>\r\n"+
		"Bcc: dave@example.com\r\n"+
		"Subject: hello\r\n"+
		"\r\n"+
		"..a stuffed line\r\n"+
		"..\r\n"+
		"end\r\n")
	if reply != "+OK Message sent successfully" {
		t.Fatalf("XTND XMIT = %q", reply)
	}
	got, auth, _ := fr.state()
	if len(got) != 1 {
		t.Fatalf("relay got %d messages, want 1", len(got))
	}
	_, data, _ := strings.Cut(got[0].Data, "\r\n\t") // the Received field's first line
	_, data, _ = strings.Cut(data, "\r\n")
	want := delivery{
		From:  "alice@example.org",
		Rcpts: []string{"bob@example.org", "carol@example.net", "dave@example.com"},
		Data: "From: The Boss <boss@example.com>\r\n" +
			"To: bob@example.org\r\n" +
			"Cc: Carol <carol@example.net>\r\n" +
			"Subject: hello\r\n" +
			"\r\n" +
			".a stuffed line\r\n" +
			".\r\n" +
			"end\r\n",
	}
	if !strings.HasPrefix(got[0].Data, "Received: from [127.0.0.1] by pop.test (postoffice XTND XMIT);\r\n\t") {
		t.Errorf("message starts %q, want a Received field", got[0].Data[:min(80, len(got[0].Data))])
	}
	got[0].Data = data
	if diff := cmp.Diff(want, got[0]); diff != "" {
		t.Errorf("relay got (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"\x00postoffice\x00relay secret"}, auth); diff != "" {
		t.Errorf("AUTH PLAIN (-want +got):\n%s", diff)
	}
}

// A login name without a domain sends as name@sender_domain.
func TestXmitSenderDomain(t *testing.T) {
	t.Parallel()
	fr := startRelay(t)
	relay, _ := New(Options{Addr: fr.addr, SenderDomain: "example.org"})
	nc, br := pop3Session(t, relay, "alice", 0)
	if reply := xmit(t, nc, br, "To: bob@example.org\r\n\r\nhi\r\n"); reply != "+OK Message sent successfully" {
		t.Fatalf("XTND XMIT = %q", reply)
	}
	got, _, _ := fr.state()
	if len(got) != 1 || got[0].From != "alice@example.org" {
		t.Errorf("relay got %+v, want one message from alice@example.org", got)
	}
	if _, err := (&Relay{}).Sender("alice"); err == nil {
		t.Error("Sender without a domain succeeded")
	}
}

// Over the size limit: -ERR, and the relay keeps nothing (it never gets
// the final dot). A refused recipient: -ERR, nothing sent to anyone. A
// relay that answers 451, or is down: -ERR [SYS/TEMP] with advice.
func TestXmitRefusals(t *testing.T) {
	t.Parallel()
	fr := startRelay(t)
	relay, _ := New(Options{Addr: fr.addr})
	nc, br := pop3Session(t, relay, "alice@example.org", 2000)

	big := "To: bob@example.org\r\n\r\n" + strings.Repeat(strings.Repeat("z", 78)+"\r\n", 40)
	if reply := xmit(t, nc, br, big); reply != "-ERR Message too large, not sent: send at most 2000 octets per message" {
		t.Errorf("too large: XTND XMIT = %q", reply)
	}
	reply := xmit(t, nc, br, "To: bob@example.org, refused@example.org\r\n\r\nhi\r\n")
	if reply != "-ERR Recipient refused by the mail relay, message not sent: check the addresses in To, Cc and Bcc" {
		t.Errorf("refused recipient: XTND XMIT = %q", reply)
	}
	const unavailable = "-ERR [SYS/TEMP] Mail relay unavailable, message not sent: try again in a few minutes"
	if reply := xmit(t, nc, br, "To: tempfail@example.org\r\n\r\nhi\r\n"); reply != unavailable {
		t.Errorf("451 after the data: XTND XMIT = %q", reply)
	}
	if err := replytext.Check(unavailable); err != nil {
		t.Error(err)
	}
	got, _, _ := fr.state()
	if len(got) != 0 {
		t.Errorf("relay kept %d messages, want none", len(got))
	}

	// A relay that is down.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	down := l.Addr().String()
	l.Close()
	relay2, _ := New(Options{Addr: down, Timeout: 5 * time.Second})
	nc2, br2 := pop3Session(t, relay2, "alice@example.org", 0)
	if reply := xmit(t, nc2, br2, "To: bob@example.org\r\n\r\nhi\r\n"); reply != unavailable {
		t.Errorf("relay down: XTND XMIT = %q", reply)
	}
}

// TestReplyTexts checks the texts this package has the client see.
func TestReplyTexts(t *testing.T) {
	found, err := replytext.Walk(".")
	if err != nil {
		t.Fatal(err)
	}
	if len(found) < 4 {
		t.Fatalf("Walk found %d texts; the walker is broken", len(found))
	}
	for _, f := range found {
		if f.Dynamic {
			t.Errorf("%s: Error.Text is not a constant: the walk cannot check it", f.Pos)
			continue
		}
		if err := replytext.Check(f.Text); err != nil {
			t.Errorf("%s: %v", f.Pos, err)
		}
	}
}
