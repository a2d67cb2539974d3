package lmtp

import (
	"context"
	"errors"
	"io"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

func clientCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// Send over LMTP into our own server: a sender, the null sender, a refused
// recipient (a *ReplyError, the client usable after it).
func TestClientLMTP(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	addr := start(t, Options{Users: f.users, Store: f.store, SpoolDir: f.dir})
	ctx := clientCtx(t)
	c, err := Dial(ctx, "tcp", addr, ClientOptions{LMTP: true, LocalName: "fetch.test"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Send(ctx, "sender@remote.test", "alice@example.org", strings.NewReader(body)); err != nil {
		t.Fatalf("Send = %v", err)
	}
	err = c.Send(ctx, "", "nobody@example.org", strings.NewReader(body))
	var re *ReplyError
	if !errors.As(err, &re) || re.Stage != "RCPT" || re.Code != 550 || re.Enhanced != "5.1.1" || re.Temporary() {
		t.Fatalf("Send to nobody = %#v, want a 550 5.1.1 RCPT ReplyError", err)
	}
	if err := c.Send(ctx, "", "alice@example.org", strings.NewReader("Subject: 2\r\n\r\n.\r\n")); err != nil {
		t.Fatalf("Send after a refusal = %v", err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	got := messages(t, f.store, "alice")
	want := []string{
		"Return-Path: <sender@remote.test>\r\nDelivered-To: <alice@example.org>\r\n" + body,
		"Return-Path: <>\r\nDelivered-To: <alice@example.org>\r\nSubject: 2\r\n\r\n.\r\n",
	}
	if len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
		t.Errorf("alice has %q, want %q", got, want)
	}
}

// The per-recipient reply after the message decides for LMTP: a store
// failure is a temporary DATA refusal.
func TestClientLMTPDataReply(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	addr := start(t, Options{Users: f.users, Store: failStore{f.store, "alice"}})
	ctx := clientCtx(t)
	c, err := Dial(ctx, "tcp", addr, ClientOptions{LMTP: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	err = c.Send(ctx, "a@b.test", "alice@example.org", strings.NewReader(body))
	var re *ReplyError
	if !errors.As(err, &re) || re.Stage != "DATA" || !re.Temporary() {
		t.Fatalf("Send = %v, want a temporary DATA refusal", err)
	}
	if err := c.Send(ctx, "a@b.test", "bob@example.org", strings.NewReader(body)); err != nil {
		t.Fatalf("Send to bob = %v", err)
	}
}

// A unix socket works as well as TCP.
func TestClientLMTPUnix(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	srv, err := New(Options{Users: f.users, Store: f.store, Hostname: "lmtp.test"})
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(f.dir, "lmtp.sock")
	l, err := ListenUnix(sock, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	ctx := clientCtx(t)
	c, err := Dial(ctx, "unix", sock, ClientOptions{LMTP: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Send(ctx, "", "alice@example.org", strings.NewReader(body)); err != nil {
		t.Fatal(err)
	}
	if got := messages(t, f.store, "alice"); len(got) != 1 {
		t.Errorf("alice has %d messages, want 1", len(got))
	}
}

// errAfter yields some bytes and then fails, as a POP3 download that
// breaks off.
type errAfter struct {
	r io.Reader
}

var errSource = errors.New("download broke")

func (e *errAfter) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err == io.EOF {
		return n, errSource
	}
	return n, err
}

// A source that fails half way must not become a (truncated) delivery.
func TestClientSourceFailure(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	addr := start(t, Options{Users: f.users, Store: f.store})
	ctx := clientCtx(t)
	c, err := Dial(ctx, "tcp", addr, ClientOptions{LMTP: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	err = c.Send(ctx, "", "alice@example.org", &errAfter{strings.NewReader("Subject: half\r\n\r\nhalf a mess")})
	if !errors.Is(err, errSource) {
		t.Fatalf("Send = %v, want the source's error", err)
	}
	if err := c.Send(ctx, "", "alice@example.org", strings.NewReader(body)); err == nil {
		t.Error("Send on a broken client succeeded")
	}
	time.Sleep(100 * time.Millisecond) // let the server see the drop
	if got := messages(t, f.store, "alice"); len(got) != 0 {
		t.Errorf("alice has %q after a broken transfer", got)
	}
}

// smtpSink is a tiny go-smtp SMTP server: it refuses recipients and
// messages by the recipient's local part ("tempfail", "reject", "rcpt5xx")
// and keeps what it accepts.
type smtpSink struct {
	mu   sync.Mutex
	got  []string // "from|to|data"
	addr string
}

type sinkSession struct {
	s        *smtpSink
	from, to string
}

func (s *sinkSession) Mail(from string, _ *smtp.MailOptions) error {
	s.from = from
	return nil
}
func (s *sinkSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	if strings.HasPrefix(to, "rcpt5xx@") {
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}
	}
	if s.to != "" {
		s.to += ","
	}
	s.to += to
	return nil
}
func (s *sinkSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	switch {
	case strings.HasPrefix(s.to, "tempfail@"):
		return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "try later"}
	case strings.HasPrefix(s.to, "reject@"):
		return &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "spam"}
	}
	s.s.mu.Lock()
	s.s.got = append(s.s.got, s.from+"|"+s.to+"|"+string(b))
	s.s.mu.Unlock()
	return nil
}
func (s *sinkSession) Reset()        { s.from, s.to = "", "" }
func (s *sinkSession) Logout() error { return nil }

// startSMTPSink serves an smtpSink on a loopback port.
func startSMTPSink(t *testing.T) *smtpSink {
	t.Helper()
	sink := &smtpSink{}
	srv := smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) {
		return &sinkSession{s: sink}, nil
	}))
	srv.Domain = "sink.test"
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	sink.addr = l.Addr().String()
	return sink
}

func TestClientSMTP(t *testing.T) {
	t.Parallel()
	sink := startSMTPSink(t)
	ctx := clientCtx(t)
	c, err := Dial(ctx, "tcp", sink.addr, ClientOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Send(ctx, "from@remote.test", "me@local.test", strings.NewReader(body)); err != nil {
		t.Fatalf("Send = %v", err)
	}
	for _, tc := range []struct {
		rcpt, stage string
		temp        bool
	}{
		{"tempfail@local.test", "DATA", true},
		{"reject@local.test", "DATA", false},
		{"rcpt5xx@local.test", "RCPT", false},
	} {
		err := c.Send(ctx, "", tc.rcpt, strings.NewReader(body))
		var re *ReplyError
		if !errors.As(err, &re) || re.Stage != tc.stage || re.Temporary() != tc.temp {
			t.Errorf("Send to %s = %v, want a %s refusal (temporary %v)", tc.rcpt, err, tc.stage, tc.temp)
		}
	}
	if err := c.Send(ctx, "", "me@local.test", strings.NewReader("Subject: 2\r\n\r\n")); err != nil {
		t.Fatalf("Send after refusals = %v", err)
	}
	c.Close()
	sink.mu.Lock()
	defer sink.mu.Unlock()
	want := []string{"from@remote.test|me@local.test|" + body, "|me@local.test|Subject: 2\r\n\r\n"}
	if len(sink.got) != 2 || sink.got[0] != want[0] || sink.got[1] != want[1] {
		t.Errorf("sink got %q, want %q", sink.got, want)
	}
}

// SendAll sends one message to several SMTP recipients at once, and
// nothing at all when one of them is refused; it refuses LMTP.
func TestClientSMTPSendAll(t *testing.T) {
	t.Parallel()
	sink := startSMTPSink(t)
	ctx := clientCtx(t)
	c, err := Dial(ctx, "tcp", sink.addr, ClientOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	err = c.SendAll(ctx, "me@local.test", []string{"a@remote.test", "rcpt5xx@remote.test", "b@remote.test"}, strings.NewReader(body))
	var re *ReplyError
	if !errors.As(err, &re) || re.Stage != "RCPT" || re.Recipient != "rcpt5xx@remote.test" || re.Temporary() {
		t.Fatalf("SendAll with a refused recipient = %#v, want a permanent RCPT refusal of rcpt5xx@remote.test", err)
	}
	if err := c.SendAll(ctx, "me@local.test", []string{"a@remote.test", "b@remote.test"}, strings.NewReader(body)); err != nil {
		t.Fatalf("SendAll after a refusal = %v", err)
	}
	if err := c.SendAll(ctx, "me@local.test", nil, strings.NewReader(body)); err == nil {
		t.Error("SendAll without recipients succeeded")
	}
	c.Close()
	sink.mu.Lock()
	defer sink.mu.Unlock()
	want := []string{"me@local.test|a@remote.test,b@remote.test|" + body}
	if len(sink.got) != 1 || sink.got[0] != want[0] {
		t.Errorf("sink got %q, want %q", sink.got, want)
	}

	f := newFixture(t)
	addr := start(t, Options{Users: f.users, Store: f.store, SpoolDir: f.dir})
	lc, err := Dial(ctx, "tcp", addr, ClientOptions{LMTP: true})
	if err != nil {
		t.Fatal(err)
	}
	defer lc.Close()
	if err := lc.SendAll(ctx, "", []string{"alice@example.org"}, strings.NewReader(body)); err == nil {
		t.Error("SendAll over LMTP succeeded")
	}
}
