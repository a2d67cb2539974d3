//go:build unix

package pgstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/postoffice-mail/postoffice/internal/store"
	"github.com/postoffice-mail/postoffice/internal/testutil/pgtest"
)

// TestFailover runs deliveries and retrieve-and-delete sessions through two
// Stores on a primary with a synchronous replica, SIGKILLs the primary in
// the middle, promotes the replica, and checks that the same Stores (not
// reopened) work again within a bounded time, that every delivery that
// returned nil is in the maildrops (or was deleted by a Commit that
// returned nil), and that no message a Commit removed comes back.
func TestFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a replicated pair; skipped in -short mode")
	}
	r := pgtest.NewReplicated(t)
	opts := Options{LockTTL: 2 * time.Second, ConnectTimeout: 2 * time.Second}
	stores := []*Store{newStore(t, r.DSN(), opts), newStore(t, r.DSN(), opts)}
	if err := stores[0].Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	users := []string{"u0", "u1", "u2", "u3"}

	var (
		mu        sync.Mutex
		delivered = map[string]bool{} // bodies whose Deliver returned nil
		deleted   = map[string]bool{} // bodies removed by a Commit that returned nil
		// bodies of a Commit that failed: a connection lost during COMMIT
		// leaves the client not knowing whether it committed (the server
		// may have), so they may be gone or present.
		uncertain = map[string]bool{}
		killedAt  time.Time // zero until the primary is killed
		promoted  time.Time
		firstOK   [2]struct{ deliver, commit time.Time } // per store, first success after the kill
		ops       atomic.Int64
		errs      atomic.Int64
	)
	note := func(si int, what string) {
		mu.Lock()
		defer mu.Unlock()
		if killedAt.IsZero() || promoted.IsZero() {
			return
		}
		p := &firstOK[si].deliver
		if what == "commit" {
			p = &firstOK[si].commit
		}
		if p.IsZero() {
			*p = time.Now()
		}
	}
	recovered := func() bool {
		mu.Lock()
		defer mu.Unlock()
		for _, f := range firstOK {
			if f.deliver.IsZero() || f.commit.IsZero() {
				return false
			}
		}
		return true
	}

	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var seq atomic.Int64
	for si, s := range stores {
		// A deliverer per store.
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				n := seq.Add(1)
				body := fmt.Sprintf("Subject: m%d\r\n\r\nbody %d\r\n", n, n)
				dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
				err := s.Deliver(dctx, users[n%int64(len(users))], strings.NewReader(body))
				cancel()
				ops.Add(1)
				if err != nil {
					errs.Add(1)
					time.Sleep(20 * time.Millisecond)
					continue
				}
				mu.Lock()
				delivered[body] = true
				mu.Unlock()
				note(si, "deliver")
			}
		}()
		// A retriever per store: open, read up to three messages, delete
		// them, quit.
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ctx.Err() == nil; i++ {
				u := users[(i+si)%len(users)]
				if err := retrieve(ctx, s, u, func(bodies []string, err error) {
					mu.Lock()
					for _, b := range bodies {
						if err == nil {
							deleted[b] = true
						} else {
							uncertain[b] = true
						}
					}
					mu.Unlock()
					if err != nil {
						return
					}
					if len(bodies) > 0 {
						note(si, "commit")
					}
				}); err != nil {
					errs.Add(1)
					time.Sleep(20 * time.Millisecond)
				}
				ops.Add(1)
			}
		}()
	}

	// Let the load run, then fail over.
	time.Sleep(time.Second)
	mu.Lock()
	killedAt = time.Now()
	mu.Unlock()
	if err := r.KillPrimary(); err != nil {
		stop()
		wg.Wait()
		t.Fatal(err)
	}
	if err := r.Promote(); err != nil {
		stop()
		wg.Wait()
		t.Fatal(err)
	}
	mu.Lock()
	promoted = time.Now()
	mu.Unlock()
	deadline := time.Now().Add(60 * time.Second)
	for !recovered() && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	ok := recovered()
	time.Sleep(500 * time.Millisecond) // some load on the new primary
	stop()
	wg.Wait()
	if !ok {
		t.Fatalf("the Stores did not recover within 60 s of the promotion: %+v", firstOK)
	}
	var worst time.Duration
	for _, f := range firstOK {
		worst = max(worst, f.deliver.Sub(promoted), f.commit.Sub(promoted))
	}
	t.Logf("%d operations, %d errors; kill to promotion done %s; promotion to every Store's first Deliver and Commit %s",
		ops.Load(), errs.Load(), promoted.Sub(killedAt).Round(time.Millisecond), worst.Round(time.Millisecond))

	// Every maildrop as the new primary has it.
	present := map[string]bool{}
	for _, u := range users {
		var md store.Maildrop
		var err error
		for i := 0; i < 100; i++ { // leases of sessions cut by the failover expire in LockTTL
			if md, err = stores[0].Open(context.Background(), u); !errors.Is(err, store.ErrInUse) {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if err != nil {
			t.Fatalf("Open(%s) after the failover: %v", u, err)
		}
		for i := range md.Messages() {
			b, err := readAll(context.Background(), md, i)
			if err != nil {
				t.Fatal(err)
			}
			if present[b] {
				t.Errorf("message %q twice", b)
			}
			present[b] = true
		}
		md.Close()
	}
	lost, back := 0, 0
	for b := range delivered {
		if !present[b] && !deleted[b] && !uncertain[b] {
			lost++
			t.Errorf("delivered (Deliver returned nil) but gone: %q", b)
		}
	}
	for b := range deleted {
		if present[b] {
			back++
			t.Errorf("deleted (Commit returned nil) but back: %q", b)
		}
	}
	t.Logf("%d delivered, %d deleted, %d present, %d in Commits that failed; %d lost, %d resurrected",
		len(delivered), len(deleted), len(present), len(uncertain), lost, back)
}

// retrieve is one POP3 session: open, read up to three messages, delete
// them and commit. done is called with their bodies and Commit's error.
func retrieve(ctx context.Context, s *Store, user string, done func([]string, error)) error {
	octx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	md, err := s.Open(octx, user)
	if errors.Is(err, store.ErrInUse) {
		return nil
	}
	if err != nil {
		return err
	}
	defer md.Close()
	var (
		idx    []int
		bodies []string
	)
	for i := range min(3, len(md.Messages())) {
		b, err := readAll(octx, md, i)
		if err != nil {
			return err
		}
		idx = append(idx, i)
		bodies = append(bodies, b)
	}
	err = md.Commit(octx, idx)
	done(bodies, err)
	return err
}

func readAll(ctx context.Context, md store.Maildrop, i int) (string, error) {
	rc, err := md.Open(ctx, i)
	if err != nil {
		return "", err
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	return string(b), err
}
