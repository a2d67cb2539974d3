package uidlimport

import (
	"context"
	"io"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/postoffice-mail/postoffice/internal/store"
)

func hashOf(t *testing.T, s string) string {
	t.Helper()
	h, err := HeaderHash(strings.NewReader(s))
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// TestHeaderHashSame: copies of one message as different servers keep or
// send them hash alike.
func TestHeaderHashSame(t *testing.T) {
	base := "Received: from a by b; Mon, 1 Jan 2024 00:00:00 +0000\r\nMessage-ID: <1@x>\r\nSubject: hello\r\n world\r\n\r\nbody\r\n"
	for name, s := range map[string]string{
		"LF":                "Received: from a by b; Mon, 1 Jan 2024 00:00:00 +0000\nMessage-ID: <1@x>\nSubject: hello\n world\n\nbody\n",
		"TOP without blank": "Received: from a by b; Mon, 1 Jan 2024 00:00:00 +0000\r\nMessage-ID: <1@x>\r\nSubject: hello\r\n world\r\n",
		"no final newline":  "Received: from a by b; Mon, 1 Jan 2024 00:00:00 +0000\r\nMessage-ID: <1@x>\r\nSubject: hello\r\n world",
		"mbox status":       "Return-Path: <a@b>\nReceived: from a by b; Mon, 1 Jan 2024 00:00:00 +0000\nStatus: RO\nX-UID: 7\nX-Keywords: \n  $Junk\nMessage-ID: <1@x>\nSubject: hello\n world\nContent-Length: 5\n\nother body\n",
		"trailing blanks":   "Received: from a by b; Mon, 1 Jan 2024 00:00:00 +0000 \r\nMessage-ID: <1@x>\t\r\nSubject: hello\r\n world\r\n \r\n\r\nbody\r\n",
		"CR CR LF end":      "Received: from a by b; Mon, 1 Jan 2024 00:00:00 +0000\r\nMessage-ID: <1@x>\r\nSubject: hello\r\n world\r\n\r\r\nX-Late: y\r\n\r\n",
		"bad lines dropped": "Received: from a by b; Mon, 1 Jan 2024 00:00:00 +0000\r\nnot a field\r\nBad Name: x\r\nMessage-ID: <1@x>\r\nSubject: hello\r\n world\r\n\r\n",
	} {
		if got, want := hashOf(t, s), hashOf(t, base); got != want {
			t.Errorf("%s: HeaderHash = %s, want %s (as the CRLF copy)", name, got, want)
		}
	}
	// 8-bit octets as '?', a run as one.
	if a, b := hashOf(t, "Subject: caf\xc3\xa9\n\n"), hashOf(t, "Subject: caf?\n\n"); a != b {
		t.Errorf("8-bit octets: %s != %s", a, b)
	}
}

// TestHeaderHashDiffers: what tells two deliveries apart counts.
func TestHeaderHashDiffers(t *testing.T) {
	a := hashOf(t, "Message-ID: <1@x>\nSubject: a\n\n")
	for _, s := range []string{
		"Message-ID: <2@x>\nSubject: a\n\n",
		"Message-ID: <1@x>\nSubject: b\n\n",
		"Message-ID: <1@x>\nSubject: a\nReceived: x\n\n",
	} {
		if hashOf(t, s) == a {
			t.Errorf("HeaderHash(%q) equals another header's", s)
		}
	}
}

// TestMatch: duplicates pair in order; a size differing by the 2 octets
// of a final CRLF matches; other sizes do not.
func TestMatch(t *testing.T) {
	old := []OldMessage{
		{Num: 1, UIDL: "o1", Size: 100, Hash: "h1"},
		{Num: 2, UIDL: "o2", Size: 100, Hash: "h1"}, // the same message delivered twice
		{Num: 3, UIDL: "o3", Size: 50, Hash: "h3"},
		{Num: 4, UIDL: "o4", Size: 70, Hash: "h4"}, // size differs by 5: not the same
		{Num: 5, UIDL: "o5", Size: 10, Hash: "h5"}, // not local
	}
	local := []LocalMessage{
		{Index: 0, UIDL: "l0", Size: 52, Hash: "h3"},
		{Index: 1, UIDL: "l1", Size: 100, Hash: "h1"},
		{Index: 2, UIDL: "l2", Size: 100, Hash: "h1"},
		{Index: 3, UIDL: "l3", Size: 75, Hash: "h4"},
		{Index: 4, UIDL: "l4", Size: 9, Hash: "h9"},
	}
	pairs, oldOnly, localOnly := Match(old, local)
	var got [][2]string
	for _, p := range pairs {
		got = append(got, [2]string{p.Old.UIDL, p.Local.UIDL})
	}
	if diff := cmp.Diff([][2]string{{"o1", "l1"}, {"o2", "l2"}, {"o3", "l0"}}, got); diff != "" {
		t.Errorf("pairs (-want +got):\n%s", diff)
	}
	if len(oldOnly) != 2 || oldOnly[0].UIDL != "o4" || oldOnly[1].UIDL != "o5" {
		t.Errorf("oldOnly = %+v", oldOnly)
	}
	if len(localOnly) != 2 || localOnly[0].UIDL != "l3" || localOnly[1].UIDL != "l4" {
		t.Errorf("localOnly = %+v", localOnly)
	}
}

func TestParseServer(t *testing.T) {
	for _, c := range []struct {
		in   string
		tls  bool
		want Server
	}{
		{"pop3s://bob:p%40ss@old.example", false, Server{Addr: "old.example:995", Host: "old.example", Security: Implicit, User: "bob", Pass: "p@ss", HasPass: true}},
		{"pop3://%25u*master:pw@old.example:1110?starttls", false, Server{Addr: "old.example:1110", Host: "old.example", Security: StartTLS, User: "%u*master", Pass: "pw", HasPass: true}},
		{"pop3://old.example", true, Server{Addr: "old.example:110", Host: "old.example", Security: StartTLS}},
		{"pop3://127.0.0.1:2110", false, Server{Addr: "127.0.0.1:2110", Host: "127.0.0.1", Security: Plain}},
	} {
		got, err := ParseServer(c.in, c.tls)
		if err != nil {
			t.Errorf("ParseServer(%q) = %v", c.in, err)
			continue
		}
		if diff := cmp.Diff(c.want, got); diff != "" {
			t.Errorf("ParseServer(%q) (-want +got):\n%s", c.in, diff)
		}
	}
	for _, bad := range []string{"imap://x", "pop3s://x?starttls", "pop3s:///", "pop3s://x/INBOX", "pop3s://x?foo=1", "pop3s://x:port"} {
		if _, err := ParseServer(bad, false); err == nil {
			t.Errorf("ParseServer(%q) = nil error", bad)
		}
	}
	s, _ := ParseServer("pop3://x.example", false)
	if err := s.CheckSecurity(DialOptions{}); err == nil {
		t.Error("a clear-text login to a remote host was allowed without --insecure")
	}
	if err := s.CheckSecurity(DialOptions{Insecure: true}); err != nil {
		t.Errorf("with Insecure: %v", err)
	}
	s, _ = ParseServer("pop3://[::1]:2110", false)
	if err := s.CheckSecurity(DialOptions{}); err != nil {
		t.Errorf("loopback: %v", err)
	}
}

func TestLoginName(t *testing.T) {
	s := Server{User: "%n+%d*master%%"}
	got, err := s.LoginName("bob@example.org")
	if err != nil || got != "bob+example.org*master%" {
		t.Errorf("LoginName = %q, %v", got, err)
	}
	if _, err := (Server{User: "%x"}).LoginName("bob"); err == nil {
		t.Error("an unknown variable was accepted")
	}
	if got, _ := (Server{}).LoginName("bob"); got != "bob" {
		t.Errorf("no template: %q", got)
	}
}

// memDrop is a Maildrop in memory.
type memDrop struct {
	msgs   []store.Message
	bodies []string
}

func (m *memDrop) Messages() []store.Message { return m.msgs }
func (m *memDrop) Open(ctx context.Context, i int) (io.ReadCloser, error) {
	return io.NopCloser(strings.NewReader(m.bodies[i])), nil
}

func newDrop(bodies map[string]string, order ...string) *memDrop {
	m := &memDrop{}
	for _, u := range order {
		m.msgs = append(m.msgs, store.Message{UID: u, Size: int64(len(bodies[u]))})
		m.bodies = append(m.bodies, bodies[u])
	}
	return m
}

func TestVerify(t *testing.T) {
	ctx := context.Background()
	bodies := map[string]string{"a": "A: 1\r\n\r\nx\r\n", "b": "B: 1\r\n\r\ny\r\n", "c": "C: 1\r\n\r\nz\r\n"}
	old := newDrop(bodies, "a", "b", "c")
	// LF on one side, CRLF on the other: the same once in CRLF form.
	lf := newDrop(bodies, "a", "b", "c")
	lf.bodies[1] = "B: 1\n\ny"
	rep, err := Verify(ctx, old, lf, -1)
	if err != nil || !rep.OK() || rep.Sampled != 3 {
		t.Fatalf("clean switch: %+v, %v", rep, err)
	}
	changed := newDrop(bodies, "a", "b", "c")
	changed.msgs[0].UID = "a2"              // a changed UIDL
	changed.msgs[1].Size++                  // a size difference
	changed.bodies[2] = "C: 1\r\n\r\nZ\r\n" // a body difference
	missing := newDrop(bodies, "a", "c")    // a missing message
	rep, _ = Verify(ctx, old, changed, 10)
	want := []Difference{
		{Kind: "stat", Old: "3 33", New: "3 34"},
		{Kind: "missing", UIDL: "a", Old: "11"},
		{Kind: "size", UIDL: "b", Old: "11", New: "12"},
		{Kind: "extra", UIDL: "a2", New: "11"},
	}
	if diff := cmp.Diff(want, rep.Differences[:4]); diff != "" || len(rep.Differences) != 5 || rep.Differences[4].Kind != "body" {
		t.Errorf("differences (-want +got):\n%s\nall: %+v", diff, rep.Differences)
	}
	rep, _ = Verify(ctx, old, missing, 0)
	if rep.OK() || rep.Sampled != 0 || rep.Differences[1].Kind != "missing" || rep.Differences[1].UIDL != "b" {
		t.Errorf("missing message: %+v", rep)
	}
}

func TestSampleOf(t *testing.T) {
	for _, c := range []struct {
		total, n int
		want     []int
	}{
		{10, 3, []int{0, 4, 9}},
		{3, 10, []int{0, 1, 2}},
		{5, -1, []int{0, 1, 2, 3, 4}},
		{5, 1, []int{0}},
		{0, 5, []int{}},
	} {
		if diff := cmp.Diff(c.want, sampleOf(c.total, c.n)); diff != "" {
			t.Errorf("sampleOf(%d, %d) (-want +got):\n%s", c.total, c.n, diff)
		}
	}
}

// TestMatchMboxStateHeaders: Dovecot hides the X-IMAPbase, X-UID and
// Status lines it wrote into an mbox from POP3 (TOP and LIST size alike);
// the local store serves the file as it stands, those lines included. The
// two copies still match, and a copy whose size differs by anything else
// does not.
func TestMatchMboxStateHeaders(t *testing.T) {
	const served = "Received: from a by b; Mon, 1 Jan 2024 00:00:00 +0000\r\nMessage-ID: <1@x>\r\nSubject: hello\r\n\r\nbody\r\n"
	const stored = "Received: from a by b; Mon, 1 Jan 2024 00:00:00 +0000\r\nMessage-ID: <1@x>\r\nSubject: hello\r\n" +
		"X-IMAPbase: 1796671022 0000000030\r\nX-UID: 1                                       \r\nStatus: RO\r\nX-Keywords:\r\n \r\n\r\nbody\r\n"
	top := hashOf(t, served[:strings.Index(served, "\r\n\r\n")+4])
	msgs := []store.Message{{UID: "l0", Size: int64(len(stored))}, {UID: "l1", Size: int64(len(stored)) + 1}}
	open := func(_ context.Context, i int) (io.ReadCloser, error) {
		return io.NopCloser(strings.NewReader(stored)), nil
	}
	local, err := ReadLocal(context.Background(), msgs, open)
	if err != nil {
		t.Fatal(err)
	}
	old := []OldMessage{{Num: 1, UIDL: "o1", Size: int64(len(served)), Hash: top}}
	pairs, oldOnly, _ := Match(old, local[1:])
	if len(pairs) != 0 || len(oldOnly) != 1 {
		t.Errorf("a copy one octet larger matched: pairs %+v", pairs)
	}
	pairs, oldOnly, _ = Match(old, local)
	if len(pairs) != 1 || pairs[0].Local.UIDL != "l0" || len(oldOnly) != 0 {
		t.Errorf("Match = %+v, unmatched %+v; want o1 paired with l0", pairs, oldOnly)
	}
}
