package pgstore

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/postoffice-mail/postoffice/internal/store"
	"github.com/postoffice-mail/postoffice/internal/testutil/pgtest"
)

// TestStaleHolderStateFenced: a session paused past its lease while
// another took the maildrop over must not write the maildrop's state (the
// per-device deletions of the new holder would be lost, showing deleted
// messages again); WriteState and AppendState return ErrLockLost and the
// new holder's state is untouched.
func TestStaleHolderStateFenced(t *testing.T) {
	const ttl = 3 * time.Second
	a, dsn := migrated(t, Options{LockTTL: ttl})
	b := newStore(t, dsn, Options{LockTTL: ttl})
	deliver(t, a, "erin", "Subject: 1\n\n")
	stale := mustOpen(t, a, "erin")
	if err := stale.WriteState("devices", []byte("old")); err != nil {
		t.Fatalf("WriteState while holding the lease: %v", err)
	}
	stale.stopHeartbeat() // paused
	fresh := takeOver(t, b, "erin", ttl+20*time.Second)
	defer fresh.Close()
	if err := fresh.WriteState("devices", []byte("new")); err != nil {
		t.Fatalf("new holder's WriteState: %v", err)
	}
	if err := stale.WriteState("devices", []byte("stale")); !errors.Is(err, ErrLockLost) {
		t.Errorf("stale holder's WriteState = %v, want ErrLockLost", err)
	}
	if err := stale.AppendState("history", []byte("stale\n")); !errors.Is(err, ErrLockLost) {
		t.Errorf("stale holder's AppendState = %v, want ErrLockLost", err)
	}
	for name, want := range map[string]string{"devices": "new", "history": ""} {
		got, err := fresh.ReadState(name)
		if err != nil || string(got) != want {
			t.Errorf("new holder's ReadState(%q) = %q, %v; want %q", name, got, err, want)
		}
	}
	stale.Close()
}

// TestMigrateFromVersion1: a database made by the first schema (before
// maildrop_state) is upgraded in place by Migrate, its mail kept, and then
// keeps state.
func TestMigrateFromVersion1(t *testing.T) {
	dsn := pgtest.NewDB(t)
	conn := admin(t, dsn)
	ctx := context.Background()
	if _, err := conn.Exec(ctx, `
CREATE TABLE postoffice_schema (component text PRIMARY KEY, version integer NOT NULL, updated_at timestamptz NOT NULL DEFAULT now())`); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, migrations[0]); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, `INSERT INTO postoffice_schema (component, version) VALUES ('store', 1)`); err != nil {
		t.Fatal(err)
	}
	s := newStore(t, dsn, Options{})
	deliver(t, s, "gina", "Subject: kept\n\n")
	if err := s.CheckSchema(ctx); !errors.Is(err, ErrSchema) {
		t.Fatalf("CheckSchema on version 1 = %v, want ErrSchema (run the migration)", err)
	}
	if err := s.Migrate(ctx); err != nil {
		t.Fatalf("Migrate from version 1: %v", err)
	}
	if err := s.CheckSchema(ctx); err != nil {
		t.Fatalf("CheckSchema after Migrate: %v", err)
	}
	m := mustOpen(t, s, "gina")
	defer m.Close()
	if n := len(m.Messages()); n != 1 {
		t.Errorf("%d messages after the upgrade, want 1", n)
	}
	var sf store.StateFiles = m
	if err := sf.AppendState("history", []byte("line\n")); err != nil {
		t.Fatalf("AppendState after the upgrade: %v", err)
	}
	if got, err := s.ReadState(ctx, "gina", "history"); err != nil || string(got) != "line\n" {
		t.Errorf("ReadState after the upgrade = %q, %v", got, err)
	}
}
