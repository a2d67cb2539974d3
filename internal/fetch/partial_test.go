package fetch

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/postoffice-mail/postoffice/internal/testutil"
	"github.com/postoffice-mail/postoffice/pop3"
	"github.com/postoffice-mail/postoffice/pop3proto"
	"github.com/postoffice-mail/postoffice/pop3server"
	"github.com/postoffice-mail/postoffice/pop3server/memserver"
)

// bigMessage is about 1.6 KB: over a max_size of 1000.
func bigMessage(i int) string {
	return fmt.Sprintf("Subject: big %d\r\n\r\n%s\r\n", i, strings.Repeat("x", 1600))
}

// Messages fetched in part (TOP) are never deleted: keep = false with
// headers_only is refused in the config, and oversize = "truncate" leaves
// the truncated messages on the server.
func TestPartialNotDeletedConfig(t *testing.T) {
	t.Parallel()
	base := accountTOML("a")
	for _, tc := range []struct{ extra, want string }{
		{"keep = false\nheaders_only = true\n", "f.toml:9: account a: headers_only: conflicts with keep = false"},
		{"headers_only = true\ndelete_after_days = 3\n", "f.toml:8: account a: headers_only: conflicts with delete_after_days"},
	} {
		_, err := ParseConfig("f.toml", []byte(base+tc.extra))
		var ce *ConfigError
		if !errors.As(err, &ce) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseConfig(%q) = %v, want a ConfigError with %q", tc.extra, err, tc.want)
		}
	}
}

func TestTruncateKeepFalse(t *testing.T) {
	t.Parallel()
	srv := startServer(t, nil)
	srv.b.Deliver(testUser, []byte(bigMessage(1)))
	srv.b.Deliver(testUser, []byte("Subject: small\r\n\r\nsmall body\r\n"))
	srv.b.Deliver(testUser, []byte(bigMessage(2)))
	a := account(t, srv, "keep = false\nmax_size = 1000\noversize = \"truncate\"")
	res := run1(t, a, Options{})
	if res.Fetched != 3 || res.Deleted != 1 {
		t.Fatalf("run = %+v, want 3 fetched, 1 (the small one) deleted", res)
	}
	if n := srv.b.Count(testUser); n != 2 {
		t.Fatalf("server has %d messages, want the 2 truncated ones", n)
	}
	for _, f := range maildirFiles(t, strings.TrimPrefix(a.Target, "maildir:")) {
		if strings.Contains(f, "Subject: big") && strings.Contains(f, "xxx") {
			t.Errorf("big message delivered whole: %d octets", len(f))
		}
	}
	// Later runs neither fetch them again nor delete them.
	if res := run1(t, a, Options{}); res.Fetched != 0 || res.Deleted != 0 {
		t.Fatalf("second run = %+v, want nothing", res)
	}
	if n := srv.b.Count(testUser); n != 2 {
		t.Fatalf("server has %d messages after the second run, want 2", n)
	}
}

func TestDeleteAfterDaysSparesPartial(t *testing.T) {
	t.Parallel()
	srv := startServer(t, nil)
	srv.b.Deliver(testUser, []byte(bigMessage(1)))
	srv.b.Deliver(testUser, []byte("Subject: small\r\n\r\nsmall body\r\n"))
	a := account(t, srv, "delete_after_days = 3\nmax_size = 1000\noversize = \"truncate\"")
	t0 := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	at := func(d time.Duration) Options { return Options{Now: func() time.Time { return t0.Add(d) }} }
	if res := run1(t, a, at(0)); res.Fetched != 2 || res.Deleted != 0 {
		t.Fatalf("day 0 = %+v, want 2 fetched", res)
	}
	if res := run1(t, a, at(4*24*time.Hour)); res.Deleted != 1 {
		t.Fatalf("day 4 = %+v, want the small one deleted", res)
	}
	if res := run1(t, a, at(8*24*time.Hour)); res.Deleted != 0 || res.Fetched != 0 {
		t.Fatalf("day 8 = %+v, want nothing", res)
	}
	if n := srv.b.Count(testUser); n != 1 {
		t.Fatalf("server has %d messages, want the truncated one", n)
	}
}

