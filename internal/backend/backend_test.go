package backend

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/postoffice-mail/postoffice/internal/auth"
	"github.com/postoffice-mail/postoffice/internal/store"
	"github.com/postoffice-mail/postoffice/internal/store/maildir"
	"github.com/postoffice-mail/postoffice/pop3proto"
	"github.com/postoffice-mail/postoffice/pop3server"
)

// users is a fake auth.DB: one user, one password, or a broken database.
type users struct{ down bool }

func (u users) Authenticate(ctx context.Context, name, pass string) (auth.User, error) {
	if u.down {
		return auth.User{}, errors.New("database unreachable at 10.0.0.5")
	}
	if name == "alice" && pass == "pw" {
		return auth.User{Name: "alice"}, nil
	}
	return auth.User{}, auth.ErrFailed
}

func (u users) Lookup(ctx context.Context, name string) (auth.User, error) {
	return auth.User{}, auth.ErrUnknownUser
}

func newBackend(t *testing.T, db auth.DB, delay time.Duration, now func() time.Time) (*Backend, *maildir.Store) {
	t.Helper()
	st, err := maildir.New(maildir.Options{Location: t.TempDir() + "/%u/Maildir", NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	b, err := New(Options{Users: db, Store: st, LoginDelay: delay, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	return b, st
}

func login(t *testing.T, b *Backend, user, pass string) (pop3server.Mailbox, error) {
	t.Helper()
	s, err := b.NewSession(context.Background(), &pop3server.Conn{})
	if err != nil {
		t.Fatal(err)
	}
	return s.Login(context.Background(), user, pass)
}

// code is the response code the engine answers err with: [AUTH] for
// pop3server.ErrAuthFailed, an *Error's own code.
func code(err error) pop3proto.Code {
	if errors.Is(err, pop3server.ErrAuthFailed) {
		return pop3proto.CodeAuth
	}
	var pe *pop3server.Error
	if errors.As(err, &pe) {
		return pe.Code
	}
	return pop3proto.Code("not a *pop3server.Error: " + err.Error())
}

// Credentials, a busy maildrop and a broken database map to the response
// codes clients act on, and no internal detail reaches the client text.
func TestLoginErrors(t *testing.T) {
	t.Parallel()
	b, _ := newBackend(t, users{}, 0, nil)
	for _, c := range []struct{ user, pass string }{{"alice", "wrong"}, {"bob", "pw"}} {
		if _, err := login(t, b, c.user, c.pass); code(err) != pop3proto.CodeAuth {
			t.Errorf("Login(%s, %s) = %v, want [AUTH]", c.user, c.pass, err)
		}
	}
	mb, err := login(t, b, "alice", "pw")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := login(t, b, "alice", "pw"); code(err) != pop3proto.CodeInUse {
		t.Errorf("second Login = %v, want [IN-USE]", err)
	}
	mb.Close()
	mb, err = login(t, b, "alice", "pw")
	if err != nil {
		t.Fatalf("Login after Close = %v", err)
	}
	mb.Close()

	down, _ := newBackend(t, users{down: true}, 0, nil)
	_, err = login(t, down, "alice", "pw")
	var pe *pop3server.Error
	if !errors.As(err, &pe) || pe.Code != pop3proto.CodeSysTemp || strings.Contains(pe.Text, "10.0.0.5") {
		t.Errorf("Login with the database down = %v, want [SYS/TEMP] without detail in the text", err)
	}
}

// RFC 2449 §8.1.1: a login sooner than LoginDelay after the last one gets
// [LOGIN-DELAY]; failed logins do not count.
func TestLoginDelay(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	b, _ := newBackend(t, users{}, 15*time.Minute, func() time.Time { return now })
	if _, err := login(t, b, "alice", "wrong"); code(err) != pop3proto.CodeAuth {
		t.Fatalf("wrong password: %v", err)
	}
	mb, err := login(t, b, "alice", "pw")
	if err != nil {
		t.Fatalf("first login after a failed one: %v", err)
	}
	mb.Close()
	now = now.Add(14 * time.Minute)
	if _, err := login(t, b, "alice", "pw"); code(err) != pop3proto.CodeLoginDelay {
		t.Errorf("login after 14m = %v, want [LOGIN-DELAY]", err)
	}
	now = now.Add(time.Minute)
	mb, err = login(t, b, "alice", "pw")
	if err != nil {
		t.Errorf("login after 15m = %v", err)
	} else {
		mb.Close()
	}
}

// A message removed by another agent after the snapshot is [SYS/PERM].
func TestVanishedMessage(t *testing.T) {
	t.Parallel()
	b, st := newBackend(t, users{}, 0, nil)
	if err := st.Deliver(context.Background(), "alice", strings.NewReader("Subject: x\n\nbody\n")); err != nil {
		t.Fatal(err)
	}
	mb, err := login(t, b, "alice", "pw")
	if err != nil {
		t.Fatal(err)
	}
	defer mb.Close()
	dir, _ := st.Path("alice")
	for _, sub := range []string{"new", "cur"} {
		es, _ := os.ReadDir(dir + "/" + sub)
		for _, e := range es {
			os.Remove(dir + "/" + sub + "/" + e.Name())
		}
	}
	if _, err := mb.Open(context.Background(), 0); code(err) != pop3proto.CodeSysPerm {
		t.Errorf("Open of a vanished message = %v, want [SYS/PERM]", err)
	}
}

// vanishedFile is a store.Maildrop whose message files are gone, as a
// store without its own ErrNoMessage mapping reports them.
type vanishedFile struct{ store.Maildrop }

func (vanishedFile) Open(ctx context.Context, i int) (io.ReadCloser, error) {
	return nil, &fs.PathError{Op: "open", Path: "/var/vmail/alice/cur/1", Err: syscall.ENOENT}
}

// The engine interprets no file-system error: a message file that is gone
// is [SYS/PERM] from the backend (RFC 3206 §4), and the path stays out of
// the reply.
func TestVanishedFileIsSysPerm(t *testing.T) {
	t.Parallel()
	m := &mailbox{md: vanishedFile{}}
	_, err := m.Open(context.Background(), 0)
	if code(err) != pop3proto.CodeSysPerm {
		t.Fatalf("Open of a vanished file = %v, want [SYS/PERM]", err)
	}
	var pe *pop3server.Error
	if errors.As(err, &pe) && strings.Contains(pe.Text, "/var/vmail") {
		t.Errorf("reply text %q shows the path", pe.Text)
	}
}
