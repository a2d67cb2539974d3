package pop3server_test

import (
	"encoding/base64"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/postoffice-mail/postoffice/pop3server"
)

// recorder is an Observer that writes down what it is told.
type recorder struct {
	mu     sync.Mutex
	events []string
	done   chan struct{} // gets a value at each SessionEnded
}

func (r *recorder) add(s string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, s)
}

func (r *recorder) SessionStarted(c *pop3server.Conn) { r.add("start") }

func (r *recorder) Login(c *pop3server.Conn, e pop3server.LoginEvent) {
	if e.Duration < 0 || e.Refused && e.Duration != 0 {
		r.add(fmt.Sprintf("bad duration %v", e.Duration))
	}
	r.add(fmt.Sprintf("login %s %q refused=%v", e.Method, e.Code, e.Refused))
}

func (r *recorder) SessionEnded(c *pop3server.Conn, s pop3server.SessionStats) {
	if s.Duration <= 0 {
		r.add("bad session duration")
	}
	r.add(fmt.Sprintf("end in=%v retr=%d/%d top=%d del=%d/%d", s.LoggedIn, s.Retr, s.RetrBytes, s.Top, s.Deleted, s.DeletedBytes))
	r.done <- struct{}{}
}

func (r *recorder) wait(t *testing.T, sessions int) []string {
	t.Helper()
	for range sessions {
		select {
		case <-r.done:
		case <-time.After(10 * time.Second):
			t.Fatal("a session did not end")
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.events...)
}

// The Observer sees each session's start and end with its totals, and
// every login attempt that reached the backend or the limiter, with its
// method and code; commands refused before that are not logins.
func TestObserver(t *testing.T) {
	t.Parallel()
	b := newFixture(t)
	b.EnableAPOP()
	b.EnableSASL()
	rec := &recorder{done: make(chan struct{}, 8)}
	lim := &fakeLimiter{}
	srv, err := pop3server.New(pop3server.Options{Backend: b, Observer: rec, LoginLimiter: lim,
		AuthFailDelay: -1, MaxAuthFailures: 10})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()

	c := pipeDial(t, srv, "127.0.0.5:999")
	c.cmd("USER alice", "+OK")
	c.cmd("PASS wrong", "-ERR [AUTH] ")
	c.cmd("APOP alice 00000000000000000000000000000000", "-ERR [AUTH] ")
	c.cmd("APOP alice xyz", "-ERR Invalid APOP digest: send 32 hex digits, the MD5 of the greeting's timestamp and the password") // not a login
	c.cmd("AUTH X-NONE", "-ERR Unsupported")                                                                                      // not a login
	c.cmd("AUTH PLAIN ###", "-ERR Invalid base64 data: send the SASL response in base64, or * to cancel")                         // not a login
	c.cmd("AUTH PLAIN "+base64.StdEncoding.EncodeToString([]byte("\x00alice\x00secret word")), "+OK")
	other := pipeDial(t, srv, "127.0.0.5:998")
	other.cmd("USER alice", "+OK")
	other.cmd("PASS secret word", "-ERR [IN-USE] ")
	other.cmd("QUIT", "+OK")
	// Its end is recorded after its +OK: wait for it, so the two ends
	// come in a fixed order.
	rec.wait(t, 1)
	c.cmd("RETR 1", "+OK")
	for l := c.line(); l != "."; l = c.line() {
	}
	c.cmd("TOP 2 0", "+OK")
	for l := c.line(); l != "."; l = c.line() {
	}
	c.cmd("DELE 1", "+OK")
	c.cmd("QUIT", "+OK")
	got := rec.wait(t, 1)

	lim.refuse = true
	refused := pipeDial(t, srv, "127.0.0.5:997")
	refused.cmd("USER alice", "+OK")
	refused.cmd("PASS secret word", "-ERR [SYS/TEMP] ")
	got = append(got, rec.wait(t, 1)[len(got):]...)

	size := len(strings.ReplaceAll(strings.ReplaceAll(fixtureMessages[0], "\r\n", "\n"), "\n", "\r\n"))
	want := []string{
		"start",
		`login USER "AUTH" refused=false`,
		`login APOP "AUTH" refused=false`,
		`login PLAIN "" refused=false`,
		"start",
		`login USER "IN-USE" refused=false`,
		"end in=false retr=0/0 top=0 del=0/0",
		fmt.Sprintf("end in=true retr=1/%d top=1 del=1/%d", size, size),
		"start",
		`login USER "SYS/TEMP" refused=true`,
		"end in=false retr=0/0 top=0 del=0/0",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("observer saw:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
