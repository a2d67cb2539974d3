package pop3

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
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

// testCtx returns a context that ends with the test or after 20 s.
func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// startServer runs our engine over a memserver backend on loopback. With
// tlsCfg it serves implicit TLS.
func startServer(t *testing.T, b *memserver.Backend, tlsCfg *tls.Config) string {
	t.Helper()
	addr, _ := testutil.ServePOP3(t, pop3server.Options{Backend: b, TLSConfig: tlsCfg})
	return addr
}

// testCertOnce makes the self-signed certificate for 127.0.0.1 and
// localhost that every test shares.
var testCertOnce = sync.OnceValues(func() (*certutil.Pair, error) {
	return certutil.SelfSigned(24 * time.Hour)
})

func getCert(t *testing.T) *certutil.Pair {
	t.Helper()
	c, err := testCertOnce()
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// fakeServer plays a scripted POP3 server to one client on loopback and
// returns its address. Script lines:
//
//	S: text     server sends text CRLF
//	R: text     server sends text with Go escapes (\r, \n, \x00), no CRLF added
//	C: text     server reads a line and wants exactly text
//	C~ regexp   server reads a line matching regexp (whole line)
//	TLS         server does the TLS handshake (after its +OK to STLS)
//	WAIT        server waits for the client to close, sending nothing more
//
// After the last line the server closes the connection. Mismatches fail
// the test when it ends.
func fakeServer(t *testing.T, script string) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	var mu sync.Mutex
	var conn net.Conn
	var problems []string
	report := func(format string, args ...any) {
		mu.Lock()
		problems = append(problems, "fake server: "+fmt.Sprintf(format, args...))
		mu.Unlock()
	}
	go func() {
		defer close(done)
		nc, err := l.Accept()
		l.Close()
		if err != nil {
			report("accept: %v", err)
			return
		}
		mu.Lock()
		conn = nc
		mu.Unlock()
		defer nc.Close()
		nc.SetDeadline(time.Now().Add(20 * time.Second))
		var cur net.Conn = nc
		br := bufio.NewReader(cur)
		for i, line := range strings.Split(strings.TrimSpace(script), "\n") {
			line = strings.TrimLeft(line, "\t ")
			if line == "" {
				continue
			}
			switch {
			case strings.HasPrefix(line, "S: "):
				if _, err := cur.Write([]byte(line[3:] + "\r\n")); err != nil {
					report("line %d: write: %v", i+1, err)
					return
				}
			case strings.HasPrefix(line, "R: "):
				raw, err := strconv.Unquote(`"` + line[3:] + `"`)
				if err != nil {
					report("line %d: bad R: %v", i+1, err)
					return
				}
				if _, err := cur.Write([]byte(raw)); err != nil {
					report("line %d: write: %v", i+1, err)
					return
				}
			case strings.HasPrefix(line, "C: "), strings.HasPrefix(line, "C~ "):
				got, err := br.ReadString('\n')
				if err != nil {
					report("line %d: want %q, read error %v", i+1, line, err)
					return
				}
				got = strings.TrimSuffix(got, "\r\n")
				want := line[3:]
				if line[1] == '~' {
					if !regexp.MustCompile(`^(?:` + want + `)$`).MatchString(got) {
						report("line %d: client sent %q, want match of %q", i+1, got, want)
						return
					}
				} else if got != want {
					report("line %d: client sent %q, want %q", i+1, got, want)
					return
				}
			case line == "TLS":
				tc := tls.Server(nc, &tls.Config{Certificates: []tls.Certificate{getCert(t).TLS}})
				if err := tc.Handshake(); err != nil {
					report("line %d: handshake: %v", i+1, err)
					return
				}
				cur = tc
				br = bufio.NewReader(cur)
			case line == "WAIT":
				if rest, _ := io.ReadAll(br); len(rest) > 0 {
					report("line %d: client sent %q before closing", i+1, rest)
				}
			default:
				report("line %d: bad script line %q", i+1, line)
				return
			}
		}
	}()
	t.Cleanup(func() {
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			mu.Lock()
			if conn != nil {
				conn.Close()
			}
			mu.Unlock()
			l.Close()
			<-done
		}
		for _, p := range problems {
			t.Error(p)
		}
	})
	return l.Addr().String()
}
