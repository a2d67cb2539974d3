package maildir

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/postoffice-mail/postoffice/internal/store"
)

// TestCommitRescansWhenRenamedDuringScan: Dovecot's IMAP renames a file in
// cur/ to change its flags while Commit reads cur/ again to find it, and
// the read sees neither the old name nor the new one (POSIX leaves it
// unspecified whether readdir returns an entry added or removed during the
// read; ext4's hash order can skip a renamed one). The test hides the file
// for exactly the first read. Commit must not take the miss for a removal
// by another agent: the message the client deleted must be unlinked, not
// come back in the next session and stay in IMAP.
func TestCommitRescansWhenRenamedDuringScan(t *testing.T) {
	t.Parallel()
	s, _ := newTestStore(t, true)
	const user = "flags"
	if err := s.Deliver(context.Background(), user, strings.NewReader("Subject: x\n\nbody\n")); err != nil {
		t.Fatal(err)
	}
	dir := mustPath(t, s, user)
	m := openMD(t, s, user)
	names := listDir(t, filepath.Join(dir, "new"))
	if len(names) != 1 {
		t.Fatalf("new/ = %q, want one message", names)
	}
	name := names[0]
	// Dovecot moved it to cur/ (an IMAP client opened INBOX): Commit's
	// unlink in new/ misses and reads the directories again.
	if err := os.Rename(filepath.Join(dir, "new", name), filepath.Join(dir, "cur", name+":2,")); err != nil {
		t.Fatal(err)
	}
	hidden := filepath.Join(dir, "tmp", name)
	state := 0 // 0 not yet hidden, 1 hidden, 2 back (as flagged)
	restore := func() {
		if state == 1 {
			state = 2
			if err := os.Rename(hidden, filepath.Join(dir, "cur", name+":2,F")); err != nil {
				t.Error(err)
			}
		}
	}
	md := m.(*maildrop)
	md.beforeScan = func(sub string) {
		switch {
		case state == 0 && sub == "cur":
			// The read of cur/ sees neither cur/NAME:2, nor cur/NAME:2,F.
			state = 1
			if err := os.Rename(filepath.Join(dir, "cur", name+":2,"), hidden); err != nil {
				t.Error(err)
			}
		case state == 1:
			restore()
		}
	}
	md.afterRelocate = restore
	if err := m.Commit(context.Background(), []int{0}); err != nil {
		t.Fatalf("Commit: %v", err)
	}
	m.Close()
	for _, sub := range []string{"new", "cur", "tmp"} {
		if got := listDir(t, filepath.Join(dir, sub)); len(got) != 0 {
			t.Errorf("%s/ after Commit = %q, want empty (the deleted message was not unlinked)", sub, got)
		}
	}
	m = openMD(t, s, user)
	defer m.Close()
	if n := len(m.Messages()); n != 0 {
		t.Errorf("next session: %d messages, want 0 (a deleted message came back)", n)
	}
}

// setUIDLs records UIDLs that only the index holds (as `postoffice
// migrate uidl` does): message i gets "migrated-i".
func setUIDLs(t *testing.T, s *Store, user string) {
	t.Helper()
	_, err := s.SetUIDLs(context.Background(), user, func(i int, _ store.Message, _ func() (io.ReadCloser, error)) (string, bool, error) {
		return fmt.Sprintf("migrated-%d", i), true, nil
	})
	if err != nil {
		t.Fatalf("SetUIDLs: %v", err)
	}
}

// uidls returns the UIDLs of m's snapshot.
func uidls(m store.Maildrop) []string {
	var out []string
	for _, msg := range m.Messages() {
		out = append(out, msg.UID)
	}
	return out
}

