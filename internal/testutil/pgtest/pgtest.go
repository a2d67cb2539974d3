// Package pgtest runs a throwaway PostgreSQL cluster for the tests of one
// package and hands each test a fresh, empty database in it.
//
// A package that uses it starts the cluster from its TestMain:
//
//	func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }
//
// and each test asks for a database:
//
//	dsn := pgtest.NewDB(t) // "host=/tmp/pgtest-…/run port=5432 user=postgres dbname=t3_… sslmode=disable"
//
// The cluster is started on the first NewDB (so a package whose tests all
// skip for other reasons never runs initdb), with initdb and pg_ctl from
// Debian's postgresql package, in a temporary directory: its socket is a
// Unix socket in that directory (listen_addresses is empty, so nothing
// listens on the network), authentication is trust, and fsync is off because
// the cluster is thrown away (set POSTOFFICE_PGTEST_FSYNC=on to measure with
// durable commits). initdb and postgres refuse to run as root, so as root
// they run as the postgres system user through runuser; as any other user
// they run as that user.
//
// The binaries are looked up in POSTOFFICE_PG_BINDIR when it is set (a
// directory without them makes every test skip, which is how the skip path
// is tested), then as initdb on PATH, then in /usr/lib/postgresql/*/bin
// (the newest version). Without them NewDB skips the test naming the
// package to install, or fails it under POSTOFFICE_REQUIRE_PEERS
// (testutil.Missing).
//
// The cluster never outlives the test binary: before initdb, Main starts a
// watchdog shell in its own session that blocks reading a pipe whose only
// writer is the test process. When the test binary ends, by returning from
// Main, by a panic, by a timeout or by SIGKILL, the kernel closes the pipe,
// and the watchdog stops the cluster (pg_ctl stop -m immediate) and removes
// its directory.
package pgtest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/postoffice-mail/postoffice/internal/testutil"
)

// Debian is the Debian package that ships the binaries.
const Debian = "postgresql"

// cluster is the running cluster of this test binary. It is package state
// because one cluster serves every test of the package; Main owns it.
var cluster struct {
	mainCalled bool
	once       sync.Once
	c          *server
	err        error  // why the cluster could not start
	missing    string // what is not installed, when that is why
	n          atomic.Int64
}

type server struct {
	dir      string    // temporary directory: data/, run/, log
	bin      string    // directory of initdb, pg_ctl, postgres
	asUser   []string  // command prefix: runuser -u postgres -- when root
	watchdog *exec.Cmd // stops the cluster when pipe closes
	pipe     *os.File  // write end of the watchdog's stdin
}

// Main runs the tests of m and stops the cluster if one was started. Call it
// from TestMain and pass its result to os.Exit.
func Main(m *testing.M) int {
	cluster.mainCalled = true
	code := m.Run()
	if c := cluster.c; c != nil {
		if err := c.stop(); err != nil {
			fmt.Fprintf(os.Stderr, "pgtest: stopping the cluster: %v\n", err)
			if code == 0 {
				code = 1
			}
		}
	}
	return code
}

// NewDB creates an empty database in the package's cluster, starting the
// cluster first if needed, and returns a DSN (key=value form) for it. The
// database is dropped when the test ends; close every connection to it in
// an earlier cleanup (cleanups run last-registered first, so register them
// after calling NewDB) or the drop forces them closed.
func NewDB(t testing.TB) string {
	t.Helper()
	if !cluster.mainCalled {
		t.Fatal("pgtest: call pgtest.Main from the package's TestMain")
	}
	cluster.once.Do(func() { cluster.c, cluster.missing, cluster.err = start() })
	if cluster.missing != "" {
		testutil.Missing(t, cluster.missing, Debian)
	}
	if cluster.err != nil {
		t.Fatalf("pgtest: %v", cluster.err)
	}
	name := fmt.Sprintf("t%d_%s", cluster.n.Add(1), sanitize(t.Name()))
	if len(name) > 63 {
		name = name[:63] // PostgreSQL's identifier limit (NAMEDATALEN-1)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := cluster.c.exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()+" TEMPLATE template0"); err != nil {
		t.Fatalf("pgtest: creating database %s: %v", name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := cluster.c.exec(ctx, "DROP DATABASE "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
			t.Errorf("pgtest: dropping database %s: %v", name, err)
		}
	})
	return cluster.c.dsn(name)
}

func sanitize(s string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(s) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	return b.String()
}

func (c *server) dsn(db string) string {
	return fmt.Sprintf("host=%s port=5432 user=postgres dbname=%s sslmode=disable", filepath.Join(c.dir, "run"), db)
}

// exec runs one statement on the maintenance database.
func (c *server) exec(ctx context.Context, sql string) error {
	conn, err := pgx.Connect(ctx, c.dsn("postgres"))
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	_, err = conn.Exec(ctx, sql)
	return err
}

