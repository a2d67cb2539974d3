package pgstore

import (
	"context"
	"errors"
	"fmt"
	"strings"
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
	// A message as version 1 stored it (this build's Deliver writes a
	// column version 1 lacks, and serve refuses the version anyway).
	if _, err := conn.Exec(ctx, `
INSERT INTO maildrops (maildrop, uidvalidity, next_uid) VALUES ('gina', 1700000000, 2);
INSERT INTO messages (maildrop, uid, uidl, size, octets, chunks, body_id, arrived)
VALUES ('gina', 1, '000000016553f100', 17, 15, 1, 7, now());
INSERT INTO message_chunks (maildrop, body_id, seq, data) VALUES ('gina', 7, 0, convert_to(E'Subject: kept\n\n', 'UTF8'))`); err != nil {
		t.Fatal(err)
	}
	s := newStore(t, dsn, Options{})
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
	if err := sf.SyncState("history"); err != nil {
		t.Fatalf("SyncState after the upgrade: %v", err)
	}
	if got, err := s.ReadState(ctx, "gina", "history"); err != nil || string(got) != "line\n" {
		t.Errorf("ReadState after the upgrade = %q, %v", got, err)
	}
}

// TestJournalCostsNoRoundTrip: a session that appends a journal line per
// retrieved message (50 here) and closes makes one round trip after Open,
// the release, which carries the lines; each append used to be a committed
// transaction of its own, which cost a download session about as much CPU
// as the mail it sent. The lines are all there, in order, afterwards.
func TestJournalCostsNoRoundTrip(t *testing.T) {
	trace := &roundTrips{}
	s, _ := migrated(t, Options{tracer: trace})
	deliver(t, s, "jo", "Subject: x\n\n")
	mustOpen(t, s, "jo").Close() // creates the rows; warms the statement cache
	m := mustOpen(t, s, "jo")
	trace.take()
	var want strings.Builder
	for i := range 50 {
		line := fmt.Sprintf("{\"action\":\"retr\",\"n\":%d}\n", i)
		want.WriteString(line)
		if err := m.AppendState("history", []byte(line)); err != nil {
			t.Fatalf("AppendState %d: %v", i, err)
		}
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	sent := trace.take()
	if len(sent) != 1 || !strings.Contains(strings.Join(sent[0], "; "), "INSERT INTO maildrop_state") {
		t.Errorf("50 appends and Close took %d round trips, want 1 (the release, with the lines):\n%q", len(sent), sent)
	}
	got, err := s.ReadState(context.Background(), "jo", "history")
	if err != nil || string(got) != want.String() {
		t.Errorf("history after Close = %q, %v; want %q", got, err, want.String())
	}
}

// TestJournalWrittenWhileOpen: lines appended by a session that stays open
// reach the table within the journal delay by themselves (the heartbeat
// writes them), so a crash of the server loses at most that much; and
// ReadState of the session sees its own appends at once.
func TestJournalWrittenWhileOpen(t *testing.T) {
	s, _ := migrated(t, Options{journalDelay: 20 * time.Millisecond})
	deliver(t, s, "kim", "Subject: x\n\n")
	m := mustOpen(t, s, "kim")
	defer m.Close()
	if err := m.AppendState("history", []byte("one\n")); err != nil {
		t.Fatal(err)
	}
	var got []byte
	for range 200 { // bounded: 10 s at most
		var err error
		if got, err = s.ReadState(context.Background(), "kim", "history"); err != nil {
			t.Fatal(err)
		}
		if string(got) == "one\n" {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if string(got) != "one\n" {
		t.Fatalf("history of an open session after 10 s = %q, want %q", got, "one\n")
	}
	if err := m.AppendState("history", []byte("two\n")); err != nil {
		t.Fatal(err)
	}
	if got, err := m.ReadState("history"); err != nil || string(got) != "one\ntwo\n" {
		t.Errorf("the session's ReadState after its append = %q, %v; want %q", got, err, "one\ntwo\n")
	}
}

// TestJournalCommitsWithDeletions: lines waiting when Commit runs are in
// its transaction (a "dele" line commits with its deletion), visible as
// soon as Commit returns; a WriteState carries them too, before the
// replacement.
func TestJournalCommitsWithDeletions(t *testing.T) {
	s, _ := migrated(t, Options{})
	deliver(t, s, "lou", "Subject: 1\n\n")
	deliver(t, s, "lou", "Subject: 2\n\n")
	m := mustOpen(t, s, "lou")
	defer m.Close()
	if err := m.AppendState("history", []byte("dele 1\n")); err != nil {
		t.Fatal(err)
	}
	if err := m.Commit(context.Background(), []int{0}); err != nil {
		t.Fatal(err)
	}
	if got, err := s.ReadState(context.Background(), "lou", "history"); err != nil || string(got) != "dele 1\n" {
		t.Errorf("history after Commit = %q, %v; want %q", got, err, "dele 1\n")
	}
	if err := m.AppendState("history", []byte("more\n")); err != nil {
		t.Fatal(err)
	}
	if err := m.WriteState("devices", []byte("{}")); err != nil {
		t.Fatal(err)
	}
	if got, err := s.ReadState(context.Background(), "lou", "history"); err != nil || string(got) != "dele 1\nmore\n" {
		t.Errorf("history after WriteState = %q, %v; want %q", got, err, "dele 1\nmore\n")
	}
}

// TestJournalOfStaleSessionDropped: lines a session buffered, then lost
// its lease (paused past it, the maildrop taken over) are never written:
// the new holder's history gets nothing from the stale session.
func TestJournalOfStaleSessionDropped(t *testing.T) {
	const ttl = 3 * time.Second
	a, dsn := migrated(t, Options{LockTTL: ttl})
	b := newStore(t, dsn, Options{LockTTL: ttl})
	deliver(t, a, "max", "Subject: 1\n\n")
	stale := mustOpen(t, a, "max")
	stale.stopHeartbeat() // paused, before its lines were written
	if err := stale.AppendState("history", []byte("stale\n")); err != nil {
		t.Fatalf("AppendState while holding the lease: %v", err)
	}
	fresh := takeOver(t, b, "max", ttl+20*time.Second)
	defer fresh.Close()
	stale.Close()
	if got, err := fresh.ReadState("history"); err != nil || len(got) != 0 {
		t.Errorf("new holder's history = %q, %v; want it empty", got, err)
	}
}