// A state written by an older version has no size, digest or whole/partial
// flag: a record of a message the account's policy fetches in part is
// taken as partial and never deleted; the others are deleted as before.
func TestLegacyStatePartial(t *testing.T) {
	t.Parallel()
	srv := startServer(t, nil)
	srv.b.Deliver(testUser, []byte(bigMessage(1)))                          // mem-1
	srv.b.Deliver(testUser, []byte("Subject: small\r\n\r\nsmall body\r\n")) // mem-2
	a := account(t, srv, "delete_after_days = 3\nmax_size = 1000\noversize = \"truncate\"")
	t0 := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	if err := os.MkdirAll(a.StateDir, 0o700); err != nil {
		t.Fatal(err)
	}
	old := fmt.Sprintf("postoffice-fetch-state 1\n%d mem-1\n%d mem-2\n", t0.Unix(), t0.Unix())
	if err := os.WriteFile(filepath.Join(a.StateDir, a.Name+".state"), []byte(old), 0o600); err != nil {
		t.Fatal(err)
	}
	res := run1(t, a, Options{Now: func() time.Time { return t0.Add(4 * 24 * time.Hour) }})
	if res.Fetched != 0 || res.Deleted != 1 {
		t.Fatalf("run = %+v, want nothing fetched and the small one deleted", res)
	}
	if n := srv.b.Count(testUser); n != 1 {
		t.Fatalf("server has %d messages, want the big one kept", n)
	}
}

// reuseBackend is a server that gives UIDLs made of message numbers, so a
// new message gets the UIDL of one deleted before (RFC 1939 §7 says a
// server should not, but some do), and counts the messages it opens (RETR
// and TOP).
type reuseBackend struct {
	*memserver.Backend
	opens *atomic.Int32
}

func (b reuseBackend) NewSession(ctx context.Context, c *pop3server.Conn) (pop3server.Session, error) {
	s, err := b.Backend.NewSession(ctx, c)
	if err != nil {
		return nil, err
	}
	return reuseSession{s, b.opens}, nil
}

type reuseSession struct {
	pop3server.Session
	opens *atomic.Int32
}

func (s reuseSession) Login(ctx context.Context, user, pass string) (pop3server.Mailbox, error) {
	m, err := s.Session.Login(ctx, user, pass)
	if err != nil {
		return nil, err
	}
	return reuseMailbox{m, s.opens}, nil
}

type reuseMailbox struct {
	pop3server.Mailbox
	opens *atomic.Int32
}

func (m reuseMailbox) Messages() []pop3proto.MessageInfo {
	info := append([]pop3proto.MessageInfo(nil), m.Mailbox.Messages()...)
	for i := range info {
		info[i].UID = strconv.Itoa(i + 1)
	}
	return info
}

func (m reuseMailbox) Open(ctx context.Context, i int) (io.ReadCloser, error) {
	m.opens.Add(1)
	return m.Mailbox.Open(ctx, i)
}

func startReuseServer(t *testing.T) (*testServer, *atomic.Int32) {
	t.Helper()
	b := memserver.New()
	b.AddUser(testUser, testPass)
	opens := new(atomic.Int32)
	addr, _ := testutil.ServePOP3(t, pop3server.Options{Backend: reuseBackend{b, opens}})
	return &testServer{addr: addr, b: b}, opens
}

