package probe

import (
	"bufio"
	"context"
	"crypto/tls"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/postoffice-mail/postoffice/internal/certutil"
	"github.com/postoffice-mail/postoffice/internal/testutil/dovecot"
	"github.com/postoffice-mail/postoffice/pop3server"
	"github.com/postoffice-mail/postoffice/pop3server/memserver"
)

func TestParseTarget(t *testing.T) {
	tests := []struct {
		in   string
		want Target
		err  bool
	}{
		{in: "pop3://mail.example.org", want: Target{Host: "mail.example.org", Addr: "mail.example.org:110"}},
		{in: "pop3s://alice@mail.example.org", want: Target{Implicit: true, Host: "mail.example.org", Addr: "mail.example.org:995", User: "alice"}},
		{in: "pop3://a%40example.org:pw@[::1]:1110", want: Target{Host: "::1", Addr: "[::1]:1110", User: "a@example.org", Password: "pw"}},
		{in: "imap://mail.example.org", err: true},
		{in: "pop3://", err: true},
		{in: "pop3://host:99999", err: true},
		{in: "pop3://host/INBOX", err: true},
	}
	for _, tt := range tests {
		got, err := ParseTarget(tt.in)
		if (err != nil) != tt.err {
			t.Errorf("ParseTarget(%q) error = %v, want error %v", tt.in, err, tt.err)
			continue
		}
		if diff := cmp.Diff(tt.want, got); !tt.err && diff != "" {
			t.Errorf("ParseTarget(%q) mismatch (-want +got):\n%s", tt.in, diff)
		}
	}
}

// remoteListener makes every connection look as if it came from a
// non-loopback address, so the server applies its rules for remote
// clients while the test stays on loopback.
type remoteListener struct{ net.Listener }

type remoteConn struct{ net.Conn }

func (remoteConn) RemoteAddr() net.Addr {
	return &net.TCPAddr{IP: net.ParseIP("203.0.113.7"), Port: 40000}
}

func (l remoteListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return remoteConn{c}, nil
}

var testMessages = []string{
	"Subject: one\r\nFrom: a@example.org\r\n\r\nHello\r\n",
	"Subject: dots\r\n\r\n.leading dot\r\n..\r\n.\r\nlast\r\n",
	"Subject: three\r\n\r\nbody\r\n",
}

// serve runs the engine over memserver with alice's three messages and
// TLS with pair; implicit selects a pop3s listener.
func serve(t *testing.T, pair *certutil.Pair, allowPlaintext, implicit bool) string {
	t.Helper()
	b := memserver.New()
	b.AddUser("alice", "pw")
	for _, m := range testMessages {
		b.Deliver("alice", []byte(m))
	}
	srv, err := pop3server.New(pop3server.Options{
		Backend:            b,
		TLSConfig:          &tls.Config{Certificates: []tls.Certificate{pair.TLS}},
		AllowPlaintextAuth: allowPlaintext,
		AuthFailDelay:      -1,
	})
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if implicit {
		go srv.ServeTLS(remoteListener{l})
	} else {
		go srv.Serve(remoteListener{l})
	}
	t.Cleanup(func() { srv.Close() })
	return l.Addr().String()
}

func levels(r *Report) map[string]string {
	m := map[string]string{}
	for _, f := range r.Findings {
		if old, ok := m[f.Check]; !ok || old == "ok" || old == "info" {
			m[f.Check] = f.Level
		}
	}
	return m
}

// saveReport writes the text report into $POSTOFFICE_PROBE_REPORTS (for
// docs/probe.md), when set.
func saveReport(t *testing.T, name string, r *Report) {
	var b strings.Builder
	WriteText(&b, r)
	t.Logf("%s", b.String())
	if dir := os.Getenv("POSTOFFICE_PROBE_REPORTS"); dir != "" {
		if err := os.WriteFile(filepath.Join(dir, name+".txt"), []byte(b.String()), 0o644); err != nil {
			t.Error(err)
		}
	}
}

func probe(t *testing.T, target string, pair *certutil.Pair, user string) *Report {
	t.Helper()
	tg, err := ParseTarget(target)
	if err != nil {
		t.Fatal(err)
	}
	if user != "" {
		tg.User, tg.Password = user, "pw"
	}
	opts := Options{Timeout: 10 * time.Second}
	if pair != nil {
		opts.RootCAs = pair.Pool()
	}
	return Run(context.Background(), tg, opts)
}

