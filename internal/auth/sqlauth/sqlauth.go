// Package sqlauth is postoffice's PostgreSQL user database: an
// auth.SCRAMDecoyDB whose users live either in postoffice's own table or
// in a site's own schema read through a password query, as Dovecot's SQL
// passdb reads it.
//
// # Own table
//
// With Options.PasswordQuery empty, users are rows of postoffice_users,
// created and upgraded by Migrate (versioned in postoffice_schema beside the
// store's row, idempotent, serialised by the same advisory lock as the
// store's migration):
//
//	postoffice_users (name) PK; password, uid, gid, home, extra (jsonb)
//
// password is a "{SCHEME}data" string any scheme of package scheme accepts
// (a password without a prefix is in Options.DefaultScheme, as in a
// passwd-file); extra is a JSON object of string values, Dovecot's extra
// fields (userdb_mail, nologin, allow_nets, ...), with the restriction
// rules of a passwd-file line (passwdfile.CheckLoginFields): a field that
// restricts or redirects a login in a way postoffice does not implement
// is refused by Add and makes a row written by hand unusable (its logins
// fail, its lookups are errors, and the log says why). Add, SetPassword,
// Delete and List are what the "postoffice user" command calls.
//
// # A site's schema: password_query
//
// With Options.PasswordQuery set (Dovecot's passdb sql password_query,
// Postfixadmin's mailbox table), the query is run with one parameter, $1,
// the user name, and must return at most one row with a column named
// password, and optionally user (the canonical name, which then becomes
// auth.User.Name), uid, gid and home. Every other column that is not NULL
// is an extra field by its column name (nologin, reason, allow_nets,
// allow_real_nets, userdb_*), read with the same rules as the own table's;
// as in Dovecot a NULL column is absent and any other value present,
// except that a boolean false is absent too (a nologin boolean column
// means what it says). No row is an unknown user; more than one is an
// error of the query, not a login failure. The database is then
// read-only: Add and the other editors return ErrReadOnly.
//
// # Timing and failures
//
// A failed login for a name that does not exist costs what most real
// users' logins cost: the password is verified against a real stored
// password of the dominant cost class (scheme and parameters, see
// passwdfile.CostClass) among the rows this DB has read, counted per row
// read, and, for the own table, among a sample read by Open. Before any
// row was read, and always when Options.DummyScheme is set, the dummy is a
// hash of a random password in DummyScheme (default scheme.DefaultNewScheme).
// A site whose password query is the only source should set DummyScheme
// to the scheme its users have, so that the very first probes cost the
// same too. SCRAM decoys (DominantSCRAM) are learned the same way.
//
// Any database error (a lost connection, a failover, a timeout) is
// returned as is, never as auth.ErrFailed: the engine answers it with
// -ERR [SYS/TEMP], so a database outage never tells a client its password
// was wrong. Passwords never reach a log line; user names do.
package sqlauth

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/postoffice-mail/postoffice/internal/auth"
	"github.com/postoffice-mail/postoffice/internal/auth/passwdfile"
	"github.com/postoffice-mail/postoffice/internal/auth/scheme"
)

var (
	// ErrReadOnly is returned by the editors of a DB on a password query.
	ErrReadOnly = errors.New("sqlauth: users come from password_query, a site's own schema: edit them there")
	// ErrUserExists is returned (wrapped) by Add for a name already taken.
	ErrUserExists = errors.New("sqlauth: user already exists")
	// ErrSchema is wrapped by CheckSchema and Migrate for a missing, older
	// or newer users schema.
	ErrSchema = errors.New("sqlauth: schema mismatch")
)

// Defaults for the zero values of Options.
const (
	DefaultConnectTimeout = 10 * time.Second
	DefaultQueryTimeout   = 5 * time.Second
)

