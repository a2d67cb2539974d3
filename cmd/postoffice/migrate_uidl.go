package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"

	"github.com/postoffice-mail/postoffice/internal/auth"
	"github.com/postoffice-mail/postoffice/internal/config"
	"github.com/postoffice-mail/postoffice/internal/store"
	"github.com/postoffice-mail/postoffice/internal/store/maildir"
	"github.com/postoffice-mail/postoffice/internal/store/mbox"
	"github.com/postoffice-mail/postoffice/internal/sysexits"
	"github.com/postoffice-mail/postoffice/internal/uidlimport"
)

const migrateUIDLUsage = `usage: postoffice migrate uidl --from URL (--user USER | --passwd-file FILE)
                             [--config FILE | --to LOCATION] [--dry-run] [--force]

Logs in to the old server, reads UIDL, LIST and TOP n 0 of every message,
matches each to a message of the local maildrop by a hash of its header
and its size, and records the old UIDLs for postoffice to serve. Run it
before postoffice serves the maildrop: a UIDL postoffice has already
recorded (a client may have seen it) is changed only with --force.
Running it again changes nothing.

URL is pop3s://LOGIN:PASSWORD@host[:port] (implicit TLS), or
pop3://...?starttls (STLS); pop3:// in clear needs --insecure unless the
host is a loopback address. Without a password in the URL it is read from
the environment variable POSTOFFICE_OLD_PASSWORD. LOGIN may use %u (the
local user name), %n and %d: "pop3s://%u*master:PASSWORD@old" logs in to
every user with a Dovecot master user. --passwd-file lists the users, one
"user[:password]" a line (Dovecot passwd-file format; the password column,
in clear or {PLAIN}, is used when LOGIN has no %u).

The maildrops are those of --config (default /etc/postoffice/postoffice.toml)
or of --to, a mail location ("maildir:/var/vmail/%d/%n/Maildir" or
"mbox:/var/mail/%u").

Exit status: 0 every old message matched and imported; 1 some message not
matched or a UIDL kept (each listed); 2 command line error; 75 an old
server or maildrop could not be reached (try again); 78 configuration error.`

const migrateVerifyUsage = `usage: postoffice migrate verify --from URL --user USER
                               (--config FILE | --to URL) [--sample N] [--json]

Logs in to the old server and to the new one (--to, a URL as --from; its
login and password default to --from's) or opens the user's maildrop
through --config, and compares STAT, every UIDL and the size of each
message, and the SHA-256 of N messages spread over the maildrop (RETR, in
CRLF form; --sample -1 compares every message). Prints a table of the
differences, or JSON with --json:

  missing  a UIDL of the old server the new side lacks
  extra    a UIDL only the new side has (clients download it as new)
  size     the message's LIST size differs
  body     the sampled message's content differs
  stat     STAT differs

Exit status: 0 the two agree; 1 they differ; 2 command line error;
75 a server or the maildrop could not be reached; 78 configuration error.`

// serverFlags are the connection flags migrate uidl and verify share.
type serverFlags struct {
	from     *string
	starttls *bool
	caFile   *string
	insecure *bool
}

func addServerFlags(fs *flag.FlagSet) serverFlags {
	return serverFlags{
		from:     fs.String("from", "", "the old server, `URL` pop3s://LOGIN:PASSWORD@host[:port]"),
		starttls: fs.Bool("starttls", false, "use STLS on a pop3:// URL (as ?starttls)"),
		caFile:   fs.String("ca-file", "", "PEM `file` of the CAs to trust instead of the system's"),
		insecure: fs.Bool("insecure", false, "allow a clear-text pop3:// login to a host that is not loopback"),
	}
}

func (f serverFlags) dialOptions() uidlimport.DialOptions {
	return uidlimport.DialOptions{CAFile: *f.caFile, Insecure: *f.insecure}
}

// migrateUser is one user to import: the local name and, from a
// passwd-file, the old server's password.
type migrateUser struct {
	name, pass string
	hasPass    bool
}

