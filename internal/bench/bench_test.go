package bench

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/postoffice-mail/postoffice/internal/store/maildir"
	"github.com/postoffice-mail/postoffice/internal/wire"
	"github.com/postoffice-mail/postoffice/pop3"
	"github.com/postoffice-mail/postoffice/pop3server"
	"github.com/postoffice-mail/postoffice/pop3server/memserver"
)

// startResponder serves msgs on loopback until the test ends.
func startResponder(t testing.TB, msgs [][]byte) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- NewResponder(msgs, nil).Serve(ctx, l) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("responder: %v", err)
		}
	})
	return l.Addr().String()
}

// startEngine serves the real POP3 engine over memserver, with users
// user00001..n each holding msgs.
func startEngine(t testing.TB, n int, msgs [][]byte) (string, []Credential) {
	t.Helper()
	be := memserver.New()
	var users []Credential
	for i := 1; i <= n; i++ {
		u := Credential{User: fmt.Sprintf("user%05d", i), Password: "pw"}
		be.AddUser(u.User, u.Password)
		for _, m := range msgs {
			be.Deliver(u.User, m)
		}
		users = append(users, u)
	}
	srv, err := pop3server.New(pop3server.Options{Backend: be, AuthFailDelay: -1})
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return l.Addr().String(), users
}

// tricky messages: dot lines, a lone ".", no final newline, CRLF, a long line.
var tricky = [][]byte{
	[]byte("Subject: a\n\n.\n..\n.x\nlast line without newline"),
	[]byte("Subject: b\r\n\r\nbody\r\n.\r\n"),
	[]byte("Subject: c\n\n" + strings.Repeat("y", 100_000) + "\n"),
	[]byte("Subject: d\nX: 1\n\nshort\n"),
}

func users(n int) []Credential {
	var u []Credential
	for i := 1; i <= n; i++ {
		u = append(u, Credential{User: fmt.Sprintf("user%05d", i), Password: "pw"})
	}
	return u
}

// Every scenario verifies against both the responder and the real engine,
// and counts no error.
func TestScenarios(t *testing.T) {
	t.Parallel()
	gen, err := GenerateMessages(20, "fixed:3000", 7)
	if err != nil {
		t.Fatal(err)
	}
	att, err := GenerateMessages(1, "fixed:300000", 8) // with an attachment
	if err != nil {
		t.Fatal(err)
	}
	msgs := append(append(gen, att...), tricky...)
	respAddr := startResponder(t, msgs)
	engAddr, engUsers := startEngine(t, 4, msgs)
	for _, target := range []struct {
		name  string
		addr  string
		users []Credential
	}{{"responder", respAddr, users(4)}, {"engine", engAddr, engUsers}} {
		for _, sc := range []Scenario{Login, Download, Top, Bigbox, Drain} {
			res, err := Run(context.Background(), Options{
				Addr: target.addr, Users: target.users, Scenario: sc,
				Concurrency: 2, Sessions: 4, Timeout: 10 * time.Second,
			})
			if err != nil {
				t.Fatalf("%s %s: %v", target.name, sc, err)
			}
			if res.Errors != 0 || res.Sessions != 4 {
				t.Errorf("%s %s: %d sessions, %d errors %v %q; want 4, 0", target.name, sc, res.Sessions, res.Errors, res.ErrorKinds, res.ErrorSamples)
			}
			if sc == Download && res.Messages != int64(4*len(msgs)) {
				t.Errorf("%s download: %d messages, want %d", target.name, res.Messages, 4*len(msgs))
			}
		}
	}
}

// The client's body reader gets the un-stuffed octets right whatever the
// read boundaries, and rejects what is wrong.
func TestClientBody(t *testing.T) {
	t.Parallel()
	for _, m := range tricky {
		w := encodeMessage(m)
		// Split the reply at every position among the first 40 octets and
		// near the end: a read boundary anywhere.
		reply := string(w.retr)
		for _, cut := range cuts(len(reply)) {
			c := pipeClient(t, reply[:cut], reply[cut:])
			if _, err := c.status(); err != nil {
				t.Fatal(err)
			}
			got, _, _, err := c.body()
			if err != nil || got != w.size {
				t.Errorf("body of %.20q cut at %d = %d, %v; want %d", m, cut, got, err, w.size)
			}
		}
	}
	for _, bad := range []string{
		"+OK\r\nno terminator\r\n", // connection ends: io error
		"+OK\r\nbare LF\n.\r\n",    // verify error
		"+OK\r\nline\r\n.\n",       // "." without CR is a line: then EOF
	} {
		c := pipeClient(t, bad)
		c.status()
		if _, _, _, err := c.body(); err == nil {
			t.Errorf("body(%q) succeeded, want an error", bad)
		}
	}
}

