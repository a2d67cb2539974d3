//go:build linux

package mbox

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

const killHelperEnv = "POSTOFFICE_MBOX_KILL_HELPER"

// killBody is message i of the kill test: about 4 KB, with "From " lines
// that Deliver quotes.
func killBody(i int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Subject: message %d\nMessage-ID: <%d@kill.test>\n\n", i, i)
	for l := 0; l < 60; l++ {
		if l%20 == 0 {
			fmt.Fprintf(&b, "From line %d of message %d\n", l, i)
		}
		fmt.Fprintf(&b, "line %d of message %d %s\n", l, i, strings.Repeat("k", 40+i%17))
	}
	return b.String()
}

var subjectRE = regexp.MustCompile(`^Subject: message (\d+)\n`)

// TestKillHelper is the process TestKillDuringCommit kills: it commits
// one deletion after another, announcing each on stdout before Commit
// ("begin N") and after it returned ("done N").
func TestKillHelper(t *testing.T) {
	loc := os.Getenv(killHelperEnv)
	if loc == "" {
		t.Skip("helper process for TestKillDuringCommit")
	}
	s, err := New(Options{Location: loc, NoSync: true})
	if err != nil {
		fmt.Println("error", err)
		os.Exit(2)
	}
	out := bufio.NewWriter(os.Stdout)
	for {
		m, err := s.Open(context.Background(), "u")
		if err != nil {
			fmt.Fprintln(out, "error", err)
			out.Flush()
			os.Exit(2)
		}
		n := len(m.Messages())
		if n == 0 {
			m.Close()
			out.Flush()
			os.Exit(0)
		}
		i := rand.IntN(n)
		body := read(t, m, i)
		sm := subjectRE.FindStringSubmatch(body)
		if sm == nil {
			fmt.Fprintln(out, "error unknown message", i)
			out.Flush()
			os.Exit(2)
		}
		fmt.Fprintln(out, "begin", sm[1])
		out.Flush()
		if err := m.Commit(context.Background(), []int{i}); err != nil {
			fmt.Fprintln(out, "error", err)
			out.Flush()
			os.Exit(2)
		}
		fmt.Fprintln(out, "done", sm[1])
		out.Flush()
		m.Close()
	}
}

// TestKillDuringCommit SIGKILLs a process that commits deletions of a
// 6 MB mbox, 30 times at random instants, and after each kill opens the
// mbox (replaying any journal): every message not deleted is there once
// and byte for byte, every deletion whose Commit returned is gone, and
// the deletion in flight is either done or not.
func TestKillDuringCommit(t *testing.T) {
	if testing.Short() {
		t.Skip("kills a helper process 30 times; skipped in -short mode")
	}
	loc := "mbox:" + t.TempDir() + "/%u"
	s, err := New(Options{Location: loc, NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	const n = 1500
	for i := range n {
		if err := s.Deliver(context.Background(), "u", strings.NewReader(killBody(i))); err != nil {
			t.Fatal(err)
		}
	}
	deleted := map[int]bool{}
	kills, replays := 0, 0
	for round := 0; kills < 30 && round < 200; round++ {
		cmd := exec.Command(os.Args[0], "-test.run=^TestKillHelper$", "-test.count=1")
		cmd.Env = append(os.Environ(), killHelperEnv+"="+loc)
		stdout, _ := cmd.StdoutPipe()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		lines := make(chan []string, 1)
		go func() {
			var l []string
			sc := bufio.NewScanner(stdout)
			for sc.Scan() {
				l = append(l, sc.Text())
			}
			lines <- l
		}()
		time.Sleep(time.Duration(20+rand.IntN(200)) * time.Millisecond)
		cmd.Process.Signal(syscall.SIGKILL)
		out := <-lines
		cmd.Wait()
		var inflight = -1
		for _, l := range out {
			f := strings.Fields(l)
			if f[0] == "error" {
				t.Fatalf("helper: %s", l)
			}
			var k int
			fmt.Sscan(f[1], &k)
			switch f[0] {
			case "begin":
				inflight = k
			case "done":
				deleted[k] = true
				inflight = -1
			}
		}
		if inflight >= 0 {
			kills++
		}
		p, _ := s.Path("u")
		if _, err := os.Stat(dotName(p, ".postoffice-journal")); err == nil {
			replays++
		}
		m := openT(t, s, "u")
		seen := map[int]bool{}
		for i := range m.Messages() {
			body := read(t, m, i)
			sm := subjectRE.FindStringSubmatch(body)
			if sm == nil {
				t.Fatalf("round %d: message %d is not one of ours: %.80q", round, i, body)
			}
			var k int
			fmt.Sscan(sm[1], &k)
			if body != killBody(k) {
				t.Fatalf("round %d: message %d (%d) differs from what was delivered", round, i, k)
			}
			if seen[k] {
				t.Fatalf("round %d: message %d present twice", round, k)
			}
			if deleted[k] {
				t.Fatalf("round %d: message %d resurrected after its commit returned", round, k)
			}
			seen[k] = true
		}
		m.Close()
		for k := range n {
			if !seen[k] && !deleted[k] {
				if k != inflight {
					t.Fatalf("round %d: message %d lost (not deleted)", round, k)
				}
				deleted[k] = true // the in-flight commit was applied
			}
		}
	}
	if kills < 30 {
		t.Fatalf("only %d kills landed during a commit", kills)
	}
	t.Logf("%d kills during a commit, %d of them with a journal to replay, %d messages deleted", kills, replays, len(deleted))
}

// dotName is the name of a file kept beside the mbox p.
func dotName(p, suffix string) string {
	return filepath.Join(filepath.Dir(p), "."+filepath.Base(p)+suffix)
}
