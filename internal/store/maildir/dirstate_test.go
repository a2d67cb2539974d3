package maildir

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/postoffice-mail/postoffice/internal/store"
)

// settledStore returns a Store whose clock runs an hour ahead, so that
// every directory looks settled and Open trusts its stamps at once, and a
// counter of the Opens that read the directories.
func settledStore(t *testing.T) (*Store, *atomic.Int32) {
	t.Helper()
	s, _ := newTestStore(t, true)
	s.now = func() time.Time { return time.Now().Add(time.Hour) }
	var scans atomic.Int32
	s.scanHook = func(string) { scans.Add(1) }
	return s, &scans
}

// tick waits past the kernel's timestamp granularity, so that the next
// change of a directory gets new times. The clock hook makes Open trust
// stamps younger than dirSettle, which production never does.
func tick() { time.Sleep(50 * time.Millisecond) }

func deliverN(t *testing.T, s *Store, user string, n int) {
	t.Helper()
	for i := range n {
		if err := s.Deliver(context.Background(), user, strings.NewReader(fmt.Sprintf("Subject: %d\n\nbody %d\n", i, i))); err != nil {
			t.Fatal(err)
		}
	}
}

// openCount opens user's maildrop and returns its message count and
// whether Open read the directories.
func openCount(t *testing.T, s *Store, scans *atomic.Int32, user string) (int, bool) {
	t.Helper()
	before := scans.Load()
	m := openMD(t, s, user)
	defer m.Close()
	for i := range m.Messages() {
		readMsg(t, m, i) // every message is where the snapshot says
	}
	return len(m.Messages()), scans.Load() != before
}

// With both directories unchanged, Open takes the snapshot from the index
// without reading them, and it is the same snapshot.
func TestDirStampsSkipScan(t *testing.T) {
	t.Parallel()
	s, scans := settledStore(t)
	const user = "skip"
	deliverN(t, s, user, 5)
	m := openMD(t, s, user)
	want := m.Messages()
	m.Close()
	for range 2 {
		m := openMD(t, s, user)
		if diff := cmp.Diff(want, m.Messages()); diff != "" {
			t.Errorf("snapshot from the index differs (-scan +index):\n%s", diff)
		}
		m.Close()
	}
	if n := scans.Load(); n != 1 {
		t.Errorf("%d Opens read the directories, want 1 (the first)", n)
	}
}

