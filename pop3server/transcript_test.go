package pop3server_test

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/postoffice-mail/postoffice/internal/certutil"
	"github.com/postoffice-mail/postoffice/internal/testutil"

	"github.com/postoffice-mail/postoffice/pop3server"
	"github.com/postoffice-mail/postoffice/pop3server/memserver"
)

// The fixture every transcript starts from.
var fixtureMessages = []string{
	// 1: CRLF, 36 octets
	"Subject: one\r\nFrom: a@example.org\r\n\r\nHello\r\n",
	// 2: bare LF, dot lines, no final newline
	"Subject: two\n\n.leading dot\n..\n.\nlast",
	// 3: header only, no blank line
	"Subject: three\r\n",
}

func newFixture(t *testing.T) *memserver.Backend {
	b := memserver.New()
	b.AddUser("alice", "secret word")
	b.AddUser("bob@example.org", "pw")
	for _, m := range fixtureMessages {
		b.Deliver("alice", []byte(m))
	}
	return b
}

// startServer runs srv on a loopback listener and returns its address.
func startServer(t *testing.T, opts pop3server.Options) (string, *pop3server.Server) {
	return testutil.ServePOP3(t, opts)
}

// TestTranscripts replays testdata/transcripts/*.txt. Lines:
//
//	C: text       client sends text CRLF
//	P: a|b|c      client sends a, b, c (each CRLF) in one write
//	R: text       client sends text with \r \n \x00 escapes, no CRLF added
//	S: text       server line, exact
//	S~ regexp     server line matching regexp (whole line)
//	S= text       server line with \x00-style escapes, exact
//	S: <eof>      server closed the connection
//	@ key=value   options (before the first C/S line): authfaildelay,
//	              maxbad, maxauth, maxlogincmds, maxcmds, logindelay,
//	              expire; apop=on and
//	              sasl=on (memserver's APOP and SASL PLAIN); tls=on
//	              (Options.TLSConfig, so STLS is offered; the transcript
//	              cannot handshake); plaintext=allow
//	              (Options.AllowPlaintextAuth); remote=host:port (the
//	              address the server sees for the client); last=on
//	              (Options.EnableLAST); workarounds=a,b (Dovecot's names
//	              and bare-auth, Options.Workarounds); rpop=on (RPOP for
//	              client user "root" as alice); sdps=on (envelopes on
//	              every mailbox); nulmessage=on (a 4th message for
//	              alice, with a NUL in its body: legacy_test.go)
//
// The server listens on loopback, so by default the plaintext rule allows
// USER/PASS and PLAIN whatever AllowPlaintextAuth says; a transcript about
// that rule sets remote= to a non-loopback address.
// Blank lines and lines starting with # are ignored.
func TestTranscripts(t *testing.T) {
	files, err := filepath.Glob("testdata/transcripts/*.txt")
	if err != nil || len(files) == 0 {
		t.Fatalf("no transcripts: %v", err)
	}
	for _, f := range files {
		t.Run(strings.TrimSuffix(filepath.Base(f), ".txt"), func(t *testing.T) {
			t.Parallel()
			runTranscript(t, f)
		})
	}
}

