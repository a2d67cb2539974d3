package lmtp

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/postoffice-mail/postoffice/internal/auth"
	"github.com/postoffice-mail/postoffice/internal/auth/passwdfile"
	"github.com/postoffice-mail/postoffice/internal/store"
	"github.com/postoffice-mail/postoffice/internal/store/maildir"
)

// fixture is a passwd-file with alice and bob@example.org and a Maildir
// store in a temporary directory.
type fixture struct {
	dir   string
	users *passwdfile.DB
	store *maildir.Store
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	dir := t.TempDir()
	passwd := filepath.Join(dir, "passwd")
	if err := os.WriteFile(passwd, []byte("alice:{PLAIN}x::::::\nbob@example.org:{PLAIN}x::::::\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	users, err := passwdfile.Open(passwd, passwdfile.Options{})
	if err != nil {
		t.Fatal(err)
	}
	st, err := maildir.New(maildir.Options{Location: filepath.Join(dir, "vmail", "%d", "%n", "Maildir"), Hostname: "test"})
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{dir: dir, users: users, store: st}
}

// start runs a Server on a loopback port and returns its address.
func start(t *testing.T, opts Options) string {
	t.Helper()
	opts.Hostname = "lmtp.test"
	srv, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(l) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown = %v", err)
		}
		if err := <-done; err != nil {
			t.Errorf("Serve = %v", err)
		}
	})
	return l.Addr().String()
}

// client is a raw LMTP conversation.
type client struct {
	t  *testing.T
	nc net.Conn
	br *bufio.Reader
}

func dial(t *testing.T, addr string) *client {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	nc.SetDeadline(time.Now().Add(20 * time.Second))
	c := &client{t: t, nc: nc, br: bufio.NewReader(nc)}
	c.expect("220 ")
	return c
}

// reply reads one (possibly multi-line) reply and returns its last line.
func (c *client) reply() string {
	c.t.Helper()
	for {
		l, err := c.br.ReadString('\n')
		if err != nil {
			c.t.Fatalf("read: %v (got %q)", err, l)
		}
		l = strings.TrimRight(l, "\r\n")
		if len(l) < 4 || l[3] != '-' {
			return l
		}
	}
}

func (c *client) expect(prefix string) string {
	c.t.Helper()
	l := c.reply()
	if !strings.HasPrefix(l, prefix) {
		c.t.Fatalf("got %q, want %q...", l, prefix)
	}
	return l
}

func (c *client) cmd(line, prefix string) string {
	c.t.Helper()
	fmt.Fprintf(c.nc, "%s\r\n", line)
	return c.expect(prefix)
}

// lhlo sends LHLO and returns the extension lines.
func (c *client) lhlo() []string {
	c.t.Helper()
	fmt.Fprintf(c.nc, "LHLO client.test\r\n")
	var ext []string
	for {
		l, err := c.br.ReadString('\n')
		if err != nil {
			c.t.Fatal(err)
		}
		l = strings.TrimRight(l, "\r\n")
		if !strings.HasPrefix(l, "250") {
			c.t.Fatalf("LHLO reply %q", l)
		}
		ext = append(ext, l[4:])
		if l[3] == ' ' {
			return ext
		}
	}
}

// messages returns the stored messages of user, read through the store.
func messages(t *testing.T, st store.Store, user string) []string {
	t.Helper()
	md, err := st.Open(context.Background(), user)
	if err != nil {
		t.Fatal(err)
	}
	defer md.Close()
	var out []string
	for i := range md.Messages() {
		r, err := md.Open(context.Background(), i)
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(r)
		r.Close()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, string(b))
	}
	return out
}

const body = "Subject: hello\r\n\r\n..a line starting with a dot\r\nbye\r\n"