// Options configures Open.
type Options struct {
	// DSN is the PostgreSQL connection string (URL or key=value, libpq's
	// environment variables and ~/.pgpass filling in the rest). Required.
	DSN string
	// PasswordQuery, when set, reads users from a site's schema (see the
	// package doc); empty means postoffice's own table.
	PasswordQuery string
	// DefaultScheme is the scheme of stored passwords without a {SCHEME}
	// prefix. Empty means Dovecot's default, CRYPT.
	DefaultScheme string
	// DummyScheme, when set, is the scheme unknown users' passwords are
	// verified in (a hash of a random password), instead of the dominant
	// class learned from the rows read.
	DummyScheme string
	// MaxConns bounds the pool; zero means pgxpool's default.
	MaxConns int32
	// ConnectTimeout bounds a connection attempt (zero: 10 s); QueryTimeout
	// bounds each query of a login or lookup (zero: 5 s).
	ConnectTimeout time.Duration
	QueryTimeout   time.Duration
	// Logger receives unusable rows and schema migrations. Nil discards.
	Logger *slog.Logger
}

// DB is the SQL user database. It is safe for concurrent use.
type DB struct {
	pool          *pgxpool.Pool
	query         string // the password query; "" for the own table
	defaultScheme string
	timeout       time.Duration
	log           *slog.Logger
	fixedDummy    bool   // Options.DummyScheme set: never learn
	fallback      string // hash of a random password, the dummy before learning

	mu     sync.Mutex
	counts map[string]*class                   // cost class -> count and an example
	scram  map[string]map[auth.SCRAMParams]int // hash -> SCRAM kind -> count
}

type class struct {
	n      int
	stored string
}

// maxClasses bounds the cost classes counted: a class seen after that is
// not counted (the dominant one is among the first seen in any real
// database, which has a handful).
const maxClasses = 64

var (
	_ auth.DB           = (*DB)(nil)
	_ auth.CredentialDB = (*DB)(nil)
	_ auth.SCRAMDecoyDB = (*DB)(nil)
)

// Open connects (pinging once, so a wrong DSN fails here) and returns the
// DB. It does not create the own table: call Migrate (installing) or
// CheckSchema (serving). For the own table it reads a sample of up to 64
// stored passwords to learn the dominant cost class.
func Open(ctx context.Context, opts Options) (*DB, error) {
	if opts.DSN == "" {
		return nil, errors.New("sqlauth: no DSN")
	}
	if opts.PasswordQuery != "" && !strings.Contains(opts.PasswordQuery, "$1") {
		return nil, errors.New("sqlauth: password_query must use $1, the user name")
	}
	cfg, err := pgxpool.ParseConfig(opts.DSN)
	if err != nil {
		return nil, fmt.Errorf("sqlauth: DSN: %w", err)
	}
	if opts.MaxConns > 0 {
		cfg.MaxConns = opts.MaxConns
	}
	if opts.ConnectTimeout <= 0 {
		opts.ConnectTimeout = DefaultConnectTimeout
	}
	if opts.QueryTimeout <= 0 {
		opts.QueryTimeout = DefaultQueryTimeout
	}
	cfg.ConnConfig.ConnectTimeout = opts.ConnectTimeout
	if cfg.ConnConfig.RuntimeParams == nil {
		cfg.ConnConfig.RuntimeParams = map[string]string{}
	}
	cfg.ConnConfig.RuntimeParams["application_name"] = "postoffice-auth"
	if opts.DefaultScheme == "" {
		opts.DefaultScheme = scheme.DovecotDefaultScheme
	}
	if err := scheme.Check("", opts.DefaultScheme); errors.Is(err, scheme.ErrUnknownScheme) || errors.Is(err, scheme.ErrUnsupported) {
		return nil, fmt.Errorf("sqlauth: default scheme: %w", err)
	}
	dummyScheme := opts.DummyScheme
	if dummyScheme == "" {
		dummyScheme = scheme.DefaultNewScheme
	}
	fallback, err := scheme.Hash(dummyScheme, rand.Text())
	if err != nil {
		return nil, fmt.Errorf("sqlauth: dummy scheme: %w", err)
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("sqlauth: %w", err)
	}
	pctx, cancel := context.WithTimeout(ctx, opts.ConnectTimeout)
	err = pool.Ping(pctx)
	cancel()
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("sqlauth: connecting: %w", err)
	}
	d := &DB{
		pool:          pool,
		query:         opts.PasswordQuery,
		defaultScheme: opts.DefaultScheme,
		timeout:       opts.QueryTimeout,
		log:           log,
		fixedDummy:    opts.DummyScheme != "",
		fallback:      fallback,
		counts:        map[string]*class{},
		scram:         map[string]map[auth.SCRAMParams]int{},
	}
	if d.query == "" {
		d.sample(ctx)
	}
	return d, nil
}

