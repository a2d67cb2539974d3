package pgstore

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/postoffice-mail/postoffice/internal/testutil/pgtest"
	"github.com/postoffice-mail/postoffice/internal/wire"
	"github.com/postoffice-mail/postoffice/pop3server"
)

// The readers Open returns are the engine's WireReader, by their method
// set: this package does not import the engine, its tests do.
var (
	_ pop3server.WireReader = (*bodyReader)(nil)
	_ pop3server.WireReader = (*aheadReader)(nil)
)

// converted is what RETR sends for body through the converter: the
// DotWriter's output, terminating line included.
func converted(body []byte) string {
	var out bytes.Buffer
	bw := bufio.NewWriter(&out)
	d := wire.NewDotWriter(bw)
	d.Write(body)
	d.Close()
	bw.Flush()
	return out.String()
}

// retr sends the message r reads as the engine's RETR does
// (pop3server's sendMessage): as it is, with the terminating line, when
// the reader says it is in wire form, else through the converter. It
// returns the octets and whether the wire form was used, and the size
// the reader gave.
func retr(t testing.TB, r io.Reader, readSize int) (string, bool, int64) {
	t.Helper()
	wr, ok := r.(pop3server.WireReader)
	if !ok {
		t.Fatalf("reader %T is no WireReader", r)
	}
	buf := make([]byte, readSize)
	if size, ok := wr.Wire(); ok {
		var out bytes.Buffer
		if _, err := io.CopyBuffer(struct{ io.Writer }{&out}, struct{ io.Reader }{r}, buf); err != nil {
			t.Fatal(err)
		}
		return out.String() + ".\r\n", true, size
	}
	body, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return converted(body), false, -1
}

// wireBodies are bodies whose line ends and dots the stored wire form must
// get right: each is stored in CRLF form and sent as it is (but those with
// more than maxStuff lines to stuff, and perhaps the empty one).
func wireBodies() [][]byte {
	long := strings.Repeat("x", RowSize-3) // a line that ends across a row boundary
	// Lines that start with "." at, just before and just after row and
	// part boundaries of the stored form (CRLF already, so the offsets
	// are those of the body).
	var boundary strings.Builder
	boundary.WriteString("Subject: rows\r\n\r\n")
	for _, at := range []int{RowSize, 2*RowSize - 1, 3*RowSize + 1, ChunkSize, ChunkSize + RowSize - 1, 2 * ChunkSize} {
		for boundary.Len() < at {
			n := min(at-boundary.Len()-2, 1000)
			if at-boundary.Len()-2-n == 1 {
				n-- // leave room for a line of at least "\r\n"
			}
			boundary.WriteString(strings.Repeat("z", max(n, 0)) + "\r\n")
		}
		boundary.WriteString(".d\r\n")
	}
	boundary.WriteString("end\r\n")
	return [][]byte{
		[]byte("Subject: crlf\r\n\r\nbody\r\n"),
		[]byte("Subject: lf\n\nbody\nmore\n"),
		[]byte("Subject: nofinal\n\nlast line"),
		[]byte("Subject: cr\r\n\r\nends in CR\r"),
		[]byte("Subject: bare\r\n\r\nbare\rCR\r\rand\r\r\nmore\rx"),
		[]byte("A: b\r\nC: d\n\r\nx\ry\n\n\r\n"),
		[]byte(".\n.\r\n..\n. \n.x\r\n\n."),
		[]byte("."),
		[]byte("\n"),
		[]byte("\r"),
		{},
		[]byte("Subject: nul\n\n\x00\r\n\xff.\n.\x00\n"),
		[]byte("Subject: many dots\n\n" + strings.Repeat(".\n", maxStuff)),
		[]byte("Subject: too many dots\n\n" + strings.Repeat(".\n", maxStuff+1)),
		[]byte(boundary.String()),
		[]byte("Subject: dots\r\n\r\n" + strings.Repeat(long+"\n.y\r\n", 40)),
	}
}

