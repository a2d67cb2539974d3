package e2e

import (
	"bufio"
	"crypto/hmac"
	"crypto/md5"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xdg-go/scram"
)

// The raw-socket tests of TLS and login: what no real client shows by
// itself.

// pconn is a POP3 connection driven line by line, plain or TLS.
type pconn struct {
	t        *testing.T
	raw      net.Conn // the TCP connection
	nc       net.Conn // raw, or the TLS connection over it
	br       *bufio.Reader
	greeting string
}

// srcCounter hands out loopback source addresses, one per connection, so
// that per-address failure limits of one connection do not slow another
// (postoffice and Dovecot count IPv4 addresses one by one).
var srcCounter atomic.Uint32

func nextLoopback() *net.TCPAddr {
	n := srcCounter.Add(1)
	return &net.TCPAddr{IP: net.IPv4(127, byte(10+n>>16), byte(n>>8), byte(n))}
}

// dialPlain connects to the plain port and reads the greeting.
func dialPlain(t *testing.T, addr string) *pconn {
	t.Helper()
	d := net.Dialer{Timeout: 10 * time.Second}
	if h, _, _ := net.SplitHostPort(addr); net.ParseIP(h).IsLoopback() {
		d.LocalAddr = nextLoopback()
	}
	nc, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	nc.SetDeadline(time.Now().Add(30 * time.Second))
	c := &pconn{t: t, raw: nc, nc: nc, br: bufio.NewReader(nc)}
	c.greeting = c.expect("+OK")
	return c
}

// dialTLS connects to the implicit-TLS port with cfg and reads the
// greeting.
func dialTLS(t *testing.T, addr string, cfg *tls.Config) *pconn {
	t.Helper()
	d := net.Dialer{Timeout: 10 * time.Second, LocalAddr: nextLoopback()}
	raw, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { raw.Close() })
	raw.SetDeadline(time.Now().Add(30 * time.Second))
	tc := tls.Client(raw, cfg)
	if err := tc.Handshake(); err != nil {
		t.Fatalf("TLS handshake with %s: %v", addr, err)
	}
	c := &pconn{t: t, raw: raw, nc: tc, br: bufio.NewReader(tc)}
	c.greeting = c.expect("+OK")
	return c
}

// dialSecure opens a TLS session with the target: on the implicit-TLS
// port, or, where that is a proxy (Dovecot), with STLS on the plain port,
// so that the server sees the client's own source address and its
// per-address failure penalty does not pile up on the proxy's.
func (tg *target) dialSecure(t *testing.T, cfg *tls.Config) *pconn {
	t.Helper()
	if !tg.proxied {
		return dialTLS(t, tg.tls, cfg)
	}
	c := dialPlain(t, tg.plain)
	c.stls(cfg)
	return c
}

// tlsConfig trusts the target's certificate.
func (tg *target) tlsConfig() *tls.Config {
	return &tls.Config{RootCAs: tg.ca, ServerName: "127.0.0.1"}
}

func (c *pconn) line() string {
	c.t.Helper()
	l, err := c.br.ReadString('\n')
	if err != nil {
		c.t.Fatalf("read: %v (got %q)", err, l)
	}
	return strings.TrimSuffix(l, "\r\n")
}

func (c *pconn) send(s string) {
	c.t.Helper()
	if _, err := io.WriteString(c.nc, s+"\r\n"); err != nil {
		c.t.Fatalf("write %q: %v", s, err)
	}
}

func (c *pconn) expect(prefix string) string {
	c.t.Helper()
	l := c.line()
	if !strings.HasPrefix(l, prefix) {
		c.t.Fatalf("got %q, want %q...", l, prefix)
	}
	return l
}

func (c *pconn) cmd(s, prefix string) string {
	c.t.Helper()
	c.send(s)
	return c.expect(prefix)
}

// capa sends CAPA and returns the capability names (first words).
func (c *pconn) capa() []string {
	c.t.Helper()
	c.cmd("CAPA", "+OK")
	var caps []string
	for {
		l := c.line()
		if l == "." {
			return caps
		}
		caps = append(caps, strings.ToUpper(strings.Fields(l)[0]))
	}
}