// A message removed, moved or delivered by another agent changes its
// directory's times: the next Open reads the directories again and sees it.
func TestDirStampsSeeOtherAgents(t *testing.T) {
	t.Parallel()
	s, scans := settledStore(t)
	const user = "agents"
	deliverN(t, s, user, 4)
	dir := mustPath(t, s, user)
	if n, _ := openCount(t, s, scans, user); n != 4 {
		t.Fatalf("%d messages, want 4", n)
	}
	if _, scanned := openCount(t, s, scans, user); scanned {
		b, _ := os.ReadFile(filepath.Join(dir, lockName))
		t.Fatalf("unchanged Maildir read again; the test cannot show anything (lock file %q)", b)
	}
	names := listDir(t, filepath.Join(dir, "new"))

	tick()
	if err := os.Remove(filepath.Join(dir, "new", names[0])); err != nil {
		t.Fatal(err)
	}
	if n, scanned := openCount(t, s, scans, user); n != 3 || !scanned {
		t.Errorf("after another agent removed a message: %d messages (read directories: %v), want 3", n, scanned)
	}

	tick()
	if err := os.Rename(filepath.Join(dir, "new", names[1]), filepath.Join(dir, "cur", names[1]+":2,S")); err != nil {
		t.Fatal(err)
	}
	if n, scanned := openCount(t, s, scans, user); n != 3 || !scanned {
		t.Errorf("after another agent moved a message: %d messages (read directories: %v), want 3", n, scanned)
	}
	// The move is in the index: the next Open finds the file from it.
	if n, scanned := openCount(t, s, scans, user); n != 3 || scanned {
		t.Errorf("after the move was indexed: %d messages (read directories: %v), want 3 from the index", n, scanned)
	}

	tick()
	if err := os.WriteFile(filepath.Join(dir, "new", "1700000000.M1P1.other"), []byte("Subject: other\n\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if n, scanned := openCount(t, s, scans, user); n != 4 || !scanned {
		t.Errorf("after another agent delivered: %d messages (read directories: %v), want 4", n, scanned)
	}

	tick()
	m := openMD(t, s, user)
	if err := m.Commit(context.Background(), []int{0}); err != nil {
		t.Fatal(err)
	}
	m.Close()
	if n, _ := openCount(t, s, scans, user); n != 3 {
		t.Errorf("after our own Commit: %d messages, want 3", n)
	}
}

// With the real clock, a message delivered right after Open wrote the index
// (in the same second, possibly the same clock tick, so its directory's
// times may not move) is seen: a stamp younger than dirSettle is not
// trusted.
func TestDirStampsSameSecond(t *testing.T) {
	t.Parallel()
	s, _ := newTestStore(t, true)
	var scans atomic.Int32
	s.scanHook = func(string) { scans.Add(1) }
	const user = "same"
	for i := 1; i <= 20; i++ {
		deliverN(t, s, user, 1)
		m := openMD(t, s, user)
		if n := len(m.Messages()); n != i {
			t.Fatalf("Open after delivery %d right after the previous Open: %d messages, want %d", i, n, i)
		}
		m.Close()
	}
	if n := scans.Load(); n != 20 {
		t.Errorf("%d of 20 Opens read the directories; a fresh directory must always be read", n)
	}
}

func TestDirStampSettled(t *testing.T) {
	t.Parallel()
	now := time.Unix(1700000000, 0)
	at := func(d time.Duration) int64 { return now.Add(d).UnixNano() }
	for _, tt := range []struct {
		mtime, ctime time.Duration
		trusted      bool
	}{
		{-time.Hour, -time.Hour, true},
		{-dirSettle, -dirSettle, true},
		{-dirSettle + time.Nanosecond, -time.Hour, false},
		{-time.Hour, -time.Second, false},
		{0, 0, false},
		{time.Hour, time.Hour, false}, // in the future: the clock went back
	} {
		d := dirStamp{dev: 1, ino: 2, mtime: at(tt.mtime), ctime: at(tt.ctime)}
		if got := d.settled(now).known(); got != tt.trusted {
			t.Errorf("stamp with mtime %v, ctime %v from now: trusted = %v, want %v", tt.mtime, tt.ctime, got, tt.trusted)
		}
	}
}

func TestLockStateParse(t *testing.T) {
	t.Parallel()
	l := lockState{sweep: 1700000000, index: 0xdeadbeef, hasIndex: true,
		new: dirStamp{1, 2, 3, 4}, cur: dirStamp{5, 6, 7, 8}}
	if got := parseLockState([]byte(l.String())); got != l {
		t.Errorf("parseLockState(%q) = %+v, want %+v", l.String(), got, l)
	}
	for _, bad := range []string{
		"",
		"garbage\n",
		strings.TrimSuffix(l.String(), "\n"), // torn
		l.String() + "0.0 cur=9.9.9.9\n",     // new line written, old tail not yet truncated
	} {
		got := parseLockState([]byte(bad))
		if got.new.known() || got.cur.known() || got.hasIndex {
			t.Errorf("parseLockState(%q) = %+v, want nothing known", bad, got)
		}
	}
}

// A lost or garbled lock file, or an index replaced behind our back, only
// makes Open read the directories.
func TestDirStampsInvalidated(t *testing.T) {
	t.Parallel()
	s, scans := settledStore(t)
	const user = "inval"
	deliverN(t, s, user, 3)
	dir := mustPath(t, s, user)
	openCount(t, s, scans, user)
	for name, spoil := range map[string]func(){
		"lock file emptied": func() { os.WriteFile(filepath.Join(dir, lockName), nil, 0o600) },
		"index removed":     func() { os.Remove(filepath.Join(dir, indexName)) },
		"index rewritten": func() {
			// The same messages, other UIDLs: a different checksum.
			idx, err := readIndex(filepath.Join(dir, indexName))
			if err != nil {
				t.Fatal(err)
			}
			idx[0].uidl = "replaced"
			if err := s.writeIndex(dir, idx); err != nil {
				t.Fatal(err)
			}
		},
	} {
		if _, scanned := openCount(t, s, scans, user); scanned {
			t.Fatalf("%s: the Open before was not from the index", name)
		}
		spoil()
		if n, scanned := openCount(t, s, scans, user); n != 3 || !scanned {
			t.Errorf("%s: %d messages (read directories: %v), want 3 and a directory read", name, n, scanned)
		}
	}
}

// An index of version 1 (no locations) keeps its UIDLs and is rewritten
// as version 2.
func TestIndexV1Upgrade(t *testing.T) {
	t.Parallel()
	s, scans := settledStore(t)
	const user = "v1"
	deliverN(t, s, user, 3)
	dir := mustPath(t, s, user)
	names := listDir(t, filepath.Join(dir, "new"))
	body := indexHeaderV1
	var want []string
	for i, n := range names {
		u := fmt.Sprintf("OLD%d", i)
		want = append(want, u)
		body += fmt.Sprintf("%s %d %s\n", u, len(fmt.Sprintf("Subject: %d\r\n\r\nbody %d\r\n", i, i)), n)
	}
	data := reseal([]byte(body))
	if err := os.WriteFile(filepath.Join(dir, indexName), data, 0o600); err != nil {
		t.Fatal(err)
	}
	m := openMD(t, s, user)
	got := uidlsOf(m)
	m.Close()
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("UIDLs from a version 1 index (-want +got):\n%s", diff)
	}
	b, _ := os.ReadFile(filepath.Join(dir, indexName))
	if !strings.HasPrefix(string(b), indexHeader) {
		t.Errorf("index not rewritten as version 2: %.40q", b)
	}
	if n, scanned := openCount(t, s, scans, user); n != 3 || scanned {
		t.Errorf("after the upgrade: %d messages (read directories: %v), want 3 from the index", n, scanned)
	}
}

