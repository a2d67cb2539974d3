package e2e

import (
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"
)

func (c *conn) uidls() []string {
	c.t.Helper()
	c.cmd("UIDL", "+OK")
	var ids []string
	for {
		l := c.expect("")
		if l == "." {
			return ids
		}
		ids = append(ids, l[strings.IndexByte(l, ' ')+1:])
	}
}

func deliverN(s *site, user string, n int) {
	for i := 0; i < n; i++ {
		s.deliver(user, fmt.Sprintf("Subject: message %d\n\nbody %d\n", i, i))
	}
}

// kill -9 of the server after DELE without QUIT deletes nothing, leaves no
// lock behind, and the UIDLs are the same after the restart (RFC 1939 §3,
// §6: no UPDATE without QUIT; §7: UIDLs stable across sessions).
func TestKillAfterDeleWithoutQuit(t *testing.T) {
	t.Parallel()
	s := newSite(t)
	deliverN(s, "alice", 5)
	srv := s.start()
	c := srv.dial()
	c.login("alice")
	before := c.uidls()
	for i := 1; i <= 3; i++ {
		c.cmd(fmt.Sprintf("DELE %d", i), "+OK")
	}
	srv.kill()
	if n := len(s.files("alice")); n != 5 {
		t.Fatalf("%d files after kill, want 5", n)
	}
	srv = s.start()
	c = srv.dial()
	c.login("alice") // no stale lock
	if after := c.uidls(); !slices.Equal(before, after) {
		t.Errorf("UIDLs changed across kill: %v -> %v", before, after)
	}
	c.cmd("STAT", "+OK 5 ")
}

// After QUIT is answered +OK the deleted files are gone, also when the
// server is killed right after, and they never come back.
func TestKillAfterQuit(t *testing.T) {
	t.Parallel()
	s := newSite(t)
	deliverN(s, "bob@example.org", 5)
	srv := s.start()
	c := srv.dial()
	c.login("bob@example.org")
	before := c.uidls()
	c.cmd("DELE 2", "+OK")
	c.cmd("DELE 4", "+OK")
	c.cmd("QUIT", "+OK")
	srv.kill()
	if n := len(s.files("bob@example.org")); n != 3 {
		t.Fatalf("%d files after QUIT and kill, want 3", n)
	}
	srv = s.start()
	c = srv.dial()
	c.login("bob@example.org")
	want := []string{before[0], before[2], before[4]}
	if after := c.uidls(); !slices.Equal(after, want) {
		t.Errorf("UIDLs after QUIT+kill = %v, want %v", after, want)
	}
}

// kill -9 at random instants around QUIT's commit: whatever the instant, a
// message not marked is never lost, a QUIT answered +OK removed every
// marked one, and the maildrop is never left locked.
func TestKillDuringCommit(t *testing.T) {
	t.Parallel()
	s := newSite(t)
	deliverN(s, "alice", 40)
	rng := rand.New(rand.NewPCG(1, uint64(time.Now().UnixNano())))
	for round := 0; round < 8; round++ {
		srv := s.start()
		c := srv.dial()
		c.login("alice")
		ids := c.uidls()
		if len(ids) < 4 {
			deliverN(s, "alice", 20)
			srv.kill()
			continue
		}
		// Mark every other message.
		marked := map[string]bool{}
		var cmds strings.Builder
		for i := 0; i < len(ids); i += 2 {
			marked[ids[i]] = true
			fmt.Fprintf(&cmds, "DELE %d\r\n", i+1)
		}
		io.WriteString(c.nc, cmds.String())
		for range marked {
			c.expect("+OK")
		}
		io.WriteString(c.nc, "QUIT\r\n")
		time.Sleep(time.Duration(rng.IntN(3000)) * time.Microsecond)
		srv.kill()
		reply, _ := c.br.ReadString('\n')
		quitOK := strings.HasPrefix(reply, "+OK")

		srv = s.start()
		c = srv.dial()
		c.login("alice")
		left := c.uidls()
		c.cmd("QUIT", "+OK")
		srv.kill()
		present := map[string]bool{}
		for _, id := range left {
			present[id] = true
		}
		for _, id := range ids {
			switch {
			case !marked[id] && !present[id]:
				t.Fatalf("round %d: unmarked message %s lost", round, id)
			case marked[id] && present[id] && quitOK:
				t.Fatalf("round %d: QUIT said +OK but marked message %s is back", round, id)
			}
		}
		deliverN(s, "alice", len(ids)-len(left))
	}
}

// SIGTERM ends idle sessions without UPDATE and exits cleanly.
func TestGracefulStop(t *testing.T) {
	t.Parallel()
	s := newSite(t)
	deliverN(s, "alice", 3)
	srv := s.start()
	c := srv.dial()
	c.login("alice")
	c.cmd("DELE 1", "+OK")
	start := time.Now()
	srv.stop()
	if d := time.Since(start); d > 20*time.Second {
		t.Errorf("stop took %v with an idle session", d)
	}
	if code := srv.cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("exit code %d after SIGTERM, want 0\n%s", code, srv.log)
	}
	if n := len(s.files("alice")); n != 3 {
		t.Errorf("%d files, want 3: an interrupted session deleted mail", n)
	}
}
