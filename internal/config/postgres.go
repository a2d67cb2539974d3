package config

import (
	"regexp"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// Postgres is the [postgres] table: the connection pool and the maildrop
// lock of a PostgreSQL store (mail.location = "postgres://..."). Its keys
// are read only with such a store; the user database of auth.database has
// its own small pool.
type Postgres struct {
	// MaxConns bounds the pool of each server process. 0 (the default)
	// means the larger of 4 and the number of CPUs. A POP3 session holds a
	// connection only while a command runs and a delivery while it
	// streams, so a few per core serve thousands of sessions.
	MaxConns int `toml:"max_conns"`
	// ConnectTimeout bounds one connection attempt; with several hosts in
	// the DSN it is per host. Default 10s.
	ConnectTimeout Duration `toml:"connect_timeout"`
	// LockTTL is the life of a maildrop lock (a lease row renewed every
	// lock_ttl/3 while a session is open): a server that dies or is cut
	// off frees its maildrops at most this long after its last renewal,
	// and a server paused longer than this loses them (its QUIT then
	// deletes nothing). Default 30s; at least 1s.
	LockTTL Duration `toml:"lock_ttl"`
}

// kvDSN matches the start of a libpq key=value connection string.
var kvDSN = regexp.MustCompile(`^\s*[a-z_]+\s*=`)

// PostgresDSN returns the PostgreSQL connection string of a PostgreSQL
// mail.location, and ok false for any other store. Such a location is a
// libpq URL ("postgres://" or "postgresql://"), or a libpq key=value
// string ("host=/run/postgresql dbname=mail"), optionally after
// "postgres:" as in "postgres:host=db1,db2 dbname=mail".
func (m Mail) PostgresDSN() (dsn string, ok bool) {
	return postgresDSN(m.Location)
}

func postgresDSN(s string) (string, bool) {
	switch {
	case strings.HasPrefix(s, "postgres://"), strings.HasPrefix(s, "postgresql://"):
		return s, true
	case strings.HasPrefix(s, "postgres:"):
		return strings.TrimPrefix(s, "postgres:"), true
	case kvDSN.MatchString(s):
		return s, true
	}
	return "", false
}

// checkDSN reports what pgx cannot parse in a connection string. pgconn's
// parse errors never repeat a password.
func checkDSN(dsn string) error {
	_, err := pgconn.ParseConfig(dsn)
	return err
}

// validatePostgres checks [postgres], the PostgreSQL mail.location and the
// SQL user database keys of [auth].
func (c *Config) validatePostgres() {
	bad := c.file.Bad
	p := c.Postgres
	if dsn, ok := c.Mail.PostgresDSN(); ok {
		if err := checkDSN(dsn); err != nil {
			bad("mail.location", "not a PostgreSQL connection string pgx accepts: %v", err)
		}
	}
	if p.MaxConns < 0 {
		bad("postgres.max_conns", "must not be negative (0: the larger of 4 and the number of CPUs)")
	}
	c.mustBePositive(keyDuration{"postgres.connect_timeout", p.ConnectTimeout})
	if p.LockTTL.Duration < time.Second {
		bad("postgres.lock_ttl", "%v is below 1s (the lease is renewed every lock_ttl/3)", p.LockTTL.Duration)
	}
	a := c.Auth
	switch {
	case a.Database != "" && a.PasswdFile != "":
		bad("auth.database", "set auth.database or auth.passwd_file, not both")
	case a.Database != "":
		dsn, ok := postgresDSN(a.Database)
		if !ok {
			bad("auth.database", `must be a PostgreSQL connection string ("postgres://..." or "host=... dbname=...")`)
		} else if err := checkDSN(dsn); err != nil {
			bad("auth.database", "not a PostgreSQL connection string pgx accepts: %v", err)
		}
	}
	if q := a.PasswordQuery; q != "" {
		switch {
		case a.Database == "":
			bad("auth.password_query", "needs auth.database")
		case !strings.Contains(q, "$1"):
			bad("auth.password_query", "must use $1, the user name (e.g. SELECT password FROM mailbox WHERE username = $1 AND active)")
		case strings.Contains(q, "$2"):
			bad("auth.password_query", "has one parameter only, $1 (the user name)")
		}
	}
}

// UsersDSN returns the connection string of auth.database ("" when the
// users are in a passwd-file).
func (a Auth) UsersDSN() string {
	dsn, _ := postgresDSN(a.Database)
	return dsn
}
