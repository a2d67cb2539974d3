package pgtest

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

func TestMain(m *testing.M) { os.Exit(Main(m)) }

// TestNewDB checks that each test gets its own empty database it can write.
func TestNewDB(t *testing.T) {
	a, b := NewDB(t), NewDB(t)
	if a == b {
		t.Fatalf("NewDB returned %q twice", a)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, dsn := range []string{a, b} {
		conn, err := pgx.Connect(ctx, dsn)
		if err != nil {
			t.Fatalf("connect %q: %v", dsn, err)
		}
		var n int
		if err := conn.QueryRow(ctx, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != 0 {
			t.Errorf("%q: %d tables in a new database, want 0", dsn, n)
		}
		if _, err := conn.Exec(ctx, "CREATE TABLE x (i int)"); err != nil {
			t.Errorf("%q: CREATE TABLE: %v", dsn, err)
		}
		conn.Close(ctx)
	}
}

// TestClusterDiesWithTestBinary runs this test binary again as a child that
// starts a cluster, kills the child with SIGKILL (no cleanup code of its own
// can run), and checks that the watchdog stopped the postmaster and removed
// the cluster's directory.
func TestClusterDiesWithTestBinary(t *testing.T) {
	if os.Getenv("PGTEST_CHILD") == "1" {
		NewDB(t)
		fmt.Printf("cluster %s\n", cluster.c.dir)
		time.Sleep(2 * time.Minute) // killed long before
		return
	}
	NewDB(t) // skips here when PostgreSQL is absent
	cmd := exec.Command(os.Args[0], "-test.run=^TestClusterDiesWithTestBinary$", "-test.v")
	cmd.Env = append(os.Environ(), "PGTEST_CHILD=1")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	defer cmd.Process.Kill()
	var dir string
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if d, ok := strings.CutPrefix(sc.Text(), "cluster "); ok {
			dir = d
			break
		}
	}
	if dir == "" {
		t.Fatal("child printed no cluster directory")
	}
	pidLine, err := os.ReadFile(filepath.Join(dir, "data", "postmaster.pid"))
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.SplitN(string(pidLine), "\n", 2)[0])
	if err != nil {
		t.Fatalf("postmaster.pid: %v", err)
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	go io.Copy(io.Discard, out)
	cmd.Wait()
	deadline := time.Now().Add(time.Minute)
	for {
		_, dirErr := os.Stat(dir)
		if os.IsNotExist(dirErr) && !running(pid) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("a minute after the test binary was killed: directory %s exists: %v, postmaster %d running: %v",
				dir, dirErr == nil, pid, running(pid))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// running reports whether pid is a live process (not gone, not a zombie
// left for a parent that does not reap).
func running(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// pid (comm) state ...: the state follows the last ')'.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i >= 0 && i+2 < len(s) && s[i+2] != 'Z' && s[i+2] != 'X'
}