// TestWireFormRetr: every body, delivered with whatever line ends, is sent
// by RETR through the wire form exactly as the converter sends it, octet
// for octet, the size the reader gives being the listed one; through the
// read-ahead buffer (in order), the reader of one part (out of order) and
// the reader of several parts (pipelined), and in reads of any size. Only
// a body with more than maxStuff lines to stuff goes through the
// converter (and an empty one may).
func TestWireFormRetr(t *testing.T) {
	s, dsn := migrated(t, Options{MaxConns: 4})
	ctx := context.Background()
	bodies := wireBodies()
	for _, b := range bodies {
		if err := s.Deliver(ctx, "wes", bytes.NewReader(b)); err != nil {
			t.Fatal(err)
		}
	}
	nulls := admin(t, dsn).QueryRow(ctx, `SELECT count(*) FILTER (WHERE stuff IS NULL) FROM messages WHERE maildrop = 'wes'`)
	var null int
	if err := nulls.Scan(&null); err != nil || null != 1 {
		t.Errorf("%d messages with a NULL stuff, %v; want 1 (the one with too many dots)", null, err)
	}
	for _, order := range []string{"in order", "reversed"} {
		for _, readSize := range []int{1, 7, 64 << 10} {
			m := mustOpen(t, s, "wes")
			for k := range bodies {
				i := k
				if order == "reversed" {
					i = len(bodies) - 1 - k
				}
				rc, err := m.Open(ctx, i)
				if err != nil {
					t.Fatal(err)
				}
				got, viaWire, size := retr(t, rc, readSize)
				rc.Close()
				body := bodies[i]
				name := fmt.Sprintf("%s, reads of %d, message %d (%.20q)", order, readSize, i, body)
				if want := converted(body); got != want {
					t.Errorf("%s: RETR sends %d octets (wire form %v) that differ from the converter's %d:\n got %.300q\nwant %.300q",
						name, len(got), viaWire, len(want), got, want)
				}
				wantWire := bytes.Count(append([]byte{'\n'}, body...), []byte("\n.")) <= maxStuff
				if viaWire != wantWire && len(body) > 0 {
					t.Errorf("%s: sent in wire form %v, want %v", name, viaWire, wantWire)
				}
				if viaWire && size != m.Messages()[i].Size {
					t.Errorf("%s: Wire size %d, listed %d", name, size, m.Messages()[i].Size)
				}
			}
			m.Close()
		}
	}
}

// TestWireOnlyBeforeRead: a reader read from (TOP, or a RETR that began
// through the converter) no longer offers the wire form.
func TestWireOnlyBeforeRead(t *testing.T) {
	s, _ := migrated(t, Options{})
	deliver(t, s, "wil", "Subject: a\n\n.a\n")
	deliver(t, s, "wil", "Subject: b\n\n.b\n")
	m := mustOpen(t, s, "wil")
	defer m.Close()
	for i := range 2 { // read ahead, then the usual way (out of order)
		rc, err := m.Open(context.Background(), 1-i)
		if err != nil {
			t.Fatal(err)
		}
		head := make([]byte, 3)
		io.ReadFull(rc, head)
		if _, ok := rc.(pop3server.WireReader).Wire(); ok {
			t.Errorf("message %d: Wire after a Read said ok", 2-i)
		}
		rest, _ := io.ReadAll(rc)
		if got, want := string(head)+string(rest), wireOf(fmt.Sprintf("Subject: %c\n\n.%c\n", 'b'-i, 'b'-i)); got != want {
			t.Errorf("message %d: read %q, want %q", 2-i, got, want)
		}
		rc.Close()
	}
}

// FuzzWireForm: the stored form (wire.CRLFReader), its lines to stuff
// (wire.DotLines, as a delivery records them) and the reader's stuffer, in
// stored pieces and reads of any size, send any body as the converter
// does; without a database.
func FuzzWireForm(f *testing.F) {
	for _, b := range wireBodies() {
		if len(b) < 4096 {
			f.Add(b, uint8(3), uint8(5))
		}
	}
	f.Fuzz(func(t *testing.T, body []byte, piece, readSize uint8) {
		stored, err := io.ReadAll(wire.NewCRLFReader(bytes.NewReader(body), make([]byte, int(piece)%32+1)))
		if err != nil {
			t.Fatal(err)
		}
		sc := wire.DotLines{Max: maxStuff}
		for off := 0; off < len(stored); off += int(piece) + 1 {
			sc.Write(stored[off:min(off+int(piece)+1, len(stored))])
		}
		col := stuffColumn(&sc)
		if col == nil {
			if n := bytes.Count(append([]byte{'\n'}, stored...), []byte("\n.")); n <= maxStuff {
				t.Fatalf("%d lines to stuff, stuff NULL", n)
			}
			return
		}
		st := stuffer{ready: true, dots: col}
		if !st.wire() {
			t.Fatal("wire() refused a body in wire form")
		}
		var out []byte
		p := make([]byte, int(readSize)%16+1)
		for src := stored; len(src) > 0; {
			piece := src[:min(len(src), int(piece)%40+1)]
			src = src[len(piece):]
			for len(piece) > 0 {
				n, used := st.copy(p, piece)
				out = append(out, p[:n]...)
				piece = piece[used:]
			}
		}
		if got, want := string(out)+".\r\n", converted(body); got != want {
			t.Fatalf("wire form of %q sent as %q, the converter sends %q", body, got, want)
		}
	})
}

