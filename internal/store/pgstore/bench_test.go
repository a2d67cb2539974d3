package pgstore

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"testing"
)

// BenchmarkOpen100k opens (snapshot: one query on messages, no body read)
// and closes a maildrop of 100,000 messages. The rows are made by SQL, not
// by Deliver, to keep the setup short; Open reads only them.
func BenchmarkOpen100k(b *testing.B) {
	const n = 100_000
	s, dsn := migrated(b, Options{})
	ctx := context.Background()
	mustOpen(b, s, "big").Close()
	conn := admin(b, dsn)
	if _, err := conn.Exec(ctx, `
INSERT INTO messages (maildrop, uid, uidl, size, octets, chunks, body_id, arrived)
SELECT 'big', i, lpad(to_hex(i), 8, '0') || '6553f100', 4000 + i % 5000, 3900 + i % 5000, 1, i, now()
FROM generate_series(1, $1) AS i`, n); err != nil {
		b.Fatal(err)
	}
	if _, err := conn.Exec(ctx, `UPDATE maildrops SET next_uid = $1 + 1 WHERE maildrop = 'big'`, n); err != nil {
		b.Fatal(err)
	}
	if _, err := conn.Exec(ctx, `VACUUM ANALYZE messages`); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		m, err := s.Open(ctx, "big")
		if err != nil {
			b.Fatal(err)
		}
		if got := len(m.Messages()); got != n {
			b.Fatalf("%d messages, want %d", got, n)
		}
		m.Close()
	}
}

// BenchmarkDeliver delivers messages of a few sizes to one maildrop, one
// at a time (the serial latency of a delivery, COMMIT included), and
// reports messages per second.
func BenchmarkDeliver(b *testing.B) {
	for _, size := range []int{4 << 10, 64 << 10, 1 << 20} {
		b.Run(fmt.Sprintf("%dKiB", size>>10), func(b *testing.B) {
			s, _ := migrated(b, Options{})
			body := patternBytes(size)
			b.SetBytes(int64(size))
			for b.Loop() {
				if err := s.Deliver(context.Background(), "rcpt", bytes.NewReader(body)); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
		})
	}
}

// BenchmarkDeliverParallel delivers 4 KiB messages from GOMAXPROCS*4
// goroutines to as many maildrops, as an LMTP server under load does.
func BenchmarkDeliverParallel(b *testing.B) {
	s, _ := migrated(b, Options{MaxConns: 16})
	body := patternBytes(4096)
	b.SetBytes(int64(len(body)))
	b.SetParallelism(4)
	var next int64
	var mu = make(chan struct{}, 1)
	b.RunParallel(func(pb *testing.PB) {
		mu <- struct{}{}
		next++
		user := fmt.Sprintf("rcpt%d", next)
		<-mu
		for pb.Next() {
			if err := s.Deliver(context.Background(), user, bytes.NewReader(body)); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}

// BenchmarkRead reads a 10 MB message back (RETR's body stream); MB/s is
// the body read throughput of one session.
func BenchmarkRead(b *testing.B) {
	const size = 10 << 20
	s, _ := migrated(b, Options{})
	if err := s.Deliver(context.Background(), "reader", &patternReader{n: size}); err != nil {
		b.Fatal(err)
	}
	m := mustOpen(b, s, "reader")
	defer m.Close()
	b.SetBytes(size)
	for b.Loop() {
		rc, err := m.Open(context.Background(), 0)
		if err != nil {
			b.Fatal(err)
		}
		n, err := io.Copy(io.Discard, rc)
		rc.Close()
		if err != nil || n != size {
			b.Fatalf("read %d octets, %v; want %d", n, err, size)
		}
	}
}

func patternBytes(n int) []byte {
	b, _ := io.ReadAll(&patternReader{n: int64(n)})
	return b
}