// readMigrateUsers reads a passwd-file for --passwd-file: "user[:password
// [:...]]" lines, '#' comments. A password is used in clear or with the
// {PLAIN} scheme; any other scheme cannot log in to the old server and is
// left out (usable only with a master login).
func readMigrateUsers(path string) ([]migrateUser, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []migrateUser
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		fields := strings.Split(line, ":")
		u := migrateUser{name: fields[0]}
		if u.name == "" {
			return nil, fmt.Errorf("%s:%d: no user name", path, n)
		}
		if len(fields) > 1 && fields[1] != "" {
			p := fields[1]
			if rest, ok := strings.CutPrefix(p, "{PLAIN}"); ok {
				u.pass, u.hasPass = rest, true
			} else if !strings.HasPrefix(p, "{") {
				u.pass, u.hasPass = p, true
			}
		}
		out = append(out, u)
	}
	return out, sc.Err()
}

// migrateTarget is where imported UIDLs go and how a user's name is
// checked: the store of --config with its user database, or of --to.
type migrateTarget struct {
	target  uidlimport.Target
	store   store.Store
	lookup  func(ctx context.Context, user string) (string, error) // canonical name
	release func()
}

func openMigrateTarget(cfgPath, to string, stderr io.Writer) (*migrateTarget, error) {
	var t migrateTarget
	if to != "" {
		loc := to
		var st store.Store
		var err error
		if strings.HasPrefix(loc, "mbox:") {
			st, err = mbox.New(mbox.Options{Location: loc})
		} else {
			st, err = maildir.New(maildir.Options{Location: strings.TrimPrefix(loc, "maildir:")})
		}
		if err != nil {
			return nil, exitError{code: sysexits.Config, err: fmt.Errorf("--to: %w", err)}
		}
		t.store, t.release = st, func() {}
		t.lookup = func(_ context.Context, u string) (string, error) { return u, nil }
	} else {
		cfg, err := config.Load(cfgPath)
		if err != nil {
			return nil, exitError{code: sysexits.Config, err: err}
		}
		a := newApp(cfg, stderr)
		if errs := a.build(partStore); errs != nil {
			a.close()
			return nil, exitError{code: sysexits.Config, err: errs[0]}
		}
		t.store, t.release = a.store, a.close
		t.lookup = func(ctx context.Context, name string) (string, error) {
			u, err := a.users.Lookup(ctx, name)
			if errors.Is(err, auth.ErrUnknownUser) {
				return "", exitError{code: sysexits.NoUser, err: fmt.Errorf("unknown user %q", name)}
			}
			return u.Name, err
		}
	}
	tg, ok := t.store.(uidlimport.Target)
	if !ok {
		t.release()
		return nil, exitError{code: sysexits.Config, err: errors.New("this store cannot record imported UIDLs (only Maildir and mbox can)")}
	}
	t.target = tg
	return &t, nil
}

