package pop3

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xdg-go/scram"

	"github.com/postoffice-mail/postoffice/internal/testutil/dovecot"
)

// scramMode is how scramServer misbehaves.
type scramMode int

const (
	scramGood      scramMode = iota
	scramBadSig              // server-final-message with a wrong signature
	scramNoFinal             // +OK right after the client-final-message
	scramWrongCB             // the server binds to other channel data
	scramWrongPass           // the server stores another password
)

// scramServer is a one-connection POP3 server doing AUTH with an
// xdg-go/scram server over implicit TLS (maxVersion caps the TLS version).
// It binds the -PLUS mechanisms the way a server must: tls-exporter on TLS
// 1.3, tls-server-end-point (its own certificate) before.
func scramServer(t *testing.T, maxVersion uint16, mode scramMode) string {
	t.Helper()
	cert := getCert(t)
	l, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert.TLS}, MaxVersion: maxVersion})
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu       sync.Mutex
		problems []string
	)
	report := func(format string, args ...any) {
		mu.Lock()
		problems = append(problems, fmt.Sprintf("scram server: "+format, args...))
		mu.Unlock()
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		nc, err := l.Accept()
		l.Close()
		if err != nil {
			report("accept: %v", err)
			return
		}
		defer nc.Close()
		nc.SetDeadline(time.Now().Add(20 * time.Second))
		tc := nc.(*tls.Conn)
		if err := tc.Handshake(); err != nil {
			report("handshake: %v", err)
			return
		}
		br := bufio.NewReader(tc)
		send := func(s string) { fmt.Fprintf(tc, "%s\r\n", s) }
		read := func() string {
			l, err := br.ReadString('\n')
			if err != nil {
				return "<" + err.Error() + ">"
			}
			return strings.TrimSuffix(l, "\r\n")
		}
		send("+OK scram test server")
		cmd, arg, _ := strings.Cut(read(), " ")
		mech, ir, _ := strings.Cut(arg, " ")
		if cmd != "AUTH" {
			report("got %q, want AUTH", cmd)
			return
		}
		h := scram.SHA256
		if strings.HasPrefix(mech, "SCRAM-SHA-1") {
			h = scram.SHA1
		}
		pass := "secret"
		if mode == scramWrongPass {
			pass = "other"
		}
		kf := scram.KeyFactors{Salt: "0123456789abcdef", Iters: 4096}
		srv, err := h.NewServer(func(user string) (scram.StoredCredentials, error) {
			c, err := h.NewClient(user, pass, "")
			if err != nil {
				return scram.StoredCredentials{}, err
			}
			return c.GetStoredCredentialsWithError(kf)
		})
		if err != nil {
			report("NewServer: %v", err)
			return
		}
		conv := srv.NewConversation()
		if strings.HasSuffix(mech, "-PLUS") {
			cs := tc.ConnectionState()
			var cb scram.ChannelBinding
			if cs.Version >= tls.VersionTLS13 {
				cb, err = scram.NewTLSExporterBinding(&cs)
			} else {
				cb, err = scram.NewTLSServerEndpointBinding(&tls.ConnectionState{PeerCertificates: []*x509.Certificate{cert.TLS.Leaf}})
			}
			if err != nil {
				report("channel binding: %v", err)
				return
			}
			if mode == scramWrongCB {
				cb.Data = append([]byte(nil), cb.Data...)
				cb.Data[0] ^= 0xff
			}
			conv = srv.NewConversationWithChannelBindingRequired(cb)
		}
		step := func(b64msg string) (string, error) {
			msg, err := base64.StdEncoding.DecodeString(b64msg)
			if err != nil {
				return "", err
			}
			return conv.Step(string(msg))
		}
		s1, err := step(ir)
		if err != nil {
			report("client-first: %v", err)
			send("-ERR [AUTH] bad client-first")
			return
		}
		send("+ " + base64.StdEncoding.EncodeToString([]byte(s1)))
		s2, err := step(read())
		if err == nil {
			switch mode {
			case scramNoFinal:
				send("+OK logged in")
				read() // QUIT or close
				return
			case scramBadSig:
				s2 = "v=" + base64.StdEncoding.EncodeToString(make([]byte, 32))
			}
		}
		send("+ " + base64.StdEncoding.EncodeToString([]byte(s2)))
		if resp := read(); resp != "" || err != nil {
			send("-ERR [AUTH] authentication failed")
			read()
			return
		}
		send("+OK logged in")
		if got := read(); got != "QUIT" {
			report("got %q, want QUIT", got)
			return
		}
		send("+OK bye")
	}()
	t.Cleanup(func() {
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			l.Close()
			report("server still running at the end")
		}
		for _, p := range problems {
			t.Error(p)
		}
	})
	return l.Addr().String()
}

