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

// TestWireRead: a message in wire form, once Wire has been asked, reads as
// it goes on the wire: a "." before each line that starts with one, the
// first line included, in reads of any size; an empty read returns at
// once, even at a stuffing point.
func TestWireRead(t *testing.T) {
	t.Parallel()
	s, _ := newTestStore(t, true)
	const user = "wire"
	const body = ".first\r\n\r\n..\r\nplain\r\n.last\r\n"
	const want = "..first\r\n\r\n...\r\nplain\r\n..last\r\n"
	if err := s.Deliver(context.Background(), user, strings.NewReader(body)); err != nil {
		t.Fatal(err)
	}
	for _, chunk := range []int{1, 2, 3, 7, 64} {
		m := openMD(t, s, user)
		r, err := m.Open(context.Background(), 0)
		if err != nil {
			t.Fatal(err)
		}
		size, ok := r.(interface{ Wire() (int64, bool) }).Wire()
		if !ok || size != int64(len(body)) {
			t.Fatalf("Wire() = %d, %v; want %d, true", size, ok, len(body))
		}
		if n, err := r.Read(nil); n != 0 || err != nil {
			t.Fatalf("empty Read = %d, %v", n, err)
		}
		var got []byte
		buf := make([]byte, chunk)
		for range 1000 {
			n, err := r.Read(buf)
			got = append(got, buf[:n]...)
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		if string(got) != want {
			t.Errorf("reads of %d: %q, want %q", chunk, got, want)
		}
		r.Close()
		m.Close()
	}
}
