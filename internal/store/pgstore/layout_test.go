package pgstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/postoffice-mail/postoffice/internal/store"
	"github.com/postoffice-mail/postoffice/internal/testutil/pgtest"
)

// TestBodyRowsStayInline: a delivered body, text that TOAST would
// compress, is stored as rows of at most RowSize octets that stay whole
// in the heap: the table's TOAST relation stays empty, so a read finds
// each row where it lies, with no TOAST index lookup and no decompression.
// The rows were 256 KiB values, each cut by TOAST into about 130 rows of
// 2 KB out of line and pglz-compressed.
func TestBodyRowsStayInline(t *testing.T) {
	s, dsn := migrated(t, Options{})
	const size = 3 * ChunkSize / 2
	// The longest maildrop name: its row is the largest a body row gets.
	user := strings.Repeat("u", maxUserLen)
	if err := s.Deliver(context.Background(), user, &patternReader{n: size}); err != nil {
		t.Fatal(err)
	}
	conn := admin(t, dsn)
	var rows, longest, toast int64
	if err := conn.QueryRow(context.Background(), `
SELECT count(*), max(octet_length(data)),
	(SELECT pg_relation_size(reltoastrelid) FROM pg_class WHERE relname = 'message_chunks')
FROM message_chunks`).Scan(&rows, &longest, &toast); err != nil {
		t.Fatal(err)
	}
	crlf := (&patternReader{n: size}).crlf() // stored in CRLF form
	if want := (crlf + RowSize - 1) / RowSize; rows != want || longest > RowSize {
		t.Errorf("a %d-octet body is %d rows of at most %d octets, want %d of at most %d", crlf, rows, longest, want, RowSize)
	}
	if toast != 0 {
		t.Errorf("the TOAST relation of message_chunks holds %d octets, want none (every body row inline)", toast)
	}
	m := mustOpen(t, s, user)
	defer m.Close()
	want := wireOf(string(patternBytes(size)))
	if got := read(t, m, 0); got != want {
		t.Errorf("read back %d octets, want the %d delivered", len(got), len(want))
	}
}

// TestBodyRowsOfAnySize: the reader takes body rows of any size, in any
// mix: the 256 KiB rows of schema versions 1 and 2, rows larger than its
// buffer, rows of a few octets. The rows are rewritten by SQL from a
// delivered body.
func TestBodyRowsOfAnySize(t *testing.T) {
	s, dsn := migrated(t, Options{})
	const size = 3*bufSize + 1000
	body := []byte(wireOf(string(patternBytes(size)))) // as stored
	for _, tc := range []struct {
		name  string
		sizes []int // row sizes, the last one repeated to the end
	}{
		{"256KiB", []int{256 << 10}},
		{"larger than the buffer", []int{bufSize + 1, 5, RowSize}},
		{"tiny then 256KiB", []int{1, 2, 3, 256 << 10}},
		{"odd", []int{100_000, 7, 3 * RowSize}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			user := "rows" + strings.ReplaceAll(tc.name, " ", "")
			if err := s.Deliver(context.Background(), user, bytes.NewReader(body)); err != nil {
				t.Fatal(err)
			}
			conn := admin(t, dsn)
			ctx := context.Background()
			if _, err := conn.Exec(ctx, `DELETE FROM message_chunks WHERE maildrop = $1`, user); err != nil {
				t.Fatal(err)
			}
			seq := 0
			for off, k := 0, 0; off < len(body); seq++ {
				n := tc.sizes[min(k, len(tc.sizes)-1)]
				k++
				end := min(off+n, len(body))
				if _, err := conn.Exec(ctx, `INSERT INTO message_chunks (maildrop, body_id, seq, data)
SELECT $1, body_id, $2, $3 FROM messages WHERE maildrop = $1`, user, seq, body[off:end]); err != nil {
					t.Fatal(err)
				}
				off = end
			}
			if _, err := conn.Exec(ctx, `UPDATE messages SET chunks = $2 WHERE maildrop = $1`, user, seq); err != nil {
				t.Fatal(err)
			}
			m := mustOpen(t, s, user)
			defer m.Close()
			if got := read(t, m, 0); got != string(body) {
				t.Errorf("read back %d octets from %d rows, want the %d delivered", len(got), seq, len(body))
			}
		})
	}
}

