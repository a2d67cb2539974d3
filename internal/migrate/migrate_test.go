package migrate

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/postoffice-mail/postoffice/internal/store"
	"github.com/postoffice-mail/postoffice/internal/store/maildir"
	"github.com/postoffice-mail/postoffice/internal/store/pgstore"
	"github.com/postoffice-mail/postoffice/internal/testutil/pgtest"
	"github.com/postoffice-mail/postoffice/internal/wire"
)

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) != "" {
		os.Exit(helperMain())
	}
	os.Exit(pgtest.Main(m))
}

func newMaildir(t testing.TB) (*maildir.Store, string) {
	t.Helper()
	dir := t.TempDir()
	s, err := maildir.New(maildir.Options{Location: filepath.Join(dir, "%u"), NoSync: true, Hostname: "test"})
	if err != nil {
		t.Fatal(err)
	}
	return s, dir
}

func newPG(t testing.TB) (*pgstore.Store, string) {
	t.Helper()
	dsn := pgtest.NewDB(t)
	s, err := pgstore.Open(context.Background(), pgstore.Options{DSN: dsn})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	if err := s.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	return s, dsn
}

// listing is what a POP3 client sees of a maildrop: UIDLs and sizes in
// order, with each message's bytes and arrival time (to the microsecond,
// what PostgreSQL keeps).
type listing struct {
	UID     string
	Size    int64
	Body    string
	Arrival time.Time
}

func list(t testing.TB, s store.Store, user string) []listing {
	t.Helper()
	ctx := context.Background()
	md, err := s.Open(ctx, user)
	if err != nil {
		t.Fatalf("Open(%q): %v", user, err)
	}
	defer md.Close()
	var out []listing
	for i, m := range md.Messages() {
		rc, err := md.Open(ctx, i)
		if err != nil {
			t.Fatal(err)
		}
		// In CRLF form, what RETR sends before stuffing: a store may
		// keep line ends as delivered (Maildir) or in that form (pgstore).
		b, err := io.ReadAll(wire.NewCRLFReader(rc, make([]byte, 4096)))
		rc.Close()
		if err != nil {
			t.Fatal(err)
		}
		if int64(len(b)) != m.Size {
			t.Errorf("user %s, message %s: %d octets in CRLF form, size %d", user, m.UID, len(b), m.Size)
		}
		l := listing{UID: m.UID, Size: m.Size, Body: string(b)}
		if at, ok := md.(store.ArrivalTimer); ok {
			tm, err := at.ArrivalTime(ctx, i)
			if err != nil {
				t.Fatal(err)
			}
			l.Arrival = tm.Truncate(time.Microsecond).UTC()
		}
		out = append(out, l)
	}
	return out
}

var bodies = []string{
	"Subject: one\r\n\r\nbody one\r\n",
	"Subject: two\n\nLF only\n",
	"Subject: three\r\n\r\nno final newline",
	"Subject: four\r\n\r\n.leading dot\r\n.\r\n",
	"",
	"Subject: big\r\n\r\n" + strings.Repeat("0123456789abcdef\r\n", 40000), // 720 KB: several pgstore chunks
}

func fill(t testing.TB, s store.Store, user string) {
	t.Helper()
	for _, b := range bodies {
		if err := s.Deliver(context.Background(), user, strings.NewReader(b)); err != nil {
			t.Fatal(err)
		}
	}
}

// roundTrip migrates users from src to dst and checks that dst lists what
// src listed, that src is unchanged, that Verify finds no difference, and
// that a second run copies nothing.
func roundTrip(t *testing.T, src, dst store.Store, users []string) {
	ctx := context.Background()
	before := map[string][]listing{}
	for _, u := range users {
		before[u] = list(t, src, u)
	}
	res, err := Run(ctx, Options{From: src, To: dst, Users: users, BatchSize: 4})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Failed) != 0 || res.Copied != len(users)*len(bodies) {
		t.Fatalf("Run = %+v, want %d copied and no failures", res, len(users)*len(bodies))
	}
	for _, u := range users {
		if diff := cmp.Diff(before[u], list(t, dst, u)); diff != "" {
			t.Errorf("user %s: destination differs from source (-source +destination):\n%s", u, diff)
		}
		if diff := cmp.Diff(before[u], list(t, src, u)); diff != "" {
			t.Errorf("user %s: source changed (-before +after):\n%s", u, diff)
		}
	}
	rep, err := Verify(ctx, src, dst, users)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Diffs) != 0 || rep.Messages != len(users)*len(bodies) {
		t.Errorf("Verify = %+v, want no differences over %d messages", rep, len(users)*len(bodies))
	}
	res, err = Run(ctx, Options{From: src, To: dst, Users: users})
	if err != nil || res.Copied != 0 || res.Skipped != len(users)*len(bodies) || len(res.Failed) != 0 {
		t.Errorf("second Run = %+v, %v; want nothing copied, everything skipped", res, err)
	}
}

func TestMaildirToPG(t *testing.T) {
	t.Parallel()
	src, _ := newMaildir(t)
	dst, _ := newPG(t)
	users := []string{"alice", "bob@example.org"}
	for _, u := range users {
		fill(t, src, u)
	}
	roundTrip(t, src, dst, users)
}

func TestPGToMaildir(t *testing.T) {
	t.Parallel()
	src, _ := newPG(t)
	dst, _ := newMaildir(t)
	users := []string{"alice", "bob@example.org"}
	for _, u := range users {
		fill(t, src, u)
	}
	roundTrip(t, src, dst, users)
}

