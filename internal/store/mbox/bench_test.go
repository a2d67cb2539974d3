//go:build linux

package mbox

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
)

// writeBigMbox writes n messages of about size octets each, Postfix style.
func writeBigMbox(b *testing.B, s *Store, n, size int) string {
	b.Helper()
	p, err := s.Path("u")
	if err != nil {
		b.Fatal(err)
	}
	f, err := os.Create(p)
	if err != nil {
		b.Fatal(err)
	}
	w := bufio.NewWriter(f)
	line := strings.Repeat("x", 70) + "\n"
	for i := range n {
		fmt.Fprintf(w, "From sender@example.net  Mon Jan  1 00:00:00 2024\nSubject: %d\nMessage-ID: <%d@bench>\n\n", i, i)
		for written := 0; written < size; written += len(line) {
			w.WriteString(line)
		}
		w.WriteString("\n")
	}
	if err := w.Flush(); err != nil {
		b.Fatal(err)
	}
	f.Close()
	return p
}

// BenchmarkOpen10k: Open of a 10,000-message mbox (about 20 MB), cold
// (no index: the file is read whole) and warm (the index matches the
// file: it is not read).
func BenchmarkOpen10k(b *testing.B) {
	for _, warm := range []bool{false, true} {
		name := map[bool]string{false: "cold", true: "warm"}[warm]
		b.Run(name, func(b *testing.B) {
			s := newTestStore(b, Options{NoSync: true})
			p := writeBigMbox(b, s, 10000, 2000)
			idx := dotName(p, ".postoffice-index")
			m := openT(b, s, "u")
			m.Close()
			b.ResetTimer()
			for range b.N {
				if !warm {
					b.StopTimer()
					os.Remove(idx)
					b.StartTimer()
				}
				m, err := s.Open(context.Background(), "u")
				if err != nil {
					b.Fatal(err)
				}
				if len(m.Messages()) != 10000 {
					b.Fatalf("%d messages", len(m.Messages()))
				}
				m.Close()
			}
		})
	}
}

// BenchmarkCommitOneIn100MB: Commit of one deletion, the 100th of 50,000
// messages in a 100 MB mbox, with fsync: the journal copies the tail
// after it and the file is rewritten in place. Each iteration delivers
// one message so there is always one to delete.
func BenchmarkCommitOneIn100MB(b *testing.B) {
	s := newTestStore(b, Options{})
	writeBigMbox(b, s, 50000, 2000)
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		if err := s.Deliver(context.Background(), "u", strings.NewReader("Subject: more\n\nbody\n")); err != nil {
			b.Fatal(err)
		}
		m := openT(b, s, "u")
		b.StartTimer()
		if err := m.Commit(context.Background(), []int{100}); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		m.Close()
		b.StartTimer()
	}
}