// runMigrateUIDL is "postoffice migrate uidl".
func runMigrateUIDL(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("migrate uidl", stderr)
	fs.Usage = func() {
		io.WriteString(stderr, migrateUIDLUsage+"\n")
		fs.PrintDefaults()
	}
	sf := addServerFlags(fs)
	user := fs.String("user", "", "the local `USER` to import")
	passwdFile := fs.String("passwd-file", "", "import every user of this `file`")
	cfgPath := fs.String("config", defaultConfig, "configuration `file` (TOML)")
	to := fs.String("to", "", "a mail `LOCATION` instead of --config's")
	dryRun := fs.Bool("dry-run", false, "match and report, record nothing")
	force := fs.Bool("force", false, "also change UIDLs postoffice has already recorded (no client must have connected to postoffice yet)")
	asJSON := fs.Bool("json", false, "print the reports as JSON")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return usageError{"unexpected argument " + fs.Arg(0)}
	}
	if *sf.from == "" || (*user == "") == (*passwdFile == "") {
		return usageError{"need --from and one of --user or --passwd-file"}
	}
	srv, err := uidlimport.ParseServer(*sf.from, *sf.starttls)
	if err != nil {
		return usageError{err.Error()}
	}
	if err := srv.CheckSecurity(sf.dialOptions()); err != nil {
		return usageError{err.Error()}
	}
	users := []migrateUser{{name: *user}}
	if *passwdFile != "" {
		if users, err = readMigrateUsers(*passwdFile); err != nil {
			return exitError{code: sysexits.Config, err: fmt.Errorf("--passwd-file: %w", err)}
		}
		if len(users) > 1 && srv.User != "" && !srv.Templated() {
			// One login for many maildrops would import one user's UIDLs
			// into every maildrop.
			return usageError{"--passwd-file with several users needs %u in the URL's login name, or none"}
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	tgt, err := openMigrateTarget(*cfgPath, *to, stderr)
	if err != nil {
		return err
	}
	defer tgt.release()

	var reports []uidlimport.Report
	failed, tempFailed := false, false
	for _, u := range users {
		rep, err := migrateOneUser(ctx, srv, sf.dialOptions(), tgt, u, uidlimport.Options{Force: *force, DryRun: *dryRun})
		if err != nil {
			var ee exitError
			if errors.As(err, &ee) && ee.code != sysexits.TempFail {
				return err
			}
			fmt.Fprintf(stderr, "postoffice migrate uidl: %s: %v\n", u.name, err)
			tempFailed = true
			continue
		}
		reports = append(reports, rep)
		if !rep.OK() {
			failed = true
		}
		if !*asJSON {
			printImportReport(stdout, rep)
		}
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(reports); err != nil {
			return err
		}
	}
	switch {
	case tempFailed:
		return exitError{code: sysexits.TempFail}
	case failed:
		return exitError{code: 1}
	}
	return nil
}

// migrateOneUser imports one user's UIDLs.
func migrateOneUser(ctx context.Context, srv uidlimport.Server, opts uidlimport.DialOptions, tgt *migrateTarget, u migrateUser, io uidlimport.Options) (uidlimport.Report, error) {
	name, err := tgt.lookup(ctx, u.name)
	if err != nil {
		return uidlimport.Report{}, err
	}
	login, err := srv.LoginName(u.name)
	if err != nil {
		return uidlimport.Report{}, usageError{err.Error()}
	}
	pass, ok := srv.Pass, srv.HasPass
	if !srv.Templated() && u.hasPass {
		pass, ok = u.pass, true
	}
	if !ok {
		pass, ok = os.LookupEnv("POSTOFFICE_OLD_PASSWORD")
	}
	if !ok {
		return uidlimport.Report{}, usageError{"no password for the old server: put it in the URL, the passwd-file or POSTOFFICE_OLD_PASSWORD"}
	}
	c, err := srv.Login(ctx, login, pass, opts)
	if err != nil {
		return uidlimport.Report{}, exitError{code: sysexits.TempFail, err: err}
	}
	old, err := uidlimport.ReadOld(ctx, c)
	if err != nil {
		c.Close()
		return uidlimport.Report{}, exitError{code: sysexits.TempFail, err: fmt.Errorf("old server: %w", err)}
	}
	// Read only: QUIT leaves the old maildrop as it was (nothing marked).
	c.Quit(ctx)
	rep, err := uidlimport.Import(ctx, tgt.target, name, old, io)
	if errors.Is(err, store.ErrInUse) {
		return rep, exitError{code: sysexits.TempFail, err: fmt.Errorf("maildrop of %q is in use; try again later", name)}
	}
	if err != nil {
		return rep, exitError{code: sysexits.TempFail, err: err}
	}
	return rep, nil
}

func printImportReport(w io.Writer, r uidlimport.Report) {
	verb := "imported"
	if r.DryRun {
		verb = "would import"
	}
	fmt.Fprintf(w, "%s: old server %d messages, local %d; matched %d: %s %d UIDLs, %d already set\n",
		r.User, r.Old, r.Local, r.Matched, verb, r.Changed, r.Unchanged)
	if len(r.Unmatched) > 0 {
		fmt.Fprintf(w, "%s: %d old messages not found locally:\n", r.User, len(r.Unmatched))
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "  NUM\tUIDL\tSIZE")
		for _, m := range r.Unmatched {
			fmt.Fprintf(tw, "  %d\t%s\t%d\n", m.Num, m.UIDL, m.Size)
		}
		tw.Flush()
	}
	if len(r.Refused) > 0 {
		fmt.Fprintf(w, "%s: %d UIDLs kept, postoffice had already recorded them (--force to change):\n", r.User, len(r.Refused))
		for _, x := range r.Refused {
			fmt.Fprintf(w, "  old %s  kept %s\n", x.OldUIDL, x.LocalUIDL)
		}
	}
	if len(r.LocalOnly) > 0 {
		fmt.Fprintf(w, "%s: %d local messages the old server does not have keep their own UIDLs\n", r.User, len(r.LocalOnly))
	}
}

