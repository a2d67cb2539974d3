package fetch

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/postoffice-mail/postoffice/internal/auth/passwdfile"
	"github.com/postoffice-mail/postoffice/internal/certutil"
	"github.com/postoffice-mail/postoffice/internal/lmtp"
	"github.com/postoffice-mail/postoffice/internal/store"
	"github.com/postoffice-mail/postoffice/internal/store/maildir"
)

// lmtpServer runs our own LMTP server (internal/lmtp) over a Maildir store
// in a temporary directory, with the user "me"; unix selects a socket.
func lmtpServer(t *testing.T, unix bool) (addr string, st store.Store) {
	t.Helper()
	dir := t.TempDir()
	passwd := filepath.Join(dir, "passwd")
	if err := os.WriteFile(passwd, []byte("me:{PLAIN}x::::::\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	users, err := passwdfile.Open(passwd, passwdfile.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ms, err := maildir.New(maildir.Options{Location: filepath.Join(dir, "vmail", "%n", "Maildir"), Hostname: "test"})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := lmtp.New(lmtp.Options{Users: users, Store: ms, Hostname: "lmtp.test", SpoolDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	var l net.Listener
	if unix {
		addr = filepath.Join(dir, "lmtp.sock")
		l, err = lmtp.ListenUnix(addr, 0o600)
		addr = "unix:" + addr
	} else {
		l, err = net.Listen("tcp", "127.0.0.1:0")
		if err == nil {
			addr = l.Addr().String()
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(l)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	})
	return addr, ms
}

// stored returns user's messages in st.
func stored(t *testing.T, st store.Store, user string) []string {
	t.Helper()
	md, err := st.Open(context.Background(), user)
	if err != nil {
		t.Fatal(err)
	}
	defer md.Close()
	var out []string
	for i := range md.Messages() {
		r, err := md.Open(context.Background(), i)
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(r)
		r.Close()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, string(b))
	}
	return out
}

// Forwarding by LMTP into our own server: MAIL FROM is the message's
// Return-Path (else <>), the second run sends nothing, the message arrives
// byte for byte (CRLF kept, dots intact).
func TestLMTPTarget(t *testing.T) {
	t.Parallel()
	for _, unix := range []bool{false, true} {
		t.Run(fmt.Sprintf("unix=%v", unix), func(t *testing.T) {
			t.Parallel()
			addr, st := lmtpServer(t, unix)
			srv := startServer(t, nil)
			msgs := []string{
				"Return-Path: <bounce@list.example>\r\nSubject: 1\r\n\r\none\r\n",
				"Subject: 2\r\nReturn-Path: <>\r\n\r\n.dot\r\nFrom x\r\n",
				"Subject: 3\r\n\r\nthree\r\n",
			}
			for _, m := range msgs {
				srv.b.Deliver(testUser, []byte(m))
			}
			a := account(t, srv, fmt.Sprintf("target = \"lmtp:%s\"\nrecipient = \"me@example.org\"\nkeep = false", addr))
			if res := run1(t, a, Options{}); res.Fetched != 3 || res.Deleted != 3 {
				t.Fatalf("first run = %+v, want 3 fetched and deleted", res)
			}
			srv.deliver(t, 1, "Subject: late %d\r\n\r\nx\r\n")
			if res := run1(t, a, Options{}); res.Fetched != 1 {
				t.Fatalf("second run = %+v, want 1 fetched", res)
			}
			got := stored(t, st, "me")
			want := []string{
				"Return-Path: <bounce@list.example>\r\nDelivered-To: <me@example.org>\r\n" + msgs[0],
				"Return-Path: <>\r\nDelivered-To: <me@example.org>\r\n" + msgs[1],
				"Return-Path: <>\r\nDelivered-To: <me@example.org>\r\n" + msgs[2],
				"Return-Path: <>\r\nDelivered-To: <me@example.org>\r\nSubject: late 0\r\n\r\nx\r\n",
			}
			if strings.Join(got, "|") != strings.Join(want, "|") {
				t.Errorf("stored %q\nwant %q", got, want)
			}
		})
	}
}

// smtpSink is a small scripted SMTP server (go-smtp stays in internal/lmtp).
// It refuses RCPT TO:<nobody@...> with 550, answers 451 after a message
// with "Subject: tempfail" while tempfail is set and 554 after one with
// "Subject: reject", and keeps the rest as "from|to|data".
type smtpSink struct {
	addr     string
	mu       sync.Mutex
	got      []string
	tempfail bool

	// With tls set the sink offers STARTTLS; with user set it requires
	// AUTH PLAIN (offered only over TLS) with user and pass before MAIL.
	tls        *tls.Config
	user, pass string
}

func startSMTPSink(t *testing.T) *smtpSink { return startSMTPSinkWith(t, &smtpSink{}) }

func startSMTPSinkWith(t *testing.T, s *smtpSink) *smtpSink {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.addr, s.tempfail = l.Addr().String(), true
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			nc, err := l.Accept()
			if err != nil {
				return
			}
			go s.serve(nc)
		}
	}()
	return s
}