// deleteFirst deletes message 1 as another client would.
func deleteFirst(t *testing.T, srv *testServer) {
	t.Helper()
	ctx := testCtx(t)
	c, err := pop3.Dial(ctx, srv.addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Login(ctx, testUser, testPass); err != nil {
		t.Fatal(err)
	}
	if err := c.Dele(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if err := c.Quit(ctx); err != nil {
		t.Fatal(err)
	}
}

// subjects counts the messages in the account's Maildir by Subject.
func subjects(t *testing.T, a *Account) map[string]int {
	t.Helper()
	got := map[string]int{}
	for _, f := range maildirFiles(t, strings.TrimPrefix(a.Target, "maildir:")) {
		for _, l := range strings.Split(f, "\n") {
			if s, ok := strings.CutPrefix(l, "Subject: "); ok {
				got[s]++
			}
		}
	}
	return got
}

// keep = false with a server that reuses a UIDL: the new message is
// delivered and only then deleted, although the Maildir holds a message
// with the same UIDL.
func TestReusedUIDLKeepFalse(t *testing.T) {
	t.Parallel()
	srv, _ := startReuseServer(t)
	srv.b.Deliver(testUser, []byte("Subject: first\r\n\r\nbody\r\n"))
	a := account(t, srv, "keep = false")
	if res := run1(t, a, Options{}); res.Fetched != 1 || res.Deleted != 1 {
		t.Fatalf("first run = %+v", res)
	}
	srv.b.Deliver(testUser, []byte("Subject: secnd\r\n\r\nbody\r\n")) // UIDL "1" again, same size
	if res := run1(t, a, Options{}); res.Fetched != 1 || res.Deleted != 1 {
		t.Fatalf("second run = %+v, want the new message fetched and deleted", res)
	}
	if got := subjects(t, a); got["first"] != 1 || got["secnd"] != 1 {
		t.Fatalf("maildir has %v, want first and secnd once each", got)
	}
}

// delete_after_days with a server that reuses a UIDL: the message under a
// recorded UIDL is deleted only if its header is the recorded one; another
// message is fetched as new.
func TestReusedUIDLDeleteAfterDays(t *testing.T) {
	t.Parallel()
	srv, _ := startReuseServer(t)
	srv.b.Deliver(testUser, []byte("Subject: first\r\n\r\nbody\r\n"))
	a := account(t, srv, "delete_after_days = 3")
	t0 := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	at := func(d time.Duration) Options { return Options{Now: func() time.Time { return t0.Add(d) }} }
	if res := run1(t, a, at(0)); res.Fetched != 1 {
		t.Fatalf("day 0 = %+v", res)
	}
	deleteFirst(t, srv)                                               // read and deleted elsewhere
	srv.b.Deliver(testUser, []byte("Subject: secnd\r\n\r\nbody\r\n")) // UIDL "1", same size
	if res := run1(t, a, at(4*24*time.Hour)); res.Fetched != 1 || res.Deleted != 0 {
		t.Fatalf("day 4 = %+v, want the new message fetched, not deleted", res)
	}
	if n := srv.b.Count(testUser); n != 1 {
		t.Fatalf("server has %d messages, want 1", n)
	}
	if res := run1(t, a, at(6*24*time.Hour)); res.Fetched != 0 || res.Deleted != 0 {
		t.Fatalf("day 6 = %+v, want nothing (the new message is 2 days old)", res)
	}
	if res := run1(t, a, at(8*24*time.Hour)); res.Fetched != 0 || res.Deleted != 1 {
		t.Fatalf("day 8 = %+v, want it deleted", res)
	}
	if got := subjects(t, a); got["first"] != 1 || got["secnd"] != 1 {
		t.Fatalf("maildir has %v, want first and secnd once each", got)
	}
}

// keep = true with a server that reuses a UIDL for a message of another
// size: the new message is fetched. A run over messages already fetched,
// with nothing to delete, opens none of them (no TOP per message and run).
func TestReusedUIDLKeep(t *testing.T) {
	t.Parallel()
	srv, opens := startReuseServer(t)
	srv.b.Deliver(testUser, []byte("Subject: first\r\n\r\nbody\r\n"))
	srv.b.Deliver(testUser, []byte("Subject: other\r\n\r\nbody\r\n"))
	a := account(t, srv, "")
	if res := run1(t, a, Options{}); res.Fetched != 2 {
		t.Fatalf("first run = %+v", res)
	}
	opens.Store(0)
	if res := run1(t, a, Options{}); res.Fetched != 0 {
		t.Fatalf("second run = %+v", res)
	}
	if n := opens.Load(); n != 0 {
		t.Errorf("a run with nothing new opened %d messages, want 0", n)
	}
	deleteFirst(t, srv) // "other" becomes message 1, UIDL "1"
	srv.b.Deliver(testUser, []byte("Subject: third, longer\r\n\r\nbody\r\n"))
	if res := run1(t, a, Options{}); res.Fetched != 1 {
		t.Fatalf("third run = %+v, want the new message fetched", res)
	}
	if got := subjects(t, a); got["first"] != 1 || got["other"] != 1 || got["third, longer"] != 1 {
		t.Fatalf("maildir has %v, want each message once", got)
	}
}

// The state keeps size, header digest and whole/partial per record through
// the journal and a compaction, reads an older version's records as
// Legacy, and a later record of a UIDL replaces an earlier one.
func TestStateRecords(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	old := "postoffice-fetch-state 1\n100 legacy\n-150 oldreject\n"
	if err := os.WriteFile(filepath.Join(dir, "acct.state"), []byte(old), 0o600); err != nil {
		t.Fatal(err)
	}
	st, err := OpenState(dir, "acct")
	if err != nil {
		t.Fatal(err)
	}
	recs := map[string]Rec{
		"whole":   {Time: time.Unix(200, 0), Size: 1234, Digest: "00112233445566778899aabbccddeeff"},
		"partial": {Time: time.Unix(300, 0), Size: 99999, Digest: "ffeeddccbbaa99887766554433221100", Partial: true},
		"reused":  {Time: time.Unix(400, 0), Size: 10, Digest: "0123"},
	}
	for u, r := range recs {
		if err := st.Record(u, r); err != nil {
			t.Fatal(err)
		}
	}
	recs["reused"] = Rec{Time: time.Unix(500, 0), Size: 11, Digest: "4567"}
	if err := st.Record("reused", recs["reused"]); err != nil {
		t.Fatal(err)
	}
	if err := st.Reject("refused", time.Unix(600, 0), 77); err != nil {
		t.Fatal(err)
	}
	recs["refused"] = Rec{Time: time.Unix(600, 0), Size: 77, Rejected: true}
	recs["legacy"] = Rec{Time: time.Unix(100, 0), Size: -1, Legacy: true}
	recs["oldreject"] = Rec{Time: time.Unix(150, 0), Size: -1, Legacy: true, Rejected: true}
	check := func(when string) {
		t.Helper()
		for u, want := range recs {
			got, ok := st.Get(u)
			if diff := cmp.Diff(want, got); !ok || diff != "" {
				t.Errorf("%s: Get(%q) (-want +got):\n%s", when, u, diff)
			}
		}
		if st.Len() != len(recs) {
			t.Errorf("%s: %d entries, want %d", when, st.Len(), len(recs))
		}
	}
	check("before reopening")
	st.Close()
	if st, err = OpenState(dir, "acct"); err != nil { // from the journal
		t.Fatal(err)
	}
	check("journal replayed")
	if err := st.Compact(nil); err != nil {
		t.Fatal(err)
	}
	st.Close()
	if st, err = OpenState(dir, "acct"); err != nil { // from the snapshot
		t.Fatal(err)
	}
	defer st.Close()
	check("compacted")
}

// RETR and TOP n 0 of one message give one header digest, whatever the
// line ends and whether TOP sends the empty line; another header gives
// another digest.
func TestHeaderHash(t *testing.T) {
	t.Parallel()
	sum := func(parts ...string) string {
		h := newHeaderHash()
		for _, p := range parts {
			h.Write([]byte(p))
		}
		return h.Sum()
	}
	want := sum("From: a\r\nSubject: x\r\n\r\nbody\r\n")
	for _, in := range [][]string{
		{"From: a\r\nSubject: x\r\n\r\n"},                     // TOP n 0
		{"From: a\r\nSubject: x\r\n"},                         // TOP without the empty line
		{"From: a\r\nSubject: x"},                             // and without the last line end
		{"From: a\nSubject: x\n\nother body\n"},               // LF
		{"From: a\r", "\nSubj", "ect: x\r\n\r", "\nbody\r\n"}, // split anywhere
	} {
		if got := sum(in...); got != want {
			t.Errorf("digest of %q = %s, want %s", in, got, want)
		}
	}
	for _, in := range []string{"From: a\r\nSubject: y\r\n\r\n", "From: a\r\n\r\nSubject: x\r\n", "From: a\r\r\nSubject: x\r\n\r\n"} {
		if got := sum(in); got == want {
			t.Errorf("digest of %q = digest of another header", in)
		}
	}
}

// noTopServer serves msgs (UIDLs "u1", "u2", ...) to any login over a
// minimal POP3 server without TOP, which RFC 1939 §7 makes optional: TOP
// gets -ERR. The messages are never removed; the DELEs committed by QUIT
// are counted.
func noTopServer(t *testing.T, msgs []string) (string, *atomic.Int32) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deleted := new(atomic.Int32)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for conns := 0; conns < 20; conns++ {
			nc, err := l.Accept()
			if err != nil {
				return
			}
			nc.SetDeadline(time.Now().Add(20 * time.Second))
			br := bufio.NewReader(nc)
			marked := 0
			fmt.Fprintf(nc, "+OK ready\r\n")
			for quit := false; !quit; {
				line, err := br.ReadString('\n')
				if err != nil {
					break
				}
				f := strings.Fields(line)
				n := 0
				if len(f) > 1 {
					n, _ = strconv.Atoi(f[1])
				}
				switch strings.ToUpper(f[0]) {
				case "USER", "PASS":
					fmt.Fprintf(nc, "+OK\r\n")
				case "UIDL", "LIST":
					fmt.Fprintf(nc, "+OK\r\n")
					for i, m := range msgs {
						if f[0] == "UIDL" {
							fmt.Fprintf(nc, "%d u%d\r\n", i+1, i+1)
						} else {
							fmt.Fprintf(nc, "%d %d\r\n", i+1, len(m))
						}
					}
					fmt.Fprintf(nc, ".\r\n")
				case "RETR":
					fmt.Fprintf(nc, "+OK\r\n%s.\r\n", msgs[n-1])
				case "DELE":
					marked++
					fmt.Fprintf(nc, "+OK\r\n")
				case "QUIT":
					deleted.Add(int32(marked))
					fmt.Fprintf(nc, "+OK\r\n")
					quit = true
				default: // CAPA, TOP
					fmt.Fprintf(nc, "-ERR not supported\r\n")
				}
			}
			nc.Close()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		<-done
	})
	return l.Addr().String(), deleted
}

// A server without TOP has recorded messages confirmed by the header of a
// RETR before their DELE.
func TestConfirmWithoutTop(t *testing.T) {
	t.Parallel()
	msgs := []string{"Subject: one\r\n\r\nbody\r\n", "Subject: two\r\n\r\nbody\r\n"}
	addr, deleted := noTopServer(t, msgs)
	a := account(t, &testServer{addr: addr}, "")
	if res := run1(t, a, Options{}); res.Fetched != 2 {
		t.Fatalf("keep run = %+v, want 2 fetched", res)
	}
	keep := false
	a.Keep = &keep // same state and Maildir
	if res := run1(t, a, Options{}); res.Fetched != 0 || res.Deleted != 2 || deleted.Load() != 2 {
		t.Fatalf("keep = false run = %+v, %d deleted at QUIT; want 2 deleted, none fetched", res, deleted.Load())
	}
}
