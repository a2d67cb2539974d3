package backend

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/postoffice-mail/postoffice/internal/auth/passwdfile"
	"github.com/postoffice-mail/postoffice/internal/sasl"
	"github.com/postoffice-mail/postoffice/internal/store/maildir"
	"github.com/postoffice-mail/postoffice/pop3"
	"github.com/postoffice-mail/postoffice/pop3server"
)

// restrictFile exercises Dovecot's passdb extra fields. Every password is
// {PLAIN}, so every login method can serve every user.
const restrictFile = `open:{PLAIN}pw
closed:{PLAIN}pw::::::nologin=y reason=Mailbox_moved_to_pop.example.net
closedquiet:{PLAIN}pw::::::nologin
inside:{PLAIN}pw::::::allow_nets=10.0.0.0/8,192.0.2.1
behindlb:{PLAIN}pw::::::allow_real_nets=198.51.100.0/24
anypw:::::::nopassword
`

// peerConn is a server side of a net.Pipe that claims a client address and,
// like go-proxyproto's connection, has a Raw connection whose peer is the
// direct one.
type peerConn struct {
	net.Conn
	remote net.Addr
	raw    net.Conn
}

func (c *peerConn) RemoteAddr() net.Addr { return c.remote }
func (c *peerConn) Raw() net.Conn        { return c.raw }

type addrConn struct {
	net.Conn
	remote net.Addr
}

func (c *addrConn) RemoteAddr() net.Addr { return c.remote }

func tcpAddr(s string) net.Addr {
	return net.TCPAddrFromAddrPort(netipAddrPort(s))
}

