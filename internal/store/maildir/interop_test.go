package maildir

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	gomaildir "github.com/emersion/go-maildir"
	"github.com/google/go-cmp/cmp"

	"github.com/postoffice-mail/postoffice/internal/store"
)

func omd(dir string) gomaildir.Dir { return gomaildir.Dir(dir) }

func newOracleDelivery(dir string) (*gomaildir.Delivery, error) { return gomaildir.NewDelivery(dir) }

// dovecotName returns a Dovecot-style base name with S= and, if withW, W=.
func dovecotName(secs int, body string, withW bool) string {
	n := fmt.Sprintf("%d.M10P100.mx.example.org,S=%d", secs, len(body))
	if withW {
		n += fmt.Sprintf(",W=%d", wsize(body)-completion(int64(len(body)), lastOctet(body)))
	}
	return n
}

func lastOctet(s string) byte {
	if s == "" {
		return 0
	}
	return s[len(s)-1]
}

// TestDovecotMigration reads a Maildir as Dovecot 2.3 leaves it: cur/ files
// with ",S=..,W=..:2,S", a dovecot-uidlist with P, W and O records, and mail
// Postfix delivered after Dovecot was stopped. Every message Dovecot listed
// keeps the UIDL Dovecot's POP3 showed.
func TestDovecotMigration(t *testing.T) {
	t.Parallel()
	for _, verify := range []bool{false, true} {
		t.Run(fmt.Sprintf("verify=%v", verify), func(t *testing.T) {
			t.Parallel()
			testDovecotMigration(t, verify)
		})
	}
}

// testDovecotMigration is TestDovecotMigration with or without
// VerifySizeFields: uid 2, whose W is only in dovecot-uidlist, has no final
// newline, so it is listed at that W (as Dovecot listed it) unless sizes
// are verified.
func testDovecotMigration(t *testing.T, verify bool) {
	s := newStoreOpts(t, Options{VerifySizeFields: verify})
	const user = "migrated@example.org"
	dir := mustPath(t, s, user)
	bodies := []string{
		"Subject: uid 1\r\n\r\nplain default UIDL\r\n",
		"Subject: uid 2\n\nW only in the uidlist, no final newline",
		"Subject: uid 3\n\nP empty: the base name is the UIDL\n",
		"Subject: uid 4\n\nP from Courier, O1: listed first\n",
		"Subject: uid 5\n\nP duplicates uid 4's: gets our own UIDL\n",
		"Subject: uid 7\n\nin new/, not yet moved\n",
		"Subject: postfix\n\ndelivered by Postfix after Dovecot stopped\n",
	}
	names := []string{
		dovecotName(1700000001, bodies[0], true),
		dovecotName(1700000002, bodies[1], false),
		dovecotName(1700000003, bodies[2], true),
		dovecotName(1700000004, bodies[3], true),
		dovecotName(1700000005, bodies[4], true),
		dovecotName(1700000007, bodies[5], true),
		"1700000100.V801I55M1.mx.example.org",
	}
	files := []string{
		"cur/" + names[0] + ":2,S",
		"cur/" + names[1] + ":2,RS",
		"cur/" + names[2] + ":2,",
		"cur/" + names[3] + ":2,S",
		"cur/" + names[4] + ":2,S",
		"new/" + names[5],
		"new/" + names[6],
	}
	for i, f := range files {
		writeFile(t, filepath.Join(dir, f), bodies[i])
	}
	w2 := wsize(bodies[1]) - 2
	uidlistText := "3 V1700000000 N8 G0123456789abcdef0123456789abcdef\n" +
		"1 :" + names[0] + "\n" +
		fmt.Sprintf("2 W%d :%s:2,RS\n", w2, names[1]) + // Dovecot may keep the info part
		"3 P :" + names[2] + "\n" +
		"4 Pold-uidl-from-courier O1 :" + names[3] + "\n" +
		"5 Pold-uidl-from-courier :" + names[4] + "\n" +
		"6 :1700000006.M10P100.mx.example.org,S=1,W=1\n" + // expunged since
		"7 :" + names[5] + "\n"
	writeFile(t, filepath.Join(dir, "dovecot-uidlist"), uidlistText)

	wantUIDLs := []string{
		"old-uidl-from-courier", // uid 4, O1
		"000000016553f100",      // %08Xu%08Xv (lowercase hex): uid 1, uidvalidity 1700000000
		"000000026553f100",      // uid 2
		names[2],                // uid 3, empty P
		deriveUIDL(names[4]),    // uid 5, duplicate P
		"000000076553f100",      // uid 7
		deriveUIDL(names[6]),    // not in dovecot-uidlist
	}
	wantBodies := []string{bodies[3], bodies[0], bodies[1], bodies[2], bodies[4], bodies[5], bodies[6]}
	check := func(stage string) {
		t.Helper()
		m := openMD(t, s, user)
		defer m.Close()
		msgs := m.Messages()
		if diff := cmp.Diff(wantUIDLs, uidlsOf(m)); diff != "" {
			t.Errorf("%s: UIDLs (-want +got):\n%s", stage, diff)
		}
		for i, b := range wantBodies {
			if i >= len(msgs) {
				break
			}
			if got := readMsg(t, m, i); got != b {
				t.Errorf("%s: message %d = %q, want %q", stage, i, got, b)
			}
			want := wsize(b)
			if !verify && b == bodies[1] {
				want = w2 // Dovecot's W, without the completing CRLF
			}
			if msgs[i].Size != want {
				t.Errorf("%s: message %d Size = %d, want %d", stage, i, msgs[i].Size, want)
			}
		}
	}
	check("first open")
	check("second open")
	if err := os.Remove(filepath.Join(dir, indexName)); err != nil {
		t.Fatal(err)
	}
	check("index lost, dovecot-uidlist kept")
	if err := os.Remove(filepath.Join(dir, "dovecot-uidlist")); err != nil {
		t.Fatal(err)
	}
	check("dovecot-uidlist removed, index kept")
}