// tmp/ is swept on the first Open, then at most every sweepEvery.
func TestSweepTmpEvery(t *testing.T) {
	t.Parallel()
	s, _ := newTestStore(t, true)
	var offset atomic.Int64
	s.now = func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }
	const user = "sweep"
	deliverN(t, s, user, 1)
	dir := mustPath(t, s, user)
	plant := func(name string) string {
		p := filepath.Join(dir, "tmp", name)
		if err := os.WriteFile(p, []byte("partial"), 0o600); err != nil {
			t.Fatal(err)
		}
		old := time.Now().Add(-48 * time.Hour)
		if err := os.Chtimes(p, old, old); err != nil {
			t.Fatal(err)
		}
		return p
	}
	exists := func(p string) bool { _, err := os.Stat(p); return err == nil }
	a := plant("1.M1P1.dead")
	openMD(t, s, user).Close()
	if exists(a) {
		t.Error("first Open left a 48-hour-old file in tmp/")
	}
	b := plant("2.M1P1.dead")
	openMD(t, s, user).Close()
	if !exists(b) {
		t.Error("tmp/ swept again on the next Open, want at most every sweepEvery")
	}
	offset.Store(int64(sweepEvery + time.Minute))
	openMD(t, s, user).Close()
	if exists(b) {
		t.Errorf("tmp/ not swept after %v", sweepEvery)
	}
}

// A big index's buffer serves the next session once its maildrop is
// closed (index.go). The snapshot handed out must not change when it does,
// nor must a snapshot whose locations were taken out of the buffer
// (makeEntries) lend it; and every message must still be found.
func TestIndexBufReuse(t *testing.T) {
	t.Parallel()
	s, scans := settledStore(t)
	const n = 4000 // an index above minPooledIndex
	users := []string{"reuse-a", "reuse-b"}
	for i, u := range users {
		seed(t, mustPath(t, s, u), n, i == 0) // different names, so different UIDLs
		openMD(t, s, u).Close()               // builds the index
	}
	if fi, err := os.Stat(filepath.Join(mustPath(t, s, users[1]), indexName)); err != nil || fi.Size() < minPooledIndex {
		t.Fatalf("index too small to be pooled: %v, %v", fi, err)
	}
	before := scans.Load()
	var snaps [][]store.Message
	var wants [][]store.Message
	for round := range 6 {
		u := users[round%2]
		m := openMD(t, s, u)
		msgs := m.Messages()
		want := make([]store.Message, len(msgs))
		for i, msg := range msgs {
			want[i] = store.Message{UID: strings.Clone(msg.UID), Size: msg.Size}
		}
		snaps, wants = append(snaps, msgs), append(wants, want)
		readMsg(t, m, 0)
		readMsg(t, m, n-1)
		if round == 2 {
			// Locations made into entries: the buffer stays with them.
			if err := m.Commit(context.Background(), nil); err != nil {
				t.Fatal(err)
			}
			md := m.(*maildrop)
			md.mu.Lock()
			md.makeEntries()
			md.mu.Unlock()
			readMsg(t, m, n/2)
		}
		m.Close()
	}
	if scans.Load() != before {
		t.Fatalf("warm Opens read the directories")
	}
	for r := range snaps {
		if diff := cmp.Diff(wants[r], snaps[r]); diff != "" {
			t.Errorf("snapshot %d changed after its maildrop was closed (-want +got):\n%s", r, diff)
		}
	}
	if snaps[0][0].UID == snaps[1][0].UID {
		t.Errorf("both maildrops have UIDL %q first", snaps[0][0].UID)
	}
}
