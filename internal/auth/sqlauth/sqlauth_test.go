package sqlauth

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"

	"github.com/postoffice-mail/postoffice/internal/auth"
	"github.com/postoffice-mail/postoffice/internal/auth/passwdfile"
	"github.com/postoffice-mail/postoffice/internal/auth/scheme"
	"github.com/postoffice-mail/postoffice/internal/testutil/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

func open(t testing.TB, dsn string, opts Options) *DB {
	t.Helper()
	opts.DSN = dsn
	d, err := Open(context.Background(), opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(d.Close)
	return d
}

func exec(t testing.TB, dsn string, sqls ...string) {
	t.Helper()
	ctx := context.Background()
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	for _, s := range sqls {
		if _, err := c.Exec(ctx, s); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
}

// hash makes a cheap stored password (SSHA256) so tests stay fast.
func hash(t testing.TB, pw string) string {
	t.Helper()
	h, err := scheme.Hash("SSHA256", pw)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func TestOwnTable(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	d := open(t, pgtest.NewDB(t), Options{})
	if err := d.CheckSchema(ctx); !errors.Is(err, ErrSchema) {
		t.Errorf("CheckSchema before Migrate = %v, want ErrSchema", err)
	}
	for range 2 {
		if err := d.Migrate(ctx); err != nil {
			t.Fatalf("Migrate: %v", err)
		}
	}
	if err := d.CheckSchema(ctx); err != nil {
		t.Fatalf("CheckSchema: %v", err)
	}
	add := func(u NewUser) {
		t.Helper()
		if err := d.Add(ctx, u); err != nil {
			t.Fatalf("Add(%q): %v", u.Name, err)
		}
	}
	add(NewUser{Name: "alice@example.org", Password: hash(t, "secret"), UID: "1000", GID: "1000", Home: "/home/alice",
		Extra: map[string]string{"userdb_mail": "maildir:~/Mail"}})
	add(NewUser{Name: "bob", Password: hash(t, "pw"), Extra: map[string]string{"nologin": "", "reason": "moved"}})
	extra, err := passwdfile.ParseExtraFields("allow_nets=192.0.2.0/24,2001:db8::/32")
	if err != nil {
		t.Fatal(err)
	}
	add(NewUser{Name: "carol", Password: hash(t, "pw"), Extra: extra})

	if err := d.Add(ctx, NewUser{Name: "bob", Password: hash(t, "x")}); !errors.Is(err, ErrUserExists) {
		t.Errorf("Add(bob) again = %v, want ErrUserExists", err)
	}
	for _, bad := range []NewUser{
		{Name: "", Password: hash(t, "x")},
		{Name: "a/b", Password: hash(t, "x")},
		{Name: "has space", Password: hash(t, "x")},
		{Name: "d", Password: "{NOSUCH}x"},
		{Name: "d", Password: hash(t, "x"), Extra: map[string]string{"proxy": "y"}},
		{Name: "d", Password: hash(t, "x"), Extra: map[string]string{"allow_nets": "not-a-net"}},
		{Name: "d", Password: hash(t, "x"), UID: "-1"},
	} {
		if err := d.Add(ctx, bad); err == nil {
			t.Errorf("Add(%+v) = nil, want an error", bad)
		}
	}

	u, err := d.Authenticate(ctx, "alice@example.org", "secret")
	if err != nil {
		t.Fatalf("Authenticate(alice): %v", err)
	}
	want := auth.User{Name: "alice@example.org", Home: "/home/alice",
		Extra: map[string]string{"userdb_mail": "maildir:~/Mail", "uid": "1000", "gid": "1000"}}
	if diff := cmp.Diff(want, u); diff != "" {
		t.Errorf("Authenticate(alice) (-want +got):\n%s", diff)
	}
	// Demon's SDPS login form, at login only.
	if _, err := d.Authenticate(ctx, "alice+example.org", "secret"); err != nil {
		t.Errorf("Authenticate(alice+example.org): %v", err)
	}
	if _, err := d.Lookup(ctx, "alice+example.org"); !errors.Is(err, auth.ErrUnknownUser) {
		t.Errorf("Lookup(alice+example.org) = %v, want ErrUnknownUser", err)
	}
	for _, c := range []struct{ user, pw string }{{"alice@example.org", "wrong"}, {"nobody", "secret"}, {"", "x"}} {
		if _, err := d.Authenticate(ctx, c.user, c.pw); !errors.Is(err, auth.ErrFailed) {
			t.Errorf("Authenticate(%q, %q) = %v, want ErrFailed", c.user, c.pw, err)
		}
	}
	// Restrictions are reported; the caller applies them.
	u, err = d.Authenticate(ctx, "bob", "pw")
	if err != nil || !u.Restrict.NoLogin || u.Restrict.Reason != "moved" {
		t.Errorf("Authenticate(bob) = %+v, %v; want NoLogin with reason", u.Restrict, err)
	}
	u, err = d.Lookup(ctx, "carol")
	wantNets := []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24"), netip.MustParsePrefix("2001:db8::/32")}
	if err != nil || !cmp.Equal(u.Restrict.AllowNets, wantNets, cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })) {
		t.Errorf("Lookup(carol) = %+v, %v; want AllowNets %v", u.Restrict, err, wantNets)
	}
	_, stored, err := d.Credentials(ctx, "alice@example.org")
	if err != nil || !strings.HasPrefix(stored, "{SSHA256}") {
		t.Errorf("Credentials(alice) = %q, %v", stored, err)
	}

	if err := d.SetPassword(ctx, "bob", hash(t, "new")); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Authenticate(ctx, "bob", "new"); err != nil {
		t.Errorf("Authenticate(bob, new): %v", err)
	}
	if err := d.SetPassword(ctx, "nobody", hash(t, "x")); !errors.Is(err, auth.ErrUnknownUser) {
		t.Errorf("SetPassword(nobody) = %v, want ErrUnknownUser", err)
	}
	if err := d.Delete(ctx, "carol"); err != nil {
		t.Fatal(err)
	}
	if err := d.Delete(ctx, "carol"); !errors.Is(err, auth.ErrUnknownUser) {
		t.Errorf("Delete(carol) again = %v, want ErrUnknownUser", err)
	}
	names, err := d.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"alice@example.org", "bob"}, names); diff != "" {
		t.Errorf("List (-want +got):\n%s", diff)
	}
}