func TestReadUIDListVersion1(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "dovecot-uidlist")
	writeFile(t, path, "1 1234 3\n1 a.b.c:2,S\n2 d.e.f\nbroken line\n")
	l, err := readUIDList(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := l.uidl(l.recs["d.e.f"], "d.e.f", nil); got != "00000002000004d2" {
		t.Errorf("v1 UIDL = %q, want 00000002000004d2", got)
	}
	if _, ok := l.recs["a.b.c"]; !ok {
		t.Error("v1 record with info part not found by base name")
	}
	for _, bad := range []string{"", "9 V1\n", "3 N5\n1 :x\n"} {
		writeFile(t, path, bad)
		if _, err := readUIDList(path); err == nil {
			t.Errorf("readUIDList(%q) succeeded, want error", bad)
		}
	}
}

// TestBrokenUIDListIgnored: a dovecot-uidlist that doesn't parse costs the
// old UIDLs, not the mail.
func TestBrokenUIDListIgnored(t *testing.T) {
	t.Parallel()
	s, _ := newTestStore(t, true)
	dir := mustPath(t, s, "b")
	writeFile(t, filepath.Join(dir, "cur", "1700000001.M1P1.h:2,S"), "x\n")
	writeFile(t, filepath.Join(dir, "dovecot-uidlist"), "garbage\n")
	m := openMD(t, s, "b")
	defer m.Close()
	if got := uidlsOf(m); len(got) != 1 || got[0] != deriveUIDL("1700000001.M1P1.h") {
		t.Errorf("UIDLs = %q, want the derived one", got)
	}
}

func TestParseUser(t *testing.T) {
	t.Parallel()
	good := []struct {
		in                  string
		full, local, domain string
	}{
		{"alice", "alice", "alice", ""},
		{"alice@example.org", "alice@example.org", "alice", "example.org"},
		// No login alias in the store: the user database resolves "user+domain"
		// at an interactive login, and a stored "alice+example.org" is a user of
		// its own, never alice@example.org's maildrop.
		{"alice+example.org", "alice+example.org", "alice+example.org", ""},
		{"user+", "user+", "user+", ""},
		{"a+b@example.org", "a+b@example.org", "a+b", "example.org"},
		{"a.b@example.org", "a.b@example.org", "a.b", "example.org"},
		{"José@exämple.org", "José@exämple.org", "José", "exämple.org"},
		{"x..y", "x..y", "x..y", ""},
	}
	for _, tt := range good {
		got, err := parseUser(tt.in)
		want := userName{full: tt.full, local: tt.local, domain: tt.domain}
		if err != nil || got != want {
			t.Errorf("parseUser(%q) = %+v, %v, want %+v", tt.in, got, err, want)
		}
	}
	bad := []string{
		"", ".", "..", "../etc", "../../etc/passwd", "a/b", "/abs", ".x", "x/..", `a\b`,
		"a\x00b", "a\nb", "a\tb", "a\x7fb", "user@", "@example.org",
		"user@../etc", "user@.example.org", "user@a/b", "a@b@c", ".x@example.org",
		"\xff\xfe", strings.Repeat("a", 256),
	}
	for _, in := range bad {
		if got, err := parseUser(in); err == nil {
			t.Errorf("parseUser(%q) = %+v, want error", in, got)
		} else if !errors.Is(err, store.ErrNoUser) {
			t.Errorf("parseUser(%q) error %v does not wrap store.ErrNoUser", in, err)
		}
	}
}

