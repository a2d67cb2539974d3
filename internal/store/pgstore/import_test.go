package pgstore

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"testing"

	"github.com/postoffice-mail/postoffice/internal/store"
)

// TestImportKeepsCounterAbove imports UIDLs of this store's own form and
// this maildrop's UIDVALIDITY, ahead of the counter: later deliveries must
// get other UIDLs, not fail on the unique key or reuse one.
func TestImportKeepsCounterAbove(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, _ := migrated(t, Options{})
	deliver(t, s, "u", "first\r\n")
	md := mustOpen(t, s, "u")
	first := md.Messages()[0].UID // UID 1 and the UIDVALIDITY
	md.Close()
	validity := first[8:]
	var msgs []store.ImportMessage
	for _, u := range []int{3, 5} {
		msgs = append(msgs, store.ImportMessage{
			UID: fmt.Sprintf("%08x%s", u, validity),
			Open: func(context.Context) (io.ReadCloser, error) {
				return io.NopCloser(strings.NewReader("imported\r\n")), nil
			},
		})
	}
	// And one of another maildrop's UIDVALIDITY, which cannot collide.
	msgs = append(msgs, store.ImportMessage{
		UID:  "000000ff00000001",
		Open: func(context.Context) (io.ReadCloser, error) { return io.NopCloser(strings.NewReader("other\r\n")), nil },
	})
	if err := s.Import(ctx, "u", msgs); err != nil {
		t.Fatal(err)
	}
	for i := range 6 {
		if err := s.Deliver(ctx, "u", strings.NewReader("later "+strconv.Itoa(i)+"\r\n")); err != nil {
			t.Fatalf("Deliver %d after the import: %v", i, err)
		}
	}
	md = mustOpen(t, s, "u")
	defer md.Close()
	seen := map[string]bool{}
	for _, m := range md.Messages() {
		if seen[m.UID] {
			t.Errorf("UIDL %s twice", m.UID)
		}
		seen[m.UID] = true
	}
	if len(seen) != 10 {
		t.Errorf("%d messages, want 10", len(seen))
	}
	// The deliveries after the import come after UID 5.
	last := md.Messages()[len(md.Messages())-1].UID
	if u, _ := strconv.ParseInt(last[:8], 16, 64); u <= 5+6 {
		t.Errorf("last delivery's UIDL %s: UID %d, want above 11", last, u)
	}
}