// findBin returns the directory holding initdb, pg_ctl and postgres, or "".
func findBin() string {
	has := func(dir string) bool {
		for _, p := range []string{"initdb", "pg_ctl", "postgres"} {
			if fi, err := os.Stat(filepath.Join(dir, p)); err != nil || fi.IsDir() {
				return false
			}
		}
		return true
	}
	if dir, ok := os.LookupEnv("POSTOFFICE_PG_BINDIR"); ok {
		if has(dir) {
			return dir
		}
		return ""
	}
	if p, err := exec.LookPath("initdb"); err == nil && has(filepath.Dir(p)) {
		return filepath.Dir(p)
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	version := func(d string) int {
		v, _ := strconv.Atoi(filepath.Base(filepath.Dir(d)))
		return v
	}
	slices.SortFunc(dirs, func(a, b string) int { return version(b) - version(a) })
	for _, d := range dirs {
		if has(d) {
			return d
		}
	}
	return ""
}

// start creates and starts the cluster. It returns missing != "" when the
// binaries are not installed.
func start() (c *server, missing string, err error) {
	c, missing, err = newServer()
	if c == nil {
		return nil, missing, err
	}
	if err := c.initAndStart(""); err != nil {
		c.stop()
		return nil, "", err
	}
	return c, "", nil
}

// newServer makes a cluster's temporary directory and starts its watchdog,
// which from then on stops whatever clusters run in it (data*/) and
// removes it when the test binary ends. It returns missing != "" when the
// binaries are not installed.
func newServer() (c *server, missing string, err error) {
	bin := findBin()
	if bin == "" {
		return nil, "PostgreSQL (initdb, pg_ctl, postgres)", nil
	}
	dir, err := os.MkdirTemp("", "pgtest-")
	if err != nil {
		return nil, "", err
	}
	c = &server{dir: dir, bin: bin}
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			os.RemoveAll(dir)
			return nil, "the postgres system user", nil
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chown(dir, uid, gid); err != nil {
			os.RemoveAll(dir)
			return nil, "", err
		}
		runuser, err := exec.LookPath("runuser")
		if err != nil {
			os.RemoveAll(dir)
			return nil, "runuser", nil
		}
		c.asUser = []string{runuser, "-u", "postgres", "--"}
	}
	if err := c.startWatchdog(); err != nil {
		os.RemoveAll(dir)
		return nil, "", err
	}
	return c, "", nil
}

// command builds a command running prog from the cluster's bin directory as
// the cluster's owner, in the cluster's directory.
func (c *server) command(prog string, args ...string) *exec.Cmd {
	return c.commandPath(filepath.Join(c.bin, prog), args...)
}

// commandPath is command for a program given by its path.
func (c *server) commandPath(path string, args ...string) *exec.Cmd {
	argv := append(slices.Clone(c.asUser), path)
	argv = append(argv, args...)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = c.dir
	return cmd
}

func (c *server) startWatchdog() error {
	r, w, err := os.Pipe()
	if err != nil {
		return err
	}
	// $1 is the runuser prefix (possibly empty), $2 pg_ctl, $3 data, $4 dir.
	// cat returns when the last writer, the test process, is gone.
	// Every data directory in dir is stopped: data/ and, for a replicated
	// pair, data-replica/ (see NewReplicated). $3 is data/, kept for
	// reading.
	script := `cat >/dev/null; for d in "$4"/data*; do if [ -f "$d/postmaster.pid" ]; then $1 "$2" -D "$d" stop -m immediate -w -t 30 >/dev/null 2>&1; fi; done; rm -rf "$4"`
	cmd := exec.Command("/bin/sh", "-c", script, "pgtest-watchdog",
		strings.Join(c.asUser, " "), filepath.Join(c.bin, "pg_ctl"), filepath.Join(c.dir, "data"), c.dir)
	cmd.Stdin = r
	cmd.SysProcAttr = newSession()
	if err := cmd.Start(); err != nil {
		r.Close()
		w.Close()
		return err
	}
	r.Close()
	c.watchdog, c.pipe = cmd, w
	return nil
}

// initAndStart runs initdb into data/ and starts the cluster; extra is
// appended to its postgresql.conf.
func (c *server) initAndStart(extra string) error {
	run := filepath.Join(c.dir, "run")
	data := filepath.Join(c.dir, "data")
	if out, err := c.command("initdb", "-D", data, "-U", "postgres", "--auth=trust",
		"--no-sync", "--encoding=UTF8", "--locale=C").CombinedOutput(); err != nil {
		return fmt.Errorf("initdb: %v: %s", err, out)
	}
	if err := c.mkdir(run); err != nil {
		return err
	}
	fsync := "off"
	if os.Getenv("POSTOFFICE_PGTEST_FSYNC") == "on" {
		fsync = "on"
	}
	conf := fmt.Sprintf(`
# pgtest: a throwaway cluster reachable only through its Unix socket.
listen_addresses = ''
unix_socket_directories = '%s'
max_connections = 200
fsync = %[2]s
synchronous_commit = %[2]s
full_page_writes = %[2]s
log_min_messages = warning
`, run, fsync) + extra
	f, err := os.OpenFile(filepath.Join(data, "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	_, err = f.WriteString(conf)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	logFile := filepath.Join(c.dir, "log")
	if out, err := c.command("pg_ctl", "-D", data, "-l", logFile, "-w", "-t", "60", "start").CombinedOutput(); err != nil {
		log, _ := os.ReadFile(logFile)
		return fmt.Errorf("pg_ctl start: %v: %s\n%s", err, out, log)
	}
	return nil
}

// mkdir makes dir owned by the cluster's owner.
func (c *server) mkdir(dir string) error {
	if err := os.Mkdir(dir, 0o700); err != nil && !os.IsExist(err) {
		return err
	}
	if len(c.asUser) == 0 {
		return nil
	}
	fi, err := os.Stat(c.dir)
	if err != nil {
		return err
	}
	uid, gid := owner(fi)
	return os.Chown(dir, uid, gid)
}

// stop closes the watchdog's pipe and waits (at most a minute) for it to
// stop the cluster and remove its directory.
func (c *server) stop() error {
	c.pipe.Close()
	done := make(chan error, 1)
	go func() { done <- c.watchdog.Wait() }()
	select {
	case err := <-done:
		return err
	case <-time.After(time.Minute):
		return fmt.Errorf("the watchdog did not stop the cluster in %s within a minute", c.dir)
	}
}