func cuts(n int) []int {
	var c []int
	for i := 1; i < min(n, 40); i++ {
		c = append(c, i)
	}
	for i := max(1, n-10); i < n; i++ {
		c = append(c, i)
	}
	return c
}

// pipeClient returns a client reading parts, one write each, then EOF.
func pipeClient(t *testing.T, parts ...string) *client {
	t.Helper()
	a, b := net.Pipe()
	go func() {
		for _, p := range parts {
			if _, err := io.WriteString(b, p); err != nil {
				return
			}
		}
		b.Close()
	}()
	t.Cleanup(func() { a.Close() })
	return &client{nc: a, buf: make([]byte, 4096), timeout: 5 * time.Second}
}

// A server that lies about sizes, drops the terminator or lists the wrong
// number of UIDLs is reported as errors, and nothing it sent counts.
func TestLiesAreErrors(t *testing.T) {
	t.Parallel()
	for name, rewrite := range map[string]func(cmd, reply string) string{
		"short RETR": func(cmd, reply string) string {
			if strings.HasPrefix(cmd, "RETR") {
				return strings.Replace(reply, "body", "bod", 1)
			}
			return reply
		},
		"UIDL count": func(cmd, reply string) string {
			if cmd == "UIDL" {
				return strings.Replace(reply, "\r\n.\r\n", "\r\n3 extra\r\n.\r\n", 1)
			}
			return reply
		},
		"TOP with body": func(cmd, reply string) string {
			if strings.HasPrefix(cmd, "TOP") {
				return strings.Replace(reply, "\r\n.\r\n", "\r\nbody\r\n.\r\n", 1)
			}
			return reply
		},
	} {
		addr := liar(t, rewrite)
		for _, sc := range []Scenario{Download, Top} {
			res, err := Run(context.Background(), Options{Addr: addr, Users: users(1), Scenario: sc, Sessions: 3, Timeout: 5 * time.Second})
			if err != nil {
				continue // the probe caught it
			}
			if name == "TOP with body" && sc == Download || name != "TOP with body" && sc == Top && name != "UIDL count" {
				continue // this lie does not touch this scenario
			}
			if res.Sessions != 0 || res.Bytes != 0 || res.ErrorKinds["verify"] != 3 {
				t.Errorf("%s, %s: %d sessions, %d bytes, errors %v; want 0, 0, 3 verify", name, sc, res.Sessions, res.Bytes, res.ErrorKinds)
			}
		}
	}
}

// liar runs a responder of two messages whose replies after the probe (the
// first session) pass through rewrite.
func liar(t *testing.T, rewrite func(cmd, reply string) string) string {
	t.Helper()
	r := NewResponder([][]byte{[]byte("Subject: x\n\nbody\n"), []byte("Subject: y\n\nbody two\n")}, nil)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for n := 0; ; n++ {
			nc, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer nc.Close()
				// A pipe to the real responder; replies are rewritten
				// whole, one per command (the generator does not
				// pipeline).
				in, out := net.Pipe()
				go r.session(out)
				br := bufio.NewReader(in)
				greet, _ := br.ReadString('\n')
				io.WriteString(nc, greet)
				cr := bufio.NewReader(nc)
				for {
					cmd, err := cr.ReadString('\n')
					if err != nil {
						return
					}
					io.WriteString(in, cmd)
					cmd = strings.TrimSpace(cmd)
					reply := readReply(br, cmd)
					if n > 0 {
						reply = rewrite(cmd, reply)
					}
					io.WriteString(nc, reply)
					if cmd == "QUIT" {
						return
					}
				}
			}()
		}
	}()
	return l.Addr().String()
}

func readReply(br *bufio.Reader, cmd string) string {
	first, _ := br.ReadString('\n')
	multi := strings.HasPrefix(first, "+OK") && (cmd == "LIST" || cmd == "UIDL" || strings.HasPrefix(cmd, "RETR") || strings.HasPrefix(cmd, "TOP"))
	if !multi {
		return first
	}
	var b strings.Builder
	b.WriteString(first)
	for {
		l, err := br.ReadString('\n')
		b.WriteString(l)
		if err != nil || l == ".\r\n" {
			return b.String()
		}
	}
}

