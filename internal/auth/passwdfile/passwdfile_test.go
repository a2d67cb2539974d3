package passwdfile

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/GehirnInc/crypt"
	_ "github.com/GehirnInc/crypt/sha512_crypt"
	"github.com/google/go-cmp/cmp"
	"github.com/postoffice-mail/postoffice/internal/auth"
	"github.com/postoffice-mail/postoffice/internal/auth/scheme"
	"golang.org/x/crypto/bcrypt"
)

const fixturePassword = "Correct horse 9"

// syncBuffer is a log sink safe for concurrent handlers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// fakeClock is a settable clock for Options.Now.
type fakeClock struct{ ns atomic.Int64 }

func newFakeClock() *fakeClock {
	c := &fakeClock{}
	c.ns.Store(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC).UnixNano())
	return c
}
func (c *fakeClock) Now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *fakeClock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

func openFixture(t *testing.T) (*DB, *syncBuffer) {
	t.Helper()
	logs := &syncBuffer{}
	db, err := Open("testdata/users.passwd", Options{Logger: slog.New(slog.NewTextHandler(logs, nil))})
	if err != nil {
		t.Fatalf("Open(testdata/users.passwd) = %v", err)
	}
	return db, logs
}

func TestAuthenticateFixture(t *testing.T) {
	t.Parallel()
	db, logs := openFixture(t)
	ctx := t.Context()
	tests := []struct {
		user, pass string
		wantName   string // "" means auth.ErrFailed
	}{
		{"alice", fixturePassword, "alice"},
		{"alice", "second", ""}, // the duplicate line is ignored
		{"alice", "correct horse 9", ""},
		{"bob@example.org", fixturePassword, "bob@example.org"},
		{"bob+example.org", fixturePassword, "bob@example.org"}, // SDPS form
		{"bob+example.org", "wrong", ""},
		{"bob", fixturePassword, ""},
		{"carol@example.org", fixturePassword, "carol@example.org"},
		{"carol@example.org", "", ""}, // nopassword is not honoured
		{"dave", fixturePassword, "dave"},
		{"erin", fixturePassword, "erin"},
		{"frank", fixturePassword, "frank"},
		{"grace", fixturePassword, "grace"},
		{"grace", fixturePassword + " ", ""},
		{"heidi", "", ""},
		{"heidi", fixturePassword, ""},
		{"ivan", "", ""},
		{"judy", "a", ""},
		{"mallory", "abc", ""},
		{"oscar", fixturePassword, "oscar"},
		{"nobody", fixturePassword, ""},
		{"", "", ""},
		{"ALICE", fixturePassword, ""},
		{"alice", strings.Repeat("x", scheme.MaxPasswordLen+1), ""},
	}
	for _, tt := range tests {
		u, err := db.Authenticate(ctx, tt.user, tt.pass)
		if tt.wantName == "" {
			if !errors.Is(err, auth.ErrFailed) {
				t.Errorf("Authenticate(%q, %q) = %+v, %v, want %v", tt.user, tt.pass, u, err, auth.ErrFailed)
			}
			continue
		}
		if err != nil || u.Name != tt.wantName {
			t.Errorf("Authenticate(%q, %q) = %+v, %v, want user %q", tt.user, tt.pass, u, err, tt.wantName)
		}
	}
	out := logs.String()
	for _, want := range []string{
		"line=17 user=judy", "line=19 user=mallory", "line=24 user=alice", "user defined again",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, fixturePassword) || strings.Contains(out, "EFKaDOlPzU7bk") {
		t.Errorf("log contains a password or hash:\n%s", out)
	}
}