// saslLine returns the CAPA SASL line's mechanisms.
func (c *pconn) saslMechs() []string {
	c.t.Helper()
	c.cmd("CAPA", "+OK")
	var mechs []string
	for {
		l := c.line()
		if l == "." {
			return mechs
		}
		if f := strings.Fields(l); strings.EqualFold(f[0], "SASL") {
			mechs = f[1:]
		}
	}
}

// stls upgrades a plain connection with STLS.
func (c *pconn) stls(cfg *tls.Config) {
	c.t.Helper()
	c.cmd("STLS", "+OK")
	tc := tls.Client(c.raw, cfg)
	if err := tc.Handshake(); err != nil {
		c.t.Fatalf("TLS handshake after STLS: %v", err)
	}
	c.nc, c.br = tc, bufio.NewReader(tc)
}

// auth runs "AUTH mech" with the initial response ir (nil: none; empty:
// "="; one that does not fit the line: after the first "+"), answering each "+" challenge with step; a challenge that is not
// base64 is answered "*". It returns the final +OK or -ERR line.
func (c *pconn) auth(mech string, ir []byte, step func(chal []byte) []byte) string {
	c.t.Helper()
	line := "AUTH " + mech
	var later []byte // an initial response too long for the AUTH line
	if ir != nil {
		enc := "="
		if len(ir) > 0 {
			enc = base64.StdEncoding.EncodeToString(ir)
		}
		// RFC 5034 §4: the AUTH line is at most 255 octets with CRLF;
		// a longer initial response goes after the first, empty, "+".
		if len(line)+1+len(enc)+2 <= 255 {
			line += " " + enc
		} else {
			later = ir
		}
	}
	c.send(line)
	for i := 0; ; i++ {
		l := c.line()
		if !strings.HasPrefix(l, "+ ") && l != "+" {
			return l
		}
		if i == 10 {
			c.t.Fatalf("AUTH %s: more than 10 challenges", mech)
		}
		if later != nil {
			c.send(base64.StdEncoding.EncodeToString(later))
			later = nil
			continue
		}
		chal, err := base64.StdEncoding.DecodeString(strings.TrimSpace(strings.TrimPrefix(l, "+")))
		if err != nil {
			c.send("*")
			continue
		}
		c.send(base64.StdEncoding.EncodeToString(step(chal)))
	}
}

// noMoreSteps answers any challenge with an empty response (after a
// failed XOAUTH2 or a SCRAM server-final with "e=").
func noMoreSteps([]byte) []byte { return nil }

// cramMD5 answers a CRAM-MD5 challenge.
func cramMD5(user, secret string) func([]byte) []byte {
	return func(chal []byte) []byte {
		mac := hmac.New(md5.New, []byte(secret))
		mac.Write(chal)
		return []byte(user + " " + hex.EncodeToString(mac.Sum(nil)))
	}
}

// loginSteps answers the LOGIN mechanism's two prompts.
func loginSteps(user, pass string) func([]byte) []byte {
	n := 0
	return func([]byte) []byte {
		n++
		if n == 1 {
			return []byte(user)
		}
		if n == 2 {
			return []byte(pass)
		}
		return nil
	}
}

// scramConv starts a SCRAM conversation (sha: scram.SHA1 or
// scram.SHA256) with channel binding cb (zero: none, flag "n"); it
// returns the client-first-message and the step for the challenges.
func scramConv(t *testing.T, sha scram.HashGeneratorFcn, user, pass string, cb *scram.ChannelBinding, advertise bool) ([]byte, func([]byte) []byte) {
	t.Helper()
	cl, err := sha.NewClient(user, pass, "")
	if err != nil {
		t.Fatal(err)
	}
	var conv *scram.ClientConversation
	switch {
	case cb != nil:
		conv = cl.NewConversationWithChannelBinding(*cb)
	case advertise:
		conv = cl.NewConversationAdvertisingChannelBinding()
	default:
		conv = cl.NewConversation()
	}
	first, err := conv.Step("")
	if err != nil {
		t.Fatal(err)
	}
	return []byte(first), func(chal []byte) []byte {
		if conv.Done() {
			return nil
		}
		resp, err := conv.Step(string(chal))
		if err != nil {
			// A server-final-message with "e=" or a bad signature: end
			// the exchange with an empty response; the server must
			// say -ERR anyway.
			return nil
		}
		return []byte(resp)
	}
}