// Close closes the pool.
func (d *DB) Close() { d.pool.Close() }

// sample learns cost classes from up to 64 stored passwords of the own
// table. A missing table (not migrated yet) is no error here.
func (d *DB) sample(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, d.timeout)
	defer cancel()
	rows, err := d.pool.Query(ctx, `SELECT password FROM postoffice_users WHERE password <> '' LIMIT 64`)
	if err != nil {
		return
	}
	defer rows.Close()
	for rows.Next() {
		var p string
		if rows.Scan(&p) == nil {
			d.learn(p)
		}
	}
}

// row is one user as read from the database.
type row struct {
	name     string
	password string
	uid, gid string
	home     string
	extra    map[string]string
}

// find reads the user named exactly name. ok is false when there is none;
// err is a database error or an unusable row.
func (d *DB) find(ctx context.Context, name string) (r row, ok bool, err error) {
	if !utf8.ValidString(name) || name == "" || len(name) > 255 || strings.ContainsFunc(name, func(c rune) bool { return c < 0x20 || c == 0x7f }) {
		return row{}, false, nil // no such name can be stored; not a database question
	}
	ctx, cancel := context.WithTimeout(ctx, d.timeout)
	defer cancel()
	if d.query == "" {
		r, ok, err = d.findOwn(ctx, name)
	} else {
		r, ok, err = d.findQuery(ctx, name)
	}
	if err != nil || !ok {
		return r, ok, err
	}
	if r.password != "" {
		d.learn(r.password)
	}
	return r, true, nil
}

func (d *DB) findOwn(ctx context.Context, name string) (row, bool, error) {
	var (
		r        row
		uid, gid *int64
		home     *string
		extra    []byte
	)
	err := d.pool.QueryRow(ctx, `SELECT name, password, uid, gid, home, extra FROM postoffice_users WHERE name = $1`, name).
		Scan(&r.name, &r.password, &uid, &gid, &home, &extra)
	if errors.Is(err, pgx.ErrNoRows) {
		return row{}, false, nil
	}
	if err != nil {
		return row{}, false, fmt.Errorf("sqlauth: %w", err)
	}
	if uid != nil {
		r.uid = strconv.FormatInt(*uid, 10)
	}
	if gid != nil {
		r.gid = strconv.FormatInt(*gid, 10)
	}
	if home != nil {
		r.home = *home
	}
	if len(extra) > 0 {
		if err := json.Unmarshal(extra, &r.extra); err != nil {
			return row{}, false, fmt.Errorf("sqlauth: user %q: extra is not a JSON object of strings: %w", name, err)
		}
	}
	return r, true, nil
}

func (d *DB) findQuery(ctx context.Context, name string) (row, bool, error) {
	rows, err := d.pool.Query(ctx, d.query, name)
	if err != nil {
		return row{}, false, fmt.Errorf("sqlauth: password_query: %w", err)
	}
	defer rows.Close()
	var (
		r     row
		found bool
	)
	for rows.Next() {
		if found {
			return row{}, false, fmt.Errorf("sqlauth: password_query returned more than one row for user %q", name)
		}
		found = true
		vals, err := rows.Values()
		if err != nil {
			return row{}, false, fmt.Errorf("sqlauth: password_query: %w", err)
		}
		r = row{name: name}
		hasPassword := false
		for i, fd := range rows.FieldDescriptions() {
			v, present := text(vals[i])
			switch col := strings.ToLower(fd.Name); col {
			case "password":
				r.password, hasPassword = v, true
			case "user", "username":
				if present && v != "" {
					r.name = v
				}
			case "uid":
				r.uid = v
			case "gid":
				r.gid = v
			case "home":
				r.home = v
			default:
				if present {
					if r.extra == nil {
						r.extra = map[string]string{}
					}
					r.extra[col] = v
				}
			}
		}
		if !hasPassword {
			return row{}, false, errors.New("sqlauth: password_query returns no column named password")
		}
	}
	if err := rows.Err(); err != nil {
		return row{}, false, fmt.Errorf("sqlauth: password_query: %w", err)
	}
	return r, found, nil
}