func scramLogin(t *testing.T, addr, mech string) (*Client, error) {
	t.Helper()
	ctx := testCtx(t)
	c, err := DialTLS(ctx, addr, tlsOpts(t))
	if err != nil {
		t.Fatal(err)
	}
	// The connection is closed when the test ends, whether or not the
	// login succeeded (Close is idempotent, so a Quit before is fine).
	t.Cleanup(func() { c.Close() })
	m, err := NewSCRAMClient(mech, "alice", "secret", "")
	if err != nil {
		t.Fatal(err)
	}
	return c, c.Authenticate(ctx, m)
}

// SCRAM with and without channel binding, on TLS 1.2 (tls-server-end-point)
// and TLS 1.3 (tls-exporter), against an xdg-go/scram server.
func TestSCRAM(t *testing.T) {
	t.Parallel()
	for _, mech := range []string{SCRAMSHA1, SCRAMSHA256, SCRAMSHA1Plus, SCRAMSHA256Plus} {
		for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
			t.Run(fmt.Sprintf("%s/%s", mech, tls.VersionName(v)), func(t *testing.T) {
				t.Parallel()
				c, err := scramLogin(t, scramServer(t, v, scramGood), mech)
				if err != nil {
					t.Fatalf("Authenticate = %v", err)
				}
				if err := c.Quit(testCtx(t)); err != nil {
					t.Fatal(err)
				}
			})
		}
	}
}

// The mutual authentication of SCRAM: a server that does not prove it
// knows the credentials fails the login even with +OK, and so does a
// channel binding that does not match (a TLS man in the middle).
func TestSCRAMFailures(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		mech     string
		mode     scramMode
		verified bool // want ErrServerNotVerified (else an *Error)
	}{
		{"bad server signature", SCRAMSHA256, scramBadSig, true},
		{"no server-final", SCRAMSHA256, scramNoFinal, true},
		{"no server-final PLUS", SCRAMSHA256Plus, scramNoFinal, true},
		{"channel binding mismatch", SCRAMSHA256Plus, scramWrongCB, false},
		{"wrong password", SCRAMSHA1, scramWrongPass, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, err := scramLogin(t, scramServer(t, tls.VersionTLS13, tc.mode), tc.mech)
			var pe *Error
			switch {
			case err == nil:
				t.Fatal("Authenticate succeeded")
			case tc.verified && !errors.Is(err, ErrServerNotVerified):
				t.Fatalf("Authenticate = %v, want ErrServerNotVerified", err)
			case !tc.verified && !errors.As(err, &pe):
				t.Fatalf("Authenticate = %v, want a -ERR", err)
			}
			if tc.mode == scramNoFinal {
				if err := c.Noop(testCtx(t)); err == nil {
					t.Error("client still usable after an unverified login")
				}
			}
		})
	}
}

