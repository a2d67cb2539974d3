// Package storetest is the conformance suite every store.Store backend runs
// (Maildir, mbox, PostgreSQL): it checks the invariants written in the
// store package doc against a live backend.
//
// What it checks, by the RFC 1939 rule behind it:
//   - §4: Open takes an exclusive lock on the maildrop; a second Open returns
//     store.ErrInUse until the first session is closed.
//   - §4/§5: the snapshot lists messages in delivery order with their exact
//     size in CRLF form (wire.CRLFSize), and mail delivered during a session
//     is not part of it.
//   - §6: only Commit (the UPDATE state) removes messages, exactly the ones
//     given; Close without Commit deletes nothing.
//   - §7: UIDs are 1-70 characters of 0x21-0x7E, unique, stable across
//     sessions, deliveries and deletions, and never reused.
//   - The add-ons a backend implements (store.StateFiles, StateReader,
//     Arrivals) keep their documented promises; a backend without them
//     skips those subtests.
//
// A backend calls Run (or RunWith when it stores messages in a normalised
// form) from its own test:
//
//	func TestConformance(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) store.Store { return newTestStore(t) })
//	}
//
// newStore must return a store that is empty and private to t; the suite runs
// its subtests in parallel.
package storetest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/postoffice-mail/postoffice/internal/store"
	"github.com/postoffice-mail/postoffice/internal/wire"
)

// Config describes what a backend documents about itself.
type Config struct {
	// NormalizesCRLF is set by a backend that stores (and so returns from
	// Maildrop.Open) messages with CRLF line ends whatever it was given. The
	// suite then compares contents after normalising both sides to CRLF.
	// Backends that keep the exact bytes (Maildir) leave it false.
	NormalizesCRLF bool
	// EndsInNewline is set by a backend whose format cannot store a
	// message that does not end in a line end (mbox: the empty line that
	// separates messages must start a line), so it stores, and returns,
	// a non-empty message without a final LF with one LF appended. Its
	// size is unchanged: wire.CRLFSize already counts the CRLF (or, after
	// a final CR, the LF) that RETR completes such a message with. The
	// suite then compares contents after appending that LF to the body
	// it delivered.
	EndsInNewline bool
	// WireForm is set by a backend that stores (and so returns from
	// Maildrop.Open) every message in the CRLF form RETR sends it in:
	// bare LF made CRLF and a last line without LF completed, with CRLF or
	// (after a final CR) LF, as wire.CRLFReader gives it; its length is
	// its size. The suite then compares contents with exactly that form
	// of the body it delivered.
	WireForm bool
}

// Run runs the conformance suite with the zero Config: stored bytes must
// come back exactly.
func Run(t *testing.T, newStore func(t *testing.T) store.Store) {
	t.Helper()
	RunWith(t, Config{}, newStore)
}

// RunWith runs the conformance suite with c.
func RunWith(t *testing.T, c Config, newStore func(t *testing.T) store.Store) {
	t.Helper()
	s := suite{c: c, newStore: newStore}
	tests := []struct {
		name string
		fn   func(*testing.T)
	}{
		{"EmptyMaildrop", s.testEmpty},
		{"DeliverOpenOrderSizes", s.testDeliverOpen},
		{"UsersAreSeparate", s.testUsersSeparate},
		{"UIDsValidUniqueStable", s.testUIDsStable},
		{"UIDsNeverReused", s.testUIDsNeverReused},
		{"InUse", s.testInUse},
		{"CloseDeletesNothing", s.testCloseDeletesNothing},
		{"CommitRemovesExactly", s.testCommit},
		{"CommitNothing", s.testCommitNothing},
		{"DeliveryDuringSession", s.testDeliveryDuringSession},
		{"ConcurrentDeliveries", s.testConcurrentDeliveries},
		{"OpenOutOfRange", s.testOpenOutOfRange},
		{"FailedDeliveryLeavesNothing", s.testFailedDelivery},
		{"ContextCanceled", s.testContextCanceled},
		{"StateFiles", s.testStateFiles},
		{"Arrivals", s.testArrivals},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.fn(t)
		})
	}
}

type suite struct {
	c        Config
	newStore func(t *testing.T) store.Store
}