// TestRowWrittenByHand checks that a row with an extra field postoffice
// does not implement cannot log in, and that its lookup is an error.
func TestRowWrittenByHand(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dsn := pgtest.NewDB(t)
	d := open(t, dsn, Options{})
	if err := d.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	exec(t, dsn, `INSERT INTO postoffice_users (name, password, extra) VALUES ('eve', '`+hash(t, "pw")+`', '{"proxy": "y"}')`)
	if _, err := d.Authenticate(ctx, "eve", "pw"); !errors.Is(err, auth.ErrFailed) {
		t.Errorf("Authenticate(eve) = %v, want ErrFailed", err)
	}
	if _, err := d.Lookup(ctx, "eve"); err == nil || errors.Is(err, auth.ErrUnknownUser) {
		t.Errorf("Lookup(eve) = %v, want an error naming the field", err)
	}
}

// postfixadmin is the mailbox table of Postfixadmin, as far as logins go.
const postfixadmin = `
CREATE TABLE mailbox (
	username varchar(255) PRIMARY KEY,
	password varchar(255) NOT NULL,
	name     varchar(255) NOT NULL DEFAULT '',
	maildir  varchar(255) NOT NULL DEFAULT '',
	domain   varchar(255) NOT NULL,
	active   boolean      NOT NULL DEFAULT true
)`

const pfaQuery = "SELECT username AS user, password FROM mailbox WHERE username = $1 AND active = true"

