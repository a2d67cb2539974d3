package backend

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/postoffice-mail/postoffice/internal/auth"
	"github.com/postoffice-mail/postoffice/internal/ledger"
	"github.com/postoffice-mail/postoffice/internal/store/maildir"
	"github.com/postoffice-mail/postoffice/pop3server"
)

// lookupUsers is users with a Lookup that knows alice.
type lookupUsers struct{ users }

func (u lookupUsers) Lookup(ctx context.Context, name string) (auth.User, error) {
	if name == "alice" {
		return auth.User{Name: "alice", Extra: map[string]string{"expire_after_retrieval": "7d"}}, nil
	}
	return auth.User{}, auth.ErrUnknownUser
}

func newDeviceBackend(t *testing.T) (*Backend, *maildir.Store, *ledger.Ledger) {
	t.Helper()
	st, err := maildir.New(maildir.Options{Location: t.TempDir() + "/%u/Maildir", NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := st.Deliver(context.Background(), "alice", bytes.NewBufferString("Subject: x\r\n\r\nhi\r\n")); err != nil {
			t.Fatal(err)
		}
	}
	l := ledger.New(ledger.Options{Devices: true})
	b, err := New(Options{Users: lookupUsers{}, Store: st, Ledger: l,
		Policy: func(u auth.User) ledger.Policy {
			return ledger.Policy{Retrieval: 7 * 24 * time.Hour, HasRetrieval: true}
		}})
	if err != nil {
		t.Fatal(err)
	}
	return b, st, l
}

// A device named at login hides its deletions from itself only; a
// device password selects its device; a wrong one is [AUTH].
func TestDeviceLogins(t *testing.T) {
	t.Parallel()
	b, st, l := newDeviceBackend(t)
	ctx := context.Background()
	// A device holds messages back from the time it is known: added
	// here, before the laptop deletes.
	pw, err := l.AddDevice(ctx, st, "alice", "phone")
	if err != nil {
		t.Fatal(err)
	}
	mb, err := login(t, b, "alice#laptop", "pw")
	if err != nil {
		t.Fatalf("login alice#laptop: %v", err)
	}
	if got := mb.(pop3server.ExpireMailbox).Expire(); got != "7" {
		t.Errorf("Expire() = %q, want 7", got)
	}
	if err := mb.Commit(ctx, []int{0}); err != nil {
		t.Fatal(err)
	}
	mb.Close()
	mb, err = login(t, b, "alice", pw)
	if err != nil {
		t.Fatalf("login with the device password: %v", err)
	}
	if n := len(mb.Messages()); n != 2 {
		t.Errorf("phone sees %d messages, want 2", n)
	}
	mb.Close()
	mb, err = login(t, b, "alice#laptop", "pw")
	if err != nil {
		t.Fatal(err)
	}
	if n := len(mb.Messages()); n != 1 {
		t.Errorf("laptop sees %d messages after deleting one, want 1", n)
	}
	mb.Close()
	if _, err := login(t, b, "alice", pw+"x"); !errors.Is(err, pop3server.ErrAuthFailed) {
		t.Errorf("wrong device password: %v, want ErrAuthFailed", err)
	}
	if _, err := login(t, b, "nobody", pw); !errors.Is(err, pop3server.ErrAuthFailed) {
		t.Errorf("device password for an unknown user: %v, want ErrAuthFailed", err)
	}
}