func (s *smtpSink) serve(nc net.Conn) {
	defer func() { nc.Close() }()
	nc.SetDeadline(time.Now().Add(30 * time.Second))
	br := bufio.NewReader(nc)
	reply := func(l string) { fmt.Fprintf(nc, "%s\r\n", l) }
	reply("220 sink.test ESMTP")
	var from, to string
	secure, authed := false, false
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return
		}
		line = strings.TrimRight(line, "\r\n")
		verb := strings.ToUpper(strings.SplitN(line, " ", 2)[0])
		switch {
		case verb == "EHLO" && (s.tls != nil || s.user != ""):
			reply("250-sink.test")
			if s.tls != nil && !secure {
				reply("250-STARTTLS")
			}
			if s.user != "" && secure {
				reply("250-AUTH PLAIN")
			}
			reply("250 HELP")
		case verb == "EHLO" || verb == "HELO":
			reply("250 sink.test")
		case verb == "STARTTLS" && s.tls != nil && !secure:
			reply("220 2.0.0 ready")
			tc := tls.Server(nc, s.tls)
			if tc.Handshake() != nil {
				return
			}
			nc, br, secure = tc, bufio.NewReader(tc), true
		case verb == "AUTH" && s.user != "" && secure:
			b, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(line, "AUTH PLAIN "))
			if err != nil || string(b) != "\x00"+s.user+"\x00"+s.pass {
				reply("535 5.7.8 authentication failed")
				continue
			}
			authed = true
			reply("235 2.7.0 ok")
		case s.user != "" && !authed && strings.HasPrefix(strings.ToUpper(line), "MAIL FROM:<"):
			reply("530 5.7.0 authentication required")
		case strings.HasPrefix(strings.ToUpper(line), "MAIL FROM:<"):
			from = strings.TrimSuffix(line[len("MAIL FROM:<"):], ">")
			reply("250 2.1.0 ok")
		case strings.HasPrefix(strings.ToUpper(line), "RCPT TO:<"):
			to = strings.TrimSuffix(line[len("RCPT TO:<"):], ">")
			if strings.HasPrefix(to, "nobody@") {
				reply("550 5.1.1 no such user")
				continue
			}
			reply("250 2.1.5 ok")
		case verb == "DATA":
			reply("354 go ahead")
			var data strings.Builder
			for {
				l, err := br.ReadString('\n')
				if err != nil {
					return
				}
				if l == ".\r\n" {
					break
				}
				data.WriteString(strings.TrimPrefix(l, "."))
			}
			s.mu.Lock()
			switch {
			case strings.Contains(data.String(), "Subject: tempfail") && s.tempfail:
				reply("451 4.3.0 try again later")
			case strings.Contains(data.String(), "Subject: reject"):
				reply("554 5.7.1 message refused")
			default:
				s.got = append(s.got, from+"|"+to+"|"+data.String())
				reply("250 2.0.0 queued")
			}
			s.mu.Unlock()
		case verb == "RSET" || verb == "NOOP":
			reply("250 ok")
		case verb == "QUIT":
			reply("221 bye")
			return
		default:
			reply("500 unknown command")
		}
	}
}

func (s *smtpSink) messages() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.got...)
}

