// Package pgschema keeps the versions of postoffice's schemas in a
// PostgreSQL database: one row per component ("store", "users") in
// postoffice_schema, and the migrations that bring a component from one
// version to the next. The store (internal/store/pgstore) and the user
// table (internal/auth/sqlauth) both use it, so their upgrades follow one
// rule.
//
// Decisions:
//   - A component's migrations run in one transaction with the version row:
//     a failure leaves the database as it was, and a version is never
//     recorded without its tables.
//   - Concurrent migrations, of one component or of several, are serialised
//     by one transaction-scoped advisory lock, so two servers started at
//     once do not both create postoffice_schema.
//   - A schema newer than the build is refused, never downgraded: it may
//     mean what an older build would misread.
package pgschema

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// migrateLock is the key of the advisory lock that serialises migrations.
const migrateLock = 0x706f73746f666663 // "postoffc"

// Beginner starts transactions (a *pgxpool.Pool).
type Beginner interface {
	Begin(ctx context.Context) (pgx.Tx, error)
}

// Querier runs a query (a *pgxpool.Pool).
type Querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// ErrNewer is wrapped by Migrate's error for a database whose schema of
// the component is newer than len(migrations).
var ErrNewer = errors.New("pgschema: schema newer than this build")

// Migrate brings component to version len(migrations), running
// migrations[v] to go from version v to v+1. It returns the version found
// before; a database already at the last version is left untouched.
func Migrate(ctx context.Context, db Beginner, component string, migrations []string) (from int, err error) {
	tx, err := db.Begin(ctx)
	if err != nil {
		return 0, err
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(migrateLock)); err != nil {
		return 0, err
	}
	if _, err := tx.Exec(ctx, `
CREATE TABLE IF NOT EXISTS postoffice_schema (
	component  text        PRIMARY KEY,
	version    integer     NOT NULL,
	updated_at timestamptz NOT NULL DEFAULT now()
)`); err != nil {
		return 0, err
	}
	err = tx.QueryRow(ctx, `SELECT version FROM postoffice_schema WHERE component = $1`, component).Scan(&from)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return 0, err
	}
	to := len(migrations)
	if from > to {
		return from, fmt.Errorf("%w: the database has %s schema version %d, this postoffice knows %d", ErrNewer, component, from, to)
	}
	if from == to {
		return from, nil
	}
	for v := from; v < to; v++ {
		if _, err := tx.Exec(ctx, migrations[v]); err != nil {
			return from, fmt.Errorf("migrating the %s schema to version %d: %w", component, v+1, err)
		}
	}
	if _, err := tx.Exec(ctx, `
INSERT INTO postoffice_schema (component, version) VALUES ($1, $2)
ON CONFLICT (component) DO UPDATE SET version = excluded.version, updated_at = now()`, component, to); err != nil {
		return from, err
	}
	return from, tx.Commit(ctx)
}

// Version returns component's schema version, with ok false when the
// database has none (no postoffice_schema table, or no row for it).
func Version(ctx context.Context, db Querier, component string) (v int, ok bool, err error) {
	err = db.QueryRow(ctx, `SELECT version FROM postoffice_schema WHERE component = $1`, component).Scan(&v)
	var pgErr *pgconn.PgError
	switch {
	case errors.As(err, &pgErr) && pgErr.Code == "42P01", errors.Is(err, pgx.ErrNoRows): // undefined_table
		return 0, false, nil
	case err != nil:
		return 0, false, err
	}
	return v, true, nil
}