// TestOpenRescansWhenRenamedDuringScan: Dovecot's IMAP renames a file in
// cur/ to change its flags while Open reads cur/ for the snapshot, and the
// read sees neither name (see TestCommitRescansWhenRenamedDuringScan). The
// message's UIDL is one only the index holds. Open must not take the miss
// for a removal: dropping the entry from the index would lose that UIDL,
// and the message would come back under another one, to be downloaded
// again by a client that leaves mail on the server.
func TestOpenRescansWhenRenamedDuringScan(t *testing.T) {
	t.Parallel()
	s, _ := newTestStore(t, true)
	const user = "renamed"
	if err := s.Deliver(context.Background(), user, strings.NewReader("Subject: x\n\nbody\n")); err != nil {
		t.Fatal(err)
	}
	setUIDLs(t, s, user)
	dir := mustPath(t, s, user)
	names := listDir(t, filepath.Join(dir, "new"))
	if len(names) != 1 {
		t.Fatalf("new/ = %q, want one message", names)
	}
	name := names[0]
	// Dovecot moved it to cur/ (an IMAP client opened INBOX).
	if err := os.Rename(filepath.Join(dir, "new", name), filepath.Join(dir, "cur", name+":2,")); err != nil {
		t.Fatal(err)
	}
	hidden := filepath.Join(dir, "tmp", name)
	state := 0 // 0 not yet hidden, 1 hidden, 2 back (as seen)
	restore := func() {
		if state == 1 {
			state = 2
			if err := os.Rename(hidden, filepath.Join(dir, "cur", name+":2,S")); err != nil {
				t.Error(err)
			}
		}
	}
	s.beforeScan = func(sub string) {
		switch {
		case state == 0 && sub == "cur":
			// The first read of cur/ sees neither cur/NAME:2, nor
			// cur/NAME:2,S.
			state = 1
			if err := os.Rename(filepath.Join(dir, "cur", name+":2,"), hidden); err != nil {
				t.Error(err)
			}
		case state == 1:
			restore()
		}
	}
	m := openMD(t, s, user)
	restore() // when Open read the directories only once
	got := uidls(m)
	m.Close()
	if want := []string{"migrated-0"}; !slices.Equal(got, want) {
		t.Errorf("session during the rename: UIDLs %q, want %q", got, want)
	}
	s.beforeScan = nil
	m = openMD(t, s, user)
	defer m.Close()
	if got, want := uidls(m), []string{"migrated-0"}; !slices.Equal(got, want) {
		t.Errorf("next session: UIDLs %q, want %q (the UIDL only the index held was lost)", got, want)
	}
}

// TestOpenHoldsWhenScansNeverSettle: the directories change during every
// reading of Open and one message's file is never seen. Open cannot tell a
// removal from a rename it keeps missing, so it leaves the message out of
// this session but keeps its index entry and UIDL, through the session's
// Commit too; when the file is back, the next session lists it with the
// UIDL it had.
func TestOpenHoldsWhenScansNeverSettle(t *testing.T) {
	t.Parallel()
	s, _ := newTestStore(t, true)
	const user = "unsettled"
	for _, body := range []string{"Subject: a\n\none\n", "Subject: b\n\ntwo\n"} {
		if err := s.Deliver(context.Background(), user, strings.NewReader(body)); err != nil {
			t.Fatal(err)
		}
	}
	setUIDLs(t, s, user)
	m := openMD(t, s, user)
	md := m.(*maildrop)
	md.mu.Lock()
	first := md.entry(0)
	md.mu.Unlock()
	m.Close()
	if first.uidl != "migrated-0" {
		t.Fatalf("message 1 has UIDL %q, want migrated-0", first.uidl)
	}
	dir := mustPath(t, s, user)
	hidden := filepath.Join(dir, "tmp", first.key)
	if err := os.Rename(filepath.Join(dir, first.sub, first.key+first.info), hidden); err != nil {
		t.Fatal(err)
	}
	// Every reading sees new/ change under it: a distinct modification
	// time each time, so no two stamps are equal whatever the clock's
	// resolution.
	stamp := time.Unix(1_000_000_000, 0)
	readings := 0
	s.beforeScan = func(sub string) {
		if sub != "new" {
			return
		}
		readings++
		stamp = stamp.Add(time.Second)
		if err := os.Chtimes(filepath.Join(dir, "new"), stamp, stamp); err != nil {
			t.Error(err)
		}
	}
	m = openMD(t, s, user)
	if got, want := uidls(m), []string{"migrated-1"}; !slices.Equal(got, want) {
		t.Errorf("session while the directories keep changing: UIDLs %q, want %q", got, want)
	}
	if readings > maxScans {
		t.Errorf("Open read the directories %d times, want at most %d", readings, maxScans)
	}
	if err := m.Commit(context.Background(), []int{0}); err != nil {
		t.Fatalf("Commit: %v", err)
	}
	m.Close()
	s.beforeScan = nil
	if err := os.Rename(hidden, filepath.Join(dir, "cur", first.key+":2,S")); err != nil {
		t.Fatal(err)
	}
	m = openMD(t, s, user)
	defer m.Close()
	if got, want := uidls(m), []string{"migrated-0"}; !slices.Equal(got, want) {
		t.Errorf("next session: UIDLs %q, want %q (the held message lost its UIDL, or the deleted one came back)", got, want)
	}
}