// SMTP forwarding with a 4xx (the run stops with 75, nothing after it is
// sent, the message comes again next run) and a 5xx (recorded as rejected,
// never sent again nor deleted, exit 69 once).
func TestSMTPTarget(t *testing.T) {
	t.Parallel()
	sink := startSMTPSink(t)
	srv := startServer(t, nil)
	for _, subj := range []string{"1", "tempfail", "3", "reject", "5"} {
		srv.b.Deliver(testUser, []byte("Return-Path: <s@remote.test>\r\nSubject: "+subj+"\r\n\r\nbody\r\n"))
	}
	a := account(t, srv, fmt.Sprintf("target = \"smtp:%s\"\nrecipient = \"me@local.test\"\nkeep = false", sink.addr))
	res, err := Run(testCtx(t), a, Options{})
	if ExitCode(err) != ExitTempFail || res.Fetched != 1 || res.Deleted != 1 {
		t.Fatalf("run 1 = %+v, %v (exit %d); want 1 fetched, exit 75", res, err, ExitCode(err))
	}
	sink.mu.Lock()
	sink.tempfail = false
	sink.mu.Unlock()
	res, err = Run(testCtx(t), a, Options{})
	if ExitCode(err) != ExitUnavailable || res.Fetched != 3 || res.Rejected != 1 || res.Deleted != 3 {
		t.Fatalf("run 2 = %+v, %v (exit %d); want 3 fetched, 1 rejected, exit 69", res, err, ExitCode(err))
	}
	res, err = Run(testCtx(t), a, Options{})
	if err != nil || res.Fetched != 0 || res.Rejected != 0 || res.Deleted != 0 {
		t.Fatalf("run 3 = %+v, %v; want nothing to do", res, err)
	}
	if n := srv.b.Count(testUser); n != 1 {
		t.Errorf("server has %d messages, want the rejected one", n)
	}
	got := sink.messages()
	if len(got) != 4 {
		t.Fatalf("sink got %d messages, want 4: %q", len(got), got)
	}
	for i, subj := range []string{"1", "tempfail", "3", "5"} {
		want := "s@remote.test|me@local.test|Return-Path: <s@remote.test>\r\nSubject: " + subj + "\r\n\r\nbody\r\n"
		if got[i] != want {
			t.Errorf("message %d = %q, want %q", i, got[i], want)
		}
	}
}

// A recipient the server refuses stops the run (exit 69) and records
// nothing: fixing the recipient fetches everything.
func TestSMTPTargetRecipientRefused(t *testing.T) {
	t.Parallel()
	sink := startSMTPSink(t)
	srv := startServer(t, nil)
	srv.deliver(t, 2, "Subject: %d\r\n\r\nbody\r\n")
	a := account(t, srv, fmt.Sprintf("target = \"smtp:%s\"\nrecipient = \"nobody@local.test\"", sink.addr))
	res, err := Run(testCtx(t), a, Options{})
	if ExitCode(err) != ExitUnavailable || res.Fetched != 0 || res.Rejected != 0 {
		t.Fatalf("run = %+v, %v (exit %d); want exit 69, nothing done", res, err, ExitCode(err))
	}
	a.Recipient = "me@local.test"
	if res := run1(t, a, Options{}); res.Fetched != 2 {
		t.Fatalf("run with a good recipient = %+v, want 2 fetched", res)
	}
}

// A target that is down is temporary.
func TestForwardTargetDown(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	srv := startServer(t, nil)
	srv.deliver(t, 1, "Subject: %d\r\n\r\nbody\r\n")
	a := account(t, srv, fmt.Sprintf("target = \"lmtp:%s\"\nrecipient = \"me@example.org\"", addr))
	if _, err := Run(testCtx(t), a, Options{}); ExitCode(err) != ExitTempFail {
		t.Fatalf("Run = %v (exit %d), want exit 75", err, ExitCode(err))
	}
}

func TestReturnPath(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ in, want string }{
		{"Return-Path: <a@b.example>\r\n\r\nbody", "a@b.example"},
		{"Subject: x\r\nreturn-path:<a@b.example>\r\n\r\n", "a@b.example"},
		{"Return-Path: <>\r\n\r\n", ""},
		{"Return-Path: <a b@c>\r\n\r\n", ""},
		{"Subject: x\r\n\r\nReturn-Path: <body@x>\r\n", ""},
		{"Return-Path: <first@x>\r\nReturn-Path: <second@x>\r\n\r\n", "first@x"},
		{"Subject: " + strings.Repeat("x", 100<<10) + "\r\nReturn-Path: <late@x>\r\n\r\n", ""},
	} {
		br := bufio.NewReaderSize(strings.NewReader(tc.in), 64<<10)
		from, head := returnPath(br)
		rest, _ := io.ReadAll(br)
		if from != tc.want || string(head)+string(rest) != tc.in {
			t.Errorf("returnPath(%.40q) = %q (stream intact %v), want %q", tc.in, from, string(head)+string(rest) == tc.in, tc.want)
		}
	}
}

