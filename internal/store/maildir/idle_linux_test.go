//go:build linux

package maildir

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/postoffice-mail/postoffice/internal/store"
)

// openUnder counts this process's descriptors open on dir or below it.
func openUnder(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("no /proc/self/fd: %v", err)
	}
	var out []string
	for _, e := range es {
		l, err := os.Readlink(filepath.Join("/proc/self/fd", e.Name()))
		if err == nil && (l == dir || strings.HasPrefix(l, dir+"/")) {
			out = append(out, l)
		}
	}
	return out
}

// TestIdleReleasesDescriptors: an idle maildrop keeps only its lock file
// open; its next calls reopen the Maildir and work as before (a message
// read, the journal appended, a commit).
func TestIdleReleasesDescriptors(t *testing.T) {
	s, _ := newTestStore(t, true)
	const user = "idle"
	for _, b := range []string{"Subject: a\r\n\r\none\r\n", "Subject: b\r\n\r\ntwo\r\n"} {
		if err := s.Deliver(context.Background(), user, strings.NewReader(b)); err != nil {
			t.Fatal(err)
		}
	}
	dir := mustPath(t, s, user)
	m := openMD(t, s, user)
	defer m.Close()
	if got := readMsg(t, m, 0); got != "Subject: a\r\n\r\none\r\n" {
		t.Fatalf("message 1 = %q", got)
	}
	sf := m.(store.StateFiles)
	if err := sf.AppendState("history", []byte("one\n")); err != nil {
		t.Fatal(err)
	}
	if n := len(openUnder(t, dir)); n < 3 {
		t.Fatalf("before Idle, %d descriptors under the Maildir; want the lock, the Maildir, new/ and the journal", n)
	}
	m.(store.Idler).Idle()
	if got := openUnder(t, dir); len(got) != 1 || filepath.Base(got[0]) != lockName {
		t.Fatalf("after Idle, open under the Maildir: %q; want only %s", got, lockName)
	}
	if got := readMsg(t, m, 1); got != "Subject: b\r\n\r\ntwo\r\n" {
		t.Fatalf("message 2 after Idle = %q", got)
	}
	if err := sf.AppendState("history", []byte("two\n")); err != nil {
		t.Fatal(err)
	}
	if b, err := sf.ReadState("history"); err != nil || string(b) != "one\ntwo\n" {
		t.Fatalf("journal after Idle = %q, %v", b, err)
	}
	m.(store.Idler).Idle()
	if err := m.Commit(context.Background(), []int{0}); err != nil {
		t.Fatalf("Commit after Idle: %v", err)
	}
	m.Close()
	m2 := openMD(t, s, user)
	defer m2.Close()
	if n := len(m2.Messages()); n != 1 {
		t.Errorf("%d messages after the commit, want 1", n)
	}
}

// TestIdleMaildirReplaced: a Maildir renamed away while its session was
// idle, and another directory put in its place, stops the session: its
// calls fail and it deletes nothing, in either directory.
func TestIdleMaildirReplaced(t *testing.T) {
	s, _ := newTestStore(t, true)
	const user = "swap"
	if err := s.Deliver(context.Background(), user, strings.NewReader("Subject: a\r\n\r\none\r\n")); err != nil {
		t.Fatal(err)
	}
	dir := mustPath(t, s, user)
	m := openMD(t, s, user)
	defer m.Close()
	m.(store.Idler).Idle()
	if err := os.Rename(dir, dir+".old"); err != nil {
		t.Fatal(err)
	}
	for _, sub := range []string{"", "/cur", "/new", "/tmp"} {
		if err := os.Mkdir(dir+sub, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := m.Open(context.Background(), 0); !errors.Is(err, errReplaced) {
		t.Errorf("Open after the swap: %v, want %v", err, errReplaced)
	}
	if err := m.Commit(context.Background(), []int{0}); !errors.Is(err, errReplaced) {
		t.Errorf("Commit after the swap: %v, want %v", err, errReplaced)
	}
	names, err := os.ReadDir(dir + ".old/new")
	if err != nil || len(names) != 1 {
		t.Errorf("the old Maildir's new/ = %v, %v; want the message still there", names, err)
	}
}