func TestDeliverSeveralRecipients(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	addr := start(t, Options{Users: f.users, Store: f.store, SpoolDir: f.dir})
	c := dial(t, addr)
	ext := strings.Join(c.lhlo(), "|")
	for _, want := range []string{"8BITMIME", "SIZE 52428800", "PIPELINING", "ENHANCEDSTATUSCODES"} {
		if !strings.Contains(ext, want) {
			t.Errorf("LHLO extensions %q lack %q", ext, want)
		}
	}
	c.cmd("MAIL FROM:<sender@remote.test> BODY=8BITMIME", "250 ")
	c.cmd("RCPT TO:<alice@example.org>", "250 ") // bare name in the database (%Ln)
	c.cmd("RCPT TO:<nobody@example.org>", "550 5.1.1 ")
	c.cmd("RCPT TO:<Bob@Example.org>", "250 ")
	c.cmd("DATA", "354 ")
	fmt.Fprintf(c.nc, "%s.\r\n", body)
	// RFC 2033 §4.2: one reply per accepted recipient, in RCPT order.
	if l := c.expect("250 2.0.0 "); !strings.Contains(l, "<alice@example.org>") {
		t.Errorf("first reply %q is not for alice", l)
	}
	if l := c.expect("250 2.0.0 "); !strings.Contains(l, "<Bob@Example.org>") {
		t.Errorf("second reply %q is not for bob", l)
	}
	c.cmd("QUIT", "221 ")

	unstuffed := strings.Replace(body, "..a", ".a", 1)
	for user, rcpt := range map[string]string{"alice": "alice@example.org", "bob@example.org": "Bob@Example.org"} {
		got := messages(t, f.store, user)
		want := "Return-Path: <sender@remote.test>\r\nDelivered-To: <" + rcpt + ">\r\n" + unstuffed
		if len(got) != 1 || got[0] != want {
			t.Errorf("%s has %q, want [%q]", user, got, want)
		}
	}
	if es, _ := os.ReadDir(f.dir); len(es) != 2 { // passwd, vmail and nothing spooled
		t.Errorf("spool dir holds %d entries, want 2 (spool files are unlinked)", len(es))
	}
}

func TestNullSenderAndSecondTransaction(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	c := dial(t, start(t, Options{Users: f.users, Store: f.store}))
	c.lhlo()
	for i := range 2 {
		c.cmd("MAIL FROM:<>", "250 ")
		c.cmd("RCPT TO:<alice@example.org>", "250 ")
		c.cmd("DATA", "354 ")
		fmt.Fprintf(c.nc, "Subject: %d\r\n\r\nx\r\n.\r\n", i)
		c.expect("250 ")
	}
	got := messages(t, f.store, "alice")
	if len(got) != 2 || !strings.HasPrefix(got[1], "Return-Path: <>\r\nDelivered-To: <alice@example.org>\r\nSubject: 1\r\n") {
		t.Errorf("alice has %q", got)
	}
}

func TestSizeLimit(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	c := dial(t, start(t, Options{Users: f.users, Store: f.store, MaxMessageSize: 100}))
	if ext := strings.Join(c.lhlo(), "|"); !strings.Contains(ext, "SIZE 100") {
		t.Errorf("LHLO %q lacks SIZE 100", ext)
	}
	c.cmd("MAIL FROM:<a@b> SIZE=101", "552 5.3.4 ") // declared (RFC 1870)
	c.cmd("MAIL FROM:<a@b>", "250 ")
	c.cmd("RCPT TO:<alice@example.org>", "250 ")
	c.cmd("RCPT TO:<bob@example.org>", "250 ")
	c.cmd("DATA", "354 ")
	fmt.Fprintf(c.nc, "Subject: big\r\n\r\n%s\r\n.\r\n", strings.Repeat("x", 200))
	c.expect("552 5.3.4 ")
	c.expect("552 5.3.4 ")
	c.cmd("NOOP", "250 ") // the session goes on
	for _, u := range []string{"alice", "bob@example.org"} {
		if got := messages(t, f.store, u); len(got) != 0 {
			t.Errorf("%s has %d messages, want 0", u, len(got))
		}
	}
}

// failStore fails deliveries for one user part way through writing, after
// the real store has created its temporary file.
type failStore struct {
	store.Store
	user string
}