// Case is one message body the suite delivers. Exported so that backend
// tests can reuse the same awkward inputs.
type Case struct {
	Name string
	Body []byte
}

// Cases returns the messages every backend must store and size exactly: CRLF
// and bare-LF line ends, no final newline, a final lone CR, lines starting
// with '.', an empty message, a 3 MB message, NUL and 8-bit octets.
func Cases() []Case {
	return []Case{
		{"crlf", []byte("From: a@example.org\r\nSubject: crlf\r\n\r\nbody line\r\n")},
		{"bare-lf", []byte("From: a@example.org\nSubject: lf\n\nbody line\nsecond\n")},
		{"no-final-newline", []byte("Subject: nofinal\n\nlast line has no newline")},
		{"final-lone-cr", []byte("Subject: cr\r\n\r\nends in CR\r")},
		{"dot-lines", []byte("Subject: dots\n\n.\n..two\n.leading\r\n.\r\n. \nend\n")},
		{"empty", []byte{}},
		{"large-3MB", Large(3 << 20)},
		{"nul-8bit", []byte("Subject: bin\n\n\x00\x01\x7f\xff\xfe caf\xc3\xa9\n\x00\r\n\xe2\x82\xac\n")},
		{"mixed-endings", []byte("A: b\r\nC: d\n\r\nx\ry\n\n\r\n")},
	}
}

// Large returns a deterministic message of n octets with mixed line ends and
// some lines starting with '.'.
func Large(n int) []byte {
	var b bytes.Buffer
	b.Grow(n + 100)
	b.WriteString("Subject: large\r\n\r\n")
	for i := 0; b.Len() < n; i++ {
		switch i % 5 {
		case 0:
			fmt.Fprintf(&b, ".line %d with a leading dot\n", i)
		case 1:
			fmt.Fprintf(&b, "line %d ending in CRLF\r\n", i)
		default:
			fmt.Fprintf(&b, "line %d %s\n", i, strings.Repeat("x", i%70))
		}
	}
	return b.Bytes()[:n]
}

func wireSize(t testing.TB, b []byte) int64 {
	t.Helper()
	n, err := wire.CRLFSize(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("wire.CRLFSize: %v", err)
	}
	return n
}

// toCRLF turns every bare LF into CRLF.
func toCRLF(b []byte) []byte {
	var out bytes.Buffer
	for i, c := range b {
		if c == '\n' && (i == 0 || b[i-1] != '\r') {
			out.WriteByte('\r')
		}
		out.WriteByte(c)
	}
	return out.Bytes()
}

func deliver(t testing.TB, s store.Store, user string, body []byte) {
	t.Helper()
	if err := s.Deliver(context.Background(), user, bytes.NewReader(body)); err != nil {
		t.Fatalf("Deliver(%q, %d octets): %v", user, len(body), err)
	}
}

func open(t testing.TB, s store.Store, user string) store.Maildrop {
	t.Helper()
	m, err := s.Open(context.Background(), user)
	if err != nil {
		t.Fatalf("Open(%q): %v", user, err)
	}
	return m
}