func TestForwardConfig(t *testing.T) {
	t.Parallel()
	base := "[[account]]\nname = \"a\"\nserver = \"pop.example.org:995\"\nuser = \"u\"\nstate_dir = \"/tmp/s\"\n"
	for _, tc := range []struct{ extra, want string }{
		{"password = \"p\"\ntarget = \"smtp:mx.example:25\"\nrecipient = \"me@example.org\"", ""},
		{"password = \"p\"\ntarget = \"lmtp:unix:/run/lmtp\"\nrecipient = \"me@example.org\"", ""},
		{"password = \"p\"\ntarget = \"lmtp:unix:run/lmtp\"\nrecipient = \"me@example.org\"", "target: lmtp:unix: socket path must be absolute"},
		{"password = \"p\"\ntarget = \"smtp:mx.example\"\nrecipient = \"me@example.org\"", "target: smtp: want HOST:PORT"},
		{"password = \"p\"\ntarget = \"lmtp:localhost:24\"", "recipient: required"},
		{"password = \"p\"\ntarget = \"maildir:/m\"\nrecipient = \"me\"", "recipient: only for lmtp: and smtp: targets"},
		{"password = \"p\"\ntarget = \"smtp:mx.example:25\"\nrecipient = \"me\"", "recipient: want a bare address"},
		{"password = \"p\"\ntarget = \"smtp:mx.example:25\"\nrecipient = \"<me@x>\"", "recipient: want a bare address"},
		{"target = \"maildir:/m\"\nauth = \"external\"", "auth: \"external\" needs cert_file"},
		{"password = \"p\"\ntarget = \"maildir:/m\"\ntls = \"none\"\nauth = \"scram-sha-256-plus\"", "auth: scram-sha-256-plus needs tls"},
		{"password = \"p\"\ntarget = \"maildir:/m\"\nauth = \"SCRAM-SHA-256\"", ""},
		{"password = \"p\"\ntarget = \"smtp:mx.example:587\"\nrecipient = \"me@x.org\"\nsmtp_tls = \"starttls\"\nsmtp_user = \"u\"\nsmtp_password = \"p\"\nsmtp_ca_file = \"/ca.pem\"", ""},
		{"password = \"p\"\ntarget = \"smtp:mx.example:587\"\nrecipient = \"me@x.org\"\nsmtp_user = \"u\"\nsmtp_password = \"p\"", "smtp_user: needs smtp_tls = \"starttls\""},
		{"password = \"p\"\ntarget = \"smtp:mx.example:587\"\nrecipient = \"me@x.org\"\nsmtp_tls = \"starttls\"\nsmtp_user = \"u\"", "smtp_user: smtp_user and smtp_password go together"},
		{"password = \"p\"\ntarget = \"smtp:mx.example:587\"\nrecipient = \"me@x.org\"\nsmtp_tls = \"implicit\"", "smtp_tls: want \"none\" or \"starttls\""},
		{"password = \"p\"\ntarget = \"lmtp:localhost:24\"\nrecipient = \"me@x.org\"\nsmtp_tls = \"starttls\"", "for smtp: targets only"},
	} {
		_, err := ParseConfig("f.toml", []byte(base+tc.extra+"\n"))
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("ParseConfig(%q) = %v, want success", tc.extra, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("ParseConfig(%q) = %v, want %q", tc.extra, err, tc.want)
		}
	}
}

// SMTP forwarding to a smarthost: STARTTLS against smtp_ca_file, then AUTH
// PLAIN; a wrong password exits 77 and sends nothing, and so does a
// certificate the system roots do not trust.
func TestSMTPTargetStartTLSAuth(t *testing.T) {
	t.Parallel()
	pair, err := certutil.SelfSigned(24 * time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair(pair.CertPEM, pair.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	os.WriteFile(caFile, pair.CertPEM, 0o600)
	sink := startSMTPSinkWith(t, &smtpSink{tls: &tls.Config{Certificates: []tls.Certificate{cert}}, user: "relay", pass: "s3cret"})
	srv := startServer(t, nil)
	srv.b.Deliver(testUser, []byte("Subject: 1\r\n\r\nbody\r\n"))

	target := fmt.Sprintf("target = \"smtp:%s\"\nrecipient = \"me@local.test\"\nsmtp_tls = \"starttls\"\nsmtp_user = \"relay\"\n", sink.addr)
	for _, tc := range []struct {
		name, extra string
		code        int
	}{
		{"wrong-password", "smtp_password = \"wrong\"\nsmtp_ca_file = \"" + caFile + "\"", ExitNoPerm},
		{"untrusted", "smtp_password = \"s3cret\"", ExitNoPerm},
		{"ok", "smtp_password = \"s3cret\"\nsmtp_ca_file = \"" + caFile + "\"", ExitOK},
	} {
		a := account(t, srv, target+tc.extra)
		res, err := Run(testCtx(t), a, Options{})
		if ExitCode(err) != tc.code {
			t.Fatalf("%s: Run = %+v, %v (exit %d), want exit %d", tc.name, res, err, ExitCode(err), tc.code)
		}
		if n := len(sink.messages()); (tc.code == ExitOK) != (n == 1) {
			t.Fatalf("%s: the sink has %d messages", tc.name, n)
		}
	}
	if got := sink.messages(); len(got) != 1 || !strings.HasPrefix(got[0], "|me@local.test|Subject: 1\r\n") {
		t.Errorf("sink got %q", got)
	}
}