// apopDigest is the APOP digest of the greeting's timestamp.
func apopDigest(t *testing.T, greeting, secret string) string {
	t.Helper()
	ts := regexp.MustCompile(`<[^<>]+>`).FindString(greeting)
	if ts == "" {
		t.Fatalf("greeting %q has no APOP timestamp", greeting)
	}
	sum := md5.Sum([]byte(ts + secret))
	return hex.EncodeToString(sum[:])
}

// exporterBinding is the tls-exporter (TLS 1.3) or tls-server-end-point
// (TLS 1.2) binding of c's TLS connection.
func (c *pconn) binding() scram.ChannelBinding {
	c.t.Helper()
	cs := c.nc.(*tls.Conn).ConnectionState()
	var cb scram.ChannelBinding
	var err error
	if cs.Version >= tls.VersionTLS13 {
		cb, err = scram.NewTLSExporterBinding(&cs)
	} else {
		cb, err = scram.NewTLSServerEndpointBinding(&cs)
	}
	if err != nil {
		c.t.Fatal(err)
	}
	return cb
}

// STLS (RFC 2595 §4): "STLS\r\nCAPA\r\n" in one write, then the TLS
// handshake on the same socket. The server must answer STLS alone, in
// clear, and discard the CAPA that came before the handshake: the
// handshake succeeds, nothing arrives inside TLS until we ask, our own
// command is the first one answered, CAPA no longer lists STLS, and the
// session goes on to log in. (Dovecot, run as a check of the test, closes
// the connection instead.)
func TestSTLSDiscardsPipelinedCommands(t *testing.T) {
	t.Parallel()
	runClientCases(t, []clientCase{{"pipelined-capa", true, func(t *testing.T, tg *target) {
		c := dialPlain(t, tg.plain)
		if _, err := io.WriteString(c.raw, "STLS\r\nCAPA\r\n"); err != nil {
			t.Fatal(err)
		}
		// Read the STLS reply a byte at a time so that nothing past it is
		// taken from the socket.
		var reply []byte
		b := make([]byte, 1)
		for len(reply) == 0 || reply[len(reply)-1] != '\n' {
			if _, err := c.raw.Read(b); err != nil {
				t.Fatalf("reading the STLS reply: %v (got %q)", err, reply)
			}
			reply = append(reply, b[0])
		}
		if !strings.HasPrefix(string(reply), "+OK") {
			t.Fatalf("%s: STLS reply %q", tg.name, reply)
		}
		// Nothing more in clear: the CAPA must not be answered before the
		// handshake.
		c.raw.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		n, err := c.raw.Read(b)
		if n == 0 && err == io.EOF && tg.dovecot != nil {
			// Dovecot hands the pipelined bytes to OpenSSL, which takes
			// them for a bad TLS record and ends the connection: safe too,
			// but postoffice must discard them and go on.
			t.Logf("%s closed the connection instead of discarding the pipelined CAPA", tg.name)
			return
		}
		if n > 0 || !isTimeout(err) {
			t.Fatalf("%s: after the STLS reply the server sent %q in clear (%v); want nothing until the handshake", tg.name, b[:n], err)
		}
		c.raw.SetDeadline(time.Now().Add(30 * time.Second))
		tc := tls.Client(c.raw, tg.tlsConfig())
		if err := tc.Handshake(); err != nil {
			t.Fatalf("%s: handshake after pipelined STLS: %v\nserver log:\n%s", tg.name, err, tg.logs())
		}
		// Nothing inside TLS either until we send a command.
		tc.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		buf := make([]byte, 512)
		if n, err := tc.Read(buf); n > 0 || !isTimeout(err) {
			t.Fatalf("%s: inside TLS, before any command, the server sent %q (%v): the pipelined CAPA was answered", tg.name, buf[:n], err)
		}
		tc.SetDeadline(time.Now().Add(30 * time.Second))
		c.nc, c.br = tc, bufio.NewReader(tc)
		// An unknown command first: had the server kept the pipelined
		// CAPA, its +OK would come before our -ERR.
		c.cmd("XNOSUCH", "-ERR")
		caps := c.capa()
		if contains(caps, "STLS") {
			t.Errorf("%s: CAPA after STLS lists STLS: %v", tg.name, caps)
		}
		c.cmd("USER "+tg.user(roleHashed), "+OK")
		c.cmd("PASS "+tg.pass, "+OK")
		c.cmd("STAT", fmt.Sprintf("+OK %d %d", len(tlsMessages), tlsOctets()))
		c.cmd("QUIT", "+OK")
	}}})
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

// A failed login on every method answers -ERR [AUTH] (RFC 3206 §5), after
// pop3.auth_fail_delay (300ms here; the test checks that lower bound
// only): USER/PASS, APOP, and AUTH with each mechanism; an unknown user
// alike. Each attempt runs on its own TLS connection from its own
// loopback address.
func TestAuthFailures(t *testing.T) {
	t.Parallel()
	const delay = 300 * time.Millisecond
	tg := newPostofficeTarget(t, tlsSiteOptions{failDelay: "300ms"})
	for _, tc := range authFailureCases(tg) {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := tg.tlsConfig()
			if tc.cert {
				cfg.Certificates = []tls.Certificate{tg.pki.cert}
			}
			c := dialTLS(t, tg.tls, cfg)
			start := time.Now()
			reply := tc.run(t, c)
			took := time.Since(start)
			if !strings.HasPrefix(reply, "-ERR [AUTH]") {
				t.Errorf("%s with bad credentials: got %q, want -ERR [AUTH]", tc.name, reply)
			}
			if took < delay {
				t.Errorf("%s failed after %v, want at least auth_fail_delay %v", tc.name, took, delay)
			}
			// The session goes on after a failed login.
			if caps := c.capa(); !contains(caps, "USER") {
				t.Errorf("%s: CAPA after the failure = %v", tc.name, caps)
			}
		})
	}
}

