package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"

	"github.com/postoffice-mail/postoffice/internal/auth/passwdfile"
	"github.com/postoffice-mail/postoffice/internal/auth/scheme"
	"github.com/postoffice-mail/postoffice/internal/auth/sqlauth"
	"github.com/postoffice-mail/postoffice/internal/config"
	"github.com/postoffice-mail/postoffice/internal/store/pgstore"
)

// The PostgreSQL parts of the builder: the store of a PostgreSQL
// mail.location and the user database of auth.database. Both check the
// schema when they are built, so serve, check, deliver and mailbox refuse a
// database whose schema this build does not know, naming the command that
// fixes it, instead of failing on the first query.

// migrateHint ends a schema error: what the operator runs.
const migrateHint = "run 'postoffice db migrate --config FILE' (after upgrading postoffice, if the schema is newer)"

// openPGStore opens the PostgreSQL store of dsn with the [postgres] keys.
func openPGStore(ctx context.Context, cfg *config.Config, dsn string, log *slog.Logger) (*pgstore.Store, error) {
	p := cfg.Postgres
	return pgstore.Open(ctx, pgstore.Options{
		DSN:            dsn,
		MaxConns:       int32(p.MaxConns),
		ConnectTimeout: p.ConnectTimeout.Duration,
		LockTTL:        p.LockTTL.Duration,
		Logger:         log,
	})
}

// openSQLUsers opens the user database of auth.database.
func openSQLUsers(ctx context.Context, cfg *config.Config, log *slog.Logger) (*sqlauth.DB, error) {
	return sqlauth.Open(ctx, sqlauth.Options{
		DSN:            cfg.Auth.UsersDSN(),
		PasswordQuery:  cfg.Auth.PasswordQuery,
		DefaultScheme:  cfg.Auth.DefaultScheme,
		ConnectTimeout: cfg.Postgres.ConnectTimeout.Duration,
		Logger:         log,
	})
}

// buildPGStore makes the store of a PostgreSQL mail.location and checks
// its schema.
func (a *app) buildPGStore(dsn string) error {
	ctx := context.Background()
	st, err := openPGStore(ctx, a.cfg, dsn, a.log)
	if err != nil {
		return fmt.Errorf("mail.location: %w", err)
	}
	if err := st.CheckSchema(ctx); err != nil {
		st.Close()
		return fmt.Errorf("mail.location: %w; %s", err, migrateHint)
	}
	a.onClose(st.Close)
	a.store = st
	return nil
}

// buildSQLUsers opens the user database of auth.database and checks its
// schema (postoffice's own table; a password_query's schema is the site's).
func (a *app) buildSQLUsers() error {
	ctx := context.Background()
	db, err := openSQLUsers(ctx, a.cfg, a.log)
	if err != nil {
		return fmt.Errorf("auth.database: %w", err)
	}
	if err := db.CheckSchema(ctx); err != nil {
		db.Close()
		return fmt.Errorf("auth.database: %w; %s", err, migrateHint)
	}
	a.onClose(db.Close)
	a.users = db
	return nil
}

const dbUsage = `usage: postoffice db migrate --config FILE

  migrate   create the PostgreSQL schema of mail.location (the store) and of
            auth.database (postoffice's own users table), or upgrade them to
            this build's version. Idempotent, and safe to run from several
            hosts at once; a schema newer than this build is refused.

serve, deliver, check and mailbox refuse a database whose schema version is
not the one this build serves.`