func TestLookupFixture(t *testing.T) {
	t.Parallel()
	db, _ := openFixture(t)
	tests := []struct {
		login string
		want  auth.User
	}{
		{"alice", auth.User{Name: "alice", Home: "/home/alice", Extra: map[string]string{
			"userdb_mail": "maildir:~/Mail", "quota_rule": "*:storage=1G", "uid": "1000", "gid": "1000"}}},
		{"bob@example.org", auth.User{Name: "bob@example.org"}},
		{"carol@example.org", auth.User{Name: "carol@example.org", Home: "/srv/mail/carol", Extra: map[string]string{
			"userdb_home": "/srv/mail/carol", "nopassword": ""}}},
		{"heidi", auth.User{Name: "heidi"}},
		{"judy", auth.User{Name: "judy"}},
		{"oscar", auth.User{Name: "oscar", Home: "/home/oscar", Extra: map[string]string{
			"userdb_mail": "maildir:/var/mail/oscar", "uid": "1001", "gid": "1001"}}},
	}
	for _, tt := range tests {
		got, err := db.Lookup(t.Context(), tt.login)
		if err != nil {
			t.Errorf("Lookup(%q) = %v", tt.login, err)
			continue
		}
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("Lookup(%q) mismatch (-want +got):\n%s", tt.login, diff)
		}
	}
	// Lookup is exact: the user+domain login alias is for names typed at
	// login (Authenticate, Credentials), never for recipients, token claims
	// or certificate names.
	for _, login := range []string{"nobody", "bob", "bob+example.org", "bob+example.org+x", "+example.org", "bob+", "", "ignored-line-without-user"} {
		if u, err := db.Lookup(t.Context(), login); !errors.Is(err, auth.ErrUnknownUser) {
			t.Errorf("Lookup(%q) = %+v, %v, want %v", login, u, err, auth.ErrUnknownUser)
		}
	}
	// The returned map is the caller's to change.
	u, _ := db.Lookup(t.Context(), "alice")
	u.Extra["uid"] = "0"
	if u2, _ := db.Lookup(t.Context(), "alice"); u2.Extra["uid"] != "1000" {
		t.Errorf("Lookup(alice) after changing a returned map: uid %q, want 1000", u2.Extra["uid"])
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := db.Lookup(ctx, "alice"); !errors.Is(err, context.Canceled) {
		t.Errorf("Lookup(cancelled) = %v, want %v", err, context.Canceled)
	}
	if _, err := db.Authenticate(ctx, "alice", fixturePassword); !errors.Is(err, context.Canceled) {
		t.Errorf("Authenticate(cancelled) = %v, want %v", err, context.Canceled)
	}
}

func TestOpenErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	tests := []struct {
		content  string
		wantLine int
		wantText string
	}{
		{"a:{PLAIN}x\nb c:{PLAIN}y\n", 2, "white space"},
		{"a:{PLAIN}x:12x\n", 1, "uid"},
		{"a:{PLAIN}x::-1\n", 1, "gid"},
		{"# c\n\n.hidden:{PLAIN}x\n", 3, "starts with '.'"},
		{"a/b:{PLAIN}x\n", 1, "'/'"},
		{"a\x01:{PLAIN}x\n", 1, "control"},
		{"a:{PLAIN}x\x00y\n", 1, "NUL"},
		{"a:{PLAIN}\xff\n", 1, "UTF-8"},
		{"a:{PLAIN}x:::::: =v\n", 1, "no name"},
		{"a:" + strings.Repeat("x", maxLineLen) + "\n", 1, "longer than"},
	}
	for i, tt := range tests {
		p := filepath.Join(dir, "f"+string(rune('a'+i)))
		if err := os.WriteFile(p, []byte(tt.content), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := Open(p, Options{})
		var pe *ParseError
		if !errors.As(err, &pe) || pe.Line != tt.wantLine || !strings.Contains(err.Error(), tt.wantText) ||
			!strings.HasPrefix(err.Error(), "passwdfile: "+p+":") {
			t.Errorf("Open(%q) = %v, want a ParseError at line %d mentioning %q", tt.content, err, tt.wantLine, tt.wantText)
		}
	}
	if _, err := Open(filepath.Join(dir, "missing"), Options{}); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Open(missing) = %v, want %v", err, os.ErrNotExist)
	}
	p := filepath.Join(dir, "ok")
	os.WriteFile(p, nil, 0o600)
	if _, err := Open(p, Options{DefaultScheme: "NOSUCH"}); !errors.Is(err, scheme.ErrUnknownScheme) {
		t.Errorf("Open(DefaultScheme NOSUCH) = %v, want %v", err, scheme.ErrUnknownScheme)
	}
	db, err := Open(p, Options{DefaultScheme: "PLAIN"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Lookup(t.Context(), "x"); !errors.Is(err, auth.ErrUnknownUser) {
		t.Errorf("Lookup on an empty file = %v, want %v", err, auth.ErrUnknownUser)
	}
}

func TestDefaultScheme(t *testing.T) {
	t.Parallel()
	p := filepath.Join(t.TempDir(), "users")
	os.WriteFile(p, []byte("u:secret\n"), 0o600)
	db, err := Open(p, Options{DefaultScheme: "PLAIN"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Authenticate(t.Context(), "u", "secret"); err != nil {
		t.Errorf("Authenticate(u, secret) with DefaultScheme PLAIN = %v, want nil", err)
	}
}

func TestReload(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	p := filepath.Join(dir, "users")
	h, err := scheme.Hash("PLAIN", "one")
	if err != nil {
		t.Fatal(err)
	}
	if err := AddUser(p, "u1", h); err != nil {
		t.Fatal(err)
	}
	clock := newFakeClock()
	logs := &syncBuffer{}
	db, err := Open(p, Options{Now: clock.Now, Logger: slog.New(slog.NewTextHandler(logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	lookup := func(user string) error {
		_, err := db.Lookup(ctx, user)
		return err
	}

	if err := AddUser(p, "u2", h); err != nil {
		t.Fatal(err)
	}
	if err := lookup("u2"); !errors.Is(err, auth.ErrUnknownUser) {
		t.Errorf("Lookup(u2) before the interval = %v, want %v", err, auth.ErrUnknownUser)
	}
	clock.Advance(999 * time.Millisecond)
	if err := lookup("u2"); !errors.Is(err, auth.ErrUnknownUser) {
		t.Errorf("Lookup(u2) after 999ms = %v, want %v", err, auth.ErrUnknownUser)
	}
	clock.Advance(time.Millisecond)
	if err := lookup("u2"); err != nil {
		t.Errorf("Lookup(u2) after 1s = %v, want nil", err)
	}

	// A broken file keeps the old data and logs file:line once.
	os.WriteFile(p+".new", []byte("u1:{PLAIN}one\nu3:{PLAIN}x:notanumber\n"), 0o600)
	os.Rename(p+".new", p)
	for range 3 {
		clock.Advance(time.Second)
		if err := lookup("u2"); err != nil {
			t.Errorf("Lookup(u2) after a broken reload = %v, want nil (old data)", err)
		}
	}
	out := logs.String()
	if n := strings.Count(out, "reload failed"); n != 1 || !strings.Contains(out, p+":2:") {
		t.Errorf("log has %d reload failures, want 1 naming %s:2:\n%s", n, p, out)
	}

	// Fixing the file reloads it.
	os.WriteFile(p+".new", []byte("u3:{PLAIN}three\n"), 0o600)
	os.Rename(p+".new", p)
	clock.Advance(time.Second)
	if _, err := db.Authenticate(ctx, "u3", "three"); err != nil {
		t.Errorf("Authenticate(u3) after the fix = %v, want nil", err)
	}
	if err := lookup("u1"); !errors.Is(err, auth.ErrUnknownUser) {
		t.Errorf("Lookup(u1) after the fix = %v, want %v", err, auth.ErrUnknownUser)
	}

	// An in-place write (same inode) is seen too.
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("u4:{PLAIN}four\n")
	f.Close()
	clock.Advance(time.Second)
	if err := lookup("u4"); err != nil {
		t.Errorf("Lookup(u4) after an in-place append = %v, want nil", err)
	}

	// A vanished file keeps the data and logs once.
	os.Remove(p)
	for range 3 {
		clock.Advance(time.Second)
		if err := lookup("u4"); err != nil {
			t.Errorf("Lookup(u4) with the file gone = %v, want nil (old data)", err)
		}
	}
	if n := strings.Count(logs.String(), "cannot stat"); n != 1 {
		t.Errorf("log has %d stat failures, want 1:\n%s", n, logs.String())
	}
}

// TestUnknownUserTiming checks that a failed login for an unknown user costs
// about what one for a known SHA512-CRYPT user does.
func TestUnknownUserTiming(t *testing.T) {
	// Not parallel: cost measures the whole process's CPU time.
	p := filepath.Join(t.TempDir(), "users")
	h, err := scheme.Hash(scheme.DefaultNewScheme, "right")
	if err != nil {
		t.Fatal(err)
	}
	if err := AddUser(p, "known", h); err != nil {
		t.Fatal(err)
	}
	db, err := Open(p, Options{})
	if err != nil {
		t.Fatal(err)
	}
	// Alternate the two, and measure the CPU time of each check (cost), so
	// that the load of other tests does not decide the result.
	var known, unknown []time.Duration
	for range 21 {
		for _, user := range []string{"known", "unknown"} {
			var err error
			d := cost(func() { _, err = db.Authenticate(t.Context(), user, "wrong") })
			if !errors.Is(err, auth.ErrFailed) {
				t.Fatalf("Authenticate(%q, wrong) = %v, want %v", user, err, auth.ErrFailed)
			}
			if user == "known" {
				known = append(known, d)
			} else {
				unknown = append(unknown, d)
			}
		}
	}
	median := func(ds []time.Duration) time.Duration {
		slices.Sort(ds)
		return ds[len(ds)/2]
	}
	k, u := median(known), median(unknown)
	t.Logf("median failed login: known user %v, unknown user %v", k, u)
	if u < k/3 || u > k*3 {
		t.Errorf("failed login takes %v for an unknown user and %v for a known one; want them within 3x", u, k)
	}
}

// TestConcurrentUse runs logins while editors change the file, for -race.
func TestConcurrentUse(t *testing.T) {
	t.Parallel()
	p := filepath.Join(t.TempDir(), "users")
	h, _ := scheme.Hash("PLAIN", "pw")
	if err := AddUser(p, "base", h); err != nil {
		t.Fatal(err)
	}
	db, err := Open(p, Options{CheckInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Go(func() {
			name := "user" + string(rune('a'+i))
			if err := AddUser(p, name, h); err != nil {
				t.Errorf("AddUser(%q) = %v", name, err)
			}
		})
		wg.Go(func() {
			for range 50 {
				if _, err := db.Authenticate(t.Context(), "base", "pw"); err != nil {
					t.Errorf("Authenticate(base) = %v", err)
					return
				}
			}
		})
	}
	wg.Wait()
	for i := range 4 {
		name := "user" + string(rune('a'+i))
		if _, err := db.Authenticate(t.Context(), name, "pw"); err != nil {
			t.Errorf("Authenticate(%q) after the edits = %v, want nil", name, err)
		}
	}
}

func BenchmarkAuthenticate(b *testing.B) {
	logs := &syncBuffer{}
	db, err := Open("testdata/users.passwd", Options{Logger: slog.New(slog.NewTextHandler(logs, nil))})
	if err != nil {
		b.Fatal(err)
	}
	for _, user := range []string{"alice", "grace", "nobody"} {
		b.Run(user, func(b *testing.B) {
			for b.Loop() {
				db.Authenticate(b.Context(), user, "wrong")
			}
		})
	}
}

// TestUnknownUserTimingDominant checks that an unknown user costs what the
// file's own users cost, scheme and cost parameters included: a file of
// bcrypt users (cost 9) or of SHA512-CRYPT users with 40,000 rounds, where
// a fixed dummy in the default scheme would answer an unknown user several
// times faster. Medians of the CPU time of alternated runs are compared,
// with a wide band.
func TestUnknownUserTimingDominant(t *testing.T) {
	// Not parallel: cost measures the whole process's CPU time.
	bc, err := bcrypt.GenerateFromPassword([]byte("right"), 9)
	if err != nil {
		t.Fatal(err)
	}
	sc, err := crypt.SHA512.New().Generate([]byte("right"), []byte("$6$rounds=40000$c2FsdHNhbHQ$"))
	if err != nil {
		t.Fatal(err)
	}
	plainDummy, err := scheme.Hash("PLAIN", "x")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, stored string }{
		{"BLF-CRYPT cost 9", "{BLF-CRYPT}" + string(bc)},
		{"SHA512-CRYPT rounds=40000", "{SHA512-CRYPT}" + sc},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "users")
			// Three users of the dominant class, one cheap outlier first.
			file := "cheap:" + plainDummy + "\nknown:" + tc.stored + "\nk2:" + tc.stored + "\nk3:" + tc.stored + "\n"
			if err := os.WriteFile(p, []byte(file), 0o600); err != nil {
				t.Fatal(err)
			}
			db, err := Open(p, Options{})
			if err != nil {
				t.Fatal(err)
			}
			var known, unknown []time.Duration
			for range 9 {
				for _, user := range []string{"known", "nosuchuser"} {
					var err error
					d := cost(func() { _, err = db.Authenticate(t.Context(), user, "wrong") })
					if !errors.Is(err, auth.ErrFailed) {
						t.Fatalf("Authenticate(%q, wrong) = %v, want %v", user, err, auth.ErrFailed)
					}
					if user == "known" {
						known = append(known, d)
					} else {
						unknown = append(unknown, d)
					}
				}
			}
			median := func(ds []time.Duration) time.Duration {
				slices.Sort(ds)
				return ds[len(ds)/2]
			}
			k, u := median(known), median(unknown)
			t.Logf("median failed login: known user %v, unknown user %v", k, u)
			if u < k/2 || u > k*2 {
				t.Errorf("failed login takes %v for an unknown user and %v for a known one; want them within 2x", u, k)
			}
		})
	}
}

// Extra fields that restrict or redirect a login in ways postoffice does not
// implement make the file fail to load, naming the line; the ones it
// implements load; nopassword with a password is ignored with a warning.
func TestLoginExtraFields(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for i, tt := range []struct {
		content  string
		wantLine int
		wantText string
	}{
		{"a:{PLAIN}x\nb:{PLAIN}y::::::proxy=y host=10.0.0.2\n", 2, `"host"`},
		{"a:{PLAIN}x::::::proxy\n", 1, `"proxy"`},
		{"# c\na:{PLAIN}x::::::userdb_home=/h allow_ips=10.0.0.1\n", 2, `"allow_ips"`},
		{"a:{PLAIN}x::::::deny_nets=10.0.0.0/8\n", 1, `"deny_nets"`},
		{"a:{PLAIN}x::::::master=admin pass=secret\n", 1, `"master"`},
		{"a:{PLAIN}x::::::user=b\n", 1, `"user"`},
		{"a:{PLAIN}x::::::noauthenticate\n", 1, `"noauthenticate"`},
		{"a:{PLAIN}x::::::delay_until=2000000000\n", 1, `"delay_until"`},
		{"a:{PLAIN}x::::::allow_nets=10.0.0.0/33\n", 1, "allow_nets"},
		{"a:{PLAIN}x::::::allow_real_nets=\n", 1, "empty network list"},
		{"a:{PLAIN}x::::::allow_nets=local\n", 1, "allow_nets"},
		{"a:::::::nopassword=no\n", 1, "nopassword=no"},
	} {
		p := filepath.Join(dir, fmt.Sprintf("f%d", i))
		if err := os.WriteFile(p, []byte(tt.content), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := Open(p, Options{})
		var pe *ParseError
		if !errors.As(err, &pe) || pe.Line != tt.wantLine || !strings.Contains(err.Error(), tt.wantText) ||
			!strings.HasPrefix(err.Error(), "passwdfile: "+p+":") {
			t.Errorf("Open(%q) = %v, want a ParseError at line %d mentioning %s", tt.content, err, tt.wantLine, tt.wantText)
		}
	}

	p := filepath.Join(dir, "ok")
	content := "a:{PLAIN}x::::::nologin=y reason=Moved userdb_quota_rule=*:storage=1G nodelay forward_x=y\n" +
		"b:{PLAIN}x::::::allow_nets=10.0.0.0/8,192.0.2.1 allow_real_nets=2001:db8::/32\n" +
		"c:{PLAIN}x::::::nopassword\n" +
		"d:::::::nopassword=y\n"
	os.WriteFile(p, []byte(content), 0o600)
	logs := &syncBuffer{}
	db, err := Open(p, Options{Logger: slog.New(slog.NewTextHandler(logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	u, _ := db.Lookup(ctx, "a")
	if !u.Restrict.NoLogin || u.Restrict.Reason != "Moved" {
		t.Errorf("Lookup(a).Restrict = %+v, want nologin with reason Moved", u.Restrict)
	}
	u, _ = db.Lookup(ctx, "b")
	want := auth.Restrictions{
		AllowNets:     []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("192.0.2.1/32")},
		AllowRealNets: []netip.Prefix{netip.MustParsePrefix("2001:db8::/32")},
	}
	if diff := cmp.Diff(want, u.Restrict, cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); diff != "" {
		t.Errorf("Lookup(b).Restrict (-want +got):\n%s", diff)
	}
	if _, err := db.Authenticate(ctx, "c", "other"); !errors.Is(err, auth.ErrFailed) {
		t.Errorf("Authenticate(c, other) with nopassword and a password = %v, want %v", err, auth.ErrFailed)
	}
	if !strings.Contains(logs.String(), "nopassword on a line with a password") {
		t.Errorf("no warning about c's nopassword:\n%s", logs.String())
	}
	for _, pw := range []string{"", "anything"} {
		if u, err := db.Authenticate(ctx, "d", pw); err != nil || u.Name != "d" {
			t.Errorf("Authenticate(d, %q) with nopassword = %v, %v; want d", pw, u.Name, err)
		}
	}
	if _, stored, err := db.Credentials(ctx, "d"); err != nil || stored != "" {
		t.Errorf("Credentials(d) = %q, %v; want no stored secret", stored, err)
	}
}

// A reload that meets an unsupported restricting field keeps the users
// loaded before, restrictions included, and logs the file and line.
func TestReloadRefusedField(t *testing.T) {
	t.Parallel()
	p := filepath.Join(t.TempDir(), "users")
	os.WriteFile(p, []byte("a:{PLAIN}x::::::allow_nets=10.0.0.0/8\n"), 0o600)
	clock := newFakeClock()
	logs := &syncBuffer{}
	db, err := Open(p, Options{Now: clock.Now, Logger: slog.New(slog.NewTextHandler(logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(p+".new", []byte("a:{PLAIN}x::::::allow_nets=10.0.0.0/8\nb:{PLAIN}y::::::proxy host=h\n"), 0o600)
	os.Rename(p+".new", p)
	clock.Advance(time.Second)
	u, err := db.Authenticate(t.Context(), "a", "x")
	if err != nil || u.Restrict.AllowNets == nil {
		t.Errorf("Authenticate(a) after a refused reload = %+v, %v; want the old entry with its allow_nets", u, err)
	}
	if _, err := db.Lookup(t.Context(), "b"); !errors.Is(err, auth.ErrUnknownUser) {
		t.Errorf("Lookup(b) after a refused reload = %v, want %v", err, auth.ErrUnknownUser)
	}
	if out := logs.String(); !strings.Contains(out, "reload failed") || !strings.Contains(out, p+":2:") {
		t.Errorf("log does not report the refused reload at %s:2:\n%s", p, out)
	}
}
