package sqlauth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/postoffice-mail/postoffice/internal/auth"
	"github.com/postoffice-mail/postoffice/internal/auth/passwdfile"
	"github.com/postoffice-mail/postoffice/internal/auth/scheme"
	"github.com/postoffice-mail/postoffice/internal/pgschema"
)

// component is this package's row in postoffice_schema, the table the
// store's migration also records its version in.
const component = "users"

// migrations[i] takes the users schema from version i to i+1. Append only.
var migrations = []string{
	// 1: the users table.
	`
CREATE TABLE postoffice_users (
	name       text        PRIMARY KEY CHECK (name <> '' AND octet_length(name) <= 255),
	password   text        NOT NULL DEFAULT '',
	uid        bigint      CHECK (uid >= 0),
	gid        bigint      CHECK (gid >= 0),
	home       text,
	extra      jsonb       NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(extra) = 'object'),
	created_at timestamptz NOT NULL DEFAULT now(),
	updated_at timestamptz NOT NULL DEFAULT now()
);
`,
}

// SchemaVersion is the users schema version this build writes and serves.
const SchemaVersion = 1

// Migrate creates or upgrades postoffice_users to SchemaVersion in one
// transaction; idempotent, safe from several servers at once, and it
// refuses a newer schema. A DB on a password query has no table of its
// own: Migrate returns ErrReadOnly.
func (d *DB) Migrate(ctx context.Context) error {
	if d.query != "" {
		return ErrReadOnly
	}
	from, err := pgschema.Migrate(ctx, d.pool, component, migrations)
	if errors.Is(err, pgschema.ErrNewer) {
		return fmt.Errorf("%w: %v: upgrade postoffice", ErrSchema, err)
	}
	if err != nil {
		return fmt.Errorf("sqlauth: migrate: %w", err)
	}
	if from != SchemaVersion {
		d.log.Info("users schema migrated", "from", from, "to", SchemaVersion)
	}
	return nil
}

// CheckSchema returns nil when the own table is at SchemaVersion (always,
// for a password query: the site's schema is the site's), and an error
// wrapping ErrSchema otherwise.
func (d *DB) CheckSchema(ctx context.Context) error {
	if d.query != "" {
		return nil
	}
	v, ok, err := pgschema.Version(ctx, d.pool, component)
	switch {
	case err != nil:
		return fmt.Errorf("sqlauth: checking the schema version: %w", err)
	case !ok:
		return fmt.Errorf("%w: the database has no users schema: run the migration first", ErrSchema)
	case v != SchemaVersion:
		return fmt.Errorf("%w: the database has users schema version %d, this postoffice serves %d", ErrSchema, v, SchemaVersion)
	}
	return nil
}

// NewUser is a user for Add.
type NewUser struct {
	Name string
	// Password is a stored password, "{SCHEME}data" from scheme.Hash, or
	// "" for none (no login unless Extra has nopassword).
	Password string
	// UID and GID, decimal, own the user's mail (a passwd-file's uid and
	// gid fields); empty means none. Home may be empty.
	UID, GID string
	Home     string
	// Extra are Dovecot extra fields, checked as a passwd-file's are
	// (passwdfile.CheckLoginFields); see also passwdfile.ParseExtraFields
	// for the "key=value key2=value2" text form.
	Extra map[string]string
}

// checkName applies the passwd-file's rules for a user name that goes
// into a mail location (no '/', ':', white space or control characters,
// no leading '.'), so a name written here works with any store.
func checkName(name string) error {
	if err := passwdfile.ValidateUsername(name); err != nil {
		return fmt.Errorf("sqlauth: %s", strings.TrimPrefix(err.Error(), "passwdfile: "))
	}
	if len(name) > 255 {
		return errors.New("sqlauth: user name longer than 255 octets")
	}
	return nil
}

func checkPassword(stored, defaultScheme string) error {
	if stored == "" {
		return nil
	}
	if strings.ContainsAny(stored, "\x00\r\n") {
		return errors.New("sqlauth: stored password contains a NUL, CR or LF")
	}
	if err := scheme.Check(stored, defaultScheme); err != nil {
		return fmt.Errorf("sqlauth: stored password: %w", err)
	}
	return nil
}

// Add creates a user in the own table. It fails with ErrUserExists
// (wrapped) for a name already taken, and refuses a name, password or
// extra field that a login could not use.
func (d *DB) Add(ctx context.Context, u NewUser) error {
	if d.query != "" {
		return ErrReadOnly
	}
	if err := checkName(u.Name); err != nil {
		return err
	}
	if err := checkPassword(u.Password, d.defaultScheme); err != nil {
		return err
	}
	if _, err := passwdfile.CheckLoginFields(u.Extra, u.Password != ""); err != nil {
		return fmt.Errorf("sqlauth: user %q: %w", u.Name, err)
	}
	extra, err := json.Marshal(u.Extra)
	if err != nil || u.Extra == nil {
		extra = []byte("{}")
	}
	var uid, gid, home any
	for _, id := range []struct {
		what, v string
		to      *any
	}{{"uid", u.UID, &uid}, {"gid", u.GID, &gid}} {
		if id.v == "" {
			continue
		}
		n, err := strconv.ParseInt(id.v, 10, 64)
		if err != nil || n < 0 {
			return fmt.Errorf("sqlauth: user %q: %s %q is not a number", u.Name, id.what, id.v)
		}
		*id.to = n
	}
	if u.Home != "" {
		home = u.Home
	}
	_, err = d.pool.Exec(ctx, `INSERT INTO postoffice_users (name, password, uid, gid, home, extra) VALUES ($1, $2, $3, $4, $5, $6)`,
		u.Name, u.Password, uid, gid, home, extra)
	if isUnique(err) {
		return fmt.Errorf("%w: %q", ErrUserExists, u.Name)
	}
	if err != nil {
		return fmt.Errorf("sqlauth: add: %w", err)
	}
	return nil
}

// SetPassword replaces a user's stored password ("{SCHEME}data"). It fails
// with auth.ErrUnknownUser (wrapped) for a name without a row.
func (d *DB) SetPassword(ctx context.Context, name, stored string) error {
	if d.query != "" {
		return ErrReadOnly
	}
	if err := checkPassword(stored, d.defaultScheme); err != nil {
		return err
	}
	tag, err := d.pool.Exec(ctx, `UPDATE postoffice_users SET password = $2, updated_at = now() WHERE name = $1`, name, stored)
	if err != nil {
		return fmt.Errorf("sqlauth: passwd: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("sqlauth: %q: %w", name, auth.ErrUnknownUser)
	}
	return nil
}

// Delete removes a user's row (not its mail). It fails with
// auth.ErrUnknownUser (wrapped) for a name without a row.
func (d *DB) Delete(ctx context.Context, name string) error {
	if d.query != "" {
		return ErrReadOnly
	}
	tag, err := d.pool.Exec(ctx, `DELETE FROM postoffice_users WHERE name = $1`, name)
	if err != nil {
		return fmt.Errorf("sqlauth: del: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("sqlauth: %q: %w", name, auth.ErrUnknownUser)
	}
	return nil
}

// List returns the user names of the own table, sorted (bytewise).
func (d *DB) List(ctx context.Context) ([]string, error) {
	if d.query != "" {
		return nil, ErrReadOnly
	}
	rows, err := d.pool.Query(ctx, `SELECT name FROM postoffice_users ORDER BY name COLLATE "C"`)
	if err != nil {
		return nil, fmt.Errorf("sqlauth: list: %w", err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("sqlauth: list: %w", err)
	}
	return names, nil
}
