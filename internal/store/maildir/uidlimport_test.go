package maildir

import (
	"context"
	"io"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/postoffice-mail/postoffice/internal/store"
)

// uidlsOf opens user's maildrop and returns its UIDLs in order.
func importedUIDLs(t *testing.T, s *Store, user string) []string {
	t.Helper()
	md, err := s.Open(context.Background(), user)
	if err != nil {
		t.Fatal(err)
	}
	defer md.Close()
	var out []string
	for _, m := range md.Messages() {
		out = append(out, m.UID)
	}
	return out
}

// assignBySubject returns an assigner that gives the message whose
// Subject is k the UIDL want[k], in the order of order.
func assignBySubject(t *testing.T, order []string, want map[string]string) UIDLAssigner {
	return func(msgs []store.Message, open func(context.Context, int) (io.ReadCloser, error)) ([]int, []string, error) {
		subj := map[string]int{}
		for i := range msgs {
			r, err := open(context.Background(), i)
			if err != nil {
				return nil, nil, err
			}
			b, _ := io.ReadAll(r)
			r.Close()
			_, rest, _ := strings.Cut(string(b), "Subject: ")
			s, _, _ := strings.Cut(rest, "\n")
			subj[s] = i
		}
		var idx []int
		var uidls []string
		for _, k := range order {
			if i, ok := subj[k]; ok {
				idx = append(idx, i)
				uidls = append(uidls, want[k])
			}
		}
		return idx, uidls, nil
	}
}

func deliverSubjects(t *testing.T, s *Store, user string, subjects ...string) {
	t.Helper()
	for _, k := range subjects {
		if err := s.Deliver(context.Background(), user, strings.NewReader("Subject: "+k+"\n\nbody "+k+"\n")); err != nil {
			t.Fatal(err)
		}
	}
}

// TestImportUIDLs: imported UIDLs are served in the old server's order;
// a second run changes nothing; unmatched messages the index never listed
// keep the UIDL the store gives by itself.
func TestImportUIDLs(t *testing.T) {
	ctx := context.Background()
	s, _ := newTestStore(t, true)
	deliverSubjects(t, s, "u@example.org", "a", "b", "c")
	want := map[string]string{"a": "OLD-A", "b": "OLD-B"}
	// Dry run first: nothing recorded.
	if _, err := s.ImportUIDLs(ctx, "u@example.org", false, true, assignBySubject(t, []string{"b", "a"}, want)); err != nil {
		t.Fatal(err)
	}
	before := importedUIDLs(t, s, "u@example.org") // records the store's own UIDLs
	if len(before) != 3 || before[0] == "OLD-A" || before[0] == "OLD-B" {
		t.Fatalf("after a dry run: %q", before)
	}

	s2, _ := newTestStore(t, true)
	deliverSubjects(t, s2, "u@example.org", "a", "b", "c")
	refused, err := s2.ImportUIDLs(ctx, "u@example.org", false, false, assignBySubject(t, []string{"b", "a"}, want))
	if err != nil || len(refused) != 0 {
		t.Fatalf("ImportUIDLs = %v, %v", refused, err)
	}
	got := importedUIDLs(t, s2, "u@example.org")
	if len(got) != 3 || got[0] != "OLD-B" || got[1] != "OLD-A" || got[2] != deriveUIDLOf(t, s2, "u@example.org", 2) {
		t.Fatalf("UIDLs after import = %q", got)
	}
	// Idempotent.
	refused, err = s2.ImportUIDLs(ctx, "u@example.org", false, false, assignBySubject(t, []string{"b", "a"}, want))
	if err != nil || len(refused) != 0 {
		t.Fatalf("second ImportUIDLs = %v, %v", refused, err)
	}
	if diff := cmp.Diff(got, importedUIDLs(t, s2, "u@example.org")); diff != "" {
		t.Errorf("second run changed UIDLs (-first +second):\n%s", diff)
	}

	// c has been listed now (by uidlsOf): a client may have seen its
	// UIDL, so it is kept unless forced.
	want["c"] = "OLD-C"
	refused, err = s2.ImportUIDLs(ctx, "u@example.org", false, false, assignBySubject(t, []string{"b", "a", "c"}, want))
	if err != nil || len(refused) != 1 {
		t.Fatalf("ImportUIDLs over a recorded UIDL = %v, %v; want one refusal", refused, err)
	}
	if u := importedUIDLs(t, s2, "u@example.org")[2]; u == "OLD-C" {
		t.Fatalf("a recorded UIDL was changed without force")
	}
	if _, err := s2.ImportUIDLs(ctx, "u@example.org", true, false, assignBySubject(t, []string{"b", "a", "c"}, want)); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"OLD-B", "OLD-A", "OLD-C"}, importedUIDLs(t, s2, "u@example.org")); diff != "" {
		t.Errorf("after --force (-want +got):\n%s", diff)
	}
}

// deriveUIDLOf returns the UIDL the store derives for message i's key.
func deriveUIDLOf(t *testing.T, s *Store, user string, i int) string {
	t.Helper()
	dir := mustPath(t, s, user)
	x, err := readIndex(dir + "/" + indexName)
	if err != nil || i >= len(x) {
		t.Fatalf("readIndex: %v (%d entries)", err, len(x))
	}
	return deriveUIDL(x[i].key)
}

// TestImportUIDLsRejects: bad and duplicate UIDLs record nothing; a held
// maildrop is in use.
func TestImportUIDLsRejects(t *testing.T) {
	ctx := context.Background()
	s, _ := newTestStore(t, true)
	deliverSubjects(t, s, "u@example.org", "a", "b")
	for _, want := range []map[string]string{
		{"a": "has space", "b": "x"},
		{"a": "same", "b": "same"},
		{"a": strings.Repeat("x", 71), "b": "y"},
	} {
		if _, err := s.ImportUIDLs(ctx, "u@example.org", false, false, assignBySubject(t, []string{"a", "b"}, want)); err == nil {
			t.Errorf("ImportUIDLs(%q) = nil error", want)
		}
	}
	md, err := s.Open(ctx, "u@example.org")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range md.Messages() {
		if len(m.UID) != 20 {
			t.Errorf("a rejected import recorded %q", m.UID)
		}
	}
	_, err = s.ImportUIDLs(ctx, "u@example.org", false, false, assignBySubject(t, nil, nil))
	if err != store.ErrInUse {
		t.Errorf("ImportUIDLs while a session holds the maildrop = %v, want ErrInUse", err)
	}
	md.Close()
}
