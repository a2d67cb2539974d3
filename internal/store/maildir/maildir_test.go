package maildir

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/postoffice-mail/postoffice/internal/store"
	"github.com/postoffice-mail/postoffice/internal/store/storetest"
	"github.com/postoffice-mail/postoffice/internal/wire"
)

// newTestStore returns a Store over a fresh directory, with fsync on unless
// noSync.
func newTestStore(t testing.TB, noSync bool) (*Store, string) {
	t.Helper()
	root := t.TempDir()
	s, err := New(Options{Location: root + "/%d/%n/Maildir", Hostname: "test.example.org", NoSync: noSync})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return s, root
}

func TestConformance(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T) store.Store {
		s, _ := newTestStore(t, false)
		return s
	})
}

func TestConformanceNoSync(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T) store.Store {
		s, _ := newTestStore(t, true)
		return s
	})
}

func mustPath(t testing.TB, s *Store, user string) string {
	t.Helper()
	p, err := s.Path(user)
	if err != nil {
		t.Fatalf("Path(%q): %v", user, err)
	}
	return p
}

func openMD(t testing.TB, s *Store, user string) store.Maildrop {
	t.Helper()
	m, err := s.Open(context.Background(), user)
	if err != nil {
		t.Fatalf("Open(%q): %v", user, err)
	}
	return m
}

