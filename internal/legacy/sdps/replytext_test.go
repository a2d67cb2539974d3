package sdps

import (
	"testing"

	"github.com/postoffice-mail/postoffice/internal/replytext"
)

// TestReplyTexts walks every -ERR text this package can send (every
// "-ERR ..." string and every Error Text in its source) and fails on one
// that does not say both what went wrong and what to do about it
// (replytext.Check).
func TestReplyTexts(t *testing.T) {
	found, err := replytext.Walk(".")
	if err != nil {
		t.Fatal(err)
	}
	if len(found) < 1 {
		t.Fatalf("Walk found %d texts, want at least 1; the walker is broken", len(found))
	}
	for _, f := range found {
		if f.Dynamic {
			t.Errorf("%s: Error.Text is not a constant: the walk cannot check it", f.Pos)
			continue
		}
		if err := replytext.Check(f.Text); err != nil {
			t.Errorf("%s: %v", f.Pos, err)
		}
	}
}