func TestPasswordQueryPostfixadmin(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dsn := pgtest.NewDB(t)
	exec(t, dsn, postfixadmin,
		`INSERT INTO mailbox (username, password, domain) VALUES ('alice@example.org', '`+hash(t, "secret")+`', 'example.org')`,
		`INSERT INTO mailbox (username, password, domain, active) VALUES ('old@example.org', '`+hash(t, "secret")+`', 'example.org', false)`)
	d := open(t, dsn, Options{PasswordQuery: pfaQuery})
	u, err := d.Authenticate(ctx, "alice@example.org", "secret")
	if err != nil || u.Name != "alice@example.org" {
		t.Fatalf("Authenticate(alice) = %+v, %v", u, err)
	}
	if _, err := d.Authenticate(ctx, "alice+example.org", "secret"); err != nil {
		t.Errorf("Authenticate(alice+example.org): %v", err)
	}
	for _, c := range []struct{ user, pw string }{{"alice@example.org", "wrong"}, {"old@example.org", "secret"}, {"nobody@example.org", "secret"}} {
		if _, err := d.Authenticate(ctx, c.user, c.pw); !errors.Is(err, auth.ErrFailed) {
			t.Errorf("Authenticate(%q, %q) = %v, want ErrFailed", c.user, c.pw, err)
		}
	}
	if _, err := d.Lookup(ctx, "old@example.org"); !errors.Is(err, auth.ErrUnknownUser) {
		t.Errorf("Lookup(inactive) = %v, want ErrUnknownUser", err)
	}
	if _, err := d.Lookup(ctx, "alice@example.org"); err != nil {
		t.Errorf("Lookup(alice): %v", err)
	}
	if err := d.Add(ctx, NewUser{Name: "x", Password: hash(t, "x")}); !errors.Is(err, ErrReadOnly) {
		t.Errorf("Add = %v, want ErrReadOnly", err)
	}
	for name, err := range map[string]error{
		"SetPassword": d.SetPassword(ctx, "alice@example.org", hash(t, "x")),
		"Delete":      d.Delete(ctx, "alice@example.org"),
		"Migrate":     d.Migrate(ctx),
	} {
		if !errors.Is(err, ErrReadOnly) {
			t.Errorf("%s = %v, want ErrReadOnly", name, err)
		}
	}
	if _, err := d.List(ctx); !errors.Is(err, ErrReadOnly) {
		t.Errorf("List = %v, want ErrReadOnly", err)
	}
}

// TestPasswordQueryColumns reads the optional columns: a canonical user
// name differing from the login, uid, gid, home, and restriction columns.
func TestPasswordQueryColumns(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dsn := pgtest.NewDB(t)
	exec(t, dsn, `CREATE TABLE users (login text PRIMARY KEY, pw text, uid int, gid int, home text, nologin boolean, allow_nets text, quota_rule text)`,
		`INSERT INTO users VALUES ('Alice', '`+hash(t, "pw")+`', 1000, 100, '/home/alice', false, '127.0.0.0/8', '*:storage=1G')`,
		`INSERT INTO users VALUES ('Bob', '`+hash(t, "pw")+`', NULL, NULL, NULL, true, NULL, NULL)`,
		`CREATE TABLE dup (login text, pw text)`,
		`INSERT INTO dup VALUES ('x', '`+hash(t, "pw")+`'), ('x', '`+hash(t, "pw")+`')`)
	d := open(t, dsn, Options{PasswordQuery: `SELECT login AS "user", pw AS password, uid, gid, home, nologin, allow_nets, quota_rule FROM users WHERE lower(login) = lower($1)`})
	u, err := d.Authenticate(ctx, "alice", "pw")
	if err != nil {
		t.Fatal(err)
	}
	want := auth.User{Name: "Alice", Home: "/home/alice",
		Extra:    map[string]string{"uid": "1000", "gid": "100", "allow_nets": "127.0.0.0/8", "quota_rule": "*:storage=1G"},
		Restrict: auth.Restrictions{AllowNets: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}}
	if diff := cmp.Diff(want, u, cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); diff != "" {
		t.Errorf("Authenticate(alice) (-want +got):\n%s", diff)
	}
	if got := d.CanonicalName("ALICE"); got != "Alice" {
		t.Errorf("CanonicalName(ALICE) = %q, want Alice", got)
	}
	u, err = d.Authenticate(ctx, "bob", "pw")
	if err != nil || !u.Restrict.NoLogin {
		t.Errorf("Authenticate(bob) = %+v, %v; want NoLogin", u.Restrict, err)
	}
	// More than one row is the query's fault, not a failed login.
	dd := open(t, dsn, Options{PasswordQuery: `SELECT pw AS password FROM dup WHERE login = $1`})
	if _, err := dd.Authenticate(ctx, "x", "pw"); err == nil || errors.Is(err, auth.ErrFailed) {
		t.Errorf("Authenticate with two rows = %v, want a temporary error", err)
	}
	if _, err := Open(ctx, Options{DSN: dsn, PasswordQuery: "SELECT password FROM users"}); err == nil {
		t.Error("Open with a query without $1 = nil error")
	}
}