// runDB is "postoffice db".
func runDB(args []string, stdout, stderr io.Writer) error {
	sub, err := subcommand(args, dbUsage, stderr)
	if err != nil {
		return err
	}
	if sub != "migrate" {
		return usageError{fmt.Sprintf("unknown subcommand %q (migrate)", sub)}
	}
	fs := newFlagSet("db migrate", stderr)
	cfgPath := fs.String("config", "", "server configuration `file`")
	if err := parseFlags(fs, args[1:]); err != nil {
		return err
	}
	if *cfgPath == "" || fs.NArg() != 0 {
		return usageError{"usage: postoffice db migrate --config FILE"}
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		return err
	}
	log := newLogger(cfg.Log, stderr, new(slog.LevelVar))
	ctx := context.Background()
	did := false
	if dsn, ok := cfg.Mail.PostgresDSN(); ok {
		st, err := openPGStore(ctx, cfg, dsn, log)
		if err != nil {
			return fmt.Errorf("mail.location: %w", err)
		}
		err = st.Migrate(ctx)
		st.Close()
		if err != nil {
			return fmt.Errorf("mail.location: %w", err)
		}
		fmt.Fprintf(stdout, "store schema: version %d\n", pgstore.SchemaVersion)
		did = true
	}
	if cfg.Auth.Database != "" {
		db, err := openSQLUsers(ctx, cfg, log)
		if err != nil {
			return fmt.Errorf("auth.database: %w", err)
		}
		err = db.Migrate(ctx)
		db.Close()
		switch {
		case errors.Is(err, sqlauth.ErrReadOnly):
			fmt.Fprintln(stdout, "users: auth.password_query reads the site's own schema; nothing to migrate")
		case err != nil:
			return fmt.Errorf("auth.database: %w", err)
		default:
			fmt.Fprintf(stdout, "users schema: version %d\n", sqlauth.SchemaVersion)
		}
		did = true
	}
	if !did {
		return errors.New("nothing to migrate: neither mail.location nor auth.database is a PostgreSQL database")
	}
	return nil
}

// listUsers lists the users of the user database build opened, for
// check: the passwd-file's entries or the rows of postoffice's own table.
// A password_query cannot be listed (it answers for one name at a time):
// ok is then false, as it is after a failure, which listUsers reports.
func (c *checker) listUsers(a *app) (names []string, ok bool) {
	cfg := a.cfg
	if cfg.Auth.Database == "" {
		path := cfg.Auth.PasswdFile
		names, err := passwdfile.ListUsers(path)
		if err != nil {
			c.fail("auth.passwd_file: %v", err)
			return nil, false
		}
		c.info("passwd-file %s: %d users", path, len(names))
		if len(names) == 0 {
			c.warn("auth.passwd_file %s has no users: nobody can log in", path)
		}
		return names, true
	}
	if cfg.Auth.PasswordQuery != "" {
		c.info("users read by auth.password_query (not listed)")
		return nil, false
	}
	db, ok := a.users.(*sqlauth.DB)
	if !ok {
		return nil, false
	}
	names, err := db.List(context.Background())
	if err != nil {
		c.fail("auth.database: %v", err)
		return nil, false
	}
	c.info("auth.database: %d users", len(names))
	if len(names) == 0 {
		c.warn("auth.database has no users: nobody can log in (add them with postoffice user add --config FILE)")
	}
	return names, true
}

// runUserSQL is "postoffice user" on the users of auth.database: the same
// subcommands, password sources and warnings as on a passwd-file. A
// database read through auth.password_query belongs to the site, and
// every edit is refused.
func runUserSQL(sub string, cfg *config.Config, name func() (string, error), schemeName string, fromStdin bool, nargs int, stdout, stderr io.Writer) error {
	switch sub {
	case "add", "passwd", "del", "list":
	default:
		return usageError{fmt.Sprintf("unknown subcommand %q (add, passwd, del, list)", sub)}
	}
	if sub == "list" && nargs != 0 {
		return usageError{"list takes no arguments"}
	}
	var user string
	if sub != "list" {
		var err error
		if user, err = name(); err != nil {
			return err
		}
	}
	ctx := context.Background()
	db, err := openSQLUsers(ctx, cfg, newLogger(cfg.Log, stderr, new(slog.LevelVar)))
	if err != nil {
		return fmt.Errorf("auth.database: %w", err)
	}
	defer db.Close()
	if err := db.CheckSchema(ctx); err != nil {
		return fmt.Errorf("auth.database: %w; %s", err, migrateHint)
	}
	switch sub {
	case "add", "passwd":
		password, generated, err := readPassword(fromStdin)
		if err != nil {
			return err
		}
		hash, err := scheme.Hash(schemeName, password)
		if err != nil {
			return usageError{err.Error()}
		}
		if sub == "add" {
			err = db.Add(ctx, sqlauth.NewUser{Name: user, Password: hash})
		} else {
			err = db.SetPassword(ctx, user, hash)
		}
		if err != nil {
			return err
		}
		if generated {
			fmt.Fprintf(stdout, "%s password: %s\n", user, password)
		}
		warnUnservable(stderr, user, schemeName, hash, cfg.Auth)
		return nil
	case "del":
		return db.Delete(ctx, user)
	}
	users, err := db.List(ctx)
	if err != nil {
		return err
	}
	for _, u := range users {
		fmt.Fprintln(stdout, u)
	}
	return nil
}
