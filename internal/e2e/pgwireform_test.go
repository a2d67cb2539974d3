package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/postoffice-mail/postoffice/internal/wire"
)

// On PostgreSQL, bodies are stored in wire form whatever line ends they
// were delivered with, and sent as they are stored, a "." added before the
// lines that start with one (up to 64 such lines); a body stored before
// schema version 4 (its octets as delivered, stuff NULL) and one with more
// lines to stuff go through the converter. Pipelined RETRs of all of
// them, in order (read ahead) and in reverse (read one by one), over a
// plain connection and over TLS, must give each message exactly as the
// converter frames it.
func TestPostgresWireFormRetr(t *testing.T) {
	t.Parallel()
	s := newPGSite(t, "", "")
	tlsAddr, certPath := s.enableTLS()
	bodies := []string{
		"Subject: a\r\n\r\nCRLF, as LMTP delivers\r\n",
		"Subject: b\n\nLF, as a Maildir file\n.dot line\n..two\n.\n",
		"Subject: c\n\nno final newline",
		"Subject: d\r\n\r\nends in CR\r",
		"Subject: e\r\n\r\nbare\rCR\r\rand\r\r\nmixed\nends\r\n",
		"",
		".",
		"Subject: many\n\n" + strings.Repeat(".\n", 65),
		"Subject: big\n\n" + strings.Repeat(strings.Repeat("w", 76)+"\n.x\n", 40) + strings.Repeat(strings.Repeat("z", 76)+"\n", 12000),
	}
	for _, b := range bodies {
		s.deliver("alice", b)
	}
	// A body as schema version 3 stored it: the octets delivered.
	old := "Subject: old\n\nstored\n.as delivered\n"
	size, _ := wire.CRLFSize(strings.NewReader(old))
	ctx := context.Background()
	c, err := pgx.Connect(ctx, s.pg.dsn)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Exec(ctx, `INSERT INTO message_chunks (maildrop, body_id, seq, data) VALUES ('alice', 424242, 0, $1)`, []byte(old)); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Exec(ctx, `
INSERT INTO messages (maildrop, uid, uidl, size, octets, chunks, body_id, arrived)
SELECT 'alice', next_uid, 'old-uidl', $1, $2, 1, 424242, now() FROM maildrops WHERE maildrop = 'alice'`, size, len(old)); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Exec(ctx, `UPDATE maildrops SET next_uid = next_uid + 1 WHERE maildrop = 'alice'`); err != nil {
		t.Fatal(err)
	}
	var nulls int
	if err := c.QueryRow(ctx, `SELECT count(*) FROM messages WHERE maildrop = 'alice' AND stuff IS NULL`).Scan(&nulls); err != nil || nulls != 2 {
		t.Errorf("%d messages with a NULL stuff, %v; want 2 (too many dots, stored before version 4)", nulls, err)
	}
	c.Close(ctx)
	bodies = append(bodies, old)

	want := func(body string) string {
		var out bytes.Buffer
		bw := bufio.NewWriter(&out)
		d := wire.NewDotWriter(bw)
		d.Write([]byte(body))
		d.Close()
		bw.Flush()
		return fmt.Sprintf("+OK %d octets\r\n", d.Count()) + out.String()
	}
	srv := s.start()
	defer srv.stop()
	wants := make([]string, len(bodies))
	for i, b := range bodies {
		wants[i] = want(b)
	}
	retrAll := func(name string, nc net.Conn, order []int) { retrPipelined(t, name, nc, order, wants) }
	var inOrder, reversed []int
	for i := range bodies {
		inOrder = append(inOrder, i)
		reversed = append(reversed, len(bodies)-1-i)
	}
	pem, err := os.ReadFile(certPath)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	for _, order := range [][]int{inOrder, reversed} {
		nc, err := net.Dial("tcp", srv.addr)
		if err != nil {
			t.Fatal(err)
		}
		retrAll("plain", nc, order)
		nc.Close()
		tc, err := tls.Dial("tcp", tlsAddr, &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"})
		if err != nil {
			t.Fatal(err)
		}
		retrAll("TLS", tc, order)
		tc.Close()
	}
}