// TestMissingBodyRow: a body row removed from the middle of a message
// (by hand, or by another agent while it is read) is an error at that
// point of the read, wrapping store.ErrNoMessage, never a silent gap.
func TestMissingBodyRow(t *testing.T) {
	s, dsn := migrated(t, Options{})
	const size = 3 * ChunkSize
	for _, seq := range []int{5, 40} { // in the first query's rows, in a later query's
		user := fmt.Sprintf("gap%d", seq)
		if err := s.Deliver(context.Background(), user, &patternReader{n: size}); err != nil {
			t.Fatal(err)
		}
		if _, err := admin(t, dsn).Exec(context.Background(), `DELETE FROM message_chunks WHERE maildrop = $1 AND seq = $2`, user, seq); err != nil {
			t.Fatal(err)
		}
		m := mustOpen(t, s, user)
		rc, err := m.Open(context.Background(), 0)
		if err != nil {
			m.Close()
			t.Fatal(err)
		}
		n, err := io.Copy(io.Discard, rc)
		rc.Close()
		m.Close()
		if !errors.Is(err, store.ErrNoMessage) || n != int64(seq)*RowSize {
			t.Errorf("row %d missing: read %d octets, then %v; want %d octets, then store.ErrNoMessage", seq, n, err, seq*RowSize)
		}
	}
}