var errDisk = errors.New("disk on fire")

func (s failStore) Deliver(ctx context.Context, user string, r io.Reader) error {
	if user == s.user {
		r = io.MultiReader(io.LimitReader(r, 10), errReader{})
	}
	return s.Store.Deliver(ctx, user, r)
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errDisk }

func TestStoreFailureIsTemporaryAndInvisible(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	c := dial(t, start(t, Options{Users: f.users, Store: failStore{f.store, "alice"}}))
	c.lhlo()
	c.cmd("MAIL FROM:<a@b>", "250 ")
	c.cmd("RCPT TO:<alice@example.org>", "250 ")
	c.cmd("RCPT TO:<bob@example.org>", "250 ")
	c.cmd("DATA", "354 ")
	fmt.Fprintf(c.nc, "%s.\r\n", body)
	if l := c.expect("451 4.3.0 "); strings.Contains(l, "fire") {
		t.Errorf("reply %q shows the internal error", l)
	}
	c.expect("250 ")
	dir, err := f.store.Path("alice")
	if err != nil {
		t.Fatal(err)
	}
	for _, sub := range []string{"new", "cur", "tmp"} {
		if es, _ := os.ReadDir(filepath.Join(dir, sub)); len(es) != 0 {
			t.Errorf("alice's %s/ holds %d files after a failed delivery", sub, len(es))
		}
	}
	if got := messages(t, f.store, "bob@example.org"); len(got) != 1 {
		t.Errorf("bob has %d messages, want 1", len(got))
	}
}

// lookupFailDB is a user database that is down.
type lookupFailDB struct{ auth.DB }

func (lookupFailDB) Lookup(context.Context, string) (auth.User, error) {
	return auth.User{}, errors.New("database down")
}

func TestLookupFailureIsTemporary(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	c := dial(t, start(t, Options{Users: lookupFailDB{f.users}, Store: f.store}))
	c.lhlo()
	c.cmd("MAIL FROM:<a@b>", "250 ")
	c.cmd("RCPT TO:<alice@example.org>", "451 4.3.0 ")
	c.cmd("HELO x", "500 ") // LMTP only takes LHLO (RFC 2033 §4.1)
}

func TestResolve(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	tests := []struct{ rcpt, want string }{
		{"alice", "alice"},
		{"ALICE", "alice"},
		{"alice@example.org", "alice"},
		{"Alice@elsewhere.test", "alice"},
		{"bob@example.org", "bob@example.org"},
		{"BOB@EXAMPLE.ORG", "bob@example.org"},
		// The user+domain login alias is not for recipients: this used to
		// resolve to bob@example.org. With the "+" delimiter it is "bob"
		// with the detail "example.org", and there is no bare bob.
		{"bob+example.org", ""},
		{"bob+example.org@attacker.test", ""},
		{"bob+news@example.org", "bob@example.org"},
		{"Bob+News@Example.org", "bob@example.org"},
		{"alice+news@elsewhere.test", "alice"}, // bare names (%Ln), split
		{"bob@other.test", ""},
		{"carol", ""},
	}
	for _, tt := range tests {
		u, err := Resolve(context.Background(), f.users, tt.rcpt, "+")
		if tt.want == "" {
			if !errors.Is(err, auth.ErrUnknownUser) {
				t.Errorf("Resolve(%q) = %v, %v, want ErrUnknownUser", tt.rcpt, u, err)
			}
			continue
		}
		if err != nil || u.Name != tt.want {
			t.Errorf("Resolve(%q) = %q, %v, want %q", tt.rcpt, u.Name, err, tt.want)
		}
	}
}

