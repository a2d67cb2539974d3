//go:build linux

package mbox

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"

	"github.com/postoffice-mail/postoffice/internal/store"
	"github.com/postoffice-mail/postoffice/internal/store/storetest"
)

func newTestStore(t testing.TB, opts Options) *Store {
	t.Helper()
	if opts.Location == "" {
		opts.Location = "mbox:" + t.TempDir() + "/%u"
	}
	s, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestConformance(t *testing.T) {
	storetest.RunWith(t, storetest.Config{EndsInNewline: true}, func(t *testing.T) store.Store {
		return newTestStore(t, Options{NoSync: true})
	})
}

func TestConformanceMboxRDIndexDir(t *testing.T) {
	storetest.RunWith(t, storetest.Config{EndsInNewline: true}, func(t *testing.T) store.Store {
		dir := t.TempDir()
		os.Mkdir(dir+"/spool", 0o755) // the administrator's part of the path
		return newTestStore(t, Options{Location: "mbox:" + dir + "/spool/%u:INDEX=" + dir + "/index/%u", Format: MboxRD, NoSync: true})
	})
}

func openT(t testing.TB, s *Store, user string) store.Maildrop {
	t.Helper()
	m, err := s.Open(context.Background(), user)
	if err != nil {
		t.Fatalf("Open(%q): %v", user, err)
	}
	return m
}

func read(t testing.TB, m store.Maildrop, i int) string {
	t.Helper()
	rc, err := m.Open(context.Background(), i)
	if err != nil {
		t.Fatalf("Maildrop.Open(%d): %v", i, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func readAll(t testing.TB, m store.Maildrop) []string {
	t.Helper()
	var out []string
	for i := range m.Messages() {
		out = append(out, read(t, m, i))
	}
	return out
}

// writeMbox puts a hand-written mbox in place for user.
func writeMbox(t testing.TB, s *Store, user, content string) string {
	t.Helper()
	p, err := s.Path(user)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestFormats reads files written in each quoting style, and Content-Length
// bodies, and checks the bytes RETR would get.
func TestFormats(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		format Format
		file   string
		want   []string
	}{
		{"mboxo", MboxO,
			"From a@b  Mon Jan  1 00:00:00 2024\nSubject: 1\n\n>From here\n>>From there\nFrom: x\n\nFrom b@c  Mon Jan  1 00:00:00 2024\nSubject: 2\n\nbody\n\n",
			[]string{"Subject: 1\n\nFrom here\n>>From there\nFrom: x\n", "Subject: 2\n\nbody\n"}},
		{"mboxrd", MboxRD,
			"From a@b  Mon Jan  1 00:00:00 2024\nSubject: 1\n\n>From here\n>>From there\n\nFrom b@c  Mon Jan  1 00:00:00 2024\nSubject: 2\n\n\n\n",
			[]string{"Subject: 1\n\nFrom here\n>From there\n", "Subject: 2\n\n\n"}},
		{"content-length", MboxO,
			"From a@b  Mon Jan  1 00:00:00 2024\nContent-Length: 23\nSubject: 1\n\nline\n\nFrom unquoted\n>x\n\nFrom b@c  Mon Jan  1 00:00:00 2024\nSubject: 2\n\nb\n\n",
			[]string{"Content-Length: 23\nSubject: 1\n\nline\n\nFrom unquoted\n>x\n", "Subject: 2\n\nb\n"}},
		{"content-length-wrong", MboxO,
			"From a@b  Mon Jan  1 00:00:00 2024\nContent-Length: 3\nSubject: 1\n\nline\n\nFrom b@c  Mon Jan  1 00:00:00 2024\nSubject: 2\n\nb\n\n",
			[]string{"Content-Length: 3\nSubject: 1\n\nline\n", "Subject: 2\n\nb\n"}},
		{"content-length-at-eof", MboxO,
			"From a@b  Mon Jan  1 00:00:00 2024\nContent-Length: 13\n\nFrom x\n\nmore\n",
			[]string{"Content-Length: 13\n\nFrom x\n\nmore\n"}},
		{"no-final-blank", MboxO,
			"From a@b  Mon Jan  1 00:00:00 2024\nSubject: 1\n\nbody\n",
			[]string{"Subject: 1\n\nbody\n"}},
		{"crlf", MboxO,
			"From a@b  Mon Jan  1 00:00:00 2024\r\nSubject: 1\r\n\r\nbody\r\n\nFrom b@c  Mon Jan  1 00:00:00 2024\nX: y\r\n\n",
			[]string{"Subject: 1\r\n\r\nbody\r\n", "X: y\r\n"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := newTestStore(t, Options{Format: tc.format, NoSync: true})
			writeMbox(t, s, "u", tc.file)
			m := openT(t, s, "u")
			defer m.Close()
			got := readAll(t, m)
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("messages (-want +got):\n%s", diff)
			}
			for i, w := range tc.want {
				if n := int64(len(strings.ReplaceAll(strings.ReplaceAll(w, "\r\n", "\n"), "\n", "\r\n"))); m.Messages()[i].Size != n {
					t.Errorf("message %d: Size = %d, want %d", i, m.Messages()[i].Size, n)
				}
			}
		})
	}
}

// TestNotMbox: a file that does not start with a From_ line is an error,
// not a crash and not an empty maildrop that a Commit could overwrite.
func TestNotMbox(t *testing.T) {
	t.Parallel()
	s := newTestStore(t, Options{NoSync: true})
	writeMbox(t, s, "u", "Subject: no From_ line\n\nbody\n")
	if m, err := s.Open(context.Background(), "u"); err == nil {
		m.Close()
		t.Fatal("Open of a file that is not an mbox succeeded")
	}
}

// TestDeliverQuotesLikePostfix: Deliver writes mboxo quoting, a From_ line
// with the Return-Path sender, and an empty line after each message.
func TestDeliverQuotesLikePostfix(t *testing.T) {
	t.Parallel()
	s := newTestStore(t, Options{NoSync: true})
	body := "Return-Path: <s@example.net>\nSubject: q\n\nFrom me\n>From you\nFrom\nFro\n"
	if err := s.Deliver(context.Background(), "u", strings.NewReader(body)); err != nil {
		t.Fatal(err)
	}
	p, _ := s.Path("u")
	raw, _ := os.ReadFile(p)
	first, rest, _ := strings.Cut(string(raw), "\n")
	if !strings.HasPrefix(first, "From s@example.net  ") {
		t.Errorf("From_ line %q, want it to name the Return-Path sender", first)
	}
	if want := "Return-Path: <s@example.net>\nSubject: q\n\n>From me\n>From you\nFrom\nFro\n\n"; rest != want {
		t.Errorf("stored %q, want %q", rest, want)
	}
	m := openT(t, s, "u")
	defer m.Close()
	// mboxo cannot tell the quoted ">From you" from one that was sent so.
	if got, want := read(t, m, 0), strings.Replace(body, ">From you", "From you", 1); got != want {
		t.Errorf("RETR = %q, want %q", got, want)
	}
}

// TestXUIDL: valid, unique X-UIDL headers are kept when the index is made;
// an invalid or duplicated one is replaced; they survive a commit.
func TestXUIDL(t *testing.T) {
	t.Parallel()
	s := newTestStore(t, Options{NoSync: true})
	writeMbox(t, s, "u", "From a  Mon Jan  1 00:00:00 2024\nX-UIDL: 0123abc\n\n1\n\n"+
		"From a  Mon Jan  1 00:00:00 2024\nX-UIDL: dup\n\n2\n\n"+
		"From a  Mon Jan  1 00:00:00 2024\nX-UIDL: dup\n\n3\n\n"+
		"From a  Mon Jan  1 00:00:00 2024\nX-UIDL: bad uidl\n\n4\n\n")
	m := openT(t, s, "u")
	msgs := m.Messages()
	if msgs[0].UID != "0123abc" {
		t.Errorf("UID 0 = %q, want the X-UIDL 0123abc", msgs[0].UID)
	}
	for i := 1; i < 4; i++ {
		if strings.Contains(msgs[i].UID, "dup") || strings.Contains(msgs[i].UID, "bad") {
			t.Errorf("UID %d = %q, want a new one", i, msgs[i].UID)
		}
	}
	if err := m.Commit(context.Background(), []int{1}); err != nil {
		t.Fatal(err)
	}
	m.Close()
	// A later delivery's X-UIDL is not honoured (a sender wrote it).
	if err := s.Deliver(context.Background(), "u", strings.NewReader("X-UIDL: 0123abc\n\nforged\n")); err != nil {
		t.Fatal(err)
	}
	m = openT(t, s, "u")
	defer m.Close()
	got := m.Messages()
	want := []store.Message{msgs[0], msgs[2], msgs[3]}
	if diff := cmp.Diff(want, got[:3]); diff != "" {
		t.Errorf("after commit (-want +got):\n%s", diff)
	}
	if got[3].UID == "0123abc" {
		t.Errorf("delivered message took the UIDL of its forged X-UIDL header")
	}
}

// TestForeignRewrite: when another program (mutt) rewrites the mbox during
// a session, Open of a moved message and Commit fail, and nothing is
// deleted; UIDLs survive the rewrite (matched by From_ line and header).
func TestForeignRewrite(t *testing.T) {
	t.Parallel()
	s := newTestStore(t, Options{NoSync: true})
	for i := range 4 {
		if err := s.Deliver(context.Background(), "u", strings.NewReader("Subject: "+string(rune('a'+i))+"\n\nbody\n")); err != nil {
			t.Fatal(err)
		}
	}
	m := openT(t, s, "u")
	before := m.Messages()
	p, _ := s.Path("u")
	raw, _ := os.ReadFile(p)
	// mutt deletes the first message, rewriting the file in place.
	i := bytes.Index(raw[1:], []byte("\nFrom ")) + 2
	f, _ := os.OpenFile(p, os.O_RDWR, 0)
	f.WriteAt(raw[i:], 0)
	f.Truncate(int64(len(raw) - i))
	f.Close()
	if _, err := m.Open(context.Background(), 2); !errors.Is(err, store.ErrNoMessage) {
		t.Errorf("Open of a moved message = %v, want store.ErrNoMessage", err)
	}
	if err := m.Commit(context.Background(), []int{3}); err == nil {
		t.Errorf("Commit after a foreign rewrite succeeded, want an error")
	}
	m.Close()
	m = openT(t, s, "u")
	defer m.Close()
	if diff := cmp.Diff(before[1:], m.Messages()); diff != "" {
		t.Errorf("after a foreign rewrite (-want +got):\n%s", diff)
	}
}

// TestReplaceDetected: a file replaced by rename during the session makes
// Commit fail without deleting anything.
func TestReplaceDetected(t *testing.T) {
	t.Parallel()
	s := newTestStore(t, Options{NoSync: true})
	s.Deliver(context.Background(), "u", strings.NewReader("Subject: a\n\n"))
	m := openT(t, s, "u")
	p, _ := s.Path("u")
	raw, _ := os.ReadFile(p)
	os.WriteFile(p+".new", raw, 0o600)
	os.Rename(p+".new", p)
	if err := m.Commit(context.Background(), []int{0}); err == nil {
		t.Errorf("Commit on a replaced file succeeded")
	}
	m.Close()
	m = openT(t, s, "u")
	defer m.Close()
	if n := len(m.Messages()); n != 1 {
		t.Errorf("%d messages, want 1", n)
	}
}

// TestDeliveryDuringSessionNotBlocked: a session does not hold the mbox
// locks between Open and Commit, so the MTA can deliver meanwhile.
func TestDeliveryDuringSessionNotBlocked(t *testing.T) {
	t.Parallel()
	s := newTestStore(t, Options{NoSync: true})
	s.Deliver(context.Background(), "u", strings.NewReader("Subject: a\n\n"))
	m := openT(t, s, "u")
	defer m.Close()
	p, _ := s.Path("u")
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	// A classic fcntl lock, as Postfix's local(8) takes it.
	lk := syscallFlock()
	if err := fcntlSetLk(f, lk); err != nil {
		t.Fatalf("fcntl lock by another process's style during a session: %v", err)
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(p), "u.lock")); err == nil {
		t.Errorf("dotlock left in place during the session")
	}
}

// TestStaleDotlock: a dotlock naming a dead process is broken at once.
func TestStaleDotlock(t *testing.T) {
	t.Parallel()
	s := newTestStore(t, Options{NoSync: true})
	p, _ := s.Path("u")
	host, _ := os.Hostname()
	// pid 0x7ffffffe is far above pid_max on Linux: no such process.
	os.WriteFile(p+".lock", []byte("2147483646 "+host+"\n"), 0o644)
	if err := s.Deliver(context.Background(), "u", strings.NewReader("Subject: a\n\n")); err != nil {
		t.Fatalf("Deliver with a dead process's dotlock: %v", err)
	}
}

func syscallFlock() *unix.Flock_t { return &unix.Flock_t{Type: unix.F_WRLCK} }

// fcntlSetLk takes a classic process-wide fcntl lock without waiting: it
// conflicts with the open file description locks the store takes.
func fcntlSetLk(f *os.File, lk *unix.Flock_t) error {
	return unix.FcntlFlock(f.Fd(), unix.F_SETLK, lk)
}

// TestReplayKeepsLaterMail: a commit that dies after its journal is durable
// (at each point of the rewrite) is finished by the next Open, and mail
// another program appended in between is kept.
func TestReplayKeepsLaterMail(t *testing.T) {
	t.Parallel()
	for _, point := range []string{"journaled", "written", "truncated"} {
		t.Run(point, func(t *testing.T) {
			t.Parallel()
			s := newTestStore(t, Options{NoSync: true})
			for i := range 5 {
				s.Deliver(context.Background(), "u", strings.NewReader(writerBody(i)))
			}
			m := openT(t, s, "u")
			s.crashHook = func(p string) {
				if p == point {
					panic("crash")
				}
			}
			func() {
				defer func() { recover() }()
				m.Commit(context.Background(), []int{1, 3})
			}()
			m.Close()
			s.crashHook = nil
			p, _ := s.Path("u")
			if err := postfixStyleAppend(p, writerBody(9)); err != nil {
				t.Fatal(err)
			}
			m = openT(t, s, "u")
			defer m.Close()
			want := []string{writerBody(0), writerBody(2), writerBody(4), writerBody(9)}
			if diff := cmp.Diff(want, readAll(t, m)); diff != "" {
				t.Errorf("after replay (-want +got):\n%s", diff)
			}
			if _, err := os.Stat(dotName(p, ".postoffice-journal")); err == nil {
				t.Errorf("journal left after replay")
			}
		})
	}
}
