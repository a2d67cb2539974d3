package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// seedBigbox writes n small messages straight into new/ the way Postfix
// names them (no S=/W= fields), without fsync: a fixture, not a delivery.
func seedBigbox(b testing.TB, s *site, user string, n int) {
	dir := s.maildir(user)
	for _, sub := range []string{"cur", "new", "tmp"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o700); err != nil {
			b.Fatal(err)
		}
	}
	base := time.Now().Unix() - int64(n)
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("%d.V801I%xM%d.bigbox", base+int64(i), i, i)
		msg := "Subject: message " + strconv.Itoa(i) + "\n\nsmall body\n"
		if err := os.WriteFile(filepath.Join(dir, "new", name), []byte(msg), 0o600); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkBigbox measures a whole session on a maildrop of 100,000
// messages, through the real binary over TCP: connect, USER, PASS, UIDL to
// its last line, QUIT. The first session (cold: sizes not cached yet) is
// reported as a metric; the loop measures warm sessions.
//
//	go test -run x -bench Bigbox -benchtime 10x ./internal/e2e
func BenchmarkBigbox(b *testing.B) {
	s := newSite(b)
	const n = 100000
	seedBigbox(b, s, "alice", n)
	srv := s.start()
	session := func() {
		c := srv.dial()
		c.login("alice")
		if got := len(c.uidls()); got != n {
			b.Fatalf("UIDL listed %d, want %d", got, n)
		}
		c.cmd("QUIT", "+OK")
		c.nc.Close()
	}
	start := time.Now()
	session()
	cold := time.Since(start)
	for b.Loop() {
		session()
	}
	b.ReportMetric(float64(cold.Milliseconds()), "cold-ms")
}
