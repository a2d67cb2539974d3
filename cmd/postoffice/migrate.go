package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/postoffice-mail/postoffice/internal/auth"
	"github.com/postoffice-mail/postoffice/internal/auth/passwdfile"
	"github.com/postoffice-mail/postoffice/internal/config"
	"github.com/postoffice-mail/postoffice/internal/migrate"
	"github.com/postoffice-mail/postoffice/internal/store"
	"github.com/postoffice-mail/postoffice/internal/store/maildir"
)

const migrateUsage = `usage: postoffice migrate [copy] --from LOCATION --to LOCATION [--user NAME | --passwd-file FILE | --config FILE]
       postoffice migrate uidl|verify ...

  copy     copy maildrops from one store to another, keeping every UIDL,
           size and arrival time (the default when the first argument is
           a flag)
  uidl     read the UIDLs of a live old POP3 server and have postoffice
           serve the same ones for the same messages
  verify   compare the old server with postoffice: STAT, every UIDL and
           size, and the SHA-256 of a sample of messages

Run 'postoffice migrate SUBCOMMAND -h' for the flags of uidl and verify.

A LOCATION is a Maildir template ("maildir:/var/vmail/%d/%n/Maildir") or a
PostgreSQL connection string ("postgres://user@host/db", or key=value). The
users copied are --user NAME, every user of --passwd-file FILE, or every
user of --config's user database; --config also gives [postgres] (pool,
lock_ttl), the Maildir owners and homes, and, when --from or --to is
left out, mail.location in its place.

copy never deletes or changes anything in the source. It is resumable:
killed or interrupted at any point, the same command run again copies only
what the destination lacks. At the end it compares every copied maildrop
with its source (UIDLs, order, sizes, SHA-256 of the bodies in CRLF form,
so line ends do not count: PostgreSQL stores CRLF) and exits 1
on any difference. A PostgreSQL destination has its schema created or
upgraded first (as postoffice db migrate does).`

// migrateSubcommands are the subcommands of "postoffice migrate", by name.
var migrateSubcommands = map[string]func(args []string, stdout, stderr io.Writer) error{
	"copy":   runMigrateCopy,
	"uidl":   runMigrateUIDL,   // migrate_uidl.go
	"verify": runMigrateVerify, // migrate_uidl.go
}

// runMigrate is "postoffice migrate": a dispatcher on its first argument,
// with copy the default when that argument is a flag.
func runMigrate(args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && strings.HasPrefix(args[0], "-") && args[0] != "-h" && args[0] != "--help" {
		return runMigrateCopy(args, stdout, stderr)
	}
	sub, err := subcommand(args, migrateUsage, stderr)
	if err != nil {
		return err
	}
	f, ok := migrateSubcommands[sub]
	if !ok {
		return usageError{fmt.Sprintf("unknown subcommand %q (copy, uidl, verify)", sub)}
	}
	return f(args[1:], stdout, stderr)
}