// postoffice's engine as serve sets it up by default (TLS 1.2+, no
// plaintext without TLS): nothing to complain about, and every maildrop
// check passes, dot-stuffing included.
func TestPostofficeDefaults(t *testing.T) {
	t.Parallel()
	pair, err := certutil.SelfSigned(90 * 24 * time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	for _, implicit := range []bool{false, true} {
		addr := serve(t, pair, false, implicit)
		scheme := "pop3://"
		if implicit {
			scheme = "pop3s://"
		}
		r := probe(t, scheme+addr, pair, "alice")
		saveReport(t, "postoffice-"+strings.TrimSuffix(scheme, "://"), r)
		if r.Worst != OK {
			t.Errorf("%s: worst = %v, want ok", scheme, r.WorstName)
		}
		lv := levels(r)
		want := []string{"greeting", "capa", "tls", "tls.cert.expiry", "tls.cert.name", "tls.cert.chain", "tls.versions",
			"login", "list.stat", "uidl", "retr.size", "retr.dotstuff", "top", "uidl.stable"}
		if !implicit {
			want = append(want, "auth.cleartext", "stls", "stls.injection")
		}
		for _, c := range want {
			if lv[c] != "ok" {
				t.Errorf("%s: check %s = %q, want ok", scheme, c, lv[c])
			}
		}
		if got := r.TLS.Versions; !slices.Equal(got, []string{"TLS 1.2", "TLS 1.3"}) {
			t.Errorf("%s: versions %q", scheme, got)
		}
	}
}

// A deliberately weak setup: passwords allowed in the clear and an
// expired certificate. The report names both, and exits with Fail.
func TestWeakConfig(t *testing.T) {
	t.Parallel()
	pair, err := certutil.SelfSigned(-time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	addr := serve(t, pair, true, false)
	r := probe(t, "pop3://"+addr, pair, "")
	saveReport(t, "postoffice-weak", r)
	lv := levels(r)
	if lv["tls.cert.expiry"] != "fail" || lv["auth.cleartext"] == "ok" || lv["auth.cleartext"] == "" {
		t.Errorf("weak config: findings %v, want tls.cert.expiry fail and auth.cleartext flagged", lv)
	}
	if r.Worst != Fail {
		t.Errorf("worst = %v, want fail", r.WorstName)
	}
}

// A server that runs commands pipelined before the STLS handshake inside
// TLS (the CVE-2011-0411 bug) is caught; a server without STLS fails.
func TestInjectionDetected(t *testing.T) {
	t.Parallel()
	pair, err := certutil.SelfSigned(24 * time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for range 50 {
			nc, err := l.Accept()
			if err != nil {
				return
			}
			go vulnerable(nc, pair)
		}
	}()
	r := probe(t, "pop3://"+l.Addr().String(), pair, "")
	saveReport(t, "vulnerable", r)
	if lv := levels(r); lv["stls.injection"] != "fail" {
		t.Errorf("stls.injection = %q, want fail", lv["stls.injection"])
	}
}

// vulnerable is a POP3 server with the STLS injection bug: it keeps its
// plaintext read buffer across the handshake.
func vulnerable(nc net.Conn, pair *certutil.Pair) {
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(20 * time.Second))
	br := bufio.NewReader(nc)
	var w io.Writer = nc
	io.WriteString(w, "+OK ready\r\n")
	for range 100 {
		line, err := br.ReadString('\n')
		if err != nil {
			return
		}
		switch strings.ToUpper(strings.TrimSpace(line)) {
		case "CAPA":
			io.WriteString(w, "+OK\r\nUIDL\r\nUSER\r\nSTLS\r\n.\r\n")
		case "STLS":
			io.WriteString(w, "+OK go\r\n")
			pending := make([]byte, br.Buffered())
			br.Read(pending)
			tc := tls.Server(nc, &tls.Config{Certificates: []tls.Certificate{pair.TLS}})
			if tc.Handshake() != nil {
				return
			}
			br = bufio.NewReader(io.MultiReader(strings.NewReader(string(pending)), tc))
			w = tc
		case "QUIT":
			io.WriteString(w, "+OK bye\r\n")
			return
		case "USER POSTOFFICE-PROBE":
			io.WriteString(w, "-ERR use TLS\r\n")
		default:
			io.WriteString(w, "-ERR unknown command\r\n")
		}
	}
}

// Dovecot as the harness runs it (its defaults, STLS on loopback): the
// probe completes the whole list, and the same maildrop checks pass.
func TestDovecot(t *testing.T) {
	d := dovecot.Start(t, "alice")
	d.Deliver(t, "alice", testMessages)
	tg, err := ParseTarget("pop3://" + d.Addr)
	if err != nil {
		t.Fatal(err)
	}
	tg.User, tg.Password = "alice", dovecot.Password
	r := Run(context.Background(), tg, Options{Timeout: 10 * time.Second, RootCAs: d.Cert.Pool()})
	saveReport(t, "dovecot", r)
	lv := levels(r)
	for _, c := range []string{"greeting", "stls", "stls.injection", "login", "list.stat", "uidl", "retr.size", "retr.dotstuff", "uidl.stable"} {
		if lv[c] != "ok" {
			t.Errorf("Dovecot: check %s = %q, want ok", c, lv[c])
		}
	}
}