// runMigrateVerify is "postoffice migrate verify".
func runMigrateVerify(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("migrate verify", stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, migrateVerifyUsage)
		fs.PrintDefaults()
	}
	sf := addServerFlags(fs)
	user := fs.String("user", "", "the `USER` to compare")
	cfgPath := fs.String("config", "", "compare with the maildrop of this configuration `file`")
	to := fs.String("to", "", "compare with this new server, `URL` as --from")
	sample := fs.Int("sample", 10, "compare the bodies of `N` messages (-1: all, 0: none)")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return usageError{"unexpected argument " + fs.Arg(0)}
	}
	if *sf.from == "" || *user == "" || (*cfgPath == "") == (*to == "") {
		return usageError{"need --from, --user and one of --config or --to"}
	}
	oldSrv, err := uidlimport.ParseServer(*sf.from, *sf.starttls)
	if err != nil {
		return usageError{err.Error()}
	}
	opts := sf.dialOptions()
	if err := oldSrv.CheckSecurity(opts); err != nil {
		return usageError{err.Error()}
	}
	var newSrv uidlimport.Server
	if *to != "" {
		if newSrv, err = uidlimport.ParseServer(*to, false); err != nil {
			return usageError{"--to: " + err.Error()}
		}
		if err := newSrv.CheckSecurity(opts); err != nil {
			return usageError{"--to: " + err.Error()}
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	login := func(s uidlimport.Server, fallback uidlimport.Server) (*uidlimport.POP3Maildrop, func(), error) {
		if s.User == "" {
			s.User = fallback.User
		}
		if !s.HasPass {
			s.Pass, s.HasPass = fallback.Pass, fallback.HasPass
		}
		name, err := s.LoginName(*user)
		if err != nil {
			return nil, nil, usageError{err.Error()}
		}
		if !s.HasPass {
			s.Pass, s.HasPass = os.LookupEnv("POSTOFFICE_OLD_PASSWORD")
		}
		if !s.HasPass {
			return nil, nil, usageError{"no password: put it in the URL or POSTOFFICE_OLD_PASSWORD"}
		}
		c, err := s.Login(ctx, name, s.Pass, opts)
		if err != nil {
			return nil, nil, exitError{code: sysexits.TempFail, err: err}
		}
		m, err := uidlimport.NewPOP3Maildrop(ctx, c)
		if err != nil {
			c.Close()
			return nil, nil, exitError{code: sysexits.TempFail, err: fmt.Errorf("%s: %w", s.Addr, err)}
		}
		// Read only: QUIT deletes nothing, no message was marked.
		return m, func() { c.Quit(context.Background()) }, nil
	}
	oldMD, closeOld, err := login(oldSrv, uidlimport.Server{})
	if err != nil {
		return err
	}
	defer closeOld()
	var newMD uidlimport.Maildrop
	if *to != "" {
		m, closeNew, err := login(newSrv, oldSrv)
		if err != nil {
			return err
		}
		defer closeNew()
		newMD = m
	} else {
		md, _, closeAll, err := openMaildrop(ctx, *cfgPath, *user, stderr)
		if err != nil {
			return err
		}
		defer closeAll()
		newMD = md
	}
	rep, err := uidlimport.Verify(ctx, oldMD, newMD, *sample)
	if err != nil {
		return exitError{code: sysexits.TempFail, err: err}
	}
	if *asJSON {
		if rep.Differences == nil {
			rep.Differences = []uidlimport.Difference{}
		}
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return err
		}
	} else {
		printVerifyReport(stdout, *user, rep)
	}
	if !rep.OK() {
		return exitError{code: 1}
	}
	return nil
}

func printVerifyReport(w io.Writer, user string, r uidlimport.VerifyReport) {
	fmt.Fprintf(w, "%s: old %d messages %d octets; new %d messages %d octets; %d bodies compared\n",
		user, r.OldCount, r.OldSize, r.NewCount, r.NewSize, r.Sampled)
	if r.OK() {
		fmt.Fprintf(w, "%s: OK, the two agree\n", user)
		return
	}
	fmt.Fprintf(w, "%s: %d differences\n", user, len(r.Differences))
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "KIND\tUIDL\tOLD\tNEW")
	dash := func(s string) string {
		if s == "" {
			return "-"
		}
		return s
	}
	for _, d := range r.Differences {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", d.Kind, dash(d.UIDL), dash(d.Old), dash(d.New))
	}
	tw.Flush()
}
