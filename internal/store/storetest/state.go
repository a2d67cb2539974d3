package storetest

import (
	"context"
	"testing"
	"time"

	"github.com/postoffice-mail/postoffice/internal/store"
)

// testStateFiles checks store.StateFiles (and store.StateReader when the
// store has it): a missing state reads as nil, WriteState replaces,
// AppendState appends after what was written, both survive the session
// and are the user's own, bad names are refused, and the lock-free read
// sees the same bytes while a session holds the maildrop.
func (s *suite) testStateFiles(t *testing.T) {
	st := s.newStore(t)
	deliver(t, st, "alice", []byte("Subject: a\r\n\r\nbody\r\n"))
	m := open(t, st, "alice")
	sf, ok := m.(store.StateFiles)
	if !ok {
		closeMD(t, m)
		t.Skip("the maildrop does not implement store.StateFiles")
	}
	read := func(name string) string {
		t.Helper()
		b, err := sf.ReadState(name)
		if err != nil {
			t.Fatalf("ReadState(%q): %v", name, err)
		}
		return string(b)
	}
	if b, err := sf.ReadState("devices"); b != nil || err != nil {
		t.Errorf("ReadState of a state never written = %q, %v; want nil, nil", b, err)
	}
	for _, w := range []string{`{"version":1}`, `{"v":2}`} {
		if err := sf.WriteState("devices", []byte(w)); err != nil {
			t.Fatalf("WriteState: %v", err)
		}
		if got := read("devices"); got != w {
			t.Errorf("ReadState after WriteState(%q) = %q", w, got)
		}
	}
	for _, line := range []string{"one\n", "two\n"} {
		if err := sf.AppendState("history", []byte(line)); err != nil {
			t.Fatalf("AppendState: %v", err)
		}
	}
	if err := sf.SyncState("history"); err != nil {
		t.Errorf("SyncState: %v", err)
	}
	if got := read("history"); got != "one\ntwo\n" {
		t.Errorf("ReadState after two appends = %q, want %q", got, "one\ntwo\n")
	}
	// A compaction: WriteState replaces what was appended, and later
	// appends follow it.
	if err := sf.WriteState("history", []byte("kept\n")); err != nil {
		t.Fatalf("WriteState: %v", err)
	}
	if err := sf.AppendState("history", []byte("three\n")); err != nil {
		t.Fatalf("AppendState: %v", err)
	}
	if got := read("history"); got != "kept\nthree\n" {
		t.Errorf("ReadState after WriteState and an append = %q, want %q", got, "kept\nthree\n")
	}
	if err := sf.WriteState("empty", nil); err != nil {
		t.Fatalf("WriteState(empty): %v", err)
	}
	if got := read("empty"); got != "" {
		t.Errorf("ReadState of an empty state = %q", got)
	}
	for _, bad := range []string{"", "../devices", "Devices", "a/b", "x.tmp"} {
		if err := sf.WriteState(bad, []byte("x")); err == nil {
			t.Errorf("WriteState(%q) succeeded, want an error", bad)
		}
		if _, err := sf.ReadState(bad); err == nil {
			t.Errorf("ReadState(%q) succeeded, want an error", bad)
		}
	}
	if r, ok := st.(store.StateReader); ok {
		// Read without the lock while this session holds it.
		b, err := r.ReadState(context.Background(), "alice", "history")
		if err != nil || string(b) != "kept\nthree\n" {
			t.Errorf("StateReader.ReadState while a session holds the maildrop = %q, %v", b, err)
		}
		if b, err := r.ReadState(context.Background(), "nobody", "history"); b != nil || err != nil {
			t.Errorf("StateReader.ReadState of a user without a maildrop = %q, %v; want nil, nil", b, err)
		}
	}
	closeMD(t, m)

	m = open(t, st, "alice")
	sf = m.(store.StateFiles)
	if got := read("devices"); got != `{"v":2}` {
		t.Errorf("devices in the next session = %q", got)
	}
	if got := read("history"); got != "kept\nthree\n" {
		t.Errorf("history in the next session = %q", got)
	}
	closeMD(t, m)

	deliver(t, st, "bob", []byte("Subject: b\r\n\r\nbody\r\n"))
	m = open(t, st, "bob")
	defer closeMD(t, m)
	if b, err := m.(store.StateFiles).ReadState("devices"); b != nil || err != nil {
		t.Errorf("another user's ReadState = %q, %v; want nil, nil", b, err)
	}
}

// testArrivals checks store.Arrivals: each message's delivery time is
// known and within the second of its Deliver (Maildir names carry whole
// seconds).
func (s *suite) testArrivals(t *testing.T) {
	st := s.newStore(t)
	before := time.Now().Add(-time.Second)
	deliver(t, st, "alice", []byte("Subject: a\r\n\r\nbody\r\n"))
	deliver(t, st, "alice", []byte("Subject: b\r\n\r\nbody\r\n"))
	after := time.Now().Add(time.Second)
	m := open(t, st, "alice")
	defer closeMD(t, m)
	arr, ok := m.(store.Arrivals)
	if !ok {
		t.Skip("the maildrop does not implement store.Arrivals")
	}
	for i := range m.Messages() {
		at, ok := arr.Delivered(i)
		if !ok || at.Before(before) || at.After(after) {
			t.Errorf("Delivered(%d) = %v, %v; want a time in [%v, %v]", i, at, ok, before, after)
		}
	}
	if _, ok := arr.Delivered(len(m.Messages())); ok {
		t.Errorf("Delivered(%d) of a snapshot of %d messages is known", len(m.Messages()), len(m.Messages()))
	}
}
