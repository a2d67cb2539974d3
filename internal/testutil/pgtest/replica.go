//go:build unix

package pgtest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/postoffice-mail/postoffice/internal/testutil"
)

// Replicated is a primary and a streaming replica started for one test,
// for failover tests: the primary waits at each COMMIT until the replica
// has the transaction (synchronous_standby_names = '*',
// synchronous_commit = on), so a commit the primary acknowledged survives
// a failover to the replica. Both listen only on Unix sockets, in
// directories of their own.
//
// The pair is separate from the package's shared cluster, has its own
// watchdog (it never outlives the test binary either) and is stopped and
// removed when the test ends.
type Replicated struct {
	c       *server
	primary string // socket directories
	replica string
	db      string
}

// NewReplicated starts a primary (initdb), a replica of it (pg_basebackup
// -R, streaming), waits until the replica is the primary's synchronous
// standby, and creates the database "mail" on the primary. Without the
// PostgreSQL binaries it skips the test (testutil.Missing).
func NewReplicated(t testing.TB) *Replicated {
	t.Helper()
	c, missing, err := newServer()
	if missing != "" {
		testutil.Missing(t, missing, Debian)
	}
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	t.Cleanup(func() {
		if err := c.stop(); err != nil {
			t.Errorf("pgtest: stopping the replicated pair: %v", err)
		}
	})
	r := &Replicated{c: c, primary: filepath.Join(c.dir, "run"), replica: filepath.Join(c.dir, "run-replica"), db: "mail"}
	// synchronous_commit = on: the acknowledgement waits for the standby
	// (it was off for the shared cluster, with fsync).
	if err := c.initAndStart("synchronous_standby_names = '*'\nsynchronous_commit = on\nwal_level = replica\n"); err != nil {
		t.Fatalf("pgtest: primary: %v", err)
	}
	data := filepath.Join(c.dir, "data-replica")
	basebackup, err := findTool(c.bin, "pg_basebackup")
	if err != nil {
		testutil.Missing(t, "pg_basebackup", Debian)
	}
	if out, err := c.commandPath(basebackup, "-D", data, "-R", "-X", "stream", "-h", r.primary, "-p", "5432", "-U", "postgres").CombinedOutput(); err != nil {
		t.Fatalf("pgtest: pg_basebackup: %v: %s", err, out)
	}
	if err := c.mkdir(r.replica); err != nil {
		t.Fatal(err)
	}
	// Later lines win: the replica's own socket, and no synchronous
	// standby of its own, or its commits would wait forever once promoted.
	conf := fmt.Sprintf("\nunix_socket_directories = '%s'\nsynchronous_standby_names = ''\n", r.replica)
	if err := appendFile(filepath.Join(data, "postgresql.conf"), conf); err != nil {
		t.Fatal(err)
	}
	logFile := filepath.Join(c.dir, "log-replica")
	if out, err := c.command("pg_ctl", "-D", data, "-l", logFile, "-w", "-t", "60", "start").CombinedOutput(); err != nil {
		log, _ := os.ReadFile(logFile)
		t.Fatalf("pgtest: starting the replica: %v: %s\n%s", err, out, log)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, r.nodeDSN(r.primary, "postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	for i := 0; ; i++ {
		var n int
		if err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_stat_replication WHERE sync_state = 'sync'`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n == 1 {
			break
		}
		if i == 600 {
			t.Fatal("pgtest: the replica did not become a synchronous standby within a minute")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+r.db); err != nil {
		t.Fatal(err)
	}
	return r
}

func appendFile(path, s string) error {
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	_, err = f.WriteString(s)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

func (r *Replicated) nodeDSN(host, db string) string {
	return fmt.Sprintf("host=%s port=5432 user=postgres dbname=%s sslmode=disable", host, db)
}

// DSN is a multi-host DSN naming both servers, primary first, with
// target_session_attrs=read-write: libpq and pgx try the hosts in order
// and keep the first that accepts writes, so a client follows a failover
// by reconnecting.
func (r *Replicated) DSN() string {
	return fmt.Sprintf("host=%s,%s port=5432,5432 user=postgres dbname=%s sslmode=disable target_session_attrs=read-write",
		r.primary, r.replica, r.db)
}

// PrimaryDSN and ReplicaDSN reach one server each.
func (r *Replicated) PrimaryDSN() string { return r.nodeDSN(r.primary, r.db) }
func (r *Replicated) ReplicaDSN() string { return r.nodeDSN(r.replica, r.db) }

// KillPrimary sends SIGKILL to the primary's postmaster, as a crash of the
// machine would end it; its backends notice and exit by themselves.
func (r *Replicated) KillPrimary() error {
	b, err := os.ReadFile(filepath.Join(r.c.dir, "data", "postmaster.pid"))
	if err != nil {
		return err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil || pid <= 1 {
		return fmt.Errorf("pgtest: bad postmaster.pid: %q", line)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		return err
	}
	// Wait (bounded) until the postmaster is gone: no such process, or a
	// zombie its parent (not us: pg_ctl detached it) has not reaped yet.
	for i := 0; i < 300; i++ {
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			return nil
		}
		if st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil {
			if _, rest, ok := strings.Cut(string(st), ") "); ok && strings.HasPrefix(rest, "Z") {
				return nil
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	return fmt.Errorf("pgtest: postmaster %d still alive 3 s after SIGKILL", pid)
}

// Promote makes the replica a primary (pg_ctl promote) and waits until it
// accepts writes.
func (r *Replicated) Promote() error {
	if out, err := r.c.command("pg_ctl", "-D", filepath.Join(r.c.dir, "data-replica"), "-w", "-t", "60", "promote").CombinedOutput(); err != nil {
		return fmt.Errorf("pgtest: pg_ctl promote: %v: %s", err, out)
	}
	return nil
}

// findTool finds prog beside initdb: in bin, or where bin's initdb links
// to (a PATH directory may hold links to only some of the binaries).
func findTool(bin, prog string) (string, error) {
	if p := filepath.Join(bin, prog); isFile(p) {
		return p, nil
	}
	if real, err := filepath.EvalSymlinks(filepath.Join(bin, "initdb")); err == nil {
		if p := filepath.Join(filepath.Dir(real), prog); isFile(p) {
			return p, nil
		}
	}
	return "", fmt.Errorf("pgtest: %s not found beside %s/initdb", prog, bin)
}

func isFile(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && !fi.IsDir()
}