// Seed writes Maildirs that the maildir store reads with the sizes the
// names carry, and a users file the generator reads.
func TestSeed(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for _, withSizes := range []bool{false, true} {
		d := filepath.Join(dir, fmt.Sprint(withSizes))
		res, err := Seed(SeedOptions{Dir: d, Users: 2, Messages: 60, Bigbox: 30, WithSizes: withSizes, CRLF: 0.2, Seed: 3, SizeDist: "fixed:1500"})
		if err != nil {
			t.Fatal(err)
		}
		if res.Messages != 150 {
			t.Errorf("seeded %d messages, want 150", res.Messages)
		}
		us, err := ReadUsers(res.UsersTxt)
		if err != nil || len(us) != 2 || us[0].Password != DefaultPassword {
			t.Fatalf("users file: %v, %v", us, err)
		}
		st, err := maildir.New(maildir.Options{Location: d + "/mail/%u/Maildir", NoSync: true})
		if err != nil {
			t.Fatal(err)
		}
		md, err := st.Open(context.Background(), "user00001")
		if err != nil {
			t.Fatal(err)
		}
		msgs := md.Messages()
		if len(msgs) != 60 {
			t.Fatalf("store lists %d messages, want 60", len(msgs))
		}
		for i, m := range msgs {
			rc, err := md.Open(context.Background(), i)
			if err != nil {
				t.Fatal(err)
			}
			n, err := wire.CRLFSize(rc)
			rc.Close()
			if err != nil || n != m.Size {
				t.Errorf("with sizes %v: message %d is %d octets in CRLF form, listed %d", withSizes, i, n, m.Size)
			}
		}
		md.Close()
		names, _ := os.ReadDir(filepath.Join(d, "mail", "user00001", "Maildir", "new"))
		if has := strings.Contains(names[0].Name(), ",W="); has != withSizes {
			t.Errorf("with sizes %v: file name %q", withSizes, names[0].Name())
		}
	}
}

// The realistic distribution has its median near 4 KB and about 2% of
// messages of 1-5 MB, and messages come out at the size drawn.
func TestRealisticSizes(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(11, 0))
	var sizes []int
	big := 0
	for range 20000 {
		n := realistic(r)
		sizes = append(sizes, n)
		if n >= 1_000_000 {
			big++
		}
	}
	slices.Sort(sizes)
	if med := sizes[len(sizes)/2]; med < 3500 || med > 5000 {
		t.Errorf("median size %d, want about 4096", med)
	}
	if big < 300 || big > 500 {
		t.Errorf("%d of 20000 messages are 1 MB or more, want about 400", big)
	}
	g := &generator{r: r}
	for _, want := range []int{900, 4096, 75000, 1_500_000} {
		if got := len(g.message(1, want, false)); got < want-100 || got > want+200 {
			t.Errorf("message drawn at %d octets is %d", want, got)
		}
	}
}

// BenchmarkClient compares the generator's lean client with the pop3
// package's on the download scenario against the responder: the one the
// generator uses must not be the bottleneck.
//
//	go test -run x -bench Client ./internal/bench
func BenchmarkClient(b *testing.B) {
	msgs, err := GenerateMessages(50, "", 5)
	if err != nil {
		b.Fatal(err)
	}
	addr := startResponder(b, msgs)
	var total int64
	for _, m := range msgs {
		total += encodeMessage(m).size
	}
	b.Run("lean", func(b *testing.B) {
		b.SetBytes(total)
		d := &dialOptions{addr: addr, timeout: 10 * time.Second}
		p, err := probeOne(context.Background(), d, Credential{"u", "p"})
		if err != nil {
			b.Fatal(err)
		}
		o := Options{Scenario: Download}
		for b.Loop() {
			if _, _, _, err := session(context.Background(), o, d, Credential{"u", "p"}, p); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("pop3", func(b *testing.B) {
		b.SetBytes(total)
		ctx := context.Background()
		for b.Loop() {
			c, err := pop3.Dial(ctx, addr, nil)
			if err != nil {
				b.Fatal(err)
			}
			if err := c.Login(ctx, "u", "p"); err != nil {
				b.Fatal(err)
			}
			n, _, err := c.Stat(ctx)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := c.UIDL(ctx); err != nil {
				b.Fatal(err)
			}
			for i := 1; i <= n; i++ {
				r, err := c.Retr(ctx, i)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := io.Copy(io.Discard, r); err != nil {
					b.Fatal(err)
				}
				r.Close()
			}
			c.Quit(ctx)
		}
	})
}