// A -PLUS mechanism without TLS fails before anything is sent.
func TestSCRAMPlusNeedsTLS(t *testing.T) {
	t.Parallel()
	addr := fakeServer(t, "S: +OK ready\nC: QUIT\nS: +OK")
	ctx := testCtx(t)
	c, err := Dial(ctx, addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	m, _ := NewSCRAMClient(SCRAMSHA256Plus, "alice", "secret", "")
	if err := c.Authenticate(ctx, m); err == nil || !strings.Contains(err.Error(), "needs a TLS connection") {
		t.Fatalf("Authenticate = %v, want a TLS error", err)
	}
	if err := c.Quit(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := NewSCRAMClient("SCRAM-MD5", "a", "b", ""); err == nil {
		t.Error("NewSCRAMClient(SCRAM-MD5) succeeded")
	}
}

// EXTERNAL sends an empty initial response ("=") or the authzid.
func TestExternal(t *testing.T) {
	t.Parallel()
	addr := fakeServer(t, `
		S: +OK ready
		C: AUTH EXTERNAL =
		S: -ERR [AUTH] no certificate
		C: AUTH EXTERNAL `+b64("bob")+`
		S: +OK
	`)
	ctx := testCtx(t)
	c, err := Dial(ctx, addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var pe *Error
	if err := c.Authenticate(ctx, NewExternalClient("")); !errors.As(err, &pe) {
		t.Fatalf("Authenticate(EXTERNAL) = %v, want -ERR", err)
	}
	if err := c.Authenticate(ctx, NewExternalClient("bob")); err != nil {
		t.Fatalf("Authenticate(EXTERNAL bob) = %v", err)
	}
}

// SCRAM-SHA-1 and SCRAM-SHA-256 against a real Dovecot (2.3 has no -PLUS),
// with passwords stored in the SCRAM schemes and in {PLAIN}.
func TestDovecotSCRAM(t *testing.T) {
	t.Parallel()
	d := dovecot.Start(t, "scramplain", "scram1", "scram256")
	d.SetScheme(t, "scram1", "SCRAM-SHA-1")
	d.SetScheme(t, "scram256", "SCRAM-SHA-256")
	d.SetMechanisms(t, "plain", "login", "cram-md5", "apop", "scram-sha-1", "scram-sha-256")
	for _, u := range []string{"scramplain", "scram1", "scram256"} {
		d.Deliver(t, u, []string{"Subject: scram\n\nhello\n"})
	}
	login := func(t *testing.T, user, pass, mech string) error {
		ctx := testCtx(t)
		c, err := DialStartTLS(ctx, d.Addr, &Options{TLSConfig: &tls.Config{RootCAs: d.Cert.Pool()}})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		caps, err := c.Capabilities(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if !caps.HasSASL(mech) {
			t.Fatalf("Dovecot does not offer %s: %q", mech, caps.SASL())
		}
		m, err := NewSCRAMClient(mech, user, pass, "")
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Authenticate(ctx, m); err != nil {
			return err
		}
		if n, _, err := c.Stat(ctx); err != nil || n != 1 {
			t.Fatalf("Stat = %d, %v; want 1 message", n, err)
		}
		return c.Quit(ctx)
	}
	for _, tc := range []struct{ user, mech string }{
		{"scramplain", SCRAMSHA1}, {"scramplain", SCRAMSHA256},
		{"scram1", SCRAMSHA1}, {"scram256", SCRAMSHA256},
	} {
		t.Run(tc.user+"/"+tc.mech, func(t *testing.T) {
			if err := login(t, tc.user, dovecot.Password, tc.mech); err != nil {
				t.Fatalf("%s as %s: %v", tc.mech, tc.user, err)
			}
		})
	}
	// A wrong password, and a mechanism the stored scheme cannot serve,
	// are a -ERR, not a broken session.
	for _, tc := range []struct{ user, pass, mech string }{
		{"scram256", "wrong", SCRAMSHA256}, {"scram256", dovecot.Password, SCRAMSHA1},
	} {
		var pe *Error
		if err := login(t, tc.user, tc.pass, tc.mech); !errors.As(err, &pe) {
			t.Errorf("%s as %s with %q = %v, want -ERR", tc.mech, tc.user, tc.pass, err)
		}
	}
}

// A plain SCRAM variant over TLS sends the GS2 flag "y" only when the
// server's CAPA is known and lacks the -PLUS variant (RFC 5802 §6): a server
// that does offer it then detects the stripped offer. Otherwise "n".
func TestSCRAMGS2Flag(t *testing.T) {
	t.Parallel()
	cs := &tls.ConnectionState{Version: tls.VersionTLS13}
	noPlus := &Caps{Lines: []string{"SASL SCRAM-SHA-256 PLAIN"}}
	withPlus := &Caps{Lines: []string{"SASL SCRAM-SHA-256-PLUS SCRAM-SHA-256"}}
	for _, tc := range []struct {
		name string
		cs   *tls.ConnectionState
		caps *Caps
		want string
	}{
		{"tls, no plus offered", cs, noPlus, "y,,"},
		{"tls, plus offered", cs, withPlus, "n,,"},
		{"tls, capa unknown", cs, nil, "n,,"},
		{"no tls", nil, noPlus, "n,,"},
	} {
		m, err := NewSCRAMClient(SCRAMSHA256, "alice", "secret", "")
		if err != nil {
			t.Fatal(err)
		}
		m.(ChannelBinder).BindTLS(tc.cs)
		m.(plusOffer).sawCaps(tc.caps)
		_, first, err := m.Start()
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(string(first), tc.want) {
			t.Errorf("%s: client-first %q, want the flag %q", tc.name, first, tc.want)
		}
	}
}
