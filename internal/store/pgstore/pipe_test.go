package pgstore

import (
	"bytes"
	"context"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/postoffice-mail/postoffice/internal/store"
)

// checkPoolClean checks that no connection is held and that every idle one
// is out of pipeline mode, outside a transaction and answers a query: a
// reader's look-ahead never returns a connection mid-result.
func checkPoolClean(t *testing.T, s *Store) {
	t.Helper()
	// A connection given back broken (a canceled read closes it) is
	// destroyed in the background: it stays counted until then.
	for i := 0; s.pool.Stat().AcquiredConns() != 0; i++ {
		if i == 200 {
			t.Fatalf("%d connections still acquired after 10s, want 0", s.pool.Stat().AcquiredConns())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if n := len(s.pipes); n != 0 {
		t.Fatalf("%d look-ahead slots still taken, want 0", n)
	}
	ctx := context.Background()
	conns := s.pool.AcquireAllIdle(ctx)
	defer func() {
		for _, c := range conns {
			c.Release()
		}
	}()
	for i, c := range conns {
		pc := c.Conn().PgConn()
		if pc.IsBusy() || pc.TxStatus() != 'I' {
			t.Errorf("idle connection %d: busy %v, transaction status %q", i, pc.IsBusy(), pc.TxStatus())
			continue
		}
		var one int
		if err := c.QueryRow(ctx, `SELECT 1`).Scan(&one); err != nil || one != 1 {
			t.Errorf("idle connection %d: SELECT 1 = %d, %v", i, one, err)
		}
	}
}

// TestReadAheadReleased reads a message of several parts whole, and
// checks that the reader gives back the connection it held to look ahead
// as soon as its last part has been fetched, before Close.
func TestReadAheadReleased(t *testing.T) {
	const size = 3*ChunkSize + 1000
	s, _ := migrated(t, Options{})
	ctx := context.Background()
	if err := s.Deliver(ctx, "ahead", &patternReader{n: size}); err != nil {
		t.Fatal(err)
	}
	m := mustOpen(t, s, "ahead")
	defer m.Close()
	rc, err := m.Open(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	if got := s.pool.Stat().AcquiredConns(); got != 1 {
		t.Errorf("after Open of a %d-octet message, %d connections held, want 1 (the look-ahead)", size, got)
	}
	got, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	want := []byte(wireOf(string(patternBytes(size))))
	if !bytes.Equal(got, want) {
		t.Fatalf("read %d octets that differ from the %d delivered", len(got), len(want))
	}
	checkPoolClean(t, s)
	rc.Close()
}

// TestReadAheadClosedMidway closes readers with a query in flight, at
// several points of a message, and reads with a canceled context: each
// leaves the pool without a connection in pipeline mode or mid-result,
// and the store keeps serving.
func TestReadAheadClosedMidway(t *testing.T) {
	const size = 4 * ChunkSize
	s, _ := migrated(t, Options{MaxConns: 4})
	ctx := context.Background()
	if err := s.Deliver(ctx, "mid", &patternReader{n: size}); err != nil {
		t.Fatal(err)
	}
	m := mustOpen(t, s, "mid")
	defer m.Close()
	for _, after := range []int64{0, 1, ChunkSize - 1, ChunkSize + 1, 3 * ChunkSize} {
		rc, err := m.Open(ctx, 0)
		if err != nil {
			t.Fatal(err)
		}
		if n, err := io.CopyN(io.Discard, rc, after); n != after || err != nil {
			t.Fatalf("read %d octets, %v; want %d", n, err, after)
		}
		rc.Close()
		checkPoolClean(t, s)
	}

	cctx, cancel := context.WithCancel(ctx)
	rc, err := m.Open(cctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.CopyN(io.Discard, rc, ChunkSize+1); err != nil {
		t.Fatal(err)
	}
	cancel()
	_, err = io.Copy(io.Discard, rc)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("read after cancel: %v, want context.Canceled", err)
	}
	rc.Close()
	checkPoolClean(t, s)
	if got, want := read(t, m, 0), wireOf(string(patternBytes(size))); got != want {
		t.Errorf("read %d octets after the canceled read, want %d", len(got), len(want))
	}
	checkPoolClean(t, s)
}

// TestReadAheadBounded opens more readers of multi-part messages than
// half the pool, none read: at most half the pool's connections are held
// by them (the others read a part per query, holding none), and every
// reader still reads its message whole.
func TestReadAheadBounded(t *testing.T) {
	const size = 2*ChunkSize + 10
	s, _ := migrated(t, Options{MaxConns: 4})
	ctx := context.Background()
	for range 5 {
		if err := s.Deliver(ctx, "many", &patternReader{n: size}); err != nil {
			t.Fatal(err)
		}
	}
	m := mustOpen(t, s, "many")
	defer m.Close()
	var rcs []io.ReadCloser
	for i := range 5 {
		rc, err := m.Open(ctx, i)
		if err != nil {
			t.Fatal(err)
		}
		rcs = append(rcs, rc)
	}
	if got := s.pool.Stat().AcquiredConns(); got != 2 {
		t.Errorf("5 readers hold %d connections, want 2 (half of MaxConns 4)", got)
	}
	for i, rc := range rcs {
		if n, err := io.Copy(io.Discard, rc); n != (&patternReader{n: size}).crlf() || err != nil {
			t.Errorf("reader %d: %d octets, %v; want %d", i, n, err, (&patternReader{n: size}).crlf())
		}
		rc.Close()
	}
	checkPoolClean(t, s)
}

// TestReadAheadFailures breaks a reader's pipelined read in two ways: its
// backend terminated (the connection lost), and the message's rows
// deleted by another agent (a clean result with no rows). Each read fails
// with an error, never hangs or returns short data as complete, and the
// pool is left with no connection mid-result; the store serves again.
func TestReadAheadFailures(t *testing.T) {
	const size = 4 * ChunkSize
	s, dsn := migrated(t, Options{MaxConns: 4})
	ctx := context.Background()
	for range 2 {
		if err := s.Deliver(ctx, "fail", &patternReader{n: size}); err != nil {
			t.Fatal(err)
		}
	}
	m := mustOpen(t, s, "fail")
	defer m.Close()
	conn := admin(t, dsn)

	rc, err := m.Open(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	p := rc.(*bodyReader).pipe
	if p == nil {
		t.Fatal("no look-ahead on a message of 4 parts")
	}
	if _, err := io.CopyN(io.Discard, rc, ChunkSize+1); err != nil {
		t.Fatal(err)
	}
	var ok bool
	if err := conn.QueryRow(ctx, `SELECT pg_terminate_backend($1)`, p.conn.Conn().PgConn().PID()).Scan(&ok); err != nil || !ok {
		t.Fatalf("pg_terminate_backend = %v, %v", ok, err)
	}
	if n, err := io.Copy(io.Discard, rc); err == nil {
		t.Errorf("read after the backend was terminated: %d more octets, no error", n)
	}
	rc.Close()
	checkPoolClean(t, s)
	if got, want := read(t, m, 0), wireOf(string(patternBytes(size))); got != want {
		t.Errorf("read %d octets after the lost connection, want %d", len(got), len(want))
	}

	rc, err = m.Open(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.CopyN(io.Discard, rc, ChunkSize+1); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, `DELETE FROM message_chunks WHERE maildrop = 'fail' AND body_id = $1`, m.meta[1].bodyID); err != nil {
		t.Fatal(err)
	}
	// The part in flight may have been written before the DELETE: the
	// error comes at the latest at the part after it.
	if _, err := io.Copy(io.Discard, rc); !errors.Is(err, store.ErrNoMessage) {
		t.Errorf("read of a message deleted meanwhile: %v, want store.ErrNoMessage", err)
	}
	rc.Close()
	checkPoolClean(t, s)
	if got, want := read(t, m, 0), wireOf(string(patternBytes(size))); got != want {
		t.Errorf("read %d octets after the deleted message, want %d", len(got), len(want))
	}
}

// TestReadAheadExecModes reads a message of several parts through Stores
// whose DSN sets pgx's default_query_exec_mode: the look-ahead sends an
// unnamed statement in the modes that do not cache statements (a pooler
// in transaction mode may not keep named ones). Each reads the message
// whole and leaves the pool clean. (The modes exec and simple_protocol
// are not among them: the store's snapshot needs a described statement.)
func TestReadAheadExecModes(t *testing.T) {
	const size = 2*ChunkSize + 10
	_, dsn := migrated(t, Options{})
	for _, tc := range []struct {
		mode  string
		ahead bool
	}{
		{"cache_statement", true},
		{"cache_describe", true},
		{"describe_exec", true},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			s := newStore(t, dsn+" default_query_exec_mode="+tc.mode, Options{})
			ctx := context.Background()
			user := "mode-" + tc.mode
			if err := s.Deliver(ctx, user, &patternReader{n: size}); err != nil {
				t.Fatal(err)
			}
			m := mustOpen(t, s, user)
			defer m.Close()
			rc, err := m.Open(ctx, 0)
			if err != nil {
				t.Fatal(err)
			}
			p := rc.(*bodyReader).pipe
			if got := p != nil; got != tc.ahead {
				t.Errorf("look-ahead %v, want %v", got, tc.ahead)
			}
			if p != nil {
				if got, want := p.sd != nil, tc.mode == "cache_statement"; got != want {
					t.Errorf("named statement %v, want %v", got, want)
				}
			}
			got, err := io.ReadAll(rc)
			rc.Close()
			if err != nil {
				t.Fatal(err)
			}
			want := []byte(wireOf(string(patternBytes(size))))
			if !bytes.Equal(got, want) {
				t.Fatalf("read %d octets that differ from the %d delivered", len(got), len(want))
			}
			checkPoolClean(t, s)
		})
	}
}