func TestPath(t *testing.T) {
	t.Parallel()
	home := func(u string) (string, error) { return "/home/" + u, nil }
	tests := []struct {
		loc, user, want string
	}{
		{"/var/vmail/%d/%n/Maildir", "alice@example.org", "/var/vmail/example.org/alice/Maildir"},
		{"/var/vmail/%d/%n/Maildir", "alice+example.org", "/var/vmail/alice+example.org/Maildir"},
		{"/var/vmail/%d/%n/Maildir", "alice", "/var/vmail/alice/Maildir"},
		{"maildir:/var/mail/%u", "bob@example.org", "/var/mail/bob@example.org"},
		{"/var/mail/%{domain}/%{username}:LAYOUT=fs:INDEX=/x/%u", "bob@example.org", "/var/mail/example.org/bob"},
		{"/m/100%%/%u", "bob", "/m/100%/bob"},
		{"~/Maildir", "carol", "/home/carol/Maildir"},
		{"%h/Maildir", "carol", "/home/carol/Maildir"},
	}
	for _, tt := range tests {
		s, err := New(Options{Location: tt.loc, Home: home, Hostname: "h"})
		if err != nil {
			t.Errorf("New(%q): %v", tt.loc, err)
			continue
		}
		if got, err := s.Path(tt.user); err != nil || got != tt.want {
			t.Errorf("New(%q).Path(%q) = %q, %v, want %q", tt.loc, tt.user, got, err, tt.want)
		}
	}
	for _, loc := range []string{"", "relative/%u", "/m/%x", "/m/%", "/m/%{user", "/m/%u:CONTROL=/c", "~user/Maildir"} {
		if _, err := New(Options{Location: loc, Home: home, Hostname: "h"}); err == nil {
			t.Errorf("New(%q) succeeded, want error", loc)
		}
	}
	if _, err := New(Options{Location: "~/Maildir", Hostname: "h"}); err == nil {
		t.Error("New(~/Maildir) without Home succeeded, want error")
	}
	// A bad user name never reaches the file system.
	root := t.TempDir()
	s, err := New(Options{Location: root + "/%d/%n/Maildir", Hostname: "h", NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range []string{"../etc", "a/b", ".x", "x@.."} {
		if _, err := s.Open(context.Background(), u); !errors.Is(err, store.ErrNoUser) {
			t.Errorf("Open(%q) = %v, want store.ErrNoUser", u, err)
		}
		if err := s.Deliver(context.Background(), u, strings.NewReader("x")); !errors.Is(err, store.ErrNoUser) {
			t.Errorf("Deliver(%q) = %v, want store.ErrNoUser", u, err)
		}
	}
	if ents, _ := os.ReadDir(root); len(ents) != 0 {
		t.Errorf("bad user names created %v", ents)
	}
}

const helperEnv = "POSTOFFICE_MAILDIR_LOCK_HELPER"

// TestLockHelperProcess is not a test: it is the child of TestLockOtherProcess.
// It opens the maildrop given in the environment, says "locked" and waits to
// be killed.
func TestLockHelperProcess(t *testing.T) {
	loc := os.Getenv(helperEnv)
	if loc == "" {
		t.Skip("helper process only")
	}
	s, err := New(Options{Location: loc, Hostname: "helper", NoSync: true})
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	if _, err := s.Open(context.Background(), "locked@example.org"); err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	fmt.Println("locked")
	time.Sleep(time.Minute)
	os.Exit(2)
}

// TestLockOtherProcess: a maildrop held by another process is in use, and
// after that process is killed with SIGKILL it is free again: no stale lock.
func TestLockOtherProcess(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	loc := root + "/%d/%n/Maildir"
	cmd := exec.Command(os.Args[0], "-test.run=^TestLockHelperProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), helperEnv+"="+loc)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cmd.Process.Kill()
		cmd.Wait()
	}()
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || line != "locked\n" {
		t.Fatalf("helper said %q, %v; want \"locked\"", line, err)
	}
	s, err := New(Options{Location: loc, Hostname: "parent", NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	if m, err := s.Open(context.Background(), "locked@example.org"); !errors.Is(err, store.ErrInUse) {
		if err == nil {
			m.Close()
		}
		t.Fatalf("Open while another process holds the maildrop = %v, want store.ErrInUse", err)
	}
	// Deliveries take no lock.
	if err := s.Deliver(context.Background(), "locked@example.org", strings.NewReader("x\n")); err != nil {
		t.Fatalf("Deliver while locked: %v", err)
	}
	if err := cmd.Process.Kill(); err != nil { // SIGKILL
		t.Fatal(err)
	}
	cmd.Wait()
	m, err := s.Open(context.Background(), "locked@example.org")
	if err != nil {
		t.Fatalf("Open after the holder was killed: %v", err)
	}
	defer m.Close()
	if n := len(m.Messages()); n != 1 {
		t.Errorf("%d messages, want 1", n)
	}
}
