package pop3

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/postoffice-mail/postoffice/internal/wire"
	"github.com/postoffice-mail/postoffice/pop3proto"
)

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func tlsOpts(t *testing.T) *Options {
	return &Options{TLSConfig: &tls.Config{RootCAs: getCert(t).Pool()}}
}

// STLS, then CAPA is asked again (RFC 2595 §4) and the certificate is
// checked against the dialled host (RFC 2595 §2.4).
func TestStartTLS(t *testing.T) {
	t.Parallel()
	addr := fakeServer(t, `
		S: +OK ready
		C: CAPA
		S: +OK
		S: STLS
		S: TOP
		S: .
		C: STLS
		S: +OK Begin TLS negotiation
		TLS
		C: CAPA
		S: +OK
		S: TOP
		S: USER
		S: SASL PLAIN
		S: .
		C: USER alice
		S: +OK
		C: PASS secret
		S: +OK
		C: QUIT
		S: +OK bye
	`)
	ctx := testCtx(t)
	c, err := DialStartTLS(ctx, addr, tlsOpts(t))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.TLS() == nil {
		t.Fatal("TLS() = nil after STLS")
	}
	caps, err := c.Capabilities(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if caps.STLS() || !caps.Has("USER") || !caps.HasSASL("plain") {
		t.Errorf("CAPA after STLS = %q", caps.Lines)
	}
	if err := c.Login(ctx, "alice", "secret"); err != nil {
		t.Fatal(err)
	}
	if err := c.Quit(ctx); err != nil {
		t.Fatal(err)
	}
}

// CVE-2021-22947 (curl's test982): bytes after the +OK to
// STLS and before the handshake fail the connection.
func TestStartTLSInjection(t *testing.T) {
	t.Parallel()
	addr := fakeServer(t, `
		S: +OK ready
		C: CAPA
		S: +OK
		S: STLS
		S: .
		C: STLS
		R: +OK Begin TLS\r\n+OK injected\r\n
		WAIT
	`)
	c, err := DialStartTLS(testCtx(t), addr, tlsOpts(t))
	if !errors.Is(err, ErrSTLSInjection) {
		t.Errorf("DialStartTLS = %v, %v; want ErrSTLSInjection", c, err)
	}
}

// As curl's test985: no STLS advertised (or no CAPA at all)
// and TLS required: fail, send nothing else.
func TestStartTLSMissing(t *testing.T) {
	t.Parallel()
	for _, capa := range []string{"S: +OK\nS: USER\nS: .", "S: -ERR what?"} {
		addr := fakeServer(t, "S: +OK ready\nC: CAPA\n"+capa+"\nWAIT")
		c, err := DialStartTLS(testCtx(t), addr, tlsOpts(t))
		if !errors.Is(err, ErrNoSTLS) {
			t.Errorf("DialStartTLS with %q = %v, %v; want ErrNoSTLS", capa, c, err)
		}
	}
}

// APOP digest from the greeting timestamp, lowercase hex (RFC 1939 §7;
// the vector is the RFC's).
func TestAPOP(t *testing.T) {
	t.Parallel()
	if got := APOPDigest("<1896.697170952@dbc.mtview.ca.us>", "tanstaaf"); got != "c4c9334bac560ecc979e58001b3e22fb" {
		t.Errorf("APOPDigest = %q", got)
	}
	addr := fakeServer(t, `
		S: +OK POP3 server ready <1896.697170952@dbc.mtview.ca.us>
		C: APOP mrose c4c9334bac560ecc979e58001b3e22fb
		S: +OK mrose's maildrop has 2 messages (320 octets)
		C: STAT
		S: +OK 2 320
	`)
	ctx := testCtx(t)
	c, err := Dial(ctx, addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if ts := c.Greeting().Timestamp; ts != "<1896.697170952@dbc.mtview.ca.us>" {
		t.Errorf("Timestamp = %q", ts)
	}
	if err := c.APOP(ctx, "mrose", "tanstaaf"); err != nil {
		t.Fatal(err)
	}
	if n, size, err := c.Stat(ctx); n != 2 || size != 320 || err != nil {
		t.Errorf("Stat = %d, %d, %v", n, size, err)
	}

	addr = fakeServer(t, "S: +OK no timestamp here\nC: QUIT\nS: +OK")
	c, err = Dial(ctx, addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.APOP(ctx, "mrose", "tanstaaf"); !errors.Is(err, ErrNoAPOP) {
		t.Errorf("APOP without timestamp = %v", err)
	}
	c.Quit(ctx)
}

// scriptMech is a SASL mechanism with fixed answers, recording challenges.
type scriptMech struct {
	name    string
	ir      []byte
	answers []string
	got     []string
}

func (m *scriptMech) Start() (string, []byte, error) { return m.name, m.ir, nil }

func (m *scriptMech) Next(ch []byte) ([]byte, error) {
	m.got = append(m.got, string(ch))
	if len(m.answers) == 0 {
		return nil, errors.New("no more answers")
	}
	a := m.answers[0]
	m.answers = m.answers[1:]
	return []byte(a), nil
}

// AUTH framing (RFC 5034 §4) with the mechanisms of sasl.go (PLAIN, RFC
// 4616; LOGIN; CRAM-MD5, RFC 2195; OAUTHBEARER, RFC 7628; XOAUTH2) and
// scripted ones.
func TestAuthenticate(t *testing.T) {
	t.Parallel()
	longPass := strings.Repeat("p", 300)
	tests := []struct {
		name    string
		mech    SASLClient
		script  string
		wantErr func(error) bool // nil: success
	}{
		{
			name:   "PLAIN initial response",
			mech:   NewPlainClient("", "alice", "secret"),
			script: "C: AUTH PLAIN " + b64("\x00alice\x00secret") + "\nS: +OK",
		},
		{
			name:   "PLAIN too long for the AUTH line goes after +",
			mech:   NewPlainClient("", "alice", longPass),
			script: "C: AUTH PLAIN\nS: + \nC: " + b64("\x00alice\x00"+longPass) + "\nS: +OK",
		},
		{
			// RFC 5034 §4: the initial response is sent only if the
			// command fits in 255 octets. "AUTH PLAIN " + 240 base64
			// octets + CRLF = 253.
			name:   "initial response that just fits",
			mech:   NewPlainClient("", "alice", strings.Repeat("p", 173)),
			script: "C: AUTH PLAIN " + b64("\x00alice\x00"+strings.Repeat("p", 173)) + "\nS: +OK",
		},
		{
			// 244 base64 octets would make 257.
			name:   "initial response that just does not fit",
			mech:   NewPlainClient("", "alice", strings.Repeat("p", 176)),
			script: "C: AUTH PLAIN\nS: + \nC: " + b64("\x00alice\x00"+strings.Repeat("p", 176)) + "\nS: +OK",
		},
		{
			name:   "empty initial response is =",
			mech:   &scriptMech{name: "X-EMPTY", ir: []byte{}},
			script: "C: AUTH X-EMPTY =\nS: +OK",
		},
		{
			name:   "LOGIN",
			mech:   NewLoginClient("alice", "secret"),
			script: "C: AUTH LOGIN\nS: + VXNlcm5hbWU6\nC: " + b64("alice") + "\nS: + UGFzc3dvcmQ6\nC: " + b64("secret") + "\nS: +OK",
		},
		{
			// RFC 2195 §2 vector.
			name: "CRAM-MD5",
			mech: NewCRAMMD5Client("tim", "tanstaaftanstaaf"),
			script: "C: AUTH CRAM-MD5\nS: + " + b64("<1896.697170952@postoffice.reston.mci.net>") +
				"\nC: " + b64("tim b913a602c7eda7a495b4e6e7334d3890") + "\nS: +OK",
		},
		{
			// curl test876/891: a challenge that is not base64 is cancelled.
			name:    "garbage challenge cancelled with *",
			mech:    NewCRAMMD5Client("tim", "x"),
			script:  "C: AUTH CRAM-MD5\nS: + !!not base64!!\nC: *\nS: -ERR AUTH cancelled",
			wantErr: func(err error) bool { return errors.Is(err, ErrBadChallenge) },
		},
		{
			name:    "mechanism error cancels with *",
			mech:    NewPlainClient("", "alice", "secret"),
			script:  "C: AUTH PLAIN " + b64("\x00alice\x00secret") + "\nS: + " + b64("what?") + "\nC: *\nS: -ERR cancelled",
			wantErr: func(err error) bool { return err != nil && !errors.Is(err, ErrProtocol) },
		},
		{
			// curl test870/874: the JSON error comes as a challenge, the
			// client answers with an empty line.
			name: "XOAUTH2 refused",
			mech: NewXOAuth2Client("alice@example.org", "tok"),
			script: "C: AUTH XOAUTH2 " + b64("user=alice@example.org\x01auth=Bearer tok\x01\x01") +
				"\nS: + " + b64(`{"status":"401","schemes":"bearer","scope":"https://mail.google.com/"}`) +
				"\nC: \nS: -ERR [AUTH] Invalid credentials",
			wantErr: func(err error) bool { var e *Error; return errors.As(err, &e) && e.IsAuth() },
		},
		{
			// A server that keeps sending challenges is cancelled after
			// the one empty answer.
			name: "XOAUTH2 second challenge cancelled",
			mech: NewXOAuth2Client("alice@example.org", "tok"),
			script: "C: AUTH XOAUTH2 " + b64("user=alice@example.org\x01auth=Bearer tok\x01\x01") +
				"\nS: + e30=\nC: \nS: + e30=\nC: *\nS: -ERR cancelled",
			wantErr: func(err error) bool {
				var e *Error
				return err != nil && !errors.As(err, &e) && !errors.Is(err, ErrProtocol)
			},
		},
		{
			name: "OAUTHBEARER refused",
			mech: NewOAuthBearerClient(OAuthBearerOptions{Username: "alice", Token: "tok", Host: "pop.example.org", Port: 995}),
			script: "C: AUTH OAUTHBEARER " + b64("n,a=alice,\x01host=pop.example.org\x01port=995\x01auth=Bearer tok\x01\x01") +
				"\nS: + " + b64(`{"status":"invalid_token"}`) + "\nC: AQ==\nS: -ERR [AUTH] no",
			wantErr: func(err error) bool { var e *Error; return errors.As(err, &e) && e.Code == "AUTH" },
		},
		{
			// RFC 5034 §4: server-final data in a "+" challenge.
			name:   "final data answered with an empty line",
			mech:   &scriptMech{name: "SCRAM-SHA-256", ir: []byte("n,,n=alice,r=abc"), answers: []string{"c=biws,r=abcdef,p=xyz", ""}},
			script: "C: AUTH SCRAM-SHA-256 " + b64("n,,n=alice,r=abc") + "\nS: + " + b64("r=abcdef,s=c2FsdA==,i=4096") + "\nC: " + b64("c=biws,r=abcdef,p=xyz") + "\nS: + " + b64("v=sig") + "\nC: \nS: +OK",
		},
		{
			name:    "unknown mechanism",
			mech:    &scriptMech{name: "X-NOPE"},
			script:  "C: AUTH X-NOPE\nS: -ERR Unsupported mechanism",
			wantErr: func(err error) bool { var e *Error; return errors.As(err, &e) && e.Code == "" },
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			addr := fakeServer(t, "S: +OK ready\n"+tc.script+"\nC: QUIT\nS: +OK")
			ctx := testCtx(t)
			var trace bytes.Buffer
			c, err := Dial(ctx, addr, &Options{DebugWriter: &trace})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			err = c.Authenticate(ctx, tc.mech)
			if tc.wantErr == nil && err != nil {
				t.Errorf("Authenticate = %v", err)
			}
			if tc.wantErr != nil && !tc.wantErr(err) {
				t.Errorf("Authenticate = %v (%T), not the wanted error", err, err)
			}
			for _, secret := range []string{"secret", "tok", b64("\x00alice")[:8], "b913a602"} {
				if strings.Contains(trace.String(), secret) {
					t.Errorf("trace shows %q:\n%s", secret, trace.String())
				}
			}
			// The session is still in step either way.
			if err := c.Quit(ctx); err != nil {
				t.Errorf("Quit = %v", err)
			}
		})
	}
}

// -ERR to CAPA means no capabilities, not a failure (RFC 2449 §5).
func TestCapaErr(t *testing.T) {
	t.Parallel()
	addr := fakeServer(t, `
		S: +OK old server
		C: CAPA
		S: -ERR unknown command
		C: DELE 1
		S: +OK
		C: DELE 2
		S: -ERR no such message
		C: DELE 3
		S: +OK
		C: QUIT
		S: -ERR [SYS/PERM] some deleted messages not removed
	`)
	ctx := testCtx(t)
	c, err := Dial(ctx, addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	caps, err := c.Capabilities(ctx)
	if err != nil || caps.Has("TOP") || len(caps.Lines) != 0 {
		t.Fatalf("Capabilities = %q, %v; want none, nil", caps.Lines, err)
	}
	// Without PIPELINING DeleMany goes one by one (the script reads them
	// in order either way), and the cached CAPA answer is used.
	if err := c.DeleMany(ctx, []int{1, 2, 3}); err == nil || !strings.Contains(err.Error(), "DELE 2") {
		t.Errorf("DeleMany = %v", err)
	}
	// RFC 1939 §6: -ERR to QUIT means the deletions may not be done.
	err = c.Quit(ctx)
	var perr *Error
	if !errors.As(err, &perr) || !perr.Permanent() || perr.Code != "SYS/PERM" {
		t.Errorf("Quit = %v, want [SYS/PERM]", err)
	}
}

// A connection that ends inside a RETR surfaces wire.ErrUnterminated and
// leaves the client broken.
func TestServerClosesInRetr(t *testing.T) {
	t.Parallel()
	addr := fakeServer(t, `
		S: +OK ready
		C: RETR 1
		S: +OK 500 octets
		R: Subject: cut\r\n\r\npartial line\r\n..stuffed\r\nand then noth
	`)
	ctx := testCtx(t)
	c, err := Dial(ctx, addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	rc, err := c.Retr(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(rc)
	if !errors.Is(err, wire.ErrUnterminated) {
		t.Errorf("ReadAll = %v, want wire.ErrUnterminated", err)
	}
	if want := "Subject: cut\r\n\r\npartial line\r\n.stuffed\r\nand then noth"; string(got) != want {
		t.Errorf("read %q before the error, want %q", got, want)
	}
	if err := rc.Close(); !errors.Is(err, wire.ErrUnterminated) {
		t.Errorf("Close = %v", err)
	}
	if err := c.Noop(ctx); !errors.Is(err, wire.ErrUnterminated) {
		t.Errorf("Noop on broken client = %v", err)
	}
}

// Response codes with sub-levels (RFC 2449 §8) and protocol desync: garbage
// and oversize replies.
func TestReplies(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		script string
		check  func(*testing.T, error)
		broken bool
	}{
		{
			name:   "SYS/TEMP with unknown sub-level",
			script: "C: NOOP\nS: -ERR [SYS/TEMP/DISK] try later",
			check: func(t *testing.T, err error) {
				var e *Error
				if !errors.As(err, &e) || e.Code != "SYS/TEMP/DISK" || !e.HasCode("SYS/TEMP") || !e.HasCode("sys") || !e.Temporary() || e.Text != "try later" {
					t.Errorf("err = %#v", err)
				}
			},
		},
		{
			name:   "LOGIN-DELAY",
			script: "C: NOOP\nS: -ERR [LOGIN-DELAY] wait 900 seconds",
			check: func(t *testing.T, err error) {
				var e *Error
				if !errors.As(err, &e) || !e.Temporary() || e.IsAuth() {
					t.Errorf("err = %#v", err)
				}
			},
		},
		{
			name:   "garbage reply",
			script: "C: NOOP\nS: * OK this is IMAP",
			broken: true,
			check: func(t *testing.T, err error) {
				if !errors.Is(err, ErrProtocol) {
					t.Errorf("err = %v, want ErrProtocol", err)
				}
			},
		},
		{
			name:   "oversize reply line",
			script: "C: NOOP\nS: +OK " + strings.Repeat("x", MaxReplyLine),
			broken: true,
			check: func(t *testing.T, err error) {
				if !errors.Is(err, ErrProtocol) {
					t.Errorf("err = %v, want ErrProtocol", err)
				}
			},
		},
		{
			name:   "lenient long reply line",
			script: "C: NOOP\nS: +OK " + strings.Repeat("x", 2000) + "\nC: QUIT\nS: +OK",
			check: func(t *testing.T, err error) {
				if err != nil {
					t.Errorf("err = %v", err)
				}
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := testCtx(t)
			c, err := Dial(ctx, fakeServer(t, "S: +OK ready\n"+tc.script), nil)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			err = c.Noop(ctx)
			tc.check(t, err)
			if tc.broken {
				if err2 := c.Noop(ctx); err2 == nil || err2.Error() != err.Error() {
					t.Errorf("next command on broken client = %v, want %v", err2, err)
				}
			} else if strings.Contains(tc.script, "QUIT") {
				c.Quit(ctx)
			}
		})
	}
}

// A -ERR greeting is an *Error from Dial.
func TestErrGreeting(t *testing.T) {
	t.Parallel()
	_, err := Dial(testCtx(t), fakeServer(t, "S: -ERR [SYS/TEMP] too many connections"), nil)
	var e *Error
	if !errors.As(err, &e) || e.Code != pop3proto.CodeSysTemp {
		t.Errorf("Dial = %v", err)
	}
}

// Cancelling the context or hitting Timeout interrupts a silent server and
// breaks the client.
func TestCancelAndTimeout(t *testing.T) {
	t.Parallel()
	t.Run("cancel", func(t *testing.T) {
		t.Parallel()
		ctx := testCtx(t)
		c, err := Dial(ctx, fakeServer(t, "S: +OK ready\nC: STAT\nWAIT"), nil)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		cctx, cancel := context.WithCancel(ctx)
		time.AfterFunc(50*time.Millisecond, cancel)
		start := time.Now()
		_, _, err = c.Stat(cctx)
		if !errors.Is(err, context.Canceled) || time.Since(start) > 5*time.Second {
			t.Errorf("Stat = %v after %v, want context.Canceled", err, time.Since(start))
		}
		if err := c.Noop(ctx); err == nil {
			t.Error("client usable after a cancelled command")
		}
	})
	t.Run("deadline", func(t *testing.T) {
		t.Parallel()
		ctx := testCtx(t)
		c, err := Dial(ctx, fakeServer(t, "S: +OK ready\nC: STAT\nWAIT"), nil)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		dctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
		defer cancel()
		if _, _, err = c.Stat(dctx); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Stat = %v, want context.DeadlineExceeded", err)
		}
	})
	t.Run("timeout", func(t *testing.T) {
		t.Parallel()
		ctx := testCtx(t)
		c, err := Dial(ctx, fakeServer(t, "S: +OK ready\nC: STAT\nWAIT"), &Options{Timeout: 50 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, _, err = c.Stat(ctx); err == nil || !strings.Contains(err.Error(), "timeout") {
			t.Errorf("Stat = %v, want a timeout", err)
		}
	})
}

// NewClient runs a session on a connection the caller made; Close on a
// client with a half-read body makes the body fail, not end.
func TestNewClientAndCloseWithOpenBody(t *testing.T) {
	t.Parallel()
	addr := fakeServer(t, `
		S: +OK ready
		C: RETR 1
		S: +OK
		R: Subject: x\r\n\r\nfirst part\r\n
		WAIT
	`)
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c, err := NewClient(context.Background(), nc, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := testCtx(t)
	rc, err := c.Retr(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 5)
	if _, err := io.ReadFull(rc, buf); err != nil {
		t.Fatal(err)
	}
	c.Close()
	if _, err := io.ReadAll(rc); !errors.Is(err, ErrClosed) {
		t.Errorf("reading a body after Close = %v, want ErrClosed", err)
	}
}

// StartTLS without a host name to check refuses before sending anything,
// so the session stays usable (it used to break after the +OK to STLS).
func TestStartTLSNoServerName(t *testing.T) {
	t.Parallel()
	addr := fakeServer(t, `
		S: +OK ready
		C: NOOP
		S: +OK
		C: QUIT
		S: +OK
	`)
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c, err := NewClient(context.Background(), nc, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := testCtx(t)
	if err := c.StartTLS(ctx); err == nil || !strings.Contains(err.Error(), "ServerName") {
		t.Errorf("StartTLS without ServerName = %v", err)
	}
	if err := c.Noop(ctx); err != nil {
		t.Errorf("Noop after refused StartTLS = %v", err)
	}
	if err := c.Quit(ctx); err != nil {
		t.Errorf("Quit = %v", err)
	}
}

// The Caps a caller gets does not share its lines with the cache.
func TestCapabilitiesCopy(t *testing.T) {
	t.Parallel()
	addr := fakeServer(t, `
		S: +OK ready
		C: CAPA
		S: +OK
		S: TOP
		S: .
		WAIT
	`)
	ctx := testCtx(t)
	c, err := Dial(ctx, addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for range 2 {
		caps, err := c.Capabilities(ctx)
		if err != nil || !caps.Has("TOP") || caps.STLS() {
			t.Fatalf("Capabilities = %q, %v; want TOP only", caps.Lines, err)
		}
		caps.Lines[0] = "STLS"
	}
}