// TestMigrateFromVersion2: a database of schema version 2, whose bodies are
// 256 KiB rows (TOASTed), is upgraded in place; its messages read back
// whole, and new deliveries are stored inline.
func TestMigrateFromVersion2(t *testing.T) {
	dsn := pgtest.NewDB(t)
	conn := admin(t, dsn)
	ctx := context.Background()
	if _, err := conn.Exec(ctx, `
CREATE TABLE postoffice_schema (component text PRIMARY KEY, version integer NOT NULL, updated_at timestamptz NOT NULL DEFAULT now())`); err != nil {
		t.Fatal(err)
	}
	for _, m := range migrations[:2] {
		if _, err := conn.Exec(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := conn.Exec(ctx, `INSERT INTO postoffice_schema (component, version) VALUES ('store', 2)`); err != nil {
		t.Fatal(err)
	}
	// A message as version 2 stored it: rows of 256 KiB, the last shorter.
	const size = 600_000
	old, _ := io.ReadAll(&patternReader{n: size})
	if _, err := conn.Exec(ctx, `
INSERT INTO maildrops (maildrop, uidvalidity, next_uid) VALUES ('hal', 1700000000, 2);
INSERT INTO messages (maildrop, uid, uidl, size, octets, chunks, body_id, arrived)
VALUES ('hal', 1, '000000016553f100', 0, 0, 0, 42, now())`); err != nil {
		t.Fatal(err)
	}
	seq := 0
	for off := 0; off < len(old); off += 256 << 10 {
		if _, err := conn.Exec(ctx, `INSERT INTO message_chunks (maildrop, body_id, seq, data) VALUES ('hal', 42, $1, $2)`,
			seq, old[off:min(off+256<<10, len(old))]); err != nil {
			t.Fatal(err)
		}
		seq++
	}
	crlf := (&patternReader{n: size}).crlf()
	if _, err := conn.Exec(ctx, `UPDATE messages SET size = $1, octets = $2, chunks = $3 WHERE maildrop = 'hal'`, crlf, size, seq); err != nil {
		t.Fatal(err)
	}
	s := newStore(t, dsn, Options{})
	if err := s.CheckSchema(ctx); !errors.Is(err, ErrSchema) {
		t.Fatalf("CheckSchema on version 2 = %v, want ErrSchema (run the migration)", err)
	}
	if err := s.Migrate(ctx); err != nil {
		t.Fatalf("Migrate from version 2: %v", err)
	}
	if err := s.Migrate(ctx); err != nil {
		t.Fatalf("Migrate again: %v", err)
	}
	if err := s.CheckSchema(ctx); err != nil {
		t.Fatalf("CheckSchema after Migrate: %v", err)
	}
	deliver(t, s, "hal", string(old))
	var toastAfter int64
	m := mustOpen(t, s, "hal")
	defer m.Close()
	// The old body as it was stored (LF line ends), the new delivery in
	// CRLF form (schema version 4).
	for i, want := range []string{string(old), wireOf(string(old))} {
		if got := read(t, m, i); got != want {
			t.Errorf("message %d: read back %d octets, want %d", i, len(got), len(want))
		}
	}
	if err := conn.QueryRow(ctx, `SELECT max(octet_length(data)) FILTER (WHERE body_id <> 42) FROM message_chunks`).Scan(&toastAfter); err != nil {
		t.Fatal(err)
	}
	if toastAfter > RowSize {
		t.Errorf("a delivery after the upgrade wrote rows of %d octets, want at most %d", toastAfter, RowSize)
	}
}

// TestReadAheadRoundTrips: a session that retrieves 20 small messages in
// order makes one query for all of them, where it made one per message
// (a round trip and an executor start on either side, about a sixth of a
// download session's CPU), and each reads back as delivered.
func TestReadAheadRoundTrips(t *testing.T) {
	trace := &roundTrips{}
	s, _ := migrated(t, Options{tracer: trace})
	var bodies []string
	for i := range 20 {
		b := fmt.Sprintf("Subject: %d\n\n%s", i, strings.Repeat(fmt.Sprintf("line %d\n", i), 200+i*37))
		bodies = append(bodies, wireOf(b))
		deliver(t, s, "nat", b)
	}
	m := mustOpen(t, s, "nat")
	defer m.Close()
	trace.take()
	for i, want := range bodies {
		if got := read(t, m, i); got != want {
			t.Errorf("message %d: read %d octets, want the %d delivered", i, len(got), len(want))
		}
	}
	if sent := trace.take(); len(sent) != 1 {
		t.Errorf("reading 20 small messages in order took %d round trips, want 1:\n%q", len(sent), sent)
	}
}

// TestReadAheadOrders: reads in order, out of order, with a large message
// between small ones, a reader left open while the next messages are
// opened, and a header-only read (TOP) all give the delivered octets; a
// message removed by hand before it was read ahead is store.ErrNoMessage.
func TestReadAheadOrders(t *testing.T) {
	s, dsn := migrated(t, Options{})
	sizes := []int{3000, 5000, 200_000, 1000, 2000, 70_000, 4000, 4000, 4000}
	var bodies []string
	for i, n := range sizes {
		b, _ := io.ReadAll(&patternReader{n: int64(n)})
		b = append([]byte(fmt.Sprintf("Subject: %d\n\n", i)), b...)
		bodies = append(bodies, wireOf(string(b)))
		deliver(t, s, "oda", string(b))
	}
	m := mustOpen(t, s, "oda")
	defer m.Close()
	ctx := context.Background()
	held, err := m.Open(ctx, 0) // reads 0 and 1 ahead; left open
	if err != nil {
		t.Fatal(err)
	}
	for _, i := range []int{1, 2, 3, 4, 8, 6, 7, 5} {
		if got := read(t, m, i); got != bodies[i] {
			t.Errorf("message %d: read %d octets, want the %d delivered", i, len(got), len(bodies[i]))
		}
	}
	got, err := io.ReadAll(held)
	held.Close()
	if err != nil || string(got) != bodies[0] {
		t.Errorf("message 0 read last: %d octets, %v; want the %d delivered", len(got), err, len(bodies[0]))
	}
	// TOP: the headers of each in order, the reader closed early.
	for i := range bodies {
		rc, err := m.Open(ctx, i)
		if err != nil {
			t.Fatal(err)
		}
		head := make([]byte, 12)
		if _, err := io.ReadFull(rc, head); err != nil || string(head) != bodies[i][:12] {
			t.Errorf("message %d: first octets %q, %v; want %q", i, head, err, bodies[i][:12])
		}
		rc.Close()
		if _, err := rc.Read(head); err == nil {
			t.Errorf("message %d: Read after Close succeeded", i)
		}
	}
	m.Close()

	// Removed by hand after the snapshot, before the read ahead.
	m = mustOpen(t, s, "oda")
	defer m.Close()
	if _, err := admin(t, dsn).Exec(ctx, `DELETE FROM messages WHERE maildrop = 'oda' AND uid = 2`); err != nil {
		t.Fatal(err)
	}
	if got := read(t, m, 0); got != bodies[0] {
		t.Errorf("message 0 after message 1 was removed: read %d octets, want %d", len(got), len(bodies[0]))
	}
	if rc, err := m.Open(ctx, 1); !errors.Is(err, store.ErrNoMessage) {
		if rc != nil {
			rc.Close()
		}
		t.Errorf("Open of a message removed before it was read ahead = %v, want store.ErrNoMessage", err)
	}
}