func closeMD(t testing.TB, m store.Maildrop) {
	t.Helper()
	if err := m.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

// contents reads message i whole (test-sized messages only).
func contents(t testing.TB, m store.Maildrop, i int) []byte {
	t.Helper()
	rc, err := m.Open(context.Background(), i)
	if err != nil {
		t.Fatalf("Maildrop.Open(%d): %v", i, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("reading message %d: %v", i, err)
	}
	return b
}

func (s *suite) same(got, want []byte) bool {
	if s.c.WireForm {
		crlf, err := io.ReadAll(wire.NewCRLFReader(bytes.NewReader(want), make([]byte, 4096)))
		return err == nil && bytes.Equal(got, crlf)
	}
	if s.c.EndsInNewline && len(want) > 0 && want[len(want)-1] != '\n' {
		want = append(want[:len(want):len(want)], '\n')
	}
	if s.c.NormalizesCRLF {
		return bytes.Equal(toCRLF(got), toCRLF(want))
	}
	return bytes.Equal(got, want)
}

func describe(b []byte) string {
	if len(b) <= 80 {
		return fmt.Sprintf("%q", b)
	}
	return fmt.Sprintf("%d octets, sha256 %x", len(b), sha256.Sum256(b))
}

// checkUIDs checks RFC 1939 §7: 1-70 characters in 0x21-0x7E, unique.
func checkUIDs(t testing.TB, msgs []store.Message) {
	t.Helper()
	seen := make(map[string]int, len(msgs))
	for i, m := range msgs {
		if err := ValidUID(m.UID); err != nil {
			t.Errorf("message %d: %v", i, err)
		}
		if j, ok := seen[m.UID]; ok {
			t.Errorf("messages %d and %d share UID %q", j, i, m.UID)
		}
		seen[m.UID] = i
	}
}

// ValidUID reports whether uid is a valid unique-id (RFC 1939 §7: 1 to 70
// characters in the range 0x21 to 0x7E).
func ValidUID(uid string) error {
	if len(uid) < 1 || len(uid) > 70 {
		return fmt.Errorf("UID %q has length %d, want 1-70", uid, len(uid))
	}
	for i := 0; i < len(uid); i++ {
		if c := uid[i]; c < 0x21 || c > 0x7e {
			return fmt.Errorf("UID %q has octet 0x%02x at %d, want 0x21-0x7E", uid, c, i)
		}
	}
	return nil
}

func uids(msgs []store.Message) []string {
	out := make([]string, len(msgs))
	for i, m := range msgs {
		out[i] = m.UID
	}
	return out
}

func (s *suite) testEmpty(t *testing.T) {
	st := s.newStore(t)
	for _, user := range []string{"alice", "bob@example.org"} {
		m := open(t, st, user)
		if n := len(m.Messages()); n != 0 {
			t.Errorf("Open(%q) on a new maildrop: %d messages, want 0", user, n)
		}
		if err := m.Commit(context.Background(), nil); err != nil {
			t.Errorf("Commit(nil) on empty maildrop: %v", err)
		}
		closeMD(t, m)
	}
}

func (s *suite) testDeliverOpen(t *testing.T) {
	st := s.newStore(t)
	const user = "carol"
	cases := Cases()
	for _, c := range cases {
		deliver(t, st, user, c.Body)
	}
	m := open(t, st, user)
	defer closeMD(t, m)
	msgs := m.Messages()
	if len(msgs) != len(cases) {
		t.Fatalf("Messages() has %d entries, want %d", len(msgs), len(cases))
	}
	checkUIDs(t, msgs)
	for i, c := range cases {
		if want := wireSize(t, c.Body); msgs[i].Size != want {
			t.Errorf("message %d (%s): Size = %d, want %d (wire.CRLFSize)", i, c.Name, msgs[i].Size, want)
		}
		if got := contents(t, m, i); !s.same(got, c.Body) {
			t.Errorf("message %d (%s): Open returned %s, want %s (delivery order or content wrong)",
				i, c.Name, describe(got), describe(c.Body))
		}
	}
	// Reading twice gives the same bytes: Open is not a one-shot stream.
	if got := contents(t, m, 0); !s.same(got, cases[0].Body) {
		t.Errorf("second Open(0) = %s, want %s", describe(got), describe(cases[0].Body))
	}
}

func (s *suite) testUsersSeparate(t *testing.T) {
	st := s.newStore(t)
	deliver(t, st, "dave", []byte("Subject: for dave\n\n"))
	deliver(t, st, "dave@example.org", []byte("Subject: for dave at example.org\n\n"))
	deliver(t, st, "erin@example.org", []byte("Subject: for erin\n\n"))
	for user, want := range map[string]string{
		"dave":             "Subject: for dave\n\n",
		"dave@example.org": "Subject: for dave at example.org\n\n",
		"erin@example.org": "Subject: for erin\n\n",
	} {
		m := open(t, st, user)
		if n := len(m.Messages()); n != 1 {
			t.Errorf("Open(%q): %d messages, want 1", user, n)
		} else if got := contents(t, m, 0); !s.same(got, []byte(want)) {
			t.Errorf("Open(%q) message 0 = %q, want %q", user, got, want)
		}
		closeMD(t, m)
	}
	// Locks are per maildrop: two users can be open at once.
	a := open(t, st, "dave")
	b := open(t, st, "erin@example.org")
	closeMD(t, a)
	closeMD(t, b)
}

func (s *suite) testUIDsStable(t *testing.T) {
	st := s.newStore(t)
	const user = "frank@example.org"
	for i := range 5 {
		deliver(t, st, user, fmt.Appendf(nil, "Subject: %d\n\nbody %d\n", i, i))
	}
	m := open(t, st, user)
	first := uids(m.Messages())
	checkUIDs(t, m.Messages())
	closeMD(t, m)

	m = open(t, st, user)
	if got := uids(m.Messages()); !slices.Equal(got, first) {
		t.Errorf("UIDs changed between sessions:\n got %q\nwant %q", got, first)
	}
	// Delete messages 1 and 3.
	if err := m.Commit(context.Background(), []int{1, 3}); err != nil {
		t.Fatalf("Commit: %v", err)
	}
	closeMD(t, m)

	deliver(t, st, user, []byte("Subject: 5\n\nbody 5\n"))
	deliver(t, st, user, []byte("Subject: 6\n\nbody 6\n"))
	m = open(t, st, user)
	defer closeMD(t, m)
	msgs := m.Messages()
	checkUIDs(t, msgs)
	want := []string{first[0], first[2], first[4]}
	if len(msgs) != 5 {
		t.Fatalf("after deleting 2 of 5 and delivering 2: %d messages, want 5", len(msgs))
	}
	if got := uids(msgs[:3]); !slices.Equal(got, want) {
		t.Errorf("surviving UIDs = %q, want %q", got, want)
	}
	for _, u := range uids(msgs[3:]) {
		for _, old := range first {
			if u == old {
				t.Errorf("new message got UID %q of an earlier message", u)
			}
		}
	}
	for i, body := range []string{"Subject: 0\n\nbody 0\n", "Subject: 2\n\nbody 2\n", "Subject: 4\n\nbody 4\n",
		"Subject: 5\n\nbody 5\n", "Subject: 6\n\nbody 6\n"} {
		if got := contents(t, m, i); !s.same(got, []byte(body)) {
			t.Errorf("message %d = %q, want %q", i, got, body)
		}
	}
}

func (s *suite) testUIDsNeverReused(t *testing.T) {
	st := s.newStore(t)
	const user = "grace"
	body := []byte("Subject: same bytes\n\nidentical\n")
	seen := map[string]bool{}
	for round := range 3 {
		deliver(t, st, user, body)
		m := open(t, st, user)
		msgs := m.Messages()
		if len(msgs) != 1 {
			t.Fatalf("round %d: %d messages, want 1", round, len(msgs))
		}
		if seen[msgs[0].UID] {
			t.Errorf("round %d: identical bytes delivered again got reused UID %q", round, msgs[0].UID)
		}
		seen[msgs[0].UID] = true
		if err := m.Commit(context.Background(), []int{0}); err != nil {
			t.Fatalf("Commit: %v", err)
		}
		closeMD(t, m)
	}
	// Two identical messages at once get different UIDs too.
	deliver(t, st, user, body)
	deliver(t, st, user, body)
	m := open(t, st, user)
	defer closeMD(t, m)
	checkUIDs(t, m.Messages())
	for _, msg := range m.Messages() {
		if seen[msg.UID] {
			t.Errorf("UID %q of a deleted message reused", msg.UID)
		}
	}
}

func (s *suite) testInUse(t *testing.T) {
	st := s.newStore(t)
	const user = "heidi@example.org"
	deliver(t, st, user, []byte("Subject: x\n\n"))
	m := open(t, st, user)
	m2, err := st.Open(context.Background(), user)
	if !errors.Is(err, store.ErrInUse) {
		if err == nil {
			m2.Close()
		}
		t.Fatalf("second Open(%q) = %v, want store.ErrInUse", user, err)
	}
	// Still in use after a failed attempt, and Commit doesn't release it.
	if err := m.Commit(context.Background(), nil); err != nil {
		t.Fatalf("Commit: %v", err)
	}
	if _, err := st.Open(context.Background(), user); !errors.Is(err, store.ErrInUse) {
		t.Fatalf("third Open(%q) after Commit = %v, want store.ErrInUse", user, err)
	}
	closeMD(t, m)
	m = open(t, st, user)
	if n := len(m.Messages()); n != 1 {
		t.Errorf("reopened: %d messages, want 1", n)
	}
	closeMD(t, m)
}

func (s *suite) testCloseDeletesNothing(t *testing.T) {
	st := s.newStore(t)
	const user = "ivan"
	for i := range 3 {
		deliver(t, st, user, fmt.Appendf(nil, "Subject: %d\n\n", i))
	}
	m := open(t, st, user)
	before := m.Messages()
	for i := range before {
		contents(t, m, i) // reading must not mark or move anything
	}
	closeMD(t, m)
	m = open(t, st, user)
	defer closeMD(t, m)
	after := m.Messages()
	if len(after) != len(before) {
		t.Fatalf("after Close without Commit: %d messages, want %d", len(after), len(before))
	}
	for i := range before {
		if after[i] != before[i] {
			t.Errorf("message %d changed across sessions: %+v, want %+v", i, after[i], before[i])
		}
	}
}

func (s *suite) testCommit(t *testing.T) {
	st := s.newStore(t)
	const user = "judy@example.org"
	var bodies []string
	for i := range 6 {
		b := fmt.Sprintf("Subject: %d\n\nbody %d\n", i, i)
		bodies = append(bodies, b)
		deliver(t, st, user, []byte(b))
	}
	m := open(t, st, user)
	all := m.Messages()
	if err := m.Commit(context.Background(), []int{4, 0, 2}); err != nil {
		t.Fatalf("Commit([4 0 2]): %v", err)
	}
	closeMD(t, m)

	m = open(t, st, user)
	defer closeMD(t, m)
	msgs := m.Messages()
	want := []store.Message{all[1], all[3], all[5]}
	if len(msgs) != len(want) {
		t.Fatalf("after Commit: %d messages, want %d", len(msgs), len(want))
	}
	for i := range want {
		if msgs[i] != want[i] {
			t.Errorf("message %d = %+v, want %+v", i, msgs[i], want[i])
		}
	}
	for i, b := range []string{bodies[1], bodies[3], bodies[5]} {
		if got := contents(t, m, i); !s.same(got, []byte(b)) {
			t.Errorf("message %d = %q, want %q", i, got, b)
		}
	}
}

func (s *suite) testCommitNothing(t *testing.T) {
	st := s.newStore(t)
	const user = "ken"
	deliver(t, st, user, []byte("Subject: keep\n\n"))
	m := open(t, st, user)
	if err := m.Commit(context.Background(), []int{}); err != nil {
		t.Fatalf("Commit([]): %v", err)
	}
	closeMD(t, m)
	m = open(t, st, user)
	defer closeMD(t, m)
	if n := len(m.Messages()); n != 1 {
		t.Errorf("after empty Commit: %d messages, want 1", n)
	}
}

func (s *suite) testDeliveryDuringSession(t *testing.T) {
	st := s.newStore(t)
	const user = "leo@example.org"
	deliver(t, st, user, []byte("Subject: before\n\n"))
	m := open(t, st, user)
	before := m.Messages()
	deliver(t, st, user, []byte("Subject: during\n\n"))
	if got := m.Messages(); len(got) != 1 || got[0] != before[0] {
		t.Errorf("snapshot changed by a delivery: %+v, want %+v", got, before)
	}
	if got := contents(t, m, 0); !s.same(got, []byte("Subject: before\n\n")) {
		t.Errorf("message 0 = %q after a delivery during the session", got)
	}
	// Deleting in this session must not touch the new message.
	if err := m.Commit(context.Background(), []int{0}); err != nil {
		t.Fatalf("Commit: %v", err)
	}
	closeMD(t, m)
	m = open(t, st, user)
	defer closeMD(t, m)
	msgs := m.Messages()
	if len(msgs) != 1 {
		t.Fatalf("next session: %d messages, want 1 (the one delivered during the session)", len(msgs))
	}
	if got := contents(t, m, 0); !s.same(got, []byte("Subject: during\n\n")) {
		t.Errorf("next session message 0 = %q, want the one delivered during the session", got)
	}
	if msgs[0].UID == before[0].UID {
		t.Errorf("new message reuses UID %q", msgs[0].UID)
	}
}

func (s *suite) testConcurrentDeliveries(t *testing.T) {
	st := s.newStore(t)
	const user = "mallory"
	const n = 64
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			body := fmt.Appendf(nil, "Subject: concurrent %d\n\n%s\n", i, strings.Repeat("y", i*37))
			if err := st.Deliver(context.Background(), user, bytes.NewReader(body)); err != nil {
				errs <- fmt.Errorf("delivery %d: %w", i, err)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	m := open(t, st, user)
	defer closeMD(t, m)
	msgs := m.Messages()
	if len(msgs) != n {
		t.Fatalf("after %d concurrent deliveries: %d messages", n, len(msgs))
	}
	checkUIDs(t, msgs)
	got := map[string]bool{}
	for i := range msgs {
		got[string(contents(t, m, i))] = true
	}
	for i := range n {
		body := fmt.Sprintf("Subject: concurrent %d\n\n%s\n", i, strings.Repeat("y", i*37))
		if s.c.NormalizesCRLF || s.c.WireForm { // it ends in LF: no last line to complete
			body = string(toCRLF([]byte(body)))
		}
		if !got[body] {
			t.Errorf("delivery %d missing", i)
		}
	}
}

func (s *suite) testOpenOutOfRange(t *testing.T) {
	st := s.newStore(t)
	const user = "nina"
	deliver(t, st, user, []byte("Subject: one\n\n"))
	m := open(t, st, user)
	defer closeMD(t, m)
	for _, i := range []int{-1, 1, 1000} {
		if rc, err := m.Open(context.Background(), i); err == nil {
			rc.Close()
			t.Errorf("Maildrop.Open(%d) of 1 message succeeded, want error", i)
		}
	}
}

// failingReader returns some bytes, then an error.
type failingReader struct{ n int }

func (r *failingReader) Read(p []byte) (int, error) {
	if r.n <= 0 {
		return 0, errors.New("storetest: injected read error")
	}
	n := min(len(p), r.n)
	for i := range p[:n] {
		p[i] = 'z'
	}
	r.n -= n
	return n, nil
}

func (s *suite) testFailedDelivery(t *testing.T) {
	st := s.newStore(t)
	const user = "oscar@example.org"
	if err := st.Deliver(context.Background(), user, &failingReader{n: 100000}); err == nil {
		t.Fatal("Deliver with a failing reader succeeded, want error")
	}
	deliver(t, st, user, []byte("Subject: ok\n\n"))
	m := open(t, st, user)
	defer closeMD(t, m)
	if n := len(m.Messages()); n != 1 {
		t.Errorf("after one failed and one good delivery: %d messages, want 1", n)
	}
}

// cancelReader cancels its context after the first Read.
type cancelReader struct {
	cancel context.CancelFunc
	done   bool
}

func (r *cancelReader) Read(p []byte) (int, error) {
	if r.done {
		return len(p), nil // endless: only cancellation stops the delivery
	}
	r.done = true
	r.cancel()
	n := copy(p, "Subject: cancelled\n\n")
	return n, nil
}

func (s *suite) testContextCanceled(t *testing.T) {
	st := s.newStore(t)
	const user = "peggy"
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	if err := st.Deliver(canceled, user, strings.NewReader("Subject: x\n\n")); !errors.Is(err, context.Canceled) {
		t.Errorf("Deliver with a canceled context = %v, want context.Canceled", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := st.Deliver(ctx, user, &cancelReader{cancel: cancel}); !errors.Is(err, context.Canceled) {
		t.Errorf("Deliver canceled mid-stream = %v, want context.Canceled", err)
	}
	if m, err := st.Open(canceled, user); !errors.Is(err, context.Canceled) {
		if err == nil {
			m.Close()
		}
		t.Errorf("Open with a canceled context = %v, want context.Canceled", err)
	}
	deliver(t, st, user, []byte("Subject: kept\n\n"))
	m := open(t, st, user) // a canceled Open must not have left the lock held
	defer closeMD(t, m)
	if n := len(m.Messages()); n != 1 {
		t.Errorf("after canceled deliveries: %d messages, want 1", n)
	}
	if rc, err := m.Open(canceled, 0); !errors.Is(err, context.Canceled) {
		if err == nil {
			rc.Close()
		}
		t.Errorf("Maildrop.Open with a canceled context = %v, want context.Canceled", err)
	}
}