// text renders a column value as an extra field's text; present is false
// for NULL and for a boolean false.
func text(v any) (s string, present bool) {
	switch v := v.(type) {
	case nil:
		return "", false
	case string:
		return v, true
	case bool:
		if !v {
			return "", false
		}
		return "y", true
	case []byte:
		return string(v), true
	case fmt.Stringer:
		return v.String(), true
	}
	return fmt.Sprint(v), true
}

// user makes the auth.User of r, applying the extra fields' login rules.
func (d *DB) user(r row) (auth.User, passwdfile.LoginFields, error) {
	lf, err := passwdfile.CheckLoginFields(r.extra, r.password != "")
	if err != nil {
		return auth.User{}, lf, fmt.Errorf("sqlauth: user %q: %w", r.name, err)
	}
	u := auth.User{Name: r.name, Home: r.home, Restrict: lf.Restrict}
	if h, ok := r.extra["userdb_home"]; ok {
		u.Home = h
	}
	if len(r.extra) > 0 || r.uid != "" || r.gid != "" {
		u.Extra = maps.Clone(r.extra)
		if u.Extra == nil {
			u.Extra = map[string]string{}
		}
		if r.uid != "" {
			u.Extra["uid"] = r.uid
		}
		if r.gid != "" {
			u.Extra["gid"] = r.gid
		}
	}
	return u, lf, nil
}

// findLogin looks a typed login name up: exactly, then its auth.LoginAlias.
func (d *DB) findLogin(ctx context.Context, login string) (row, bool, error) {
	r, ok, err := d.find(ctx, login)
	if err != nil || ok {
		return r, ok, err
	}
	if alias, aok := auth.LoginAlias(login); aok {
		return d.find(ctx, alias)
	}
	return row{}, false, nil
}

// Authenticate implements auth.DB. An unknown user, a user without a
// password, an unusable row and a wrong password are auth.ErrFailed after
// about the same work; a database error is returned as such.
func (d *DB) Authenticate(ctx context.Context, user, password string) (auth.User, error) {
	if err := ctx.Err(); err != nil {
		return auth.User{}, err
	}
	r, ok, err := d.findLogin(ctx, user)
	if err != nil {
		return auth.User{}, err
	}
	if !ok {
		d.burn(password)
		return auth.User{}, auth.ErrFailed
	}
	u, lf, err := d.user(r)
	if err != nil {
		d.log.Error("sqlauth: unusable user", "user", r.name, "err", err)
		d.burn(password)
		return auth.User{}, auth.ErrFailed
	}
	if lf.Warning != "" {
		d.log.Warn("sqlauth: "+lf.Warning, "user", r.name)
	}
	if lf.NoPassword {
		d.burn(password)
		return u, nil
	}
	if r.password == "" {
		d.burn(password)
		return auth.User{}, auth.ErrFailed
	}
	okp, err := scheme.Verify(r.password, password, d.defaultScheme)
	if err != nil {
		if !errors.Is(err, scheme.ErrPasswordTooLong) {
			d.log.Error("sqlauth: cannot verify password", "user", r.name, "err", err)
		}
		d.burn(password)
		return auth.User{}, auth.ErrFailed
	}
	if !okp {
		return auth.User{}, auth.ErrFailed
	}
	return u, nil
}

// Lookup implements auth.DB: the user named exactly user, no login alias.
func (d *DB) Lookup(ctx context.Context, user string) (auth.User, error) {
	if err := ctx.Err(); err != nil {
		return auth.User{}, err
	}
	r, ok, err := d.find(ctx, user)
	if err != nil {
		return auth.User{}, err
	}
	if !ok {
		return auth.User{}, auth.ErrUnknownUser
	}
	u, _, err := d.user(r)
	return u, err
}