// TestDecodeStuff: the binary array of messages.stuff as PostgreSQL sends
// it decodes to the offsets written, and a list that is not ascending,
// reaches past the body, or is too long is refused.
func TestDecodeStuff(t *testing.T) {
	_, dsn := migrated(t, Options{})
	conn := admin(t, dsn)
	raw := func(lit string) []byte {
		rows, err := conn.Query(context.Background(), `SELECT `+lit+`::bigint[]`, binaryResult)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		var v []byte
		for rows.Next() {
			v = bytes.Clone(rows.RawValues()[0])
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		return v
	}
	for _, tc := range []struct {
		lit  string
		size int64
		want []int64
		ok   bool
	}{
		{"'{}'", 10, nil, true},
		{"'{0}'", 10, []int64{0}, true},
		{"'{3,9}'", 10, []int64{3, 9}, true},
		{"'{3,10}'", 10, nil, false},
		{"'{5,3}'", 10, nil, false},
		{"'{3,3}'", 10, nil, false},
		{"'{-1}'", 10, nil, false},
		{"'{{1},{2}}'", 10, nil, false},
		{"'{1,NULL}'", 10, nil, false},
		{"NULL", 10, nil, false},
		{"(SELECT array_agg(i) FROM generate_series(0, 64) i)", 100, nil, false},
	} {
		got, ok := decodeStuff(raw(tc.lit), tc.size)
		if ok != tc.ok || fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("decodeStuff(%s) = %v, %v; want %v, %v", tc.lit, got, ok, tc.want, tc.ok)
		}
	}
	if got, ok := decodeStuff(raw("(SELECT array_agg(i) FROM generate_series(0, 63) i)"), 100); !ok || len(got) != maxStuff {
		t.Errorf("decodeStuff of %d offsets = %d, %v; want all", maxStuff, len(got), ok)
	}
}

// TestMigrateFromVersion3: a database of schema version 3, its bodies as
// delivered (LF line ends), is upgraded in place; its messages read back
// as they were stored, through the converter (no wire form), and a new
// delivery is stored in wire form.
func TestMigrateFromVersion3(t *testing.T) {
	dsn := pgtest.NewDB(t)
	conn := admin(t, dsn)
	ctx := context.Background()
	if _, err := conn.Exec(ctx, `
CREATE TABLE postoffice_schema (component text PRIMARY KEY, version integer NOT NULL, updated_at timestamptz NOT NULL DEFAULT now())`); err != nil {
		t.Fatal(err)
	}
	for _, m := range migrations[:3] {
		if _, err := conn.Exec(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := conn.Exec(ctx, `INSERT INTO postoffice_schema (component, version) VALUES ('store', 3)`); err != nil {
		t.Fatal(err)
	}
	// Messages as version 3 stored them: the delivered octets, in rows of
	// RowSize; one small (read ahead), one of several parts.
	old := []string{"Subject: old\n\n.dot\nLF\n", "Subject: big\n\n" + string(patternBytes(3*ChunkSize))}
	if _, err := conn.Exec(ctx, `INSERT INTO maildrops (maildrop, uidvalidity, next_uid) VALUES ('ivy', 1700000000, 3)`); err != nil {
		t.Fatal(err)
	}
	for k, body := range old {
		seq := 0
		for off := 0; off < len(body); off += RowSize {
			if _, err := conn.Exec(ctx, `INSERT INTO message_chunks (maildrop, body_id, seq, data) VALUES ('ivy', $1, $2, $3)`,
				k+1, seq, []byte(body[off:min(off+RowSize, len(body))])); err != nil {
				t.Fatal(err)
			}
			seq++
		}
		size, _ := wire.CRLFSize(strings.NewReader(body))
		if _, err := conn.Exec(ctx, `
INSERT INTO messages (maildrop, uid, uidl, size, octets, chunks, body_id, arrived)
VALUES ('ivy', $1, $2, $3, $4, $5, $1, now())`, k+1, fmt.Sprintf("%08x6553f100", k+1), size, len(body), seq); err != nil {
			t.Fatal(err)
		}
	}
	s := newStore(t, dsn, Options{})
	if err := s.CheckSchema(ctx); !errors.Is(err, ErrSchema) {
		t.Fatalf("CheckSchema on version 3 = %v, want ErrSchema (run the migration)", err)
	}
	if err := s.Migrate(ctx); err != nil {
		t.Fatalf("Migrate from version 3: %v", err)
	}
	if err := s.Migrate(ctx); err != nil {
		t.Fatalf("Migrate again: %v", err)
	}
	if err := s.CheckSchema(ctx); err != nil {
		t.Fatalf("CheckSchema after Migrate: %v", err)
	}
	deliver(t, s, "ivy", old[0])
	m := mustOpen(t, s, "ivy")
	defer m.Close()
	// In order (the small ones read ahead), then the old ones out of order.
	for k, i := range []int{0, 1, 2, 1, 0} {
		body := old[i%2]
		rc, err := m.Open(ctx, i)
		if err != nil {
			t.Fatal(err)
		}
		got, viaWire, _ := retr(t, rc, 32<<10)
		rc.Close()
		if want := converted([]byte(body)); got != want {
			t.Errorf("read %d, message %d: RETR sends %d octets, want the converter's %d", k, i, len(got), len(want))
		}
		if viaWire != (i == 2) {
			t.Errorf("read %d, message %d: wire form %v, want %v (only the new delivery)", k, i, viaWire, i == 2)
		}
	}
	var stored string
	if err := conn.QueryRow(ctx, `SELECT string_agg(convert_from(data, 'UTF8'), '' ORDER BY seq) FROM message_chunks WHERE maildrop = 'ivy' AND body_id = 1`).Scan(&stored); err != nil || stored != old[0] {
		t.Errorf("the old body after the upgrade: %q, %v; want it as it was, %q", stored, err, old[0])
	}
}
