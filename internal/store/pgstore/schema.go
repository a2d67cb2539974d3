package pgstore

import (
	"context"
	"errors"
	"fmt"

	"github.com/postoffice-mail/postoffice/internal/pgschema"
)

// ErrSchema is wrapped by CheckSchema and Migrate when the database holds no
// store schema, or one of a version this build does not know.
var ErrSchema = errors.New("pgstore: schema mismatch")

// component is this package's row in postoffice_schema. The table is shared:
// other parts of postoffice that keep tables in the same database (the SQL
// user database) record their own version under their own name.
const component = "store"

// migrations[i] takes the schema from version i to version i+1. Append only:
// a released migration is never edited, since databases already ran it.
// Every table is keyed by maildrop first (see the package doc: sharding).
var migrations = []string{
	// 1: maildrops, their leases, message metadata and body chunks.
	`
CREATE TABLE maildrops (
	maildrop    text        PRIMARY KEY,
	uidvalidity bigint      NOT NULL,
	next_uid    bigint      NOT NULL,
	created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE maildrop_leases (
	maildrop    text        PRIMARY KEY,
	token       bigint      NOT NULL,
	holder      text        NOT NULL,
	acquired_at timestamptz NOT NULL,
	expires_at  timestamptz NOT NULL
);
CREATE TABLE messages (
	maildrop  text        NOT NULL,
	uid       bigint      NOT NULL,
	uidl      text        NOT NULL,
	size      bigint      NOT NULL,
	octets    bigint      NOT NULL,
	chunks    integer     NOT NULL,
	body_id   bigint      NOT NULL,
	arrived   timestamptz NOT NULL,
	sender    text,
	recipient text,
	PRIMARY KEY (maildrop, uid),
	UNIQUE (maildrop, uidl)
);
CREATE TABLE message_chunks (
	maildrop text    NOT NULL,
	body_id  bigint  NOT NULL,
	seq      integer NOT NULL,
	data     bytea   NOT NULL,
	PRIMARY KEY (maildrop, body_id, seq)
);
`,
	// 2: the maildrop's own state (store.StateFiles): per-device views,
	// first retrievals and the retrieval journal of internal/ledger. A
	// named state is its rows in seq order, concatenated: WriteState
	// replaces them with one row, AppendState adds one.
	`
CREATE TABLE maildrop_state (
	maildrop text   NOT NULL,
	name     text   NOT NULL,
	seq      bigint NOT NULL,
	data     bytea  NOT NULL,
	PRIMARY KEY (maildrop, name, seq)
);
`,
	// 3: body rows of RowSize octets stay whole in their heap page:
	// toast_tuple_target raised to the most a page holds (8160), so a row
	// under it is neither compressed nor moved out of line, and the column
	// never compressed (EXTERNAL: a larger row, as the 256 KiB rows of
	// versions 1 and 2, goes out of line uncompressed). Existing rows are
	// not rewritten: the reader takes rows of any size. Neither statement
	// rewrites the table.
	`
ALTER TABLE message_chunks SET (toast_tuple_target = 8160);
ALTER TABLE message_chunks ALTER COLUMN data SET STORAGE EXTERNAL;
`,
	// 4: bodies stored in wire form (CRLF line ends and a final CRLF,
	// RFC 1939 §3) carry in stuff where their lines that start with "."
	// start (the offsets of those dots, ascending, at most maxStuff):
	// RETR sends such a body as it is stored, a "." added at each. NULL
	// means the body is not known to be in wire form (every row stored
	// before this version, and a body with more than maxStuff such
	// lines): RETR converts it as before. Adding a column without a
	// default rewrites nothing.
	`
ALTER TABLE messages ADD COLUMN stuff bigint[];
`,
}

// SchemaVersion is the schema version this build writes and serves: the
// number of migrations (a test keeps the two equal).
const SchemaVersion = 4

// Migrate creates the schema or upgrades it to SchemaVersion, in one
// transaction: a failure leaves the database as it was. It is idempotent
// (a database already at SchemaVersion is left untouched) and safe to run
// from several servers at once. It refuses a schema newer than this build
// knows: downgrades are not done.
func (s *Store) Migrate(ctx context.Context) error {
	from, err := pgschema.Migrate(ctx, s.pool, component, migrations)
	if errors.Is(err, pgschema.ErrNewer) {
		return fmt.Errorf("%w: %v: upgrade postoffice", ErrSchema, err)
	}
	if err != nil {
		return fmt.Errorf("pgstore: migrate: %w", err)
	}
	if from != SchemaVersion {
		s.log.Info("store schema migrated", "from", from, "to", SchemaVersion)
	}
	return nil
}

// CheckSchema returns nil when the database holds exactly the schema version
// this build serves, and an error wrapping ErrSchema otherwise: no schema
// (run migrate), an older one (run migrate), or a newer one, written by a
// later postoffice (upgrade this server; a newer schema may mean what this
// build would misread, so it is refused rather than guessed at). A server
// calls it once at start, after Open.
func (s *Store) CheckSchema(ctx context.Context) error {
	v, ok, err := pgschema.Version(ctx, s.pool, component)
	switch {
	case err != nil:
		return fmt.Errorf("pgstore: checking the schema version: %w", err)
	case !ok:
		return fmt.Errorf("%w: the database has no store schema: run the migration first", ErrSchema)
	case v < SchemaVersion:
		return fmt.Errorf("%w: the database has store schema version %d, older than this postoffice's %d: run the migration", ErrSchema, v, SchemaVersion)
	case v > SchemaVersion:
		return fmt.Errorf("%w: the database has store schema version %d, newer than this postoffice's %d: upgrade postoffice", ErrSchema, v, SchemaVersion)
	}
	return nil
}
