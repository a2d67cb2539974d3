//go:build linux

package maildir

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestMessageReadStopsAtOpenSize: a message is read to the size fstat gave
// when it was opened, and the Read that finds the end needs no read(2). A
// file written to in place after the open (which no Maildir agent does:
// messages are renamed into place) is read as it was at the open.
func TestMessageReadStopsAtOpenSize(t *testing.T) {
	t.Parallel()
	s, _ := newTestStore(t, true)
	const user = "grow"
	const body = "Subject: grow\n\nfirst\n"
	if err := s.Deliver(context.Background(), user, strings.NewReader(body)); err != nil {
		t.Fatal(err)
	}
	m := openMD(t, s, user)
	defer m.Close()
	r, err := m.Open(context.Background(), 0)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	names := listDir(t, filepath.Join(mustPath(t, s, user), "new"))
	if len(names) != 1 {
		t.Fatalf("new/ = %q, want one message", names)
	}
	f, err := os.OpenFile(filepath.Join(mustPath(t, s, user), "new", names[0]), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString("appended after the open\n"); err != nil {
		t.Fatal(err)
	}
	f.Close()
	got, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("reading the message: %v", err)
	}
	if string(got) != body {
		t.Errorf("message read = %q, want %q (its contents at the open)", got, body)
	}
}