func readMsg(t testing.TB, m store.Maildrop, i int) string {
	t.Helper()
	rc, err := m.Open(context.Background(), i)
	if err != nil {
		t.Fatalf("Maildrop.Open(%d): %v", i, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func wsize(s string) int64 {
	n, _ := wire.CRLFSize(strings.NewReader(s))
	return n
}

func writeFile(t testing.TB, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

func listDir(t testing.TB, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

func TestDeliverNames(t *testing.T) {
	t.Parallel()
	s, _ := newTestStore(t, false)
	body := "Subject: x\n\nno final newline"
	if err := s.Deliver(context.Background(), "u@example.org", strings.NewReader(body)); err != nil {
		t.Fatal(err)
	}
	dir := mustPath(t, s, "u@example.org")
	if got := listDir(t, filepath.Join(dir, "tmp")); len(got) != 0 {
		t.Errorf("tmp/ after delivery = %q, want empty", got)
	}
	names := listDir(t, filepath.Join(dir, "new"))
	if len(names) != 1 {
		t.Fatalf("new/ = %q, want one file", names)
	}
	name := names[0]
	// Without a final newline, no W=: Dovecot's W= would leave out the
	// completing CRLF, and a W= is trusted as the exact size.
	wantS := int64(len(body))
	if n, ok := sizeField(name, 'S'); !ok || n != wantS {
		t.Errorf("name %q: S = %d, %v, want %d", name, n, ok, wantS)
	}
	if n, ok := sizeField(name, 'W'); ok {
		t.Errorf("name %q: W = %d, want none (no final newline)", name, n)
	}
	if !strings.Contains(name, ".test.example.org,") || !strings.Contains(name, ".M") {
		t.Errorf("name %q not in the <secs>.M<usec>P<pid>Q<n>.<host> form", name)
	}
	fi, err := os.Stat(filepath.Join(dir, "new", name))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("message mode = %v, want 0600", fi.Mode().Perm())
	}
	for _, sub := range []string{"", "cur", "new", "tmp"} {
		fi, err := os.Stat(filepath.Join(dir, sub))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o700 {
			t.Errorf("%s/ mode = %v, want 0700", sub, fi.Mode().Perm())
		}
	}
	// With a final newline, W= is Dovecot's CRLF size, which is exact.
	body2 := "Subject: y\n\nfinal newline\n"
	if err := s.Deliver(context.Background(), "u@example.org", strings.NewReader(body2)); err != nil {
		t.Fatal(err)
	}
	var name2 string
	for _, n := range listDir(t, filepath.Join(dir, "new")) {
		if n != name {
			name2 = n
		}
	}
	if n, ok := sizeField(name2, 'S'); !ok || n != int64(len(body2)) {
		t.Errorf("name %q: S = %d, %v, want %d", name2, n, ok, len(body2))
	}
	if n, ok := sizeField(name2, 'W'); !ok || n != wsize(body2) {
		t.Errorf("name %q: W = %d, %v, want %d", name2, n, ok, wsize(body2))
	}
	m := openMD(t, s, "u@example.org")
	defer m.Close()
	for i, b := range []string{body, body2} {
		if got, want := m.Messages()[i].Size, wsize(b); got != want {
			t.Errorf("message %d: Size = %d, want %d", i, got, want)
		}
	}
}

func TestFailedDeliveryCleansTmp(t *testing.T) {
	t.Parallel()
	s, _ := newTestStore(t, false)
	r := io.MultiReader(strings.NewReader("Subject: x\n\n"), errReader{})
	if err := s.Deliver(context.Background(), "u", r); err == nil {
		t.Fatal("Deliver with a failing reader succeeded")
	}
	dir := mustPath(t, s, "u")
	for _, sub := range []string{"tmp", "new", "cur"} {
		if got := listDir(t, filepath.Join(dir, sub)); len(got) != 0 {
			t.Errorf("%s/ after failed delivery = %q, want empty", sub, got)
		}
	}
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errors.New("boom") }

// TestReadPostfixAndOthers reads a Maildir written by hand the way Postfix
// does (new/ files without S= or W=), with dot-files, a subfolder, a tmp/
// file and a cur/ file with flags, the way mail clients leave them.
func TestReadPostfixAndOthers(t *testing.T) {
	t.Parallel()
	s, _ := newTestStore(t, true)
	dir := mustPath(t, s, "pf@example.org")
	msgs := []struct{ path, body string }{
		{"new/1700000000.V801I1a2bM123456.mail.example.org", "Subject: postfix 1\n\nbody\n"},
		{"new/1700000000.V801I1a2cM99.mail.example.org", "Subject: postfix 0 (earlier usec)\n\nbody\n"},
		{"new/1700000100.V801I1a2dM5.mail.example.org", "Subject: postfix 2\n\nno final newline"},
		{"cur/1700000200.V801I1a2eM5.mail.example.org:2,RS", "Subject: seen\r\n\r\nread by a client\r\n"},
	}
	for _, m := range msgs {
		writeFile(t, filepath.Join(dir, m.path), m.body)
	}
	writeFile(t, filepath.Join(dir, "tmp", "1700000300.V801I1a2fM5.mail.example.org"), "partial")
	writeFile(t, filepath.Join(dir, "new", ".hidden"), "not a message")
	writeFile(t, filepath.Join(dir, ".Sent", "cur", "1700000001.x.host:2,S"), "sent mail")
	writeFile(t, filepath.Join(dir, "dovecot-keywords"), "0 $Junk\n")
	if err := os.Mkdir(filepath.Join(dir, "cur", "subdir"), 0o700); err != nil {
		t.Fatal(err)
	}

	m := openMD(t, s, "pf@example.org")
	defer m.Close()
	want := []string{msgs[1].body, msgs[0].body, msgs[2].body, msgs[3].body}
	got := m.Messages()
	if len(got) != len(want) {
		t.Fatalf("%d messages, want %d", len(got), len(want))
	}
	for i, w := range want {
		if got[i].Size != wsize(w) {
			t.Errorf("message %d: Size = %d, want %d", i, got[i].Size, wsize(w))
		}
		if b := readMsg(t, m, i); b != w {
			t.Errorf("message %d = %q, want %q", i, b, w)
		}
	}
}

// TestGoMaildirOracle uses github.com/emersion/go-maildir as an independent
// implementation: mail it writes is read by us, and mail we deliver is read by
// it (after it moves it to cur/, which we must survive).
func TestGoMaildirOracle(t *testing.T) {
	t.Parallel()
	s, _ := newTestStore(t, true)
	dir := mustPath(t, s, "oracle")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := omd(dir).Init(); err != nil {
		t.Fatal(err)
	}
	var bodies []string
	for _, c := range storetest.Cases() {
		bodies = append(bodies, string(c.Body))
		d, err := newOracleDelivery(dir)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := d.Write(c.Body); err != nil {
			t.Fatal(err)
		}
		if err := d.Close(); err != nil {
			t.Fatal(err)
		}
	}
	m := openMD(t, s, "oracle")
	var got []string
	for i, msg := range m.Messages() {
		b := readMsg(t, m, i)
		if msg.Size != wsize(b) {
			t.Errorf("message %d: Size = %d, want %d", i, msg.Size, wsize(b))
		}
		got = append(got, b)
	}
	m.Close()
	// go-maildir names sort by second only, so compare as sets.
	slices.Sort(got)
	slices.Sort(bodies)
	if diff := cmp.Diff(bodies, got); diff != "" {
		t.Errorf("messages written by go-maildir (-want +got):\n%s", diff)
	}

	// Now the other way round.
	s2, _ := newTestStore(t, true)
	dir2 := mustPath(t, s2, "oracle")
	for _, b := range bodies {
		if err := s2.Deliver(context.Background(), "oracle", strings.NewReader(b)); err != nil {
			t.Fatal(err)
		}
	}
	m = openMD(t, s2, "oracle")
	before := m.Messages()
	m.Close()
	unseen, err := omd(dir2).Unseen() // moves new/ to cur/
	if err != nil {
		t.Fatal(err)
	}
	if len(unseen) != len(bodies) {
		t.Fatalf("go-maildir Unseen: %d messages, want %d", len(unseen), len(bodies))
	}
	var theirs []string
	for _, msg := range unseen {
		rc, err := msg.Open()
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(rc)
		rc.Close()
		theirs = append(theirs, string(b))
	}
	slices.Sort(theirs)
	if diff := cmp.Diff(bodies, theirs); diff != "" {
		t.Errorf("messages read by go-maildir (-want +got):\n%s", diff)
	}
	m = openMD(t, s2, "oracle")
	defer m.Close()
	if diff := cmp.Diff(before, m.Messages()); diff != "" {
		t.Errorf("snapshot changed after go-maildir moved new/ to cur/ (-before +after):\n%s", diff)
	}
	for i := range m.Messages() {
		readMsg(t, m, i)
	}
}

// TestMovedAndVanished: another agent moves a message to cur/ and sets flags,
// and removes another, during the session.
func TestMovedAndVanished(t *testing.T) {
	t.Parallel()
	s, _ := newTestStore(t, true)
	const user = "mv"
	for i := range 4 {
		if err := s.Deliver(context.Background(), user, strings.NewReader(fmt.Sprintf("Subject: %d\n\n", i))); err != nil {
			t.Fatal(err)
		}
	}
	dir := mustPath(t, s, user)
	m := openMD(t, s, user)
	defer m.Close()
	names := listDir(t, filepath.Join(dir, "new"))
	slices.SortFunc(names, compareNames)
	// Message 0: moved with flags. Message 1: removed. Message 2: moved, then deleted by us.
	for _, i := range []int{0, 2} {
		if err := os.Rename(filepath.Join(dir, "new", names[i]), filepath.Join(dir, "cur", names[i]+":2,S")); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Remove(filepath.Join(dir, "new", names[1])); err != nil {
		t.Fatal(err)
	}
	if got := readMsg(t, m, 0); got != "Subject: 0\n\n" {
		t.Errorf("moved message 0 = %q", got)
	}
	if _, err := m.Open(context.Background(), 1); !errors.Is(err, store.ErrNoMessage) {
		t.Errorf("Open of removed message = %v, want store.ErrNoMessage", err)
	}
	if err := m.Commit(context.Background(), []int{1, 2}); err != nil {
		t.Fatalf("Commit of a vanished and a moved message: %v", err)
	}
	if got := listDir(t, filepath.Join(dir, "cur")); len(got) != 1 || !strings.HasPrefix(got[0], names[0]) {
		t.Errorf("cur/ after Commit = %q, want only %s:2,S", got, names[0])
	}
	if got := listDir(t, filepath.Join(dir, "new")); len(got) != 1 || got[0] != names[3] {
		t.Errorf("new/ after Commit = %q, want only %s", got, names[3])
	}
}

// TestWVerifiedLastOctetChecked: with Options.VerifySizeFields, a W= in the
// name is used without reading the message, but the last octet decides the
// completing CRLF.
func TestWVerifiedLastOctetChecked(t *testing.T) {
	t.Parallel()
	s := newStoreOpts(t, Options{VerifySizeFields: true})
	dir := mustPath(t, s, "w")
	cases := []struct {
		name, body string
		want       int64
	}{
		// A W= that disagrees with the content proves it is trusted.
		{"1700000001.M1P1.h,S=12,W=1000:2,S", "Subject: a\n\n", 1000},
		{"1700000002.M1P1.h,S=17,W=19", "Subject: b\n\nlast", 19 + 2},
		{"1700000003.M1P1.h,S=18,W=19:2,", "Subject: c\n\nlast\r", 19 + 1},
		{"1700000004.M1P1.h,W=0,S=0", "", 0},
		{"1700000005.M1P1.h,S=5", "a\nb\nc", wsize("a\nb\nc")}, // no W=: read
		{"1700000006.M1P1.h,W=x12", "ab\n", wsize("ab\n")},     // malformed W=: read
	}
	for _, c := range cases {
		writeFile(t, filepath.Join(dir, "cur", c.name), c.body)
	}
	var opened atomic.Int32
	s.sizeHook = func(string) { opened.Add(1) }
	m := openMD(t, s, "w")
	defer m.Close()
	msgs := m.Messages()
	if len(msgs) != len(cases) {
		t.Fatalf("%d messages, want %d", len(msgs), len(cases))
	}
	for i, c := range cases {
		if msgs[i].Size != c.want {
			t.Errorf("%s: Size = %d, want %d", c.name, msgs[i].Size, c.want)
		}
	}
	if got := opened.Load(); got != int32(len(cases)) {
		t.Errorf("files opened to size them = %d, want %d (all)", got, len(cases))
	}
}

// TestWTrustedByDefault: without VerifySizeFields, W= is the size, as in
// Dovecot, and a file with W= is not opened to size it. One whose S=
// equals its W= (stored with CRLF line ends) is read all the same, to find
// out whether it is the message's wire form, which it is when it ends in
// CRLF (lines to dot-stuff are noted); its size stays W=. A message without a
// final newline is listed at W; RETR sends W+2 (the server's completing
// CRLF, RFC 1939 §3), which is what Dovecot lists and sends.
func TestWTrustedByDefault(t *testing.T) {
	t.Parallel()
	loc := t.TempDir() + "/%n"
	s := newStoreOpts(t, Options{Location: loc, NoSync: true})
	dir := mustPath(t, s, "w")
	cases := []struct {
		name, body string
		want       int64
		opened     bool
	}{
		{"1700000001.M1P1.h,S=12,W=1000:2,S", "Subject: a\n\n", 1000, false},
		{"1700000002.M1P1.h,S=16,W=18", "Subject: b\n\nlast", 18, false}, // Dovecot's W=
		{"1700000003.M1P1.h,S=18,W=19:2,", "Subject: c\n\nlast\r", 19, false},
		{"1700000004.M1P1.h,W=0,S=0", "", 0, true},
		{"1700000005.M1P1.h,S=5", "a\nb\nc", wsize("a\nb\nc"), true}, // no W=: read, exact
		{"1700000006.M1P1.h,W=x12", "ab\n", wsize("ab\n"), true},     // malformed W=: read
		{"1700000007.M1P1.h,S=17,W=17", "Subject: d\r\n\r\nx\r\n", 17, true},
		{"1700000008.M1P1.h,S=18,W=18", "Subject: e\r\n\r\n.x\r\n", 18, true},
		{"1700000009.M1P1.h,S=15,W=15", "Subject: f\r\n\r\nx", 15, true},
	}
	// The files that are their wire form, by index.
	wireForm := map[int]bool{3: true, 6: true, 7: true}
	wantOpened := 0
	for _, c := range cases {
		writeFile(t, filepath.Join(dir, "cur", c.name), c.body)
		if c.opened {
			wantOpened++
		}
	}
	var mu sync.Mutex
	var opened []string
	s.sizeHook = func(name string) {
		mu.Lock()
		opened = append(opened, name)
		mu.Unlock()
	}
	m := openMD(t, s, "w")
	msgs := m.Messages()
	if len(msgs) != len(cases) {
		t.Fatalf("%d messages, want %d", len(msgs), len(cases))
	}
	for i, c := range cases {
		if msgs[i].Size != c.want {
			t.Errorf("%s: Size = %d, want %d", c.name, msgs[i].Size, c.want)
		}
	}
	if len(opened) != wantOpened {
		t.Errorf("files opened to size them = %q, want the %d without a usable W= or with S= = W=", opened, wantOpened)
	}
	for i, c := range cases {
		r, err := m.Open(context.Background(), i)
		if err != nil {
			t.Fatal(err)
		}
		_, wire := r.(interface{ Wire() (int64, bool) }).Wire()
		r.Close()
		if wire != wireForm[i] {
			t.Errorf("%s: in wire form = %v, want %v", c.name, wire, wireForm[i])
		}
	}
	// The stored octets are served as they are; the engine's CRLF
	// conversion then sends W+2 for "last" (no final newline).
	if got, want := wsize(readMsg(t, m, 1)), int64(18+2); got != want {
		t.Errorf("wire size of message 2 = %d, want W+2 = %d", got, want)
	}
	m.Close()

	// The sizes are in the index: a second Open (index up to date) lists
	// the same, and so does VerifySizeFields later (a message is sized
	// once, when first indexed).
	s2 := newStoreOpts(t, Options{Location: loc, NoSync: true, VerifySizeFields: true})
	m2 := openMD(t, s2, "w")
	defer m2.Close()
	for i, c := range cases {
		if got := m2.Messages()[i].Size; got != c.want {
			t.Errorf("%s: Size after reopening with VerifySizeFields = %d, want %d (indexed)", c.name, got, c.want)
		}
	}
}

// newStoreOpts returns a Store with opts over a fresh directory, fsync off
// and a fixed hostname unless opts says otherwise.
func newStoreOpts(t testing.TB, opts Options) *Store {
	t.Helper()
	if opts.Location == "" {
		opts.Location = t.TempDir() + "/%d/%n/Maildir"
		opts.NoSync = true
	}
	if opts.Hostname == "" {
		opts.Hostname = "test.example.org"
	}
	s, err := New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return s
}

func uidlsOf(m store.Maildrop) []string {
	var u []string
	for _, msg := range m.Messages() {
		u = append(u, msg.UID)
	}
	return u
}

func TestIndexLost(t *testing.T) {
	t.Parallel()
	s, _ := newTestStore(t, true)
	const user = "lost@example.org"
	for i := range 20 {
		if err := s.Deliver(context.Background(), user, strings.NewReader(fmt.Sprintf("Subject: %d\n\n", i))); err != nil {
			t.Fatal(err)
		}
	}
	m := openMD(t, s, user)
	want := m.Messages()
	m.Close()
	dir := mustPath(t, s, user)
	if err := os.Remove(filepath.Join(dir, indexName)); err != nil {
		t.Fatal(err)
	}
	m = openMD(t, s, user)
	defer m.Close()
	if diff := cmp.Diff(want, m.Messages()); diff != "" {
		t.Errorf("snapshot after losing the index (-before +after):\n%s", diff)
	}
	if _, err := os.Stat(filepath.Join(dir, indexName)); err != nil {
		t.Errorf("index not rewritten: %v", err)
	}
}

func TestIndexCorrupt(t *testing.T) {
	t.Parallel()
	corruptions := map[string]func([]byte) []byte{
		"truncated":     func(b []byte) []byte { return b[:len(b)/2] },
		"no-trailer":    func(b []byte) []byte { return b[:bytes.LastIndex(b, []byte("end "))] },
		"garbage":       func([]byte) []byte { return []byte("\x00\xff garbage\n") },
		"empty":         func([]byte) []byte { return nil },
		"flipped-octet": func(b []byte) []byte { b = bytes.Clone(b); b[30] ^= 0x20; return b },
		"bad-size": func(b []byte) []byte {
			// Well-formed trailer and checksum around a line that doesn't parse.
			lines := bytes.SplitAfter(b, []byte("\n"))
			f := bytes.Fields(lines[1])
			lines[1] = fmt.Appendf(nil, "%s 1x %s\n", f[0], f[2])
			return reseal(bytes.Join(lines[:len(lines)-2], nil))
		},
		"bad-uidl": func(b []byte) []byte {
			lines := bytes.SplitAfter(b, []byte("\n"))
			lines[1] = append([]byte("\x01"), lines[1]...)
			return reseal(bytes.Join(lines[:len(lines)-2], nil))
		},
		"duplicate-key": func(b []byte) []byte {
			lines := bytes.SplitAfter(b, []byte("\n"))
			body := bytes.Join(lines[:len(lines)-2], nil)
			return reseal(append(body, bytes.Replace(lines[1], []byte(" "), []byte("x "), 1)...))
		},
		"count-mismatch": func(b []byte) []byte {
			lines := bytes.SplitAfter(b, []byte("\n"))
			return reseal(bytes.Join(lines[:len(lines)-3], nil), 5)
		},
	}
	for name, corrupt := range corruptions {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			s, _ := newTestStore(t, true)
			const user = "corrupt"
			for i := range 5 {
				if err := s.Deliver(context.Background(), user, strings.NewReader(fmt.Sprintf("Subject: %d\n\n", i))); err != nil {
					t.Fatal(err)
				}
			}
			m := openMD(t, s, user)
			want := m.Messages()
			m.Close()
			path := filepath.Join(mustPath(t, s, user), indexName)
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			// Open finds duplicate keys when it maps them, not parseIndex.
			if _, err := parseIndex(corrupt(b)); name != "duplicate-key" && !errors.Is(err, errCorrupt) {
				t.Errorf("parseIndex(corrupted) = %v, want errCorrupt", err)
			}
			if err := os.WriteFile(path, corrupt(b), 0o600); err != nil {
				t.Fatal(err)
			}
			m = openMD(t, s, user)
			defer m.Close()
			if diff := cmp.Diff(want, m.Messages()); diff != "" {
				t.Errorf("snapshot after index rebuild (-before +after):\n%s", diff)
			}
			if b2, _ := os.ReadFile(path); !bytes.Equal(b2, b) {
				t.Errorf("rebuilt index differs from the original:\n%s\nwant\n%s", b2, b)
			}
		})
	}
}

// reseal appends a valid trailer to header and lines; count overrides the
// entry count when given.
func reseal(body []byte, count ...int) []byte {
	n := bytes.Count(body, []byte("\n")) - 1
	if len(count) > 0 {
		n = count[0]
	}
	return fmt.Appendf(bytes.Clone(body), "end %d %08x\n", n, crc32.Checksum(body, castagnoli))
}

func TestIndexRoundTrip(t *testing.T) {
	t.Parallel()
	s := &Store{noSync: true}
	dir := t.TempDir()
	in := []indexEntry{
		{key: "1700000000.M1P2Q3.host,S=1,W=2", uidl: deriveUIDL("a"), size: 2},
		{key: "name with spaces", uidl: "0000000100000001", size: 0},
		{key: "x", uidl: "~!", size: 1 << 40},
	}
	if err := s.writeIndex(dir, in); err != nil {
		t.Fatal(err)
	}
	out, err := readIndex(filepath.Join(dir, indexName))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(in, out, cmp.AllowUnexported(indexEntry{})); diff != "" {
		t.Errorf("index round trip (-in +out):\n%s", diff)
	}
	if _, err := os.Stat(filepath.Join(dir, indexName+".tmp")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("temporary index left behind: %v", err)
	}
}

func TestDeriveUIDL(t *testing.T) {
	t.Parallel()
	u := deriveUIDL("1700000000.M1P2Q3.host,S=1,W=2")
	if len(u) != 20 || !validUIDL(u) {
		t.Errorf("deriveUIDL = %q, want 20 characters of 0x21-0x7E", u)
	}
	if u != deriveUIDL("1700000000.M1P2Q3.host,S=1,W=2") {
		t.Error("deriveUIDL is not deterministic")
	}
	if u == deriveUIDL("1700000000.M1P2Q4.host,S=1,W=2") {
		t.Error("deriveUIDL collides for different keys")
	}
}

func TestCompareNames(t *testing.T) {
	t.Parallel()
	ordered := []string{
		"999999999.M1P1.h",
		"1700000000.M99P1.h",
		"1700000000.V801I1a2fM99.mail",
		"1700000000.M100P1.h",
		"1700000000.M100P1Q2.h",
		"1700000000.M100P1Q10.h",
		"1700000000.M100P2Q1.h",
		"1700000000.V801I1a2M100.mail",
		"1700000001.M0P1.h",
		"1700000001.M00P1.hb",
		"1700000001.x",
		"1700000001.M1P1.h",
		"01700000002",
		"1700000002.M",
	}
	for i := range ordered {
		for j := range ordered {
			want := 0
			if i < j {
				want = -1
			} else if i > j {
				want = 1
			}
			if got := compareNames(ordered[i], ordered[j]); got != want {
				t.Errorf("compareNames(%q, %q) = %d, want %d", ordered[i], ordered[j], got, want)
			}
		}
	}
}

func TestSizeField(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		c    byte
		want int64
		ok   bool
	}{
		{"1.M1P1.h,S=10,W=12", 'W', 12, true},
		{"1.M1P1.h,S=10,W=12", 'S', 10, true},
		{"1.M1P1.h,W=12,S=10", 'W', 12, true},
		{"1.M1P1.h", 'W', 0, false},
		{"1.M1P1.h,W=", 'W', 0, false},
		{"1.M1P1.h,W=1a,W=5", 'W', 5, true},
		{"1.M1P1.h,XW=5", 'W', 0, false},
		{"1.M1P1.h,", 'W', 0, false},
	}
	for _, tt := range tests {
		got, ok := sizeField(tt.name, tt.c)
		if got != tt.want || ok != tt.ok {
			t.Errorf("sizeField(%q, %q) = %d, %v, want %d, %v", tt.name, tt.c, got, ok, tt.want, tt.ok)
		}
	}
}

func TestSafeHost(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"mail.example.org": "mail.example.org",
		"a/b:c,d":          `a\057b\072c\054d`,
		"sp ace\n":         "space",
		"":                 "localhost",
	} {
		if got := safeHost(in); got != want {
			t.Errorf("safeHost(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestCommitTwiceAndClosed(t *testing.T) {
	t.Parallel()
	s, _ := newTestStore(t, true)
	m := openMD(t, s, "twice")
	if err := m.Commit(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	if err := m.Commit(context.Background(), nil); err == nil {
		t.Error("second Commit succeeded, want error")
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if err := m.Close(); err != nil {
		t.Errorf("second Close = %v, want nil", err)
	}
}

func TestCommitCanceledDeletesNothing(t *testing.T) {
	t.Parallel()
	s, _ := newTestStore(t, true)
	if err := s.Deliver(context.Background(), "cc", strings.NewReader("x\n")); err != nil {
		t.Fatal(err)
	}
	m := openMD(t, s, "cc")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := m.Commit(ctx, []int{0}); !errors.Is(err, context.Canceled) {
		t.Errorf("Commit with canceled context = %v, want context.Canceled", err)
	}
	m.Close()
	m = openMD(t, s, "cc")
	defer m.Close()
	if n := len(m.Messages()); n != 1 {
		t.Errorf("%d messages after canceled Commit, want 1", n)
	}
}

// TestCommitMovedAfterRelocate: a message another agent moves to cur/ after
// Commit has looked the directories up again (Dovecot moving all of new/
// when an IMAP client opens INBOX) is still removed, not left on disk to
// come back in the next session.
func TestCommitMovedAfterRelocate(t *testing.T) {
	t.Parallel()
	s, _ := newTestStore(t, true)
	const user = "race"
	for i := range 2 {
		if err := s.Deliver(context.Background(), user, strings.NewReader(fmt.Sprintf("Subject: %d\n\n", i))); err != nil {
			t.Fatal(err)
		}
	}
	dir := mustPath(t, s, user)
	m := openMD(t, s, user)
	names := listDir(t, filepath.Join(dir, "new"))
	slices.SortFunc(names, compareNames)
	move := func(name string) {
		if err := os.Rename(filepath.Join(dir, "new", name), filepath.Join(dir, "cur", name+":2,S")); err != nil {
			t.Error(err)
		}
	}
	move(names[0]) // Commit misses message 0 and looks the directories up again
	moved := false
	m.(*maildrop).afterRelocate = func() {
		if !moved {
			moved = true
			move(names[1]) // after the lookup that saw it in new/
		}
	}
	if err := m.Commit(context.Background(), []int{0, 1}); err != nil {
		t.Fatalf("Commit: %v", err)
	}
	m.Close()
	for _, sub := range []string{"new", "cur"} {
		if got := listDir(t, filepath.Join(dir, sub)); len(got) != 0 {
			t.Errorf("%s/ after Commit of every message = %q, want empty", sub, got)
		}
	}
	m = openMD(t, s, user)
	defer m.Close()
	if n := len(m.Messages()); n != 0 {
		t.Errorf("next session: %d messages, want 0 (deleted messages came back)", n)
	}
}

// TestCreateSyncsEveryNewDirectory: the first delivery to a user of a new
// domain creates <domain>/<user>/Maildir; each new directory's entry in its
// parent is fsynced, or a crash could lose the Maildir with the message in
// it after Deliver returned.
func TestCreateSyncsEveryNewDirectory(t *testing.T) {
	t.Parallel()
	s, root := newTestStore(t, false)
	var synced []string
	s.syncHook = func(dir string) { synced = append(synced, dir) }
	if err := s.Deliver(context.Background(), "u@new.example", strings.NewReader("x\n")); err != nil {
		t.Fatal(err)
	}
	dir := mustPath(t, s, "u@new.example")
	for _, want := range []string{
		root, filepath.Join(root, "new.example"), filepath.Dir(dir), dir, filepath.Join(dir, "new"),
	} {
		if !slices.Contains(synced, want) {
			t.Errorf("directory %s not fsynced; synced %q", want, synced)
		}
	}
}