// The same failed logins against Dovecot, for the methods it has: checks
// that the test's own APOP, SASL and SCRAM code is right (Dovecot answers
// each with -ERR [AUTH] too). The harness sets no failure delay.
func TestAuthFailuresDovecot(t *testing.T) {
	t.Parallel()
	d := startDovecot(t, 1)
	tg := newDovecotTarget(t, d, "user0", "scram0")
	for _, tc := range authFailureCases(tg) {
		switch tc.mech {
		case "USER", "APOP", "PLAIN", "LOGIN", "CRAM-MD5", "SCRAM-SHA-1", "SCRAM-SHA-256":
		default:
			continue
		}
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := tg.dialSecure(t, tg.tlsConfig())
			if reply := tc.run(t, c); !strings.HasPrefix(reply, "-ERR [AUTH]") {
				t.Errorf("%s with bad credentials: got %q, want -ERR [AUTH]", tc.name, reply)
			}
			if caps := c.capa(); !contains(caps, "USER") {
				t.Errorf("%s: CAPA after the failure = %v", tc.name, caps)
			}
		})
	}
	// And the right credentials log in, with the same code.
	for _, tc := range []struct {
		name string
		run  func(t *testing.T, c *pconn) string
	}{
		{"scram-sha-1", func(t *testing.T, c *pconn) string {
			first, step := scramConv(t, scram.SHA1, "user0", tg.pass, nil, false)
			return c.auth("SCRAM-SHA-1", first, step)
		}},
		{"scram-sha-256", func(t *testing.T, c *pconn) string {
			first, step := scramConv(t, scram.SHA256, "scram0", tg.pass, nil, false)
			return c.auth("SCRAM-SHA-256", first, step)
		}},
		{"login", func(t *testing.T, c *pconn) string { return c.auth("LOGIN", nil, loginSteps("user0", tg.pass)) }},
		{"cram-md5", func(t *testing.T, c *pconn) string { return c.auth("CRAM-MD5", nil, cramMD5("user0", tg.pass)) }},
		{"plain", func(t *testing.T, c *pconn) string {
			return c.auth("PLAIN", []byte("\x00user0\x00"+tg.pass), noMoreSteps)
		}},
		{"apop", func(t *testing.T, c *pconn) string {
			c.send("APOP user0 " + apopDigest(t, c.greeting, tg.pass))
			return c.line()
		}},
	} {
		t.Run("ok/"+tc.name, func(t *testing.T) {
			t.Parallel()
			c := tg.dialSecure(t, tg.tlsConfig())
			if reply := tc.run(t, c); !strings.HasPrefix(reply, "+OK") {
				t.Errorf("%s with the right credentials: %q, want +OK", tc.name, reply)
			}
		})
	}
}

