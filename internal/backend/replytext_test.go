package backend

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/postoffice-mail/postoffice/internal/replytext"
	"github.com/postoffice-mail/postoffice/pop3proto"
	"github.com/postoffice-mail/postoffice/pop3server"
)

// TestReplyTexts walks every Error text the backend can hand the engine
// and fails on one without both a reason and advice. The one text that is
// not constant is a nologin reason, written by the administrator.
func TestReplyTexts(t *testing.T) {
	found, err := replytext.Walk(".")
	if err != nil {
		t.Fatal(err)
	}
	if len(found) < 5 {
		t.Fatalf("Walk found %d texts; the walker is broken", len(found))
	}
	dynamic := 0
	for _, f := range found {
		if f.Dynamic {
			dynamic++
			continue
		}
		if err := replytext.Check(f.Text); err != nil {
			t.Errorf("%s: %v", f.Pos, err)
		}
	}
	if dynamic != 1 {
		t.Errorf("%d texts that are not constant, want 1 (the nologin reason)", dynamic)
	}
}

// The [IN-USE] answer says which session holds the maildrop (address and
// start, from this process) and when the lock ends at the latest; after
// the holder quits, the next login works. It is the answer to a login
// with the right password only: a wrong one is [AUTH], as for any user.
func TestInUseText(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 28, 10, 42, 30, 0, time.UTC)
	b, _ := newBackend(t, users{}, 0, func() time.Time { return now })
	s1, _ := b.NewSession(context.Background(), &pop3server.Conn{RemoteAddr: &net.TCPAddr{IP: net.ParseIP("203.0.113.5"), Port: 40123}})
	mb, err := s1.Login(context.Background(), "alice", "pw")
	if err != nil {
		t.Fatal(err)
	}
	now = now.Add(3 * time.Minute)
	_, err = login(t, b, "alice", "pw")
	var pe *pop3server.Error
	if !errors.As(err, &pe) || pe.Code != pop3proto.CodeInUse {
		t.Fatalf("second login = %v, want [IN-USE]", err)
	}
	want := "Maildrop locked by another session (from 203.0.113.5 since 10:42 UTC); it ends when that client quits or after 10 minutes idle"
	if pe.Text != want {
		t.Errorf("[IN-USE] text = %q, want %q", pe.Text, want)
	}
	if _, err := login(t, b, "alice", "wrong"); code(err) != pop3proto.CodeAuth {
		t.Errorf("wrong password on a locked maildrop = %v, want [AUTH]", err)
	}
	mb.Close()
	mb, err = login(t, b, "alice", "pw")
	if err != nil {
		t.Fatalf("login after the holder quit = %v", err)
	}
	mb.Close()
}

// A lock this process does not hold (another server on the same
// Maildirs, an admin command) is named as such.
func TestInUseTextElsewhere(t *testing.T) {
	t.Parallel()
	b, st := newBackend(t, users{}, 0, nil)
	b.opts.IdleTimeout = 30 * time.Minute
	md, err := st.Open(context.Background(), "alice")
	if err != nil {
		t.Fatal(err)
	}
	defer md.Close()
	_, err = login(t, b, "alice", "pw")
	var pe *pop3server.Error
	if !errors.As(err, &pe) || pe.Code != pop3proto.CodeInUse {
		t.Fatalf("login = %v, want [IN-USE]", err)
	}
	if want := "Maildrop locked by another session or program; it ends when that client quits or after 30 minutes idle"; pe.Text != want {
		t.Errorf("[IN-USE] text = %q, want %q", pe.Text, want)
	}
}

// The [LOGIN-DELAY] answer says the policy and when the next login is
// allowed.
func TestLoginDelayText(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	b, _ := newBackend(t, users{}, 15*time.Minute, func() time.Time { return now })
	mb, err := login(t, b, "alice", "pw")
	if err != nil {
		t.Fatal(err)
	}
	mb.Close()
	now = now.Add(11*time.Minute + 10*time.Second)
	_, err = login(t, b, "alice", "pw")
	var pe *pop3server.Error
	if !errors.As(err, &pe) || pe.Code != pop3proto.CodeLoginDelay {
		t.Fatalf("login = %v, want [LOGIN-DELAY]", err)
	}
	if want := "Logins are limited to one every 15 minutes; the next login is allowed in 4 minutes"; pe.Text != want {
		t.Errorf("[LOGIN-DELAY] text = %q, want %q", pe.Text, want)
	}
	if strings.Contains(pe.Text, "alice") {
		t.Errorf("text names the user: %q", pe.Text)
	}
}

func TestWaitText(t *testing.T) {
	for _, tt := range []struct {
		d    time.Duration
		want string
	}{
		{0, "1 second"}, {time.Second, "1 second"}, {45 * time.Second, "45 seconds"},
		{90 * time.Second, "90 seconds"}, {2 * time.Minute, "2 minutes"}, {10 * time.Minute, "10 minutes"},
		{3*time.Minute + time.Second, "4 minutes"}, {2 * time.Hour, "2 hours"},
	} {
		if got := waitText(tt.d); got != tt.want {
			t.Errorf("waitText(%v) = %q, want %q", tt.d, got, tt.want)
		}
	}
}
