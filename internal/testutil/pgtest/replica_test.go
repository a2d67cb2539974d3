//go:build unix

package pgtest

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// TestReplicated checks the pair: a commit on the primary reaches the
// replica, and after the primary is killed and the replica promoted, the
// multi-host DSN reaches the new primary, which has every committed row
// and accepts writes.
func TestReplicated(t *testing.T) {
	r := NewReplicated(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	exec := func(dsn, sql string) error {
		c, err := pgx.Connect(ctx, dsn)
		if err != nil {
			return err
		}
		defer c.Close(context.Background())
		_, err = c.Exec(ctx, sql)
		return err
	}
	if err := exec(r.DSN(), `CREATE TABLE t (n int); INSERT INTO t SELECT generate_series(1, 100)`); err != nil {
		t.Fatal(err)
	}
	if err := exec(r.ReplicaDSN(), `INSERT INTO t VALUES (0)`); err == nil {
		t.Fatal("the replica accepted a write before promotion")
	}
	if err := r.KillPrimary(); err != nil {
		t.Fatal(err)
	}
	if err := exec(r.DSN(), `SELECT 1`); err == nil {
		t.Fatal("the multi-host DSN found a read-write server with the primary dead and the replica not promoted")
	}
	if err := r.Promote(); err != nil {
		t.Fatal(err)
	}
	if err := exec(r.DSN(), `INSERT INTO t VALUES (101)`); err != nil {
		t.Fatalf("write after promotion: %v", err)
	}
	c, err := pgx.Connect(ctx, r.DSN())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	var n int
	if err := c.QueryRow(ctx, `SELECT count(*) FROM t`).Scan(&n); err != nil || n != 101 {
		t.Errorf("rows on the promoted replica = %d, %v; want 101", n, err)
	}
}
