package maildir

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"
)

// seed fills dir (a Maildir) with n small messages, written directly and
// without fsync, from a few goroutines. With withW they are in cur/ named
// like Dovecot's ("<secs>.M<usec>P<pid>.<host>,S=<n>,W=<n>:2,S"), else in
// new/ named like Postfix's, without sizes.
func seed(tb testing.TB, dir string, n int, withW bool) {
	tb.Helper()
	for _, sub := range []string{"cur", "new", "tmp"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o700); err != nil {
			tb.Fatal(err)
		}
	}
	const workers = 8
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Go(func() {
			for i := w; i < n; i += workers {
				body := fmt.Sprintf("From: seed@example.org\nSubject: message %d\n\nbody of message %d\n", i, i)
				secs, usec := 1700000000+i/1000, i%1000*1000
				var path string
				if withW {
					path = filepath.Join(dir, "cur", fmt.Sprintf("%d.M%dP4242.seed.example.org,S=%d,W=%d:2,S",
						secs, usec, len(body), wsize(body)))
				} else {
					path = filepath.Join(dir, "new", fmt.Sprintf("%d.V801I%xM%d.seed.example.org", secs, i, usec))
				}
				if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		tb.Fatal(err)
	}
}

// cpuTime returns the user plus system CPU time of this process.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func TestSeed(t *testing.T) {
	t.Parallel()
	for _, withW := range []bool{true, false} {
		s, _ := newTestStore(t, true)
		dir := mustPath(t, s, "seeded")
		seed(t, dir, 1000, withW)
		m := openMD(t, s, "seeded")
		msgs := m.Messages()
		if len(msgs) != 1000 {
			t.Fatalf("withW=%v: %d messages, want 1000", withW, len(msgs))
		}
		for _, i := range []int{0, 1, 999} {
			want := fmt.Sprintf("From: seed@example.org\nSubject: message %d\n\nbody of message %d\n", i, i)
			if got := readMsg(t, m, i); got != want {
				t.Errorf("withW=%v: message %d = %q, want %q (order)", withW, i, got, want)
			}
			if msgs[i].Size != wsize(want) {
				t.Errorf("withW=%v: message %d Size = %d, want %d", withW, i, msgs[i].Size, wsize(want))
			}
		}
		m.Close()
	}
}

// BenchmarkOpen100k opens a 100,000-message Maildir: warm (index up to date:
// lock, index read, two directory reads), and cold (no index) with W= in the
// names (trusted: no file opened; -verify, with VerifySizeFields: one 1-octet
// read per message) and without (every message read).
// Opens are with fsync on, as in production; only the seeding skips it.
func BenchmarkOpen100k(b *testing.B) {
	const n = 100_000
	root := b.TempDir()
	s, err := New(Options{Location: root + "/%n", Hostname: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	verify, err := New(Options{Location: root + "/%n", Hostname: "bench", VerifySizeFields: true})
	if err != nil {
		b.Fatal(err)
	}
	seed(b, mustPath(b, s, "withw"), n, true)
	seed(b, mustPath(b, s, "noW"), n, false)
	open := func(b *testing.B, s *Store, user string) {
		m, err := s.Open(context.Background(), user)
		if err != nil {
			b.Fatal(err)
		}
		if got := len(m.Messages()); got != n {
			b.Fatalf("%d messages, want %d", got, n)
		}
		m.Close()
	}
	for _, user := range []string{"withw", "noW"} {
		name := "warm"
		if user == "noW" {
			name = "warm-noW"
		}
		b.Run(name, func(b *testing.B) {
			// The directories were just written: a clock a minute ahead
			// lets the first Open record their stamps (dirstate.go), as
			// it would two seconds later.
			warm := *s
			warm.now = func() time.Time { return time.Now().Add(time.Minute) }
			open(b, &warm, user) // build the index, record the stamps
			b.ResetTimer()
			c0 := cpuTime()
			for b.Loop() {
				open(b, &warm, user)
			}
			// CPU time (user+system) per Open: wall time says little on a
			// loaded machine.
			b.ReportMetric(float64((cpuTime()-c0).Nanoseconds())/float64(b.N), "cpu-ns/op")
		})
	}
	for _, c := range []struct {
		name, user string
		s          *Store
	}{
		{"cold-withw", "withw", s},
		{"cold-withw-verify", "withw", verify},
		{"cold-noW", "noW", s},
	} {
		b.Run(c.name, func(b *testing.B) {
			index := filepath.Join(mustPath(b, c.s, c.user), indexName)
			c0 := cpuTime()
			for b.Loop() {
				b.StopTimer()
				if err := os.Remove(index); err != nil && !os.IsNotExist(err) {
					b.Fatal(err)
				}
				b.StartTimer()
				open(b, c.s, c.user)
			}
			b.ReportMetric(float64((cpuTime()-c0).Nanoseconds())/float64(b.N), "cpu-ns/op")
		})
	}
}

// BenchmarkOpenSmall is a session of the download scenario on the store
// side: a warm Open of a 50-message maildrop, then (read) every message
// read, then Close.
func BenchmarkOpenSmall(b *testing.B) {
	s, err := New(Options{Location: b.TempDir() + "/%n", Hostname: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	s.now = func() time.Time { return time.Now().Add(time.Minute) } // see BenchmarkOpen100k
	seed(b, mustPath(b, s, "small"), 50, false)
	buf := make([]byte, 32<<10)
	session := func(b *testing.B, read bool) {
		m, err := s.Open(context.Background(), "small")
		if err != nil {
			b.Fatal(err)
		}
		if read {
			for i := range m.Messages() {
				r, err := m.Open(context.Background(), i)
				if err != nil {
					b.Fatal(err)
				}
				for {
					_, err := r.Read(buf)
					if err == io.EOF {
						break
					}
					if err != nil {
						b.Fatal(err)
					}
				}
				r.Close()
			}
		}
		m.Close()
	}
	for _, read := range []bool{false, true} {
		name := "open"
		if read {
			name = "read"
		}
		b.Run(name, func(b *testing.B) {
			session(b, read)
			b.ReportAllocs()
			for b.Loop() {
				session(b, read)
			}
		})
	}
}