// authFailure is one failed login: run returns the final reply.
type authFailure struct {
	name string
	mech string // what the server must offer: "USER", "APOP" or a SASL name
	run  func(t *testing.T, c *pconn) string
	cert bool // present the client certificate
}

// authFailureCases are failed logins with every method, for tg's users.
func authFailureCases(tg *target) []authFailure {
	const wrong = "wrong password"
	hashed, plain := tg.users[roleHashed], tg.users[rolePlain]
	scram256 := tg.users[roleSCRAM256]
	return []authFailure{
		{"user-pass", "USER", func(t *testing.T, c *pconn) string {
			c.cmd("USER "+hashed, "+OK")
			c.send("PASS " + wrong)
			return c.line()
		}, false},
		{"user-pass-unknown-user", "USER", func(t *testing.T, c *pconn) string {
			c.send("USER nosuchuser")
			if l := c.line(); strings.HasPrefix(l, "-ERR") {
				return l // refused at USER: fine too
			}
			c.send("PASS " + wrong)
			return c.line()
		}, false},
		{"apop", "APOP", func(t *testing.T, c *pconn) string {
			c.send("APOP " + plain + " " + apopDigest(t, c.greeting, wrong))
			return c.line()
		}, false},
		{"plain", "PLAIN", func(t *testing.T, c *pconn) string {
			return c.auth("PLAIN", []byte("\x00"+hashed+"\x00"+wrong), noMoreSteps)
		}, false},
		{"plain-unknown-user", "PLAIN", func(t *testing.T, c *pconn) string {
			return c.auth("PLAIN", []byte("\x00nosuchuser\x00"+wrong), noMoreSteps)
		}, false},
		{"login", "LOGIN", func(t *testing.T, c *pconn) string {
			return c.auth("LOGIN", nil, loginSteps(hashed, wrong))
		}, false},
		{"cram-md5", "CRAM-MD5", func(t *testing.T, c *pconn) string {
			return c.auth("CRAM-MD5", nil, cramMD5(plain, wrong))
		}, false},
		{"scram-sha-1", "SCRAM-SHA-1", func(t *testing.T, c *pconn) string {
			first, step := scramConv(t, scram.SHA1, plain, wrong, nil, false)
			return c.auth("SCRAM-SHA-1", first, step)
		}, false},
		{"scram-sha-256", "SCRAM-SHA-256", func(t *testing.T, c *pconn) string {
			first, step := scramConv(t, scram.SHA256, scram256, wrong, nil, false)
			return c.auth("SCRAM-SHA-256", first, step)
		}, false},
		{"scram-sha-256-plus", "SCRAM-SHA-256-PLUS", func(t *testing.T, c *pconn) string {
			cb := c.binding()
			first, step := scramConv(t, scram.SHA256, scram256, wrong, &cb, false)
			return c.auth("SCRAM-SHA-256-PLUS", first, step)
		}, false},
		{"scram-sha-1-plus", "SCRAM-SHA-1-PLUS", func(t *testing.T, c *pconn) string {
			cb := c.binding()
			first, step := scramConv(t, scram.SHA1, plain, wrong, &cb, false)
			return c.auth("SCRAM-SHA-1-PLUS", first, step)
		}, false},
		{"oauthbearer", "OAUTHBEARER", func(t *testing.T, c *pconn) string {
			user := tg.user(roleOAuth)
			ir := "n,a=" + user + ",\x01auth=Bearer " + wrongKeyToken(t, tg, user) + "\x01\x01"
			return c.auth("OAUTHBEARER", []byte(ir), func([]byte) []byte { return []byte{1} })
		}, false},
		{"xoauth2", "XOAUTH2", func(t *testing.T, c *pconn) string {
			user := tg.user(roleOAuth)
			ir := "user=" + user + "\x01auth=Bearer " + wrongKeyToken(t, tg, user) + "\x01\x01"
			return c.auth("XOAUTH2", []byte(ir), noMoreSteps)
		}, false},
		{"external-other-identity", "EXTERNAL", func(t *testing.T, c *pconn) string {
			// The certificate names the external user; asking to act as
			// another must fail.
			return c.auth("EXTERNAL", []byte(plain), noMoreSteps)
		}, true},
	}
}