func runTranscript(t *testing.T, file string) {
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	backend := newFixture(t)
	opts := pop3server.Options{Backend: backend}
	var legacy legacyBackend
	var remote net.Addr
	lines := strings.Split(string(data), "\n")
	var script []string
	for _, l := range lines {
		l = strings.TrimRight(l, "\r")
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		if strings.HasPrefix(l, "@ ") {
			k, v, _ := strings.Cut(l[2:], "=")
			n, _ := strconv.Atoi(v)
			switch k {
			case "authfaildelay":
				d, _ := time.ParseDuration(v)
				opts.AuthFailDelay = d
			case "maxbad":
				opts.MaxBadCommands = n
			case "maxauth":
				opts.MaxAuthFailures = n
			case "maxlogincmds":
				opts.MaxLoginCommands = n
			case "maxcmds":
				opts.MaxCommands = n
			case "logindelay":
				opts.LoginDelay = time.Duration(n) * time.Second
			case "expire":
				opts.Expire = v
			case "apop":
				backend.EnableAPOP()
			case "sasl":
				backend.EnableSASL()
			case "tls":
				opts.TLSConfig = testTLSConfig(t)
			case "plaintext":
				opts.AllowPlaintextAuth = v == "allow"
			case "last":
				opts.EnableLAST = v == "on"
			case "workarounds":
				opts.Workarounds = parseWorkarounds(t, v)
			case "rpop":
				legacy.rpop = v == "on"
			case "sdps":
				legacy.sdps = v == "on"
			case "nulmessage":
				backend.Deliver("alice", []byte(nulMessage))
			case "remote":
				ap, err := netip.ParseAddrPort(v)
				if err != nil {
					t.Fatalf("remote=%q: %v", v, err)
				}
				remote = net.TCPAddrFromAddrPort(ap)
			default:
				t.Fatalf("unknown option %q", k)
			}
			continue
		}
		script = append(script, l)
	}
	if legacy.rpop || legacy.sdps {
		legacy.Backend = backend
		opts.Backend = legacy
	}
	addr := startTranscriptServer(t, opts, remote)
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(nc)
	for n, l := range script {
		where := fmt.Sprintf("%s:%d %q", filepath.Base(file), n+1, l)
		if len(l) < 3 {
			t.Fatalf("%s: bad script line", where)
		}
		tag, text := l[:2], strings.TrimPrefix(l[2:], " ")
		switch tag {
		case "C:":
			io.WriteString(nc, text+"\r\n")
		case "P:":
			io.WriteString(nc, strings.ReplaceAll(text, "|", "\r\n")+"\r\n")
		case "R:":
			raw, err := strconv.Unquote(`"` + text + `"`)
			if err != nil {
				t.Fatalf("%s: %v", where, err)
			}
			io.WriteString(nc, raw)
		case "S=":
			// A server line given with Go escapes (\x00, \x80), exact.
			want, err := strconv.Unquote(`"` + text + `"`)
			if err != nil {
				t.Fatalf("%s: %v", where, err)
			}
			got, err := br.ReadString('\n')
			if err != nil || got != want+"\r\n" {
				t.Fatalf("%s: got %q, %v", where, got, err)
			}
		case "S:", "S~":
			got, err := br.ReadString('\n')
			if text == "<eof>" {
				if err != io.EOF || got != "" {
					t.Fatalf("%s: got %q, %v; want EOF", where, got, err)
				}
				continue
			}
			if err != nil {
				t.Fatalf("%s: read: %v (partial %q)", where, err, got)
			}
			if !strings.HasSuffix(got, "\r\n") {
				t.Fatalf("%s: line %q does not end in CRLF", where, got)
			}
			got = strings.TrimSuffix(got, "\r\n")
			if tag == "S:" && got != text {
				t.Fatalf("%s: got %q", where, got)
			}
			if tag == "S~" && !regexp.MustCompile("^(?:"+text+")$").MatchString(got) {
				t.Fatalf("%s: got %q", where, got)
			}
		default:
			t.Fatalf("%s: unknown tag", where)
		}
	}
}

// startTranscriptServer serves opts on a loopback listener, as plain POP3
// (STLS when TLSConfig is set). With remote set, the server sees every
// client as coming from that address.
func startTranscriptServer(t *testing.T, opts pop3server.Options, remote net.Addr) string {
	t.Helper()
	if opts.AuthFailDelay == 0 {
		opts.AuthFailDelay = -1
	}
	srv, err := pop3server.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			nc, err := l.Accept()
			if err != nil {
				return
			}
			if remote != nil {
				nc = remoteAddrConn{nc, remote}
			}
			srv.ServeConn(nc)
		}
	}()
	t.Cleanup(func() {
		l.Close()
		srv.Close()
	})
	return l.Addr().String()
}

// remoteAddrConn reports a chosen remote address, as a PROXY-protocol
// listener would.
type remoteAddrConn struct {
	net.Conn
	remote net.Addr
}

func (c remoteAddrConn) RemoteAddr() net.Addr { return c.remote }

// testCert is the self-signed certificate every TLS test shares.
var testCert = sync.OnceValues(func() (*certutil.Pair, error) {
	return certutil.SelfSigned(24 * time.Hour)
})

// testTLSConfig is a server configuration with testCert.
func testTLSConfig(t testing.TB) *tls.Config {
	t.Helper()
	p, err := testCert()
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{p.TLS}}
}
