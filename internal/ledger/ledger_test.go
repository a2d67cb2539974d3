package ledger_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/postoffice-mail/postoffice/internal/ledger"
	"github.com/postoffice-mail/postoffice/internal/store"
	"github.com/postoffice-mail/postoffice/internal/store/maildir"
)

// clock is a settable test clock.
type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func newStore(t *testing.T, n int) *maildir.Store {
	t.Helper()
	st, err := maildir.New(maildir.Options{Location: filepath.Join(t.TempDir(), "%u"), NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if err := st.Deliver(context.Background(), "alice", bytes.NewBufferString(fmt.Sprintf("Subject: %d\r\n\r\nbody %d\r\n", i, i))); err != nil {
			t.Fatal(err)
		}
	}
	return st
}

// session logs in as device, RETRs the messages listed in retr (view
// indexes; -1 means all), DELEs those in dele (-1: all), and QUITs.
func session(t *testing.T, l *ledger.Ledger, st store.Store, device string, retr, dele []int) []string {
	t.Helper()
	ctx := context.Background()
	md, err := st.Open(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	v, err := l.Open(md, ledger.Session{User: "alice", Device: device, Remote: "192.0.2.1"})
	if err != nil {
		t.Fatal(err)
	}
	var uidls []string
	for _, m := range v.Messages() {
		uidls = append(uidls, m.UID)
	}
	expand := func(s []int) []int {
		if len(s) == 1 && s[0] == -1 {
			s = nil
			for i := range v.Messages() {
				s = append(s, i)
			}
		}
		return s
	}
	for _, i := range expand(retr) {
		r, err := v.Open(ctx, i)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, r)
		r.Close()
		v.Retrieved(i)
	}
	if d := expand(dele); d != nil {
		if err := v.Commit(ctx, d); err != nil {
			t.Fatal(err)
		}
	}
	if err := v.Close(); err != nil {
		t.Fatal(err)
	}
	return uidls
}

func count(t *testing.T, st store.Store) int {
	t.Helper()
	md, err := st.Open(context.Background(), "alice")
	if err != nil {
		t.Fatal(err)
	}
	defer md.Close()
	return len(md.Messages())
}

func TestDevicesEachSeeEveryMessageOnce(t *testing.T) {
	t.Parallel()
	st := newStore(t, 3)
	c := &clock{time.Date(2026, 1, 1, 10, 0, 0, 0, time.UTC)}
	l := ledger.New(ledger.Options{Devices: true, Now: c.now})
	// Both devices log in once, so both are known.
	if got := session(t, l, st, "laptop", nil, nil); len(got) != 3 {
		t.Fatalf("laptop first sees %d messages, want 3", len(got))
	}
	session(t, l, st, "phone", nil, nil)
	// The laptop fetches and deletes everything.
	session(t, l, st, "laptop", []int{-1}, []int{-1})
	if got := session(t, l, st, "laptop", nil, nil); len(got) != 0 {
		t.Errorf("laptop sees %d messages after deleting them, want 0", len(got))
	}
	if n := count(t, st); n != 3 {
		t.Fatalf("store holds %d messages after one device deleted, want 3", n)
	}
	// The phone still gets all three, deletes two.
	if got := session(t, l, st, "phone", []int{-1}, []int{0, 1}); len(got) != 3 {
		t.Fatalf("phone sees %d messages, want 3", len(got))
	}
	if n := count(t, st); n != 1 {
		t.Errorf("store holds %d messages after both deleted two, want 1", n)
	}
	// A device unused for longer than DeviceIdle stops holding back.
	session(t, l, st, "laptop", nil, nil)
	c.t = c.t.Add(31 * 24 * time.Hour)
	if got := session(t, l, st, "laptop", nil, nil); len(got) != 0 {
		t.Fatalf("laptop sees %d, want 0", len(got))
	}
	res := l.Sweep(context.Background(), st, "alice", ledger.Policy{}, c.t, false)
	if res.Err != nil {
		t.Fatal(res.Err)
	}
	if n := count(t, st); n != 0 {
		t.Errorf("store holds %d messages after the phone went idle, want 0", n)
	}
}

func TestDevicesOffDeleteRemoves(t *testing.T) {
	t.Parallel()
	st := newStore(t, 2)
	l := ledger.New(ledger.Options{})
	session(t, l, st, "phone", nil, []int{0})
	if n := count(t, st); n != 1 {
		t.Errorf("store holds %d, want 1", n)
	}
}

func TestExpireAfterRetrieval(t *testing.T) {
	t.Parallel()
	st := newStore(t, 4)
	c := &clock{time.Now()}
	l := ledger.New(ledger.Options{Now: c.now})
	all := session(t, l, st, "", []int{0, 2}, nil)
	p := ledger.Policy{Retrieval: 24 * time.Hour, HasRetrieval: true}
	if got := p.Capa(); got != "1" {
		t.Errorf("Capa() = %q, want 1", got)
	}
	ctx := context.Background()
	if res := l.Sweep(ctx, st, "alice", p, c.t.Add(23*time.Hour), false); len(res.Removals) != 0 || res.Err != nil {
		t.Fatalf("sweep before a day: %+v", res)
	}
	dry := l.Sweep(ctx, st, "alice", p, c.t.Add(25*time.Hour), true)
	want := []ledger.Removal{{User: "alice", UIDL: all[0], Reason: "expire_retrieval"}, {User: "alice", UIDL: all[2], Reason: "expire_retrieval"}}
	if diff := cmp.Diff(want, dry.Removals); diff != "" {
		t.Fatalf("dry sweep (-want +got):\n%s", diff)
	}
	if n := count(t, st); n != 4 {
		t.Fatalf("dry run removed messages: %d left", n)
	}
	res := l.Sweep(ctx, st, "alice", p, c.t.Add(25*time.Hour), false)
	if diff := cmp.Diff(want, res.Removals); diff != "" {
		t.Fatalf("sweep (-want +got):\n%s", diff)
	}
	if got := session(t, l, st, "", nil, nil); !cmp.Equal(got, []string{all[1], all[3]}) {
		t.Errorf("left %v, want %v", got, []string{all[1], all[3]})
	}
	evs, err := l.History(ctx, st, "alice", time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	var expired int
	for _, e := range evs {
		if e.Action == "expire" {
			expired++
		}
	}
	if expired != 2 {
		t.Errorf("history has %d expire events, want 2: %+v", expired, evs)
	}
}

func TestSweepSkipsHeldMaildrop(t *testing.T) {
	t.Parallel()
	st := newStore(t, 1)
	l := ledger.New(ledger.Options{})
	md, err := st.Open(context.Background(), "alice")
	if err != nil {
		t.Fatal(err)
	}
	defer md.Close()
	res := l.Sweep(context.Background(), st, "alice", ledger.Policy{HasArrival: true}, time.Now().Add(time.Hour), false)
	if !res.InUse || len(res.Removals) != 0 {
		t.Errorf("sweep of a held maildrop = %+v, want InUse and nothing removed", res)
	}
}

func TestExpireAfterArrival(t *testing.T) {
	t.Parallel()
	st := newStore(t, 2)
	l := ledger.New(ledger.Options{})
	p := ledger.Policy{Arrival: 365 * 24 * time.Hour, HasArrival: true}
	ctx := context.Background()
	if res := l.Sweep(ctx, st, "alice", p, time.Now().Add(364*24*time.Hour), false); len(res.Removals) != 0 {
		t.Fatalf("early sweep removed %+v", res.Removals)
	}
	if res := l.Sweep(ctx, st, "alice", p, time.Now().Add(366*24*time.Hour), false); len(res.Removals) != 2 {
		t.Fatalf("late sweep removed %+v, want 2", res.Removals)
	}
}

func TestStorm(t *testing.T) {
	t.Parallel()
	st := newStore(t, 50)
	storms := 0
	l := ledger.New(ledger.Options{OnStorm: func() { storms++ }})
	for range 5 {
		session(t, l, st, "", []int{-1}, nil)
	}
	if storms != 4 {
		t.Errorf("%d storms, want 4 (every login after the first)", storms)
	}
	evs, err := l.History(context.Background(), st, "alice", time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	var retr, storm int
	for _, e := range evs {
		switch e.Action {
		case "retr":
			retr++
		case "storm":
			storm++
			if e.Count != 50 || e.Remote != "192.0.2.1" {
				t.Errorf("storm event %+v, want count 50 from 192.0.2.1", e)
			}
		}
	}
	if retr != 250 || storm != 4 {
		t.Errorf("history: %d retr, %d storm; want 250, 4", retr, storm)
	}
}

func TestHistoryBounded(t *testing.T) {
	t.Parallel()
	st := newStore(t, 30)
	l := ledger.New(ledger.Options{HistoryMax: 10})
	for range 3 {
		session(t, l, st, "", []int{-1}, nil)
	}
	evs, err := l.History(context.Background(), st, "alice", time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) > 10 {
		t.Errorf("history has %d entries, want at most 10", len(evs))
	}
}

func TestDevicePassword(t *testing.T) {
	t.Parallel()
	st := newStore(t, 1)
	l := ledger.New(ledger.Options{Devices: true})
	ctx := context.Background()
	pw, err := l.AddDevice(ctx, st, "alice", "phone")
	if err != nil {
		t.Fatal(err)
	}
	if name, ok, err := l.DeviceByPassword(ctx, st, "alice", pw); err != nil || !ok || name != "phone" {
		t.Errorf("DeviceByPassword(right) = %q, %v, %v", name, ok, err)
	}
	if _, ok, _ := l.DeviceByPassword(ctx, st, "alice", pw+"x"); ok {
		t.Error("DeviceByPassword(wrong) matched")
	}
}

func TestSplitDevice(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ in, user, dev string }{
		{"alice@example.org#phone", "alice@example.org", "phone"},
		{"alice#Laptop", "alice", "laptop"},
		{"a#b@example.org", "a#b@example.org", ""},
		{"alice@example.org#", "alice@example.org#", ""},
		{"#phone", "#phone", ""},
	} {
		u, d, _ := ledger.SplitDevice(tc.in)
		if u != tc.user || d != tc.dev {
			t.Errorf("SplitDevice(%q) = %q, %q, want %q, %q", tc.in, u, d, tc.user, tc.dev)
		}
	}
}

func TestParseAge(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in  string
		d   time.Duration
		ok  bool
		bad bool
	}{
		{"30d", 30 * 24 * time.Hour, true, false},
		{"2w", 14 * 24 * time.Hour, true, false},
		{"36h", 36 * time.Hour, true, false},
		{"0d", 0, true, false},
		{"never", 0, false, false},
		{"", 0, false, true},
		{"-1d", 0, false, true},
		{"soon", 0, false, true},
	} {
		d, ok, err := ledger.ParseAge(tc.in)
		if d != tc.d || ok != tc.ok || (err != nil) != tc.bad {
			t.Errorf("ParseAge(%q) = %v, %v, %v", tc.in, d, ok, err)
		}
	}
}