// wrongKeyToken is a JWT with tg's issuer, audience and claims for user,
// signed by a key the server does not know.
func wrongKeyToken(t *testing.T, tg *target, user string) string {
	o := newOAuthIssuer(t, t.TempDir())
	o.issuer, o.audience = tg.oauth.issuer, tg.oauth.audience
	return o.token(t, user)
}

// Bad SASL input is refused with -ERR and the session goes on: base64
// that does not decode (as the initial response and as a continuation),
// a decoded message that is not what the mechanism expects, and "*".
// Checked against Dovecot too (where it has the mechanism).
func TestAuthMalformed(t *testing.T) {
	t.Parallel()
	type step struct {
		name    string
		mech    string // must be offered, so that the -ERR is not "no such mechanism"
		dovecot bool
		run     func(c *pconn, tg *target) string
	}
	steps := []step{
		{"plain-ir-not-base64", "PLAIN", true, func(c *pconn, _ *target) string {
			c.send("AUTH PLAIN !!not*base64!!")
			return c.line()
		}},
		{"login-response-not-base64", "LOGIN", true, func(c *pconn, _ *target) string {
			c.cmd("AUTH LOGIN", "+")
			c.send("%%%%")
			return c.line()
		}},
		{"plain-without-nul", "PLAIN", true, func(c *pconn, tg *target) string {
			return c.auth("PLAIN", []byte(tg.user(roleHashed)+" "+tg.pass), noMoreSteps)
		}},
		{"cram-md5-no-digest", "CRAM-MD5", true, func(c *pconn, tg *target) string {
			return c.auth("CRAM-MD5", nil, func([]byte) []byte { return []byte(tg.user(rolePlain)) })
		}},
		{"cancel", "LOGIN", true, func(c *pconn, _ *target) string {
			c.cmd("AUTH LOGIN", "+")
			c.send("*")
			return c.line()
		}},
		{"scram-garbage-client-first", "SCRAM-SHA-256", true, func(c *pconn, _ *target) string {
			return c.auth("SCRAM-SHA-256", []byte("this is not scram"), noMoreSteps)
		}},
		{"scram-bad-client-final", "SCRAM-SHA-256", true, func(c *pconn, tg *target) string {
			first, _ := scramConv(t, scram.SHA256, tg.user(roleSCRAM256), tg.pass, nil, false)
			return c.auth("SCRAM-SHA-256", first, func([]byte) []byte { return []byte("c=biws,r=wrongnonce,p=AAAA") })
		}},
		{"oauthbearer-not-gs2", "OAUTHBEARER", false, func(c *pconn, _ *target) string {
			return c.auth("OAUTHBEARER", []byte("garbage\x01"), func([]byte) []byte { return []byte{1} })
		}},
	}
	var cases []clientCase
	for _, s := range steps {
		cases = append(cases, clientCase{s.name, s.dovecot, func(t *testing.T, tg *target) {
			c := tg.dialSecure(t, tg.tlsConfig())
			if mechs := c.saslMechs(); !contains(mechs, s.mech) {
				t.Fatalf("%s: CAPA SASL %v lacks %s", tg.name, mechs, s.mech)
			}
			if reply := s.run(c, tg); !strings.HasPrefix(reply, "-ERR") {
				t.Errorf("%s: %s: got %q, want -ERR", tg.name, s.name, reply)
			}
			if caps := c.capa(); !contains(caps, "USER") {
				t.Errorf("%s: CAPA after the bad AUTH = %v", tg.name, caps)
			}
			c.cmd("USER "+tg.user(roleHashed), "+OK")
			c.cmd("PASS "+tg.pass, "+OK")
			c.cmd("QUIT", "+OK")
		}})
	}
	runClientCases(t, cases)
}

