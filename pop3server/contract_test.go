package pop3server_test

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"syscall"
	"testing"

	"github.com/postoffice-mail/postoffice/pop3server"
)

// wrapSessions is a Backend whose sessions are b's, wrapped by wrap.
type wrapSessions struct {
	b    pop3server.Backend
	wrap func(pop3server.Session) pop3server.Session
}

func (w wrapSessions) NewSession(ctx context.Context, c *pop3server.Conn) (pop3server.Session, error) {
	s, err := w.b.NewSession(ctx, c)
	if err != nil {
		return nil, err
	}
	return w.wrap(s), nil
}

// contractSession wraps a memserver session: its Login answers some user
// names with the errors of the backend contract (Backend's doc comment).
type contractSession struct{ pop3server.Session }

// vanishingMailbox is a mailbox whose message files are gone.
type vanishingMailbox struct{ pop3server.Mailbox }

func (s contractSession) Login(ctx context.Context, u, p string) (pop3server.Mailbox, error) {
	switch u {
	case "wrapped":
		return nil, fmt.Errorf("directory says no: %w", pop3server.ErrAuthFailed)
	case "malformed":
		return nil, &pop3server.Error{Text: "Malformed user name"}
	case "vanishing":
		m, err := s.Session.Login(ctx, "alice", "secret word")
		if err != nil {
			return nil, err
		}
		return vanishingMailbox{m}, nil
	}
	return s.Session.Login(ctx, u, p)
}

// Open fails as a Maildrop's file that another agent removed would.
func (m vanishingMailbox) Open(ctx context.Context, i int) (io.ReadCloser, error) {
	return nil, &fs.PathError{Op: "open", Path: "/var/vmail/alice/cur/1", Err: syscall.ENOENT}
}

// The engine-backend contract: ErrAuthFailed, wrapped or not, is a
// credential failure answered [AUTH]; an *Error without code is a
// malformed request on the USER/PASS path as on the SASL path (sent as is,
// a bad command, not a failed login); and the engine interprets no
// file-system error (a missing file is the backend's to call [SYS/PERM]).
func TestBackendContract(t *testing.T) {
	t.Parallel()
	addr, _ := startServer(t, pop3server.Options{
		Backend: wrapSessions{newFixture(t), func(s pop3server.Session) pop3server.Session {
			return contractSession{s}
		}},
		AuthFailDelay:   -1,
		MaxAuthFailures: 2,
		MaxBadCommands:  4,
	})
	c := dial(t, addr)
	for range 2 {
		// Not a credential failure: two would end the session.
		c.cmd("USER malformed", "+OK")
		if got := c.cmd("PASS x", "-ERR"); got != "-ERR Malformed user name" {
			t.Errorf("PASS for a malformed request = %q, want -ERR Malformed user name", got)
		}
	}
	c.cmd("USER wrapped", "+OK")
	if got := c.cmd("PASS x", "-ERR"); got != "-ERR [AUTH] Authentication failed: check the user name and password" {
		t.Errorf("PASS refused with a wrapped ErrAuthFailed = %q, want -ERR [AUTH] Authentication failed: check the user name and password", got)
	}
	c.login("vanishing", "x")
	if got := c.cmd("RETR 1", "-ERR"); got != "-ERR [SYS/TEMP] Cannot read the message now; try again in a few minutes, and tell the administrator if it persists" {
		t.Errorf("RETR of a message whose file is gone = %q, want the engine's [SYS/TEMP]", got)
	}
	c.cmd("QUIT", "+OK")
}
