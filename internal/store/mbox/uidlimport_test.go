//go:build linux

package mbox

import (
	"context"
	"io"
	"os"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/postoffice-mail/postoffice/internal/store"
)

// TestImportUIDLs: the mbox store records UIDLs from the old server the
// way the Maildir store does. Without an index every message takes its
// imported UIDL; a second run changes nothing; once postoffice recorded
// a UIDL (a client may have seen it) another one is refused unless
// forced; a dry run and a duplicate record nothing.
func TestImportUIDLs(t *testing.T) {
	t.Parallel()
	s := newTestStore(t, Options{NoSync: true})
	p, err := s.Path("u")
	if err != nil {
		t.Fatal(err)
	}
	const box = "From a@example.org  Mon Dec  7 10:00:00 2026\nMessage-ID: <1@x>\n\none\n\n" +
		"From a@example.org  Mon Dec  7 10:00:01 2026\nMessage-ID: <2@x>\n\ntwo\n"
	if err := os.WriteFile(p, []byte(box), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	imp := func(force, dryRun bool, uidls ...string) ([]int, error) {
		return s.ImportUIDLs(ctx, "u", force, dryRun, func(msgs []store.Message, _ func(context.Context, int) (io.ReadCloser, error)) ([]int, []string, error) {
			return []int{0, 1}[:len(uidls)], uidls, nil
		})
	}
	listed := func() []string {
		t.Helper()
		m, err := s.Open(ctx, "u")
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close()
		var u []string
		for _, msg := range m.Messages() {
			u = append(u, msg.UID)
		}
		return u
	}
	if refused, err := imp(false, true, "d1", "d2"); err != nil || len(refused) != 0 {
		t.Fatalf("dry run: refused %v, %v", refused, err)
	}
	// The dry run opened the mbox, which recorded postoffice's own UIDLs:
	// from here on they may have been seen, as after any POP3 session.
	first := listed()
	if cmp.Equal(first, []string{"d1", "d2"}) {
		t.Fatal("a dry run recorded the UIDLs")
	}
	if refused, err := imp(false, false, "old-1", "old-2"); err != nil || !cmp.Equal(refused, []int{0, 1}) {
		t.Fatalf("import over recorded UIDLs without force: refused %v, %v; want [0 1]", refused, err)
	}
	if got := listed(); !cmp.Equal(got, first) {
		t.Errorf("UIDLs after a refused import: %v, want %v", got, first)
	}
	if _, err := imp(true, false, "old-1", "old-1"); err == nil {
		t.Error("an import giving two messages one UIDL succeeded")
	}
	if refused, err := imp(true, false, "old-1", "old-2"); err != nil || len(refused) != 0 {
		t.Fatalf("forced import: refused %v, %v", refused, err)
	}
	if got, want := listed(), []string{"old-1", "old-2"}; !cmp.Equal(got, want) {
		t.Errorf("UIDLs after the import: %v, want %v", got, want)
	}
	if refused, err := imp(false, false, "old-1", "old-2"); err != nil || len(refused) != 0 {
		t.Errorf("second run: refused %v, %v; want nothing to do", refused, err)
	}
}

// TestImportUIDLsFreshMbox: an mbox postoffice never opened has no
// recorded UIDL, so an import needs no force.
func TestImportUIDLsFreshMbox(t *testing.T) {
	t.Parallel()
	s := newTestStore(t, Options{NoSync: true})
	p, err := s.Path("u")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte("From a@example.org  Mon Dec  7 10:00:00 2026\nMessage-ID: <1@x>\n\none\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	refused, err := s.ImportUIDLs(context.Background(), "u", false, false, func(msgs []store.Message, _ func(context.Context, int) (io.ReadCloser, error)) ([]int, []string, error) {
		return []int{0}, []string{"0000000165a1b2c3"}, nil
	})
	if err != nil || len(refused) != 0 {
		t.Fatalf("refused %v, %v", refused, err)
	}
	m, err := s.Open(context.Background(), "u")
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if got := m.Messages(); len(got) != 1 || got[0].UID != "0000000165a1b2c3" {
		t.Errorf("messages %+v, want the imported UIDL", got)
	}
}