// SCRAM -PLUS binds the login to the TLS connection (RFC 5802 §6, RFC
// 5929, RFC 9266): with the right password, the true binding logs in
// (tls-exporter on TLS 1.3, tls-server-end-point on TLS 1.2) and a wrong
// one fails; and a client that says it could bind ("y") while the server
// lists -PLUS mechanisms is a downgrade, refused.
func TestSCRAMChannelBinding(t *testing.T) {
	t.Parallel()
	tg := newPostofficeTarget(t, tlsSiteOptions{})
	wrongData := make([]byte, 32)
	rand.Read(wrongData)
	for _, tc := range []struct {
		name   string
		maxTLS uint16
		mech   string
		sha    scram.HashGeneratorFcn
		user   string
		cb     func(t *testing.T, c *pconn) *scram.ChannelBinding
		adv    bool
		ok     bool
	}{
		{"tls13-exporter", tls.VersionTLS13, "SCRAM-SHA-256-PLUS", scram.SHA256, "sam", func(_ *testing.T, c *pconn) *scram.ChannelBinding { cb := c.binding(); return &cb }, false, true},
		{"tls12-server-end-point", tls.VersionTLS12, "SCRAM-SHA-256-PLUS", scram.SHA256, "sam", func(_ *testing.T, c *pconn) *scram.ChannelBinding { cb := c.binding(); return &cb }, false, true},
		{"sha1-tls13-exporter", tls.VersionTLS13, "SCRAM-SHA-1-PLUS", scram.SHA1, "pat", func(_ *testing.T, c *pconn) *scram.ChannelBinding { cb := c.binding(); return &cb }, false, true},
		{"wrong-exporter-data", tls.VersionTLS13, "SCRAM-SHA-256-PLUS", scram.SHA256, "sam", func(*testing.T, *pconn) *scram.ChannelBinding {
			return &scram.ChannelBinding{Type: scram.ChannelBindingTLSExporter, Data: wrongData}
		}, false, false},
		{"wrong-server-end-point-data", tls.VersionTLS12, "SCRAM-SHA-256-PLUS", scram.SHA256, "sam", func(*testing.T, *pconn) *scram.ChannelBinding {
			return &scram.ChannelBinding{Type: scram.ChannelBindingTLSServerEndpoint, Data: wrongData}
		}, false, false},
		{"exporter-of-another-connection", tls.VersionTLS13, "SCRAM-SHA-256-PLUS", scram.SHA256, "sam", func(t *testing.T, _ *pconn) *scram.ChannelBinding {
			other := dialTLS(t, tg.tls, tg.tlsConfig())
			cb := other.binding()
			return &cb
		}, false, false},
		{"sha1-wrong-data", tls.VersionTLS13, "SCRAM-SHA-1-PLUS", scram.SHA1, "pat", func(*testing.T, *pconn) *scram.ChannelBinding {
			return &scram.ChannelBinding{Type: scram.ChannelBindingTLSExporter, Data: wrongData}
		}, false, false},
		{"downgrade-y-flag", tls.VersionTLS13, "SCRAM-SHA-256", scram.SHA256, "sam", func(*testing.T, *pconn) *scram.ChannelBinding { return nil }, true, false},
		{"no-binding", tls.VersionTLS13, "SCRAM-SHA-256", scram.SHA256, "sam", func(*testing.T, *pconn) *scram.ChannelBinding { return nil }, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if !tc.ok {
				// The logins that succeed lock the maildrop of "sam" or
				// "pat": they run one after the other, each ending with
				// QUIT, whose +OK comes after the lock is released.
				t.Parallel()
			}
			cfg := tg.tlsConfig()
			cfg.MaxVersion = tc.maxTLS
			c := dialTLS(t, tg.tls, cfg)
			if mechs := c.saslMechs(); !contains(mechs, tc.mech) || !contains(mechs, "SCRAM-SHA-256-PLUS") {
				t.Fatalf("CAPA SASL %v lacks %s or SCRAM-SHA-256-PLUS", mechs, tc.mech)
			}
			first, step := scramConv(t, tc.sha, tc.user, testPassword, tc.cb(t, c), tc.adv)
			reply := c.auth(tc.mech, first, step)
			t.Logf("%s: %s", tc.mech, reply)
			if tc.ok && !strings.HasPrefix(reply, "+OK") {
				t.Errorf("%s with the right binding and password: %q, want +OK\nserver log:\n%s", tc.mech, reply, tg.logs())
			}
			if tc.ok {
				c.cmd("QUIT", "+OK")
			}
			if !tc.ok && !strings.HasPrefix(reply, "-ERR") {
				t.Errorf("%s: %q, want -ERR", tc.mech, reply)
			}
		})
	}
}