// domainFixture is a store with a passwd-file of full addresses only:
// alice@example.org, and alice+news@example.org as a user of its own.
func domainFixture(t *testing.T) *fixture {
	t.Helper()
	dir := t.TempDir()
	passwd := filepath.Join(dir, "passwd")
	if err := os.WriteFile(passwd, []byte("alice@example.org:{PLAIN}x::::::\nalice+news@example.org:{PLAIN}x::::::\ncarol@example.org:{PLAIN}x::::::\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	users, err := passwdfile.Open(passwd, passwdfile.Options{})
	if err != nil {
		t.Fatal(err)
	}
	st, err := maildir.New(maildir.Options{Location: filepath.Join(dir, "vmail", "%d", "%n", "Maildir"), Hostname: "test"})
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{dir: dir, users: users, store: st}
}

// A recipient that puts a user's login alias in front of another domain
// reaches no one; plus-addressing reaches the user, with the address as
// given in Delivered-To; an exact user of the plus-address wins.
func TestRecipientDelimiter(t *testing.T) {
	t.Parallel()
	f := domainFixture(t)
	c := dial(t, start(t, Options{Users: f.users, Store: f.store, SpoolDir: f.dir, RecipientDelimiter: "+-"}))
	c.lhlo()
	c.cmd("MAIL FROM:<sender@remote.test>", "250 ")
	c.cmd("RCPT TO:<alice+example.org@attacker.test>", "550 5.1.1 ")
	c.cmd("RCPT TO:<ALICE+example.org@attacker.test>", "550 5.1.1 ")
	c.cmd("RCPT TO:<+example.org@example.org>", "550 5.1.1 ")
	c.cmd("RCPT TO:<carol+lists@example.org>", "250 ")
	c.cmd("RCPT TO:<carol-shop@example.org>", "250 ")
	c.cmd("RCPT TO:<alice+news@example.org>", "250 ")
	c.cmd("DATA", "354 ")
	fmt.Fprintf(c.nc, "%s.\r\n", body)
	for range 3 {
		c.expect("250 2.0.0 ")
	}
	c.cmd("QUIT", "221 ")
	unstuffed := strings.Replace(body, "..a", ".a", 1)
	hdr := func(rcpt string) string {
		return "Return-Path: <sender@remote.test>\r\nDelivered-To: <" + rcpt + ">\r\n" + unstuffed
	}
	for user, want := range map[string][]string{
		"carol@example.org":      {hdr("carol+lists@example.org"), hdr("carol-shop@example.org")},
		"alice+news@example.org": {hdr("alice+news@example.org")},
		"alice@example.org":      nil,
	} {
		got := messages(t, f.store, user)
		slices.Sort(got)
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("messages of %s (-want +got):\n%s", user, diff)
		}
	}

	// "" turns plus-addressing off.
	c = dial(t, start(t, Options{Users: f.users, Store: f.store, SpoolDir: f.dir}))
	c.lhlo()
	c.cmd("MAIL FROM:<sender@remote.test>", "250 ")
	c.cmd("RCPT TO:<carol+lists@example.org>", "550 5.1.1 ")
	c.cmd("RCPT TO:<alice+news@example.org>", "250 ")
	c.cmd("QUIT", "221 ")
}

func TestUnixSocket(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	path := filepath.Join(f.dir, "lmtp.sock")
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := ListenUnix(path, 0o660); err == nil {
		t.Fatal("ListenUnix over a regular file succeeded")
	}
	os.Remove(path)
	// A stale socket: bound, then abandoned without unlinking.
	stale, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	stale.(*net.UnixListener).SetUnlinkOnClose(false)
	stale.Close()
	l, err := ListenUnix(path, 0o660)
	if err != nil {
		t.Fatalf("ListenUnix over a stale socket = %v", err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o660 {
		t.Errorf("socket mode = %v, %v, want 0660", fi.Mode(), err)
	}
	if _, err := ListenUnix(path, 0o660); err == nil {
		t.Error("ListenUnix over a live socket succeeded")
	}
	srv, err := New(Options{Users: f.users, Store: f.store, Hostname: "x"})
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(l)
	defer srv.Close()
	nc, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(20 * time.Second))
	c := &client{t: t, nc: nc, br: bufio.NewReader(nc)}
	c.expect("220 ")
	c.lhlo()
	c.cmd("MAIL FROM:<a@b>", "250 ")
	c.cmd("RCPT TO:<alice@example.org>", "250 ")
	c.cmd("DATA", "354 ")
	fmt.Fprintf(c.nc, "%s.\r\n", body)
	c.expect("250 ")
}

// Shutdown closes idle connections at once instead of waiting for the
// client to leave.
func TestShutdownClosesIdleConnections(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	srv, err := New(Options{Users: f.users, Store: f.store, Hostname: "x"})
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(l)
	c := dial(t, l.Addr().String())
	c.lhlo()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown = %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Shutdown took %v", d)
	}
	if _, err := c.br.ReadString('\n'); err == nil {
		// go-smtp may say goodbye first; then the connection must end.
		if _, err := c.br.ReadString('\n'); err == nil {
			t.Error("connection still open after Shutdown")
		}
	}
}

func TestQuota(t *testing.T) {
	t.Parallel()
	for _, permanent := range []bool{false, true} {
		f := newFixture(t)
		// alice may hold two messages; bob@example.org 300 octets.
		q := Quota{Messages: 2, Permanent: permanent}
		want := "452 4.2.2 "
		if permanent {
			want = "552 5.2.2 "
		}
		c := dial(t, start(t, Options{Users: f.users, Store: f.store, Quota: q}))
		c.lhlo()
		for range 2 {
			c.cmd("MAIL FROM:<a@b>", "250 ")
			c.cmd("RCPT TO:<alice@example.org>", "250 ")
			c.cmd("DATA", "354 ")
			fmt.Fprintf(c.nc, "%s.\r\n", body)
			c.expect("250 ")
		}
		c.cmd("MAIL FROM:<a@b>", "250 ")
		c.cmd("RCPT TO:<alice@example.org>", want) // full at RCPT
		c.cmd("RSET", "250 ")

		bq := Quota{Bytes: 300, Permanent: permanent}
		c = dial(t, start(t, Options{Users: f.users, Store: f.store, Quota: bq}))
		c.lhlo()
		c.cmd("MAIL FROM:<a@b>", "250 ")
		c.cmd("RCPT TO:<bob@example.org>", "250 ")
		c.cmd("DATA", "354 ")
		fmt.Fprintf(c.nc, "%s.\r\n", body) // about 110 octets with the header: fits
		c.expect("250 ")
		c.cmd("MAIL FROM:<a@b>", "250 ")
		c.cmd("RCPT TO:<bob@example.org>", "250 ") // not full yet
		c.cmd("DATA", "354 ")
		fmt.Fprintf(c.nc, "Subject: big\r\n\r\n%s\r\n.\r\n", strings.Repeat("y", 250))
		c.expect(want) // would not fit
		if got := messages(t, f.store, "bob@example.org"); len(got) != 1 {
			t.Errorf("bob has %d messages, want 1", len(got))
		}
		if got := messages(t, f.store, "alice"); len(got) != 2 {
			t.Errorf("alice has %d messages, want 2", len(got))
		}
	}
}

func TestQuotaNeedsMeasurableStore(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	type opaque struct{ store.Store }
	if _, err := New(Options{Users: f.users, Store: opaque{f.store}, Hostname: "x", Quota: Quota{Messages: 1}}); err == nil {
		t.Error("New with a quota on a store that cannot measure usage succeeded")
	}
}

// Data (the one-reply SMTP form) must not report success when a recipient's
// delivery failed: with one reply for all, a failure fails the message.
func TestDataFailsIfAnyRecipientFails(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	srv, err := New(Options{Users: f.users, Store: failStore{f.store, "alice"}})
	if err != nil {
		t.Fatal(err)
	}
	s := &session{srv: srv, from: "a@b", rcpts: []recipient{
		{addr: "bob@example.org", user: "bob@example.org"},
		{addr: "alice@example.org", user: "alice"},
	}}
	if err := s.Data(strings.NewReader(strings.ReplaceAll(body, "\r\n", "\n"))); err == nil {
		t.Error("Data = nil with alice's delivery failing, want an error")
	}
}

func TestOnDeliveryReportsEachRecipient(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	var mu sync.Mutex
	var got []string
	var sizes []int64
	observe := func(result string, size int64, d time.Duration) {
		mu.Lock()
		defer mu.Unlock()
		if (result == ResultDelivered) != (d > 0) {
			t.Errorf("%s reported with duration %v", result, d)
		}
		got = append(got, result)
		sizes = append(sizes, size)
	}
	c := dial(t, start(t, Options{Users: f.users, Store: failStore{f.store, "alice"}, OnDelivery: observe}))
	c.lhlo()
	c.cmd("MAIL FROM:<a@b>", "250 ")
	c.cmd("RCPT TO:<alice@example.org>", "250 ")
	c.cmd("RCPT TO:<bob@example.org>", "250 ")
	c.cmd("DATA", "354 ")
	fmt.Fprintf(c.nc, "%s.\r\n", body)
	c.expect("451 ")
	c.expect("250 ")
	c.cmd("QUIT", "221 ")
	c = dial(t, start(t, Options{Users: f.users, Store: f.store, Quota: Quota{Bytes: 300}, OnDelivery: observe}))
	c.lhlo()
	c.cmd("MAIL FROM:<a@b>", "250 ")
	c.cmd("RCPT TO:<alice@example.org>", "250 ")
	c.cmd("DATA", "354 ")
	fmt.Fprintf(c.nc, "Subject: big\r\n\r\n%s\r\n.\r\n", strings.Repeat("y", 250))
	c.expect("452 4.2.2 ")
	c.cmd("QUIT", "221 ")

	mu.Lock()
	defer mu.Unlock()
	want := []string{ResultFailed, ResultDelivered, ResultOverQuota}
	if !slices.Equal(got, want) {
		t.Errorf("OnDelivery results %q, want %q", got, want)
	}
	n := int64(len(strings.Replace(body, "..a", ".a", 1))) // un-stuffed
	if len(sizes) == 3 && (sizes[0] != n || sizes[1] != n) {
		t.Errorf("sizes %v, want %d for the first two (as received)", sizes, n)
	}
}

// An endless command or DATA line is answered as soon as it passes
// MaxLineLength, and the connection closes: the client keeps its side open
// and sends nothing more, and the answer comes long before ReadTimeout
// (5 minutes here) would end the wait. Nothing is delivered.
func TestEndlessLine(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	addr := start(t, Options{Users: f.users, Store: f.store, SpoolDir: f.dir, ReadTimeout: 5 * time.Minute})
	for _, inData := range []bool{false, true} {
		c := dial(t, addr)
		c.nc.SetDeadline(time.Now().Add(5 * time.Second))
		if inData {
			c.lhlo()
			c.cmd("MAIL FROM:<a@example.org>", "250 ")
			c.cmd("RCPT TO:<alice@example.org>", "250 ")
			c.cmd("DATA", "354 ")
			io.WriteString(c.nc, "Subject: x\r\n\r\n")
		}
		io.WriteString(c.nc, strings.Repeat("A", MaxLineLength+100))
		var lines []string
		var err error
		for range 10 {
			var l string
			if l, err = c.br.ReadString('\n'); err != nil {
				break
			}
			lines = append(lines, strings.TrimRight(l, "\r\n"))
		}
		if err == nil || isTimeout(err) {
			t.Fatalf("in DATA %v: connection still open after the overlong line (%q, %v)", inData, lines, err)
		}
		if len(lines) == 0 || !strings.HasPrefix(lines[len(lines)-1], "500 5.4.0 ") {
			t.Errorf("in DATA %v: replies %q, want the last 500 5.4.0", inData, lines)
		}
		if inData && (len(lines) != 2 || lines[0][0] != '4' && lines[0][0] != '5') {
			t.Errorf("in DATA: replies %q, want a failure for the recipient, then 500 5.4.0", lines)
		}
	}
	if got := messages(t, f.store, "alice"); len(got) != 0 {
		t.Errorf("delivered %d messages from a DATA with an overlong line, want 0", len(got))
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
