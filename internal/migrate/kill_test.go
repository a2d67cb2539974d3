package migrate

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/postoffice-mail/postoffice/internal/store"
	"github.com/postoffice-mail/postoffice/internal/store/maildir"
	"github.com/postoffice-mail/postoffice/internal/store/pgstore"
)

// The helper process: the test binary run again with these variables set
// migrates the Maildirs under helperDir to the database helperDSN, and is
// killed at random instants by TestKill.
const (
	helperEnv = "POSTOFFICE_MIGRATE_HELPER"
	helperDir = "POSTOFFICE_MIGRATE_HELPER_DIR"
	helperDSN = "POSTOFFICE_MIGRATE_HELPER_DSN"
)

// killUsers and killMessages size the kill test: 10,000 messages of about
// 60 octets, in two maildrops.
var killUsers = []string{"alice", "bob"}

const killMessages = 10000

func helperStores(dir, dsn string) (*maildir.Store, *pgstore.Store, error) {
	src, err := maildir.New(maildir.Options{Location: filepath.Join(dir, "%u"), NoSync: true, Hostname: "test"})
	if err != nil {
		return nil, nil, err
	}
	dst, err := pgstore.Open(context.Background(), pgstore.Options{DSN: dsn, LockTTL: 2 * time.Second})
	if err != nil {
		return nil, nil, err
	}
	return src, dst, nil
}

func helperMain() int {
	src, dst, err := helperStores(os.Getenv(helperDir), os.Getenv(helperDSN))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	defer dst.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	res, err := Run(ctx, Options{From: src, To: dst, Users: killUsers, BatchSize: 200, InUseWait: 100 * time.Millisecond})
	if err != nil || len(res.Failed) > 0 {
		fmt.Fprintln(os.Stderr, res, err)
		return 1
	}
	return 0
}

// TestKill migrates 10,000 messages from Maildir to PostgreSQL in a helper
// process that is SIGKILLed 20 times at random instants, then runs the
// migration to its end: every message must be in the destination exactly
// once with the UIDL, size and bytes it had, and the source unchanged.
func TestKill(t *testing.T) {
	if testing.Short() {
		t.Skip("migrates 10,000 messages 21 times; skipped in -short mode")
	}
	ctx := context.Background()
	dir := t.TempDir()
	dsn := newPGDSN(t)
	src, dst, err := helperStores(dir, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(dst.Close)
	for n := range killMessages {
		u := killUsers[n%len(killUsers)]
		if err := src.Deliver(ctx, u, strings.NewReader(fmt.Sprintf("Subject: message %d\r\n\r\nbody %d\r\n", n, n))); err != nil {
			t.Fatal(err)
		}
	}
	before := map[string][]store.Message{}
	for _, u := range killUsers {
		before[u] = messages(t, src, u)
	}

	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	kills, exited := 0, 0
	for attempt := 0; kills < 20 && attempt < 200; attempt++ {
		cmd := exec.Command(exe, "-test.run=^$")
		cmd.Env = append(os.Environ(), helperEnv+"=1", helperDir+"="+dir, helperDSN+"="+dsn)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// Kill somewhere in the first 400 ms: a run copies a few batches
		// (a whole migration takes some seconds), so each kill lands at
		// another point of it, mostly inside an Import.
		delay := time.Duration(30+rand.IntN(370)) * time.Millisecond
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			exited++
			if err != nil {
				t.Fatalf("helper failed: %v\n%s", err, stderr.Bytes())
			}
			// It finished before the kill: nothing was left to copy.
			// Remove a slice of the destination so the next run has work.
			trim(t, dst, killUsers[attempt%len(killUsers)], 500)
		case <-time.After(delay):
			cmd.Process.Signal(syscall.SIGKILL)
			<-done
			kills++
		}
	}
	if kills < 20 {
		t.Fatalf("only %d kills in 200 runs", kills)
	}
	t.Logf("%d kills, %d runs ended by themselves; copied so far: %d of %d", kills, exited, count(t, dst), killMessages)
	start := time.Now()

	// The last run, in-process, to its end. A killed helper's leases are
	// expired by then or are retried (InUseWait), as a killed server's are.
	res, err := Run(ctx, Options{From: src, To: dst, Users: killUsers, InUseWait: 200 * time.Millisecond})
	if err != nil || len(res.Failed) != 0 {
		t.Fatalf("final Run = %+v, %v", res, err)
	}
	t.Logf("final run: %d copied, %d skipped in %s", res.Copied, res.Skipped, time.Since(start).Round(time.Millisecond))
	for _, u := range killUsers {
		if diff := cmp.Diff(before[u], messages(t, dst, u)); diff != "" {
			t.Errorf("user %s: destination UIDL listing differs from the source's (-source +destination):\n%s", u, diff)
		}
		if diff := cmp.Diff(before[u], messages(t, src, u)); diff != "" {
			t.Errorf("user %s: source changed (-before +after):\n%s", u, diff)
		}
	}
	rep, err := Verify(ctx, src, dst, killUsers)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Diffs) != 0 || rep.Messages != killMessages {
		t.Errorf("Verify: %d messages, differences %v; want %d and none", rep.Messages, rep.Diffs, killMessages)
	}
}

func newPGDSN(t *testing.T) string {
	_, dsn := newPG(t)
	return dsn
}

// messages lists the UIDLs and sizes of user's maildrop through the store
// API, copied out of the snapshot.
func messages(t testing.TB, s store.Store, user string) []store.Message {
	t.Helper()
	var md store.Maildrop
	var err error
	for n := 0; n < 100; n++ { // a killed helper's lease expires in 2 s
		if md, err = s.Open(context.Background(), user); err != store.ErrInUse {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("Open(%q): %v", user, err)
	}
	defer md.Close()
	return append([]store.Message(nil), md.Messages()...)
}

func count(t testing.TB, s store.Store) int {
	n := 0
	for _, u := range killUsers {
		n += len(messages(t, s, u))
	}
	return n
}

// trim deletes the last n messages of user's maildrop in s.
func trim(t testing.TB, s store.Store, user string, n int) {
	t.Helper()
	var md store.Maildrop
	var err error
	for i := 0; i < 100; i++ {
		if md, err = s.Open(context.Background(), user); err != store.ErrInUse {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer md.Close()
	var del []int
	for i := max(0, len(md.Messages())-n); i < len(md.Messages()); i++ {
		del = append(del, i)
	}
	if err := md.Commit(context.Background(), del); err != nil {
		t.Fatal(err)
	}
}
