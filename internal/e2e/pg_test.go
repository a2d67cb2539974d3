package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"

	"github.com/postoffice-mail/postoffice/internal/store/pgstore"
	"github.com/postoffice-mail/postoffice/internal/testutil/dovecot"
	"github.com/postoffice-mail/postoffice/internal/testutil/pgtest"
)

// pgSite is what a site on PostgreSQL adds: the database, and a store of
// the test's own on it for seeding and inspecting (it never opens a
// maildrop, so it holds no lease).
type pgSite struct {
	dsn string
	st  *pgstore.Store
}

// newPGSite makes a site whose store (mail.location) and users
// (auth.database) are in the PostgreSQL database dsn, a fresh one of the
// package's throwaway cluster when dsn is empty. The schema is created
// with postoffice db migrate, and users alice, bob@example.org (password
// testPassword) and fetcher (dovecot.Password) with postoffice user add,
// all through the built binary. extra is appended to the config (a
// [postgres] table, say).
func newPGSite(t testing.TB, dsn, extra string) *site {
	t.Helper()
	if dsn == "" {
		dsn = pgtest.NewDB(t)
	}
	dir := t.TempDir()
	s := &site{t: t, dir: dir, config: filepath.Join(dir, "postoffice.toml")}
	cfg := fmt.Sprintf(`[pop3]
listen = ["127.0.0.1:0"]
auth_fail_delay = "0s"

[auth]
database = %q

[mail]
location = %q
%s
`, dsn, dsn, extra)
	if err := os.WriteFile(s.config, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	s.run("", "db", "migrate", "--config", s.config)
	for _, u := range []string{"alice", "bob@example.org"} {
		s.run(testPassword+"\n", "user", "add", "--config", s.config, "--password-stdin", u)
	}
	s.run(dovecot.Password+"\n", "user", "add", "--config", s.config, "--password-stdin", "fetcher")
	st, err := pgstore.Open(context.Background(), pgstore.Options{DSN: dsn})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	s.pg = &pgSite{dsn: dsn, st: st}
	return s
}

func (p *pgSite) deliver(t testing.TB, user, msg string) {
	t.Helper()
	if err := p.st.Deliver(context.Background(), user, strings.NewReader(msg)); err != nil {
		t.Fatal(err)
	}
}

// query runs one query on the site's database and returns its first
// column, as text, row by row.
func (p *pgSite) query(t testing.TB, sql string, args ...any) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, p.dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	rows, err := c.Query(ctx, sql, args...)
	if err != nil {
		t.Fatal(err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (string, error) {
		var v any
		if err := r.Scan(&v); err != nil {
			return "", err
		}
		return fmt.Sprint(v), nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// storedUIDLs lists user's UIDLs as stored, in order.
func (p *pgSite) storedUIDLs(t testing.TB, user string) []string {
	return p.query(t, `SELECT uidl FROM messages WHERE maildrop = $1 ORDER BY uid`, user)
}

// count returns the number of messages user's maildrop holds.
func (s *site) count(user string) int {
	s.t.Helper()
	if s.pg != nil {
		return len(s.pg.storedUIDLs(s.t, user))
	}
	return len(s.files(user))
}

// startWith runs postoffice serve on a copy of the site's config with
// extra appended (so that two servers of one site can have LMTP listeners
// of their own).
func (s *site) startWith(name, extra string) *server {
	s.t.Helper()
	base, err := os.ReadFile(s.config)
	if err != nil {
		s.t.Fatal(err)
	}
	path := filepath.Join(s.dir, name+".toml")
	if err := os.WriteFile(path, append(base, "\n"+extra+"\n"...), 0o600); err != nil {
		s.t.Fatal(err)
	}
	return s.startCmd(exec.Command(binary, "serve", "--config", path))
}

func pgClientSite(t *testing.T) (*site, *server) {
	s := newPGSite(t, "", "")
	for _, m := range clientMessages {
		s.deliver("alice", m)
	}
	return s, s.start()
}

// TestPostgresClients runs the real-client tests against a server whose
// store and users are in PostgreSQL: Python's poplib, Perl's Net::POP3,
// curl, and mpop and fetchmail keeping mail on the server across two runs
// (the second fetches only what is new: the UIDLs are stable).
func TestPostgresClients(t *testing.T) {
	t.Parallel()
	t.Run("poplib", func(t *testing.T) { t.Parallel(); testPoplib(t, pgClientSite) })
	t.Run("netpop3", func(t *testing.T) { t.Parallel(); testNetPOP3(t, pgClientSite) })
	t.Run("curl", func(t *testing.T) { t.Parallel(); testCurl(t, pgClientSite) })
	t.Run("mpop", func(t *testing.T) {
		t.Parallel()
		mpop := need(t, "mpop", "mpop")
		testFetchers(t, func(dir, h, p, round string) []string {
			return takeoverMpop(t, mpop, dir, h, p, "fetcher", round)
		})
	})
	t.Run("fetchmail", func(t *testing.T) {
		t.Parallel()
		fm := need(t, "fetchmail", "fetchmail")
		testFetchers(t, func(dir, h, p, round string) []string {
			return takeoverFetchmail(t, fm, dir, h, p, "fetcher", round)
		})
	})
}

// testFetchers runs a keep-on-server fetcher twice against a PostgreSQL
// site: the first run gets every message, the second only the one
// delivered in between.
func testFetchers(t *testing.T, fetch func(dir, host, port, round string) []string) {
	s := newPGSite(t, "", "")
	for _, m := range clientMessages {
		s.deliver("fetcher", m)
	}
	srv := s.start()
	h, p := hostPort(t, srv.addr)
	got := fetch(s.dir, h, p, "1")
	if len(got) != len(clientMessages) {
		t.Fatalf("first run fetched %d messages, want %d\nserver log:\n%s", len(got), len(clientMessages), srv.log)
	}
	s.deliver("fetcher", "Subject: fourth\n\nnew\n")
	got = fetch(s.dir, h, p, "2")
	if len(got) != 1 || !strings.Contains(got[0], "Subject: fourth") {
		t.Errorf("second run fetched %d messages (%.60q...), want only the new one", len(got), got)
	}
	if n := s.count("fetcher"); n != 4 {
		t.Errorf("%d messages on the server, want 4 (kept)", n)
	}
}

// TestPostgresSchemaRefused: serve (and check, and deliver) refuse a
// database without this build's schema, naming the command that creates
// it; after postoffice db migrate, serve runs.
func TestPostgresSchemaRefused(t *testing.T) {
	t.Parallel()
	dsn := pgtest.NewDB(t)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "postoffice.toml")
	text := fmt.Sprintf("[pop3]\nlisten = [\"127.0.0.1:0\"]\n[auth]\ndatabase = %q\n[mail]\nlocation = %q\n", dsn, dsn)
	if err := os.WriteFile(cfg, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"serve", "--config", cfg}, {"check", "--config", cfg}} {
		out, err := exec.Command(binary, args...).CombinedOutput()
		if err == nil || !strings.Contains(string(out), "postoffice db migrate") {
			t.Errorf("postoffice %s on an empty database: %v\n%s\nwant a failure naming postoffice db migrate", args[0], err, out)
		}
	}
	// A schema newer than this build's is refused too.
	s := &site{t: t, dir: dir, config: cfg}
	s.run("", "db", "migrate", "--config", cfg)
	s.run("", "db", "migrate", "--config", cfg) // idempotent
	c, err := pgx.Connect(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Exec(context.Background(), `UPDATE postoffice_schema SET version = version + 1 WHERE component = 'store'`); err != nil {
		t.Fatal(err)
	}
	c.Close(context.Background())
	out, err := exec.Command(binary, "serve", "--config", cfg).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "newer") {
		t.Errorf("serve on a newer schema: %v\n%s", err, out)
	}
}

// pgConn is a POP3 connection whose commands may fail (the database may be
// gone): replies are returned, not asserted.
func (c *conn) try(line string) string {
	c.t.Helper()
	c.nc.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := c.nc.Write([]byte(line + "\r\n")); err != nil {
		return "write: " + err.Error()
	}
	l, err := c.br.ReadString('\n')
	if err != nil {
		return "read: " + err.Error()
	}
	return strings.TrimSuffix(l, "\r\n")
}

// TestPostgresTwoServers: two postoffice processes on one database serve
// the same maildrops as one server would. A session on one makes the other
// answer [IN-USE]; a delivery through either (LMTP) is visible through
// both; kill -9 of a holder frees the maildrop within postgres.lock_ttl;
// and a holder stopped (SIGSTOP) past its lease, whose maildrop was taken
// over by a login on the other server, has its late QUIT refused: it does
// not answer +OK, deletes nothing, and the new holder's deletions are not
// undone.
func TestPostgresTwoServers(t *testing.T) {
	t.Parallel()
	const ttl = 2 * time.Second
	s := newPGSite(t, "", fmt.Sprintf("[postgres]\nlock_ttl = %q\n", ttl))
	for i := range 5 {
		s.deliver("alice", fmt.Sprintf("Subject: m%d\n\nbody %d\n", i, i))
	}
	lmtpA, lmtpB := fmt.Sprintf("127.0.0.1:%d", freePort(t)), fmt.Sprintf("127.0.0.1:%d", freePort(t))
	a := s.startWith("a", fmt.Sprintf("[lmtp]\nlisten = [%q]\nhostname = \"a.test\"\nspool_dir = %q\n", lmtpA, s.dir))
	b := s.startWith("b", fmt.Sprintf("[lmtp]\nlisten = [%q]\nhostname = \"b.test\"\nspool_dir = %q\n", lmtpB, s.dir))

	// [IN-USE] across servers, both ways.
	ca := a.dial()
	ca.login("alice")
	cb := b.dial()
	cb.cmd("USER alice", "+OK")
	cb.cmd("PASS "+testPassword, "-ERR [IN-USE]")
	ca.cmd("QUIT", "+OK")
	cb = b.dial()
	cb.login("alice")
	ca = a.dial()
	ca.cmd("USER alice", "+OK")
	ca.cmd("PASS "+testPassword, "-ERR [IN-USE]")
	cb.cmd("QUIT", "+OK")

	// A delivery through either server is visible through both.
	for i, addr := range []string{lmtpA, lmtpB} {
		lc, err := dialLMTP(addr)
		if err != nil {
			t.Fatal(err)
		}
		if r, err := lc.send("x@example.org", "alice@example.org", crlf(fmt.Sprintf("Subject: lmtp %d\n\nvia server %d\n", i, i))); err != nil || !strings.HasPrefix(r, "250") {
			t.Fatalf("LMTP delivery through server %d: %q, %v", i, r, err)
		}
		lc.nc.Close()
	}
	var listings [][]string
	for _, srv := range []*server{a, b} {
		c := srv.dial()
		c.login("alice")
		listings = append(listings, c.uidls())
		c.cmd("QUIT", "+OK")
	}
	if len(listings[0]) != 7 || !cmp.Equal(listings[0], listings[1]) {
		t.Fatalf("UIDL listings differ between the servers or miss the LMTP deliveries:\n%v\n%v", listings[0], listings[1])
	}

	// kill -9 of the holder frees the maildrop within lock_ttl.
	ca = a.dial()
	ca.login("alice")
	a.kill()
	killed := time.Now()
	freed := false
	for time.Since(killed) < 3*ttl {
		c := b.dial()
		c.cmd("USER alice", "+OK")
		if r := c.try("PASS " + testPassword); strings.HasPrefix(r, "+OK") {
			freed = true
			c.cmd("QUIT", "+OK")
			break
		} else if !strings.Contains(r, "[IN-USE]") {
			t.Fatalf("PASS after the holder's kill: %q", r)
		}
		c.nc.Close()
		time.Sleep(100 * time.Millisecond)
	}
	if !freed {
		t.Fatalf("maildrop still in use %v after kill -9 of its holder (lock_ttl %v)", 3*ttl, ttl)
	}

	// SIGSTOP past the lease, takeover, SIGCONT, late QUIT.
	a = s.startWith("a2", "")
	before := s.pg.storedUIDLs(t, "alice")
	ca = a.dial()
	ca.login("alice")
	ca.cmd("DELE 1", "+OK")
	ca.cmd("DELE 2", "+OK")
	if err := a.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	stopped := true
	defer func() {
		if stopped {
			a.cmd.Process.Signal(syscall.SIGCONT)
		}
	}()
	var cb2 *conn
	for start := time.Now(); time.Since(start) < 3*ttl; time.Sleep(100 * time.Millisecond) {
		c := b.dial()
		c.cmd("USER alice", "+OK")
		if r := c.try("PASS " + testPassword); strings.HasPrefix(r, "+OK") {
			cb2 = c
			break
		}
		c.nc.Close()
	}
	if cb2 == nil {
		t.Fatalf("no takeover within %v of the holder's SIGSTOP", 3*ttl)
	}
	cb2.cmd("DELE 3", "+OK")
	a.cmd.Process.Signal(syscall.SIGCONT)
	stopped = false
	if r := ca.try("QUIT"); strings.HasPrefix(r, "+OK") {
		t.Errorf("late QUIT of the server that lost its lease answered %q, want no +OK", r)
	}
	// The new holder's view is intact (less its own DELE 3), and its QUIT
	// commits.
	want := append([]string{before[0], before[1]}, before[3:]...)
	if got := cb2.uidls(); !cmp.Equal(got, want) {
		t.Errorf("the new holder's UIDL listing changed under it:\n got %v\nwant %v", got, want)
	}
	cb2.cmd("QUIT", "+OK")
	if got := s.pg.storedUIDLs(t, "alice"); !cmp.Equal(got, want) {
		t.Errorf("after the late QUIT and the new holder's QUIT (DELE 3):\n got %v\nwant %v (nothing of the stale DELE 1 2 applied)", got, want)
	}
	// Both servers still serve.
	for _, srv := range []*server{a, b} {
		c := srv.dial()
		c.login("alice")
		c.cmd("QUIT", "+OK")
	}
}

// maintenance runs statements on the cluster's maintenance database (the
// site's database may refuse connections meanwhile).
func (p *pgSite) maintenance(t testing.TB, sqls ...string) {
	t.Helper()
	dsn := p.dsn[:strings.Index(p.dsn, "dbname=")] + "dbname=postgres sslmode=disable"
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	for _, q := range sqls {
		if _, err := c.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
}

// TestPostgresConnectionLoss: every connection of the servers to the
// database is cut (pg_terminate_backend) and new ones refused for a while,
// in the middle of sessions. Commands that need the database answer
// -ERR [SYS/TEMP] (a login too: never a wrong-password answer), a QUIT
// whose commit could not run does not answer +OK and deletes nothing, and
// once the database takes connections again the same server process logs
// users in and serves them, with no restart.
func TestPostgresConnectionLoss(t *testing.T) {
	t.Parallel()
	const ttl = 2 * time.Second
	s := newPGSite(t, "", fmt.Sprintf("[postgres]\nlock_ttl = %q\nconnect_timeout = \"2s\"\n", ttl))
	for i := range 3 {
		s.deliver("alice", fmt.Sprintf("Subject: m%d\n\nbody %d\n", i, i))
	}
	before := s.pg.storedUIDLs(t, "alice")
	srv := s.start()
	c := srv.dial()
	c.login("alice")
	db := s.pg.query(t, `SELECT current_database()`)[0]
	ident := pgx.Identifier{db}.Sanitize()
	s.pg.maintenance(t,
		`ALTER DATABASE `+ident+` ALLOW_CONNECTIONS false`,
		`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '`+db+`' AND application_name LIKE 'postoffice%'`)
	allowed := false
	defer func() {
		if !allowed {
			s.pg.maintenance(t, `ALTER DATABASE `+ident+` ALLOW_CONNECTIONS true`)
		}
	}()
	if r := c.try("RETR 1"); !strings.HasPrefix(r, "-ERR [SYS/TEMP]") {
		t.Errorf("RETR with the database gone = %q, want -ERR [SYS/TEMP]", r)
	}
	c.cmd("DELE 2", "+OK") // marks only (RFC 1939 §5)
	if r := c.try("QUIT"); strings.HasPrefix(r, "+OK") {
		t.Errorf("QUIT whose commit cannot run = %q, want no +OK", r)
	}
	c2 := srv.dial()
	c2.cmd("USER bob@example.org", "+OK")
	if r := c2.try("PASS " + testPassword); !strings.HasPrefix(r, "-ERR [SYS/TEMP]") {
		t.Errorf("PASS with the user database gone = %q, want -ERR [SYS/TEMP]", r)
	}
	s.pg.maintenance(t, `ALTER DATABASE `+ident+` ALLOW_CONNECTIONS true`)
	allowed = true

	// The same process serves again: bob at once, alice once the lease
	// the cut session could not release has expired.
	c3 := srv.dial()
	c3.login("bob@example.org")
	c3.cmd("QUIT", "+OK")
	var c4 *conn
	for start := time.Now(); time.Since(start) < 3*ttl; time.Sleep(100 * time.Millisecond) {
		c := srv.dial()
		c.cmd("USER alice", "+OK")
		if r := c.try("PASS " + testPassword); strings.HasPrefix(r, "+OK") {
			c4 = c
			break
		} else if !strings.Contains(r, "[IN-USE]") {
			t.Fatalf("PASS after the database came back = %q", r)
		}
		c.nc.Close()
	}
	if c4 == nil {
		t.Fatalf("alice not served within %v of the database's return:\n%s", 3*ttl, srv.log)
	}
	if got := c4.uidls(); !cmp.Equal(got, before) {
		t.Errorf("UIDLs after the outage = %v, want %v (the failed QUIT deleted nothing)", got, before)
	}
	if got := c4.retr(1); !strings.Contains(got, "body 0") {
		t.Errorf("RETR 1 after the outage = %q", got)
	}
	c4.cmd("QUIT", "+OK")
}