// TestMaildirToPGAndBack: Maildir files with LF line ends (as an MTA
// writes them) copied to PostgreSQL, which keeps them in CRLF form, and
// from there to another Maildir, which gets the CRLF files: the same
// messages to a POP3 client, and Verify says so at each step, and from
// end to end.
func TestMaildirToPGAndBack(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	src, _ := newMaildir(t)
	pg, _ := newPG(t)
	back, _ := newMaildir(t)
	users := []string{"alice", "bob@example.org"}
	lf := []string{"Subject: lf\n\nline\n.dot\n..two\n.\n", "Subject: nofinal\n\nlast", "Subject: cr\n\nbare\rcr\r", ""}
	for _, u := range users {
		for _, b := range lf {
			if err := src.Deliver(ctx, u, strings.NewReader(b)); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, step := range []struct{ from, to store.Store }{{src, pg}, {pg, back}} {
		res, err := Run(ctx, Options{From: step.from, To: step.to, Users: users})
		if err != nil || len(res.Failed) != 0 || res.Copied != len(users)*len(lf) {
			t.Fatalf("Run = %+v, %v; want %d copied", res, err, len(users)*len(lf))
		}
	}
	for _, pair := range []struct {
		name     string
		from, to store.Store
	}{{"maildir to pg", src, pg}, {"pg to maildir", pg, back}, {"maildir to maildir", src, back}} {
		rep, err := Verify(ctx, pair.from, pair.to, users)
		if err != nil {
			t.Fatal(err)
		}
		if len(rep.Diffs) != 0 || rep.Messages != len(users)*len(lf) {
			t.Errorf("Verify %s = %+v, want no differences over %d messages", pair.name, rep, len(users)*len(lf))
		}
	}
}

// TestVerifyReports checks that Verify names each kind of difference.
func TestVerifyReports(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	src, _ := newMaildir(t)
	dst, _ := newPG(t)
	fill(t, src, "u")
	if _, err := Run(ctx, Options{From: src, To: dst, Users: []string{"u"}}); err != nil {
		t.Fatal(err)
	}
	// One more in the source, one more in the destination, one changed.
	if err := src.Deliver(ctx, "u", strings.NewReader("late\r\n")); err != nil {
		t.Fatal(err)
	}
	if err := dst.Import(ctx, "u", []store.ImportMessage{{UID: "extra", Open: opener("x\r\n")}}); err != nil {
		t.Fatal(err)
	}
	md, err := dst.Open(ctx, "u")
	if err != nil {
		t.Fatal(err)
	}
	changed := md.Messages()[0].UID
	if err := md.Commit(ctx, []int{0}); err != nil {
		t.Fatal(err)
	}
	md.Close()
	if err := dst.Import(ctx, "u", []store.ImportMessage{{UID: changed, Open: opener("changed\r\n")}}); err != nil {
		t.Fatal(err)
	}
	rep, err := Verify(ctx, src, dst, []string{"u"})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, d := range rep.Diffs {
		got = append(got, d.What)
	}
	want := []string{
		fmt.Sprintf("size %d in source, %d in destination", len(bodies[0]), len("changed\r\n")),
		"checksum (SHA-256) differs",
		"missing in destination",
		"only in destination",
		"messages in another order",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Verify differences (-want +got):\n%s", diff)
	}
}

func opener(s string) func(context.Context) (io.ReadCloser, error) {
	return func(context.Context) (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(s)), nil }
}

// TestImportIdempotent checks both Importers: the same message again is a
// no-op, another message under a present UIDL is refused and stores
// nothing of its batch.
func TestImportIdempotent(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	md, _ := newMaildir(t)
	pg, _ := newPG(t)
	for name, s := range map[string]store.Importer{"maildir": md, "pgstore": pg} {
		t.Run(name, func(t *testing.T) {
			a := store.ImportMessage{UID: "UID-a", ArrivalTime: time.Unix(1700000000, 0), Open: opener("a\r\n")}
			b := store.ImportMessage{UID: "UID-b", Open: opener("b\r\n")}
			if err := s.Import(ctx, "u", []store.ImportMessage{a, b}); err != nil {
				t.Fatal(err)
			}
			if err := s.Import(ctx, "u", []store.ImportMessage{a, b}); err != nil {
				t.Fatalf("Import again: %v, want nil", err)
			}
			c := store.ImportMessage{UID: "UID-c", Open: opener("c\r\n")}
			bad := store.ImportMessage{UID: "UID-a", Open: opener("not a\r\n")}
			if err := s.Import(ctx, "u", []store.ImportMessage{c, bad}); !errors.Is(err, store.ErrUIDExists) {
				t.Fatalf("Import of another message as UID-a: %v, want ErrUIDExists", err)
			}
			for _, uid := range []string{"", "has space", strings.Repeat("x", 71)} {
				if err := s.Import(ctx, "u", []store.ImportMessage{{UID: uid, Open: opener("x")}}); err == nil {
					t.Errorf("Import(UIDL %q) = nil, want an error", uid)
				}
			}
			got := list(t, s, "u")
			want := []listing{
				{UID: "UID-a", Size: 3, Body: "a\r\n", Arrival: time.Unix(1700000000, 0).UTC()},
				{UID: "UID-b", Size: 3, Body: "b\r\n"},
			}
			if diff := cmp.Diff(want, got, cmp.FilterPath(func(p cmp.Path) bool {
				return p.Last().String() == ".Arrival"
			}, cmp.Comparer(func(x, y time.Time) bool { return x.IsZero() || y.IsZero() || x.Equal(y) }))); diff != "" {
				t.Errorf("maildrop after imports (-want +got):\n%s", diff)
			}
		})
	}
}
