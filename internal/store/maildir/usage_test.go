package maildir

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Usage counts new/ and cur/, takes sizes from S= in the name (not from
// the info part after ':'), else from the file, and sees no maildrop as
// empty.
func TestUsage(t *testing.T) {
	t.Parallel()
	s, _ := newTestStore(t, true)
	ctx := context.Background()
	if n, m, err := s.Usage(ctx, "nobody@example.org"); n != 0 || m != 0 || err != nil {
		t.Fatalf("Usage(no maildrop) = %d, %d, %v; want 0, 0, nil", n, m, err)
	}
	if err := s.Deliver(ctx, "u@example.org", strings.NewReader("Subject: a\n\n12345\n")); err != nil {
		t.Fatal(err)
	}
	dir, err := s.Path("u@example.org")
	if err != nil {
		t.Fatal(err)
	}
	// A Postfix name (no S=) and one whose only "S=" is in the info part.
	for name, body := range map[string]string{
		"new/1700000000.V801I1M1.postfix": "0123456789",
		"cur/1700000001.M2P3.host:2,S=5":  "abc",
		"cur/.hidden":                     "ignored",
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	octets, msgs, err := s.Usage(ctx, "u@example.org")
	if want := int64(len("Subject: a\n\n12345\n") + 10 + 3); octets != want || msgs != 3 || err != nil {
		t.Errorf("Usage = %d, %d, %v; want %d, 3, nil", octets, msgs, err, want)
	}
	if _, _, err := s.Usage(ctx, "../etc"); err == nil {
		t.Error("Usage(../etc) succeeded; want the user name refused")
	}
}
