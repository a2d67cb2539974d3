package e2e

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/postoffice-mail/postoffice/internal/testutil/pgtest"
)

// migrateKillN is the size of the maildrop TestMigrateKill copies: 2,000
// by default, so that the test stays within tens of seconds on a small CI
// machine; POSTOFFICE_MIGRATE_KILL_N=10000 runs the full size.
func migrateKillN(t *testing.T) int {
	if v := os.Getenv("POSTOFFICE_MIGRATE_KILL_N"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("POSTOFFICE_MIGRATE_KILL_N=%q is not a positive number", v)
		}
		return n
	}
	return 2000
}

// TestMigrateKill copies a Maildir of migrateKillN messages into
// PostgreSQL with postoffice migrate, SIGKILLs it 20 times at random
// instants, then runs it to the end: the final run exits 0 (its own
// verification: every UIDL once, sizes and SHA-256 of every body equal),
// and a server on the PostgreSQL copy lists over POP3 exactly the UIDLs a
// server on the Maildir listed before.
func TestMigrateKill(t *testing.T) {
	t.Parallel()
	n := migrateKillN(t)
	s := newSite(t)
	seedBigbox(t, s, "alice", n)
	s.deliver("bob@example.org", "Subject: bob's\n\nhello\n")
	srv := s.start()
	c := srv.dial()
	c.login("alice")
	before := c.uidls()
	c.cmd("QUIT", "+OK")
	srv.stop()
	if len(before) != n {
		t.Fatalf("Maildir server lists %d UIDLs, want %d", len(before), n)
	}

	dsn := pgtest.NewDB(t)
	// lock_ttl bounds how long a killed run's destination lease makes the
	// next run wait.
	s.appendConfig("[postgres]\nlock_ttl = \"1s\"\n")
	args := []string{"migrate", "--config", s.config, "--to", dsn, "--quiet", "--batch", "200"}
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	kills := 0
	for i := 0; i < 20; i++ {
		cmd := exec.Command(binary, args...)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			// Finished before its kill: nothing left to copy.
			if err != nil {
				t.Fatalf("run %d: %v\n%s", i, err, out.String())
			}
		// 50-250 ms: since deliveries are written with COPY, a run
		// copies 10,000 messages in a few seconds, and kills at
		// 100-500 ms left the last runs nothing to copy.
		case <-time.After(time.Duration(50+rng.IntN(200)) * time.Millisecond):
			cmd.Process.Signal(syscall.SIGKILL)
			<-done
			kills++
		}
	}
	start := time.Now()
	out, err := exec.Command(binary, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("final run after %d kills: %v\n%s", kills, err, out)
	}
	if !strings.Contains(string(out), fmt.Sprintf("verified 2 users, %d messages: 0 differences", n+1)) {
		t.Errorf("final run's report:\n%s", out)
	}
	t.Logf("%d messages, %d kills; final run %v:\n%s", n, kills, time.Since(start).Round(time.Millisecond), out)

	// A server on the copy shows the same UIDLs, in the same order.
	s.editConfig(func(c string) string {
		return strings.Replace(c, "location = \"maildir:", "location = \""+dsn+"\"\n#", 1)
	})
	srv = s.start()
	c = srv.dial()
	c.login("alice")
	if after := c.uidls(); !cmp.Equal(after, before) {
		t.Errorf("UIDL listing over POP3 changed by the migration (%d before, %d after)", len(before), len(after))
	}
	c.cmd("QUIT", "+OK")
	c = srv.dial()
	c.login("bob@example.org")
	if got := c.retr(1); !strings.Contains(got, "hello") {
		t.Errorf("bob's message after the migration: %q", got)
	}
	c.cmd("QUIT", "+OK")
}