// Credentials implements auth.CredentialDB: the stored password with its
// scheme written out (passwdfile.ExplicitScheme), "" for a user without.
func (d *DB) Credentials(ctx context.Context, user string) (auth.User, string, error) {
	if err := ctx.Err(); err != nil {
		return auth.User{}, "", err
	}
	r, ok, err := d.findLogin(ctx, user)
	if err != nil {
		return auth.User{}, "", err
	}
	if !ok {
		return auth.User{}, "", auth.ErrUnknownUser
	}
	u, _, err := d.user(r)
	if err != nil {
		d.log.Error("sqlauth: unusable user", "user", r.name, "err", err)
		return auth.User{}, "", auth.ErrUnknownUser
	}
	if r.password == "" {
		return u, "", nil
	}
	return u, passwdfile.ExplicitScheme(r.password, d.defaultScheme), nil
}

// learn counts a stored password read from the database.
func (d *DB) learn(stored string) {
	if scheme.Check(stored, d.defaultScheme) != nil {
		return
	}
	stored = passwdfile.ExplicitScheme(stored, d.defaultScheme)
	k := passwdfile.CostClass(stored)
	d.mu.Lock()
	defer d.mu.Unlock()
	c := d.counts[k]
	if c == nil {
		if len(d.counts) >= maxClasses {
			return
		}
		c = &class{stored: stored}
		d.counts[k] = c
	}
	c.n++
	count := func(hash string, p auth.SCRAMParams) {
		if d.scram[hash] == nil {
			d.scram[hash] = map[auth.SCRAMParams]int{}
		}
		if _, ok := d.scram[hash][p]; ok || len(d.scram[hash]) < maxClasses {
			d.scram[hash][p]++
		}
	}
	if iter, salt, _, _, hash, err := scheme.ParseSCRAM(stored); err == nil {
		count(hash, auth.SCRAMParams{Iterations: iter, SaltLen: len(salt)})
	} else if _, ok := scheme.PlaintextEquivalent(stored); ok {
		count("SHA-1", auth.SCRAMParams{Derived: true})
		count("SHA-256", auth.SCRAMParams{Derived: true})
	}
}

// dummy returns the stored password unknown users are verified against.
func (d *DB) dummy() string {
	if d.fixedDummy {
		return d.fallback
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	var best *class
	for _, k := range slices.Sorted(maps.Keys(d.counts)) { // ties: the same class every time
		if c := d.counts[k]; best == nil || c.n > best.n {
			best = c
		}
	}
	if best == nil {
		return d.fallback
	}
	return best.stored
}

// burn spends the CPU of a real verification; the result is ignored.
func (d *DB) burn(password string) {
	if len(password) > scheme.MaxPasswordLen {
		password = password[:scheme.MaxPasswordLen]
	}
	_, _ = scheme.Verify(d.dummy(), password, "")
}

// DominantSCRAM implements auth.SCRAMDecoyDB with the kinds of SCRAM
// credentials counted among the rows read.
func (d *DB) DominantSCRAM(ctx context.Context, hash string) (auth.SCRAMParams, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	var (
		best auth.SCRAMParams
		n    int
	)
	for p, c := range d.scram[hash] {
		if c > n || c == n && (p.Iterations > best.Iterations || p.Iterations == best.Iterations && p.SaltLen > best.SaltLen) {
			best, n = p, c
		}
	}
	return best, n > 0
}

// CanonicalName implements auth.SCRAMDecoyDB: the name of the row a login
// name finds (its user column in a password query that has one), else
// the name itself, with "user+domain" read as "user@domain" as a login
// would. A database error leaves the name as given.
func (d *DB) CanonicalName(user string) string {
	ctx, cancel := context.WithTimeout(context.Background(), d.timeout)
	defer cancel()
	if r, ok, err := d.findLogin(ctx, user); err == nil && ok {
		return r.name
	}
	if alias, ok := auth.LoginAlias(user); ok {
		return alias
	}
	return user
}

// isUnique reports whether err is PostgreSQL's unique_violation.
func isUnique(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "23505"
}