// The plaintext policy (like Dovecot's disable_plaintext_auth, see
// docs/auth.md): on a plain connection from an address that is not
// loopback, CAPA lists STLS but not USER, nor PLAIN, LOGIN, OAUTHBEARER,
// XOAUTH2 in SASL; USER/PASS, AUTH PLAIN and AUTH LOGIN are refused with
// -ERR [AUTH]; CRAM-MD5 still works; after STLS the refused logins work.
// With auth.allow_plaintext they work in clear.
// The server listens on this machine's first non-loopback IPv4 address.
func TestPlaintextPolicyNonLoopback(t *testing.T) {
	t.Parallel()
	ip := nonLoopbackIPv4(t)
	for _, allow := range []bool{false, true} {
		t.Run(fmt.Sprintf("allow_plaintext=%v", allow), func(t *testing.T) {
			t.Parallel()
			tg := newPostofficeTarget(t, tlsSiteOptions{listen: net.JoinHostPort(ip, "0"), allowPlaintext: allow})
			c := dialPlain(t, tg.plain)
			caps := c.capa()
			if !contains(caps, "STLS") {
				t.Errorf("CAPA %v lacks STLS", caps)
			}
			if contains(caps, "USER") != allow {
				t.Errorf("allow_plaintext=%v: CAPA %v; USER listed: %v", allow, caps, !allow)
			}
			if allow {
				c.cmd("USER alice", "+OK")
				c.cmd("PASS "+testPassword, "+OK")
				c.cmd("QUIT", "+OK")
				return
			}
			mechs := c.saslMechs()
			for _, m := range []string{"PLAIN", "LOGIN", "OAUTHBEARER", "XOAUTH2"} {
				if contains(mechs, m) {
					t.Errorf("CAPA SASL %v lists %s in clear", mechs, m)
				}
			}
			for _, m := range []string{"CRAM-MD5", "SCRAM-SHA-256"} {
				if !contains(mechs, m) {
					t.Errorf("CAPA SASL %v lacks %s, which sends no reusable secret", mechs, m)
				}
			}
			c.cmd("USER alice", "-ERR [AUTH]")
			if l := c.auth("PLAIN", []byte("\x00alice\x00"+testPassword), noMoreSteps); !strings.HasPrefix(l, "-ERR") {
				t.Errorf("AUTH PLAIN in clear from %s: %q, want -ERR", ip, l)
			}
			if l := c.auth("LOGIN", nil, loginSteps("alice", testPassword)); !strings.HasPrefix(l, "-ERR") {
				t.Errorf("AUTH LOGIN in clear from %s: %q, want -ERR", ip, l)
			}
			// Challenge-response methods stay available in clear.
			c2 := dialPlain(t, tg.plain)
			if l := c2.auth("CRAM-MD5", nil, cramMD5("pat", testPassword)); !strings.HasPrefix(l, "+OK") {
				t.Errorf("AUTH CRAM-MD5 in clear from %s: %q, want +OK", ip, l)
			}
			c.stls(tg.tlsConfig())
			if caps := c.capa(); !contains(caps, "USER") || contains(caps, "STLS") {
				t.Errorf("CAPA after STLS = %v, want USER and no STLS", caps)
			}
			c.cmd("USER alice", "+OK")
			c.cmd("PASS "+testPassword, "+OK")
			c.cmd("QUIT", "+OK")
		})
	}
}

// nonLoopbackIPv4 returns an IPv4 address of this machine that is not
// loopback, or skips the test.
func nonLoopbackIPv4(t *testing.T) string {
	t.Helper()
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Skipf("no interface addresses: %v", err)
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && !n.IP.IsLoopback() && !n.IP.IsLinkLocalUnicast() {
			// It must be usable: listen on it once.
			l, err := net.Listen("tcp", net.JoinHostPort(n.IP.String(), "0"))
			if err != nil {
				continue
			}
			l.Close()
			return n.IP.String()
		}
	}
	t.Skip("this machine has no non-loopback IPv4 address to test the plaintext policy on (see ip -br addr)")
	return ""
}