// restrictServer serves a backend over the passwd-file text with every
// login method enabled, and returns a dial function whose connections come
// from client through direct.
func restrictServer(t *testing.T, file string) func(client, direct string) *pop3.Client {
	t.Helper()
	dial, _ := limitedServer(t, file, nil)
	return func(client, direct string) *pop3.Client {
		t.Helper()
		c, err := pop3.NewClient(context.Background(), dial(client, direct), nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
}

// limitedServer is restrictServer with a LoginLimiter; its dial function
// returns the client side of the connection.
func limitedServer(t *testing.T, file string, lim pop3server.LoginLimiter) (func(client, direct string) net.Conn, *pop3server.Server) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "users")
	if err := os.WriteFile(path, []byte(file), 0o600); err != nil {
		t.Fatal(err)
	}
	db, err := passwdfile.Open(path, passwdfile.Options{})
	if err != nil {
		t.Fatal(err)
	}
	st, err := maildir.New(maildir.Options{Location: t.TempDir() + "/%u/Maildir", NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	mechs, err := sasl.New(sasl.Options{Users: db, Enabled: []string{"SCRAM-SHA-256", "CRAM-MD5", "PLAIN", "LOGIN"}})
	if err != nil {
		t.Fatal(err)
	}
	b, err := New(Options{Users: db, Store: st, APOP: true, SASL: mechs})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := pop3server.New(pop3server.Options{Backend: b, AllowPlaintextAuth: true, AuthFailDelay: -1,
		Hostname: "test.example", LoginLimiter: lim})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return func(client, direct string) net.Conn {
		cs, ss := net.Pipe()
		inner := &addrConn{Conn: ss, remote: tcpAddr(direct)}
		go srv.ServeConn(&peerConn{Conn: inner, remote: tcpAddr(client), raw: inner})
		t.Cleanup(func() { cs.Close() })
		return cs
	}, srv
}

// loginMethods log in with each method the backend offers.
var loginMethods = []struct {
	name  string
	login func(ctx context.Context, c *pop3.Client, user, pass string) error
}{
	{"USER", func(ctx context.Context, c *pop3.Client, u, p string) error { return c.Login(ctx, u, p) }},
	{"APOP", func(ctx context.Context, c *pop3.Client, u, p string) error { return c.APOP(ctx, u, p) }},
	{"PLAIN", func(ctx context.Context, c *pop3.Client, u, p string) error {
		return c.Authenticate(ctx, pop3.NewPlainClient("", u, p))
	}},
	{"LOGIN", func(ctx context.Context, c *pop3.Client, u, p string) error {
		return c.Authenticate(ctx, pop3.NewLoginClient(u, p))
	}},
	{"CRAM-MD5", func(ctx context.Context, c *pop3.Client, u, p string) error {
		return c.Authenticate(ctx, pop3.NewCRAMMD5Client(u, p))
	}},
	{"SCRAM-SHA-256", func(ctx context.Context, c *pop3.Client, u, p string) error {
		m, err := pop3.NewSCRAMClient("SCRAM-SHA-256", u, p, "")
		if err != nil {
			return err
		}
		return c.Authenticate(ctx, m)
	}},
}

// replyOf describes a login's outcome: "ok", or the -ERR code and text.
func replyOf(err error) string {
	if err == nil {
		return "ok"
	}
	var pe *pop3.Error
	if errors.As(err, &pe) {
		return "[" + string(pe.Code) + "] " + pe.Text
	}
	return err.Error()
}

// The passdb extra fields nologin (with reason), allow_nets and
// allow_real_nets hold for every login method, through the engine and the
// real passwd-file; nopassword lets any password in where the password is
// checked in plaintext, and no login where the method needs the stored
// secret.
func TestLoginRestrictions(t *testing.T) {
	t.Parallel()
	dial := restrictServer(t, restrictFile)
	const (
		inside   = "10.1.2.3:1000"
		outside  = "203.0.113.9:1000"
		lb       = "198.51.100.7:2000"
		otherLB  = "192.0.2.200:2000"
		failed   = "[AUTH] Authentication failed: check the user name and password"
		nologinR = "[AUTH] Mailbox_moved_to_pop.example.net"
	)
	cases := []struct {
		user, pass, client, direct string
		want                       string // for every method
		wantChallenge              string // for APOP, CRAM-MD5, SCRAM if different
	}{
		{"open", "pw", outside, outside, "ok", ""},
		{"closed", "pw", outside, outside, nologinR, ""},
		{"closed", "wrong", outside, outside, failed, ""}, // the reason only for the right password
		{"closedquiet", "pw", outside, outside, failed, ""},
		{"inside", "pw", inside, inside, "ok", ""},
		{"inside", "pw", "192.0.2.1:5", "192.0.2.1:5", "ok", ""},
		{"inside", "pw", outside, outside, failed, ""},
		{"inside", "pw", outside, inside, failed, ""}, // the client counts, not the proxy
		{"inside", "pw", inside, outside, "ok", ""},
		{"behindlb", "pw", outside, lb, "ok", ""},
		{"behindlb", "pw", outside, otherLB, failed, ""}, // the direct peer counts
		{"behindlb", "pw", "198.51.100.9:1", otherLB, failed, ""},
		{"anypw", "anything", outside, outside, "ok", failed},
		{"anypw", "", outside, outside, "ok", failed},
	}
	for _, m := range loginMethods {
		for _, tc := range cases {
			want := tc.want
			if tc.wantChallenge != "" && (m.name == "APOP" || m.name == "CRAM-MD5" || strings.HasPrefix(m.name, "SCRAM")) {
				want = tc.wantChallenge
			}
			if tc.pass == "" && (m.name == "USER" || m.name == "LOGIN") {
				continue // the client library refuses to send an empty password line
			}
			ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
			c := dial(tc.client, tc.direct)
			err := m.login(ctx, c, tc.user, tc.pass)
			if err == nil {
				c.Quit(ctx) // release the maildrop for the next case
			}
			got := replyOf(err)
			cancel()
			if got != want {
				t.Errorf("%s %s/%q from %s via %s: %s, want %s", m.name, tc.user, tc.pass, tc.client, tc.direct, got, want)
			}
		}
	}
}

func netipAddrPort(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }
