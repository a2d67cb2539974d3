package pop3server_test

import (
	"testing"

	"github.com/postoffice-mail/postoffice/internal/replytext"
)

// TestReplyTexts walks every -ERR text the engine and the reference
// backend can send (every "-ERR ..." string and every Error Text in their
// source) and fails on one that does not say both what went wrong and
// what to do about it (replytext.Check).
func TestReplyTexts(t *testing.T) {
	for _, dir := range []string{".", "memserver"} {
		found, err := replytext.Walk(dir)
		if err != nil {
			t.Fatal(err)
		}
		if len(found) < 2 {
			t.Fatalf("Walk(%q) found %d texts; the walker is broken", dir, len(found))
		}
		for _, f := range found {
			if f.Dynamic {
				t.Errorf("%s/%s: Error.Text is not a constant: the walk cannot check it", dir, f.Pos)
				continue
			}
			if err := replytext.Check(f.Text); err != nil {
				t.Errorf("%s/%s: %v", dir, f.Pos, err)
			}
		}
	}
}
