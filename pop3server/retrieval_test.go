package pop3server_test

import (
	"context"
	"slices"
	"sync"
	"testing"

	"github.com/postoffice-mail/postoffice/pop3server"
)

// observing wraps a backend whose mailboxes implement RetrievalObserver
// and ExpireMailbox.
type observing struct {
	pop3server.Backend
	mu        sync.Mutex
	retrieved []int
}
type observingSession struct {
	pop3server.Session
	b *observing
}
type observingMailbox struct {
	pop3server.Mailbox
	b *observing
}

func (b *observing) NewSession(ctx context.Context, c *pop3server.Conn) (pop3server.Session, error) {
	s, err := b.Backend.NewSession(ctx, c)
	return observingSession{s, b}, err
}

func (s observingSession) Login(ctx context.Context, u, p string) (pop3server.Mailbox, error) {
	m, err := s.Session.Login(ctx, u, p)
	if err != nil {
		return nil, err
	}
	return observingMailbox{m, s.b}, nil
}

func (m observingMailbox) Retrieved(i int) {
	m.b.mu.Lock()
	m.b.retrieved = append(m.b.retrieved, i)
	m.b.mu.Unlock()
}

func (m observingMailbox) Expire() string { return "7" }

// A complete RETR is reported to a RetrievalObserver, TOP is not; CAPA
// lists Options.Expire before login and the mailbox's value after (RFC
// 2449 §6.7).
func TestRetrievalObserverAndUserExpire(t *testing.T) {
	t.Parallel()
	b := &observing{Backend: newFixture(t)}
	addr, _ := startServer(t, pop3server.Options{Backend: b, Expire: "30 USER"})
	c := dial(t, addr)
	capa := func() []string {
		c.cmd("CAPA", "+OK")
		var lines []string
		for l := c.line(); l != "."; l = c.line() {
			lines = append(lines, l)
		}
		return lines
	}
	if l := capa(); !slices.Contains(l, "EXPIRE 30 USER") {
		t.Errorf("CAPA before login = %q, want EXPIRE 30 USER", l)
	}
	c.login("alice", "secret word")
	if l := capa(); !slices.Contains(l, "EXPIRE 7") {
		t.Errorf("CAPA after login = %q, want EXPIRE 7", l)
	}
	c.cmd("TOP 1 0", "+OK")
	for c.line() != "." {
	}
	c.cmd("RETR 1", "+OK")
	for c.line() != "." {
	}
	c.cmd("QUIT", "+OK")
	b.mu.Lock()
	defer b.mu.Unlock()
	if !slices.Equal(b.retrieved, []int{0}) {
		t.Errorf("Retrieved calls = %v, want [0]", b.retrieved)
	}
}