// TestConnectionLoss checks that a database that cannot be reached gives a
// temporary error, never auth.ErrFailed (which the engine would answer
// with [AUTH], telling the client its password was wrong).
func TestConnectionLoss(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dsn := pgtest.NewDB(t)
	exec(t, dsn, postfixadmin,
		`INSERT INTO mailbox (username, password, domain) VALUES ('alice@example.org', '`+hash(t, "secret")+`', 'example.org')`)
	d := open(t, dsn, Options{PasswordQuery: pfaQuery})
	if _, err := d.Authenticate(ctx, "alice@example.org", "secret"); err != nil {
		t.Fatal(err)
	}
	var db string
	for _, f := range strings.Fields(dsn) {
		if v, ok := strings.CutPrefix(f, "dbname="); ok {
			db = v
		}
	}
	maint := strings.Replace(dsn, "dbname="+db, "dbname=postgres", 1)
	exec(t, maint, `ALTER DATABASE `+pgx.Identifier{db}.Sanitize()+` ALLOW_CONNECTIONS false`,
		`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '`+db+`'`)
	t.Cleanup(func() { exec(t, maint, `ALTER DATABASE `+pgx.Identifier{db}.Sanitize()+` ALLOW_CONNECTIONS true`) })
	for _, c := range []struct{ user, pw string }{{"alice@example.org", "secret"}, {"alice@example.org", "wrong"}, {"nobody", "x"}} {
		_, err := d.Authenticate(ctx, c.user, c.pw)
		if err == nil || errors.Is(err, auth.ErrFailed) {
			t.Errorf("Authenticate(%q) with the database gone = %v, want a temporary error", c.user, err)
		}
	}
	if _, err := d.Lookup(ctx, "alice@example.org"); err == nil || errors.Is(err, auth.ErrUnknownUser) {
		t.Errorf("Lookup with the database gone = %v, want a temporary error", err)
	}
	if _, _, err := d.Credentials(ctx, "alice@example.org"); err == nil || errors.Is(err, auth.ErrUnknownUser) {
		t.Errorf("Credentials with the database gone = %v, want a temporary error", err)
	}
}

// TestDummyIsDominant checks what an unknown user's password is verified
// against: a hash of the class most rows read have, or of DummyScheme.
func TestDummyIsDominant(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dsn := pgtest.NewDB(t)
	bcrypt, err := scheme.Hash("BLF-CRYPT", "pw")
	if err != nil {
		t.Fatal(err)
	}
	scram, err := scheme.Hash("SCRAM-SHA-256", "pw")
	if err != nil {
		t.Fatal(err)
	}
	exec(t, dsn, postfixadmin,
		`INSERT INTO mailbox (username, password, domain) VALUES ('a', '`+hash(t, "pw")+`', 'x'), ('b', '`+hash(t, "pw")+`', 'x'), ('c', '`+bcrypt+`', 'x'), ('s', '`+scram+`', 'x')`)
	d := open(t, dsn, Options{PasswordQuery: pfaQuery})
	if got := d.dummy(); got != d.fallback || passwdfile.CostClass(got) != passwdfile.CostClass(mustHash(t, scheme.DefaultNewScheme)) {
		t.Errorf("dummy before any row = %q, want the %s fallback", got, scheme.DefaultNewScheme)
	}
	if _, ok := d.DominantSCRAM(ctx, "SHA-256"); ok {
		t.Error("DominantSCRAM before any row: ok")
	}
	for _, u := range []string{"a", "b", "c", "s"} {
		if _, err := d.Lookup(ctx, u); err != nil {
			t.Fatal(err)
		}
	}
	if got := passwdfile.CostClass(d.dummy()); got != "SSHA256" {
		t.Errorf("dummy class after reading 2 SSHA256, 1 BLF-CRYPT, 1 SCRAM = %q, want SSHA256", got)
	}
	if p, ok := d.DominantSCRAM(ctx, "SHA-256"); !ok || p.Iterations == 0 || p.Derived {
		t.Errorf("DominantSCRAM(SHA-256) = %+v, %v; want the stored keys' parameters", p, ok)
	}
	fixed := open(t, dsn, Options{PasswordQuery: pfaQuery, DummyScheme: "BLF-CRYPT"})
	for _, u := range []string{"a", "b"} {
		fixed.Lookup(ctx, u)
	}
	if got := passwdfile.CostClass(fixed.dummy()); got != passwdfile.CostClass(bcrypt) {
		t.Errorf("dummy with DummyScheme BLF-CRYPT = class %q, want %q", got, passwdfile.CostClass(bcrypt))
	}
}

func mustHash(t testing.TB, s string) string {
	t.Helper()
	h, err := scheme.Hash(s, "x")
	if err != nil {
		t.Fatal(err)
	}
	return h
}