// runMigrateCopy is "postoffice migrate copy".
func runMigrateCopy(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("migrate copy", stderr)
	from := fs.String("from", "", "source `LOCATION`")
	to := fs.String("to", "", "destination `LOCATION`")
	user := fs.String("user", "", "copy this user's maildrop only")
	passwd := fs.String("passwd-file", "", "copy every user of this passwd-file `path`")
	cfgPath := fs.String("config", "", "server configuration `file`: users, [postgres], default LOCATION")
	batch := fs.Int("batch", migrate.DefaultBatchSize, "messages copied per holding of the source maildrop's lock")
	quiet := fs.Bool("quiet", false, "no progress lines")
	fs.Usage = func() { io.WriteString(stderr, migrateUsage+"\n\n"); fs.PrintDefaults() }
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return usageError{"unexpected arguments: " + strings.Join(fs.Args(), " ")}
	}
	var cfg *config.Config
	if *cfgPath != "" {
		var err error
		if cfg, err = config.Load(*cfgPath); err != nil {
			return err
		}
		if *from == "" {
			*from = cfg.Mail.Location
		}
		if *to == "" {
			*to = cfg.Mail.Location
		}
	}
	switch {
	case *from == "" || *to == "":
		return usageError{"need --from LOCATION and --to LOCATION (or --config FILE for one of them)"}
	case *from == *to:
		return usageError{"--from and --to are the same location"}
	case *user == "" && *passwd == "" && cfg == nil:
		return usageError{"need --user NAME, --passwd-file FILE or --config FILE to say whose maildrops to copy"}
	case *user != "" && *passwd != "":
		return usageError{"--user and --passwd-file exclude each other"}
	}
	logCfg := config.Default().Log
	if cfg != nil {
		logCfg = cfg.Log
	}
	log := newLogger(logCfg, stderr, new(slog.LevelVar))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	m := &migration{cfg: cfg, log: log}
	defer m.close()
	if cfg != nil {
		a := newApp(cfg, stderr)
		m.closers = append(m.closers, a.close)
		if errs := a.build(partUsers); errs != nil {
			return errs[0]
		}
		m.users = a.users
	}
	var users []string
	switch {
	case *user != "":
		users = []string{*user}
	case *passwd != "":
		var err error
		if users, err = passwdfile.ListUsers(*passwd); err != nil {
			return err
		}
	default:
		var err error
		if users, err = m.listUsers(ctx); err != nil {
			return err
		}
	}
	src, err := m.open(ctx, *from, false)
	if err != nil {
		return fmt.Errorf("--from: %w", err)
	}
	dst, err := m.open(ctx, *to, true)
	if err != nil {
		return fmt.Errorf("--to: %w", err)
	}
	opts := migrate.Options{From: src, To: dst, Users: users, BatchSize: *batch, Logger: log}
	if !*quiet {
		opts.Progress = func(p migrate.Progress) {
			fmt.Fprintf(stderr, "migrate: %s: %d copied, %d already there (of %d); %d of %d users done\n",
				p.User, p.Copied, p.Skipped, p.UserTotal, p.Users, len(users))
		}
	}
	res, err := migrate.Run(ctx, opts)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "copied %d messages, %d already in the destination, %d users\n", res.Copied, res.Skipped, len(users))
	var ok []string
	for _, u := range users {
		if why, failed := res.Failed[u]; failed {
			fmt.Fprintf(stdout, "FAILED %s: %s\n", u, why)
		} else {
			ok = append(ok, u)
		}
	}
	rep, err := migrate.Verify(ctx, src, dst, ok)
	if err != nil {
		return err
	}
	for _, d := range rep.Diffs {
		fmt.Fprintf(stdout, "DIFFERS %s %s: %s\n", d.User, d.UID, d.What)
	}
	fmt.Fprintf(stdout, "verified %d users, %d messages: %d differences\n", rep.Users, rep.Messages, len(rep.Diffs))
	if len(res.Failed) > 0 || len(rep.Diffs) > 0 {
		return exitError{code: 1, err: fmt.Errorf("%d users failed, %d differences; run the same command again to resume", len(res.Failed), len(rep.Diffs))}
	}
	return nil
}

// migration holds what runMigrateCopy opened.
type migration struct {
	cfg     *config.Config // nil without --config
	users   auth.SCRAMDecoyDB
	log     *slog.Logger
	closers []func()
}

func (m *migration) close() {
	for i := len(m.closers) - 1; i >= 0; i-- {
		m.closers[i]()
	}
}

// listUsers lists the users of --config's user database.
func (m *migration) listUsers(ctx context.Context) ([]string, error) {
	if m.cfg.Auth.Database == "" {
		return passwdfile.ListUsers(m.cfg.Auth.PasswdFile)
	}
	type lister interface {
		List(context.Context) ([]string, error)
	}
	l, ok := m.users.(lister)
	if !ok || m.cfg.Auth.PasswordQuery != "" {
		return nil, errors.New("auth.password_query cannot list users: give --user or --passwd-file")
	}
	return l.List(ctx)
}

// open opens the store at loc. A PostgreSQL destination gets its schema
// created or upgraded; a PostgreSQL source must have this build's.
func (m *migration) open(ctx context.Context, loc string, dest bool) (store.Store, error) {
	cfg := m.cfg
	if cfg == nil {
		d := config.Default()
		cfg = &d
	}
	if dsn, ok := (config.Mail{Location: loc}).PostgresDSN(); ok {
		st, err := openPGStore(ctx, cfg, dsn, m.log)
		if err != nil {
			return nil, err
		}
		m.closers = append(m.closers, st.Close)
		if dest {
			err = st.Migrate(ctx)
		} else if err = st.CheckSchema(ctx); err != nil {
			err = fmt.Errorf("%w; %s", err, migrateHint)
		}
		if err != nil {
			return nil, err
		}
		return st, nil
	}
	kind, _, _ := strings.Cut(loc, ":")
	if kind != "maildir" {
		return nil, fmt.Errorf("unsupported location %q (maildir:TEMPLATE or a PostgreSQL connection string)", kind)
	}
	var opts maildir.Options
	if m.users != nil {
		c := *cfg
		c.Mail.Location = loc
		opts = maildirOptions(&c, m.users, m.log)
	} else {
		opts = maildir.Options{Location: loc, Logger: m.log}
	}
	return maildir.New(opts)
}
