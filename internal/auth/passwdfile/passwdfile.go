// Package passwdfile owns Dovecot's passwd-file user database: reading it as
// an auth.CredentialDB that follows edits to the file, and editing it safely
// for the "postoffice user" admin command.
//
// The format is Dovecot's (doc.dovecot.org, "Passwd-file"): one user a line,
//
//	user:password:uid:gid:gecos:home:shell:extra_fields
//
// with blank lines and '#' comments allowed and every field after the user
// name optional. extra_fields is a space-separated list of key=value, such as
// userdb_home=/var/vmail/x or userdb_mail=maildir:~/Mail. Passwords are
// "{SCHEME}data" strings verified by package scheme; those without a prefix
// are in Options.DefaultScheme.
//
// Implementation notes:
//   - The file is stat'ed at most once per Options.CheckInterval (1 s) on
//     lookup; when its identity (device, inode, size, mtime, ctime) changed it
//     is parsed again and swapped in atomically. A file that fails to parse
//     keeps the previous data and logs the error with file:line once.
//   - A user line whose password cannot be used (unknown scheme, DES) is
//     loaded with a warning, so delivery still finds the user; the login fails.
//   - Unknown users cost the same CPU as known ones: their password is checked
//     against the stored hash of a user of the file's dominant class, the
//     scheme and cost parameters (bcrypt cost, sha-crypt rounds, argon2
//     memory, time and threads, SCRAM iterations) most users have, chosen at
//     each load (see dummyOf). Verifying a random guess against a real hash
//     costs exactly what that user's own login costs; the result is thrown
//     away. Users of a rarer class still differ in timing from an unknown
//     user: padding every check to the slowest class would hide them too,
//     but would make every login as slow as the slowest hash in the file.
//   - For SASL SCRAM, which must answer a name before it can check anything,
//     the DB reports the file's most common kind of SCRAM credentials per
//     hash (stored keys' iteration count and salt length, or keys derived
//     from a plaintext-equivalent password; see dominantSCRAM), chosen at
//     each load, and the canonical spelling of a name (CanonicalName), so the
//     SCRAM server's decoys look and cost like most users' credentials
//     (auth.SCRAMDecoyDB).
//   - Login restrictions (nologin, allow_nets, allow_real_nets) are parsed at
//     load and reported in auth.User.Restrict, for the caller that knows the
//     connection; fields that restrict a login in a way postoffice does not
//     implement make the load fail (loginFields).
//   - Editors take an flock on "<file>.lock", rewrite the whole file to a
//     temporary file in the same directory, fsync it, rename it over the file
//     and fsync the directory, so readers see the old or the new file, never
//     a mix, and a crash leaves one of the two.
//   - Passwords never reach a log line; user names and line numbers do.
package passwdfile

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/postoffice-mail/postoffice/internal/auth"
	"github.com/postoffice-mail/postoffice/internal/auth/scheme"
)

// Options configure a DB. The zero value is usable.
type Options struct {
	// DefaultScheme is the scheme of passwords stored without a {SCHEME}
	// prefix. Empty means Dovecot's default, CRYPT.
	DefaultScheme string
	// Logger receives reload errors and warnings about unusable lines.
	// Nil discards them.
	Logger *slog.Logger
	// CheckInterval is the least time between two checks of whether the
	// file changed. Zero means one second; negative means every lookup.
	CheckInterval time.Duration
	// Now returns the current time, for the check interval. Nil means
	// time.Now; tests inject a fake clock.
	Now func() time.Time
}

// DB is a passwd-file user database. It implements auth.CredentialDB and is
// safe for concurrent use.
type DB struct {
	path          string
	defaultScheme string
	log           *slog.Logger
	interval      time.Duration
	now           func() time.Time
	dummy         string // hash of a random password in scheme.DefaultNewScheme, for a file without usable passwords

	data atomic.Pointer[table]

	mu        sync.Mutex // held while checking and reloading; guards the fields below
	lastCheck time.Time
	failed    identity // identity of the last file that failed to load
	lastErr   string   // last logged reload or stat error, to log each once
}

var (
	_ auth.DB           = (*DB)(nil)
	_ auth.CredentialDB = (*DB)(nil)
	_ auth.SCRAMDecoyDB = (*DB)(nil)
)

// table is one loaded version of the file. It is never modified.
type table struct {
	users map[string]*entry
	ident identity
	dummy string // stored password unknown users are checked against (dummyOf)
	// scram holds the dominant SCRAM parameters per hash ("SHA-1",
	// "SHA-256"), for the decoys a SCRAM server gives unknown names
	// (dominantSCRAM); a hash no user can serve is absent.
	scram map[string]auth.SCRAMParams
}

// Open loads the passwd-file at path. It fails if the file cannot be read or
// a line does not parse (a *ParseError naming the line).
func Open(path string, opts Options) (*DB, error) {
	d := &DB{
		path:          path,
		defaultScheme: opts.DefaultScheme,
		log:           opts.Logger,
		interval:      opts.CheckInterval,
		now:           opts.Now,
	}
	if d.defaultScheme == "" {
		d.defaultScheme = scheme.DovecotDefaultScheme
	}
	if err := scheme.Check("", d.defaultScheme); errors.Is(err, scheme.ErrUnknownScheme) || errors.Is(err, scheme.ErrUnsupported) {
		return nil, fmt.Errorf("passwdfile: default scheme: %w", err)
	}
	if d.log == nil {
		d.log = slog.New(slog.DiscardHandler)
	}
	if d.interval == 0 {
		d.interval = time.Second
	}
	if d.now == nil {
		d.now = time.Now
	}
	dummy, err := scheme.Hash(scheme.DefaultNewScheme, rand.Text())
	if err != nil {
		return nil, fmt.Errorf("passwdfile: dummy hash: %w", err)
	}
	d.dummy = dummy
	t, err := d.load()
	if err != nil {
		return nil, err
	}
	d.data.Store(t)
	d.lastCheck = d.now()
	return d, nil
}

// load reads and parses the file, logging warnings about single lines.
func (d *DB) load() (*table, error) {
	f, err := os.Open(d.path)
	if err != nil {
		return nil, fmt.Errorf("passwdfile: %w", err)
	}
	defer f.Close()
	// The identity is taken before reading: a write that lands during the
	// read changes it again, so the next check reloads.
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("passwdfile: %w", err)
	}
	users, warns, err := parse(f, d.path, func(p string) error { return scheme.Check(p, d.defaultScheme) })
	if err != nil {
		return nil, err
	}
	for _, w := range warns {
		args := []any{"file", d.path, "line", w.line, "user", w.user}
		if w.err != nil {
			args = append(args, "err", w.err)
		}
		d.log.Warn("passwdfile: "+w.msg, args...)
	}
	return &table{
		users: users,
		ident: identityOf(fi),
		dummy: dummyOf(users, d.defaultScheme, d.dummy),
		scram: dominantSCRAM(users, d.defaultScheme),
	}, nil
}

// dummyOf picks the stored password unknown users are verified against: one
// of the users of the dominant cost class, the class with the most users
// (ties go to the class met first in the file), so that a failed login for a
// name that does not exist costs what most real users' logins cost. Entries
// the scheme package cannot use are not counted. fallback is used when no
// user has a usable password.
func dummyOf(users map[string]*entry, defaultScheme, fallback string) string {
	type class struct {
		n, line int
		stored  string
	}
	classes := make(map[string]*class)
	for _, e := range users {
		if !e.hasPassword || scheme.Check(e.password, defaultScheme) != nil {
			continue
		}
		stored := explicitScheme(e.password, defaultScheme)
		k := costClass(stored)
		c := classes[k]
		if c == nil {
			c = &class{line: e.line, stored: stored}
			classes[k] = c
		}
		c.n++
		if e.line < c.line {
			c.line, c.stored = e.line, stored
		}
	}
	var best *class
	for _, c := range classes {
		if best == nil || c.n > best.n || c.n == best.n && c.line < best.line {
			best = c
		}
	}
	if best == nil {
		return fallback
	}
	return best.stored
}

// dominantSCRAM finds, for each SCRAM hash, the most common kind of SCRAM
// credentials among the users who can log in with that mechanism: stored
// {SCRAM-<hash>} keys of one iteration count and salt length, or keys derived
// from a plaintext-equivalent password at each login. Ties go to the kind met
// first in the file, as in dummyOf. Users whose entry cannot serve the hash
// (another scheme, a {SCRAM-*} entry of the other hash, no password) are not
// counted: the SCRAM server gives them decoys too.
func dominantSCRAM(users map[string]*entry, defaultScheme string) map[string]auth.SCRAMParams {
	type class struct {
		p       auth.SCRAMParams
		n, line int
	}
	classes := make(map[string]map[auth.SCRAMParams]*class) // hash -> kind
	count := func(hash string, p auth.SCRAMParams, line int) {
		if classes[hash] == nil {
			classes[hash] = make(map[auth.SCRAMParams]*class)
		}
		c := classes[hash][p]
		if c == nil {
			c = &class{p: p, line: line}
			classes[hash][p] = c
		}
		c.n++
		c.line = min(c.line, line)
	}
	for _, e := range users {
		if !e.hasPassword || scheme.Check(e.password, defaultScheme) != nil {
			continue
		}
		stored := explicitScheme(e.password, defaultScheme)
		if iter, salt, _, _, hash, err := scheme.ParseSCRAM(stored); err == nil {
			count(hash, auth.SCRAMParams{Iterations: iter, SaltLen: len(salt)}, e.line)
		} else if _, ok := scheme.PlaintextEquivalent(stored); ok {
			count("SHA-1", auth.SCRAMParams{Derived: true}, e.line)
			count("SHA-256", auth.SCRAMParams{Derived: true}, e.line)
		}
	}
	out := make(map[string]auth.SCRAMParams)
	for hash, kinds := range classes {
		var best *class
		for _, c := range kinds {
			if best == nil || c.n > best.n || c.n == best.n && c.line < best.line {
				best = c
			}
		}
		out[hash] = best.p
	}
	return out
}

// costClass names what decides the cost of verifying stored, a
// "{SCHEME}data" string: the scheme and, for modular crypt strings
// ("$id$param$salt$hash"), the id and the parameter fields (bcrypt's cost,
// "rounds=N", argon2's "v=19" and "m=...,t=...,p=..."), or for SCRAM the
// iteration count. Salts and hashes are left out.
func costClass(stored string) string {
	name, data, _ := strings.Cut(strings.TrimPrefix(stored, "{"), "}")
	name = strings.ToUpper(name)
	switch {
	case strings.HasPrefix(name, "SCRAM-"):
		iter, _, _ := strings.Cut(data, ",")
		return name + " " + iter
	case strings.HasPrefix(data, "$"):
		var params []string
		for i, f := range strings.Split(data, "$")[1:] {
			if i == 0 || strings.Contains(f, "=") || f != "" && strings.Trim(f, "0123456789") == "" {
				params = append(params, f)
			}
		}
		return name + " $" + strings.Join(params, "$")
	}
	return name
}

// refresh reloads the file if the check interval has passed and the file
// changed. Only one caller checks at a time; the others go on with the data
// they have.
func (d *DB) refresh() {
	if !d.mu.TryLock() {
		return
	}
	defer d.mu.Unlock()
	now := d.now()
	if d.interval > 0 && now.Sub(d.lastCheck) < d.interval && !now.Before(d.lastCheck) {
		return
	}
	d.lastCheck = now
	fi, err := os.Stat(d.path)
	if err != nil {
		d.logOnce("passwdfile: cannot stat file; keeping the users loaded before", err)
		return
	}
	id := identityOf(fi)
	if id == d.data.Load().ident || id == d.failed {
		return
	}
	t, err := d.load()
	if err != nil {
		d.failed = id
		d.logOnce("passwdfile: reload failed; keeping the users loaded before", err)
		return
	}
	d.failed = identity{}
	d.lastErr = ""
	d.data.Store(t)
	d.log.Info("passwdfile: reloaded", "file", d.path, "users", len(t.users))
}

func (d *DB) logOnce(msg string, err error) {
	if s := err.Error(); s != d.lastErr {
		d.lastErr = s
		d.log.Error(msg, "file", d.path, "err", err)
	}
}

// find looks a name up exactly.
func (t *table) find(name string) *entry {
	return t.users[name]
}

// findLogin looks up a name typed at an interactive login: exactly, then
// its auth.LoginAlias ("user+domain" without '@' as "user@domain", Demon's
// SDPS form). An exact user wins over the alias.
func (t *table) findLogin(login string) *entry {
	if e, ok := t.users[login]; ok {
		return e
	}
	if alias, ok := auth.LoginAlias(login); ok {
		return t.users[alias]
	}
	return nil
}

// user makes the auth.User for an entry; Extra is a fresh map holding the
// extra fields plus "uid" and "gid" when the line has them.
func (e *entry) user() auth.User {
	u := auth.User{Name: e.name, Home: e.home, Restrict: e.restrict}
	u.Restrict.AllowNets = slices.Clone(u.Restrict.AllowNets)
	u.Restrict.AllowRealNets = slices.Clone(u.Restrict.AllowRealNets)
	if len(e.extra) > 0 || e.uid != "" || e.gid != "" {
		u.Extra = maps.Clone(e.extra)
		if u.Extra == nil {
			u.Extra = make(map[string]string)
		}
		if e.uid != "" {
			u.Extra["uid"] = e.uid
		}
		if e.gid != "" {
			u.Extra["gid"] = e.gid
		}
	}
	return u
}

// Authenticate checks password for user. It returns auth.ErrFailed for an
// unknown user, a user without a password, an unusable password entry and a
// wrong password alike, after about the same work in each case.
func (d *DB) Authenticate(ctx context.Context, user, password string) (auth.User, error) {
	if err := ctx.Err(); err != nil {
		return auth.User{}, err
	}
	d.refresh()
	t := d.data.Load()
	e := t.findLogin(user)
	if e != nil && e.noPassword {
		// Dovecot's nopassword: any password logs in. The same work as a
		// check is spent, so the answer's timing tells nothing.
		t.burn(password)
		return e.user(), nil
	}
	if e == nil || !e.hasPassword {
		t.burn(password)
		return auth.User{}, auth.ErrFailed
	}
	ok, err := scheme.Verify(e.password, password, d.defaultScheme)
	if err != nil {
		if !errors.Is(err, scheme.ErrPasswordTooLong) {
			d.log.Error("passwdfile: cannot verify password", "file", d.path, "line", e.line, "user", e.name, "err", err)
		}
		t.burn(password)
		return auth.User{}, auth.ErrFailed
	}
	if !ok {
		return auth.User{}, auth.ErrFailed
	}
	return e.user(), nil
}

// burn spends the CPU of a real verification, so a failure does not reveal
// whether the user exists. The outcome is ignored: the dummy may be a real
// user's hash.
func (t *table) burn(password string) {
	if len(password) > scheme.MaxPasswordLen {
		password = password[:scheme.MaxPasswordLen]
	}
	_, _ = scheme.Verify(t.dummy, password, "")
}

// Lookup finds the user named exactly user, without a password: no login
// alias applies (see auth.LoginAlias), since the name comes from a
// recipient address, a token claim or a certificate, not from a user typing
// it. It returns auth.ErrUnknownUser if there is none.
func (d *DB) Lookup(ctx context.Context, user string) (auth.User, error) {
	if err := ctx.Err(); err != nil {
		return auth.User{}, err
	}
	d.refresh()
	e := d.data.Load().find(user)
	if e == nil {
		return auth.User{}, auth.ErrUnknownUser
	}
	return e.user(), nil
}

// Credentials finds a login name as Authenticate does (exactly, else
// user+domain as user@domain) and returns its stored password in "{SCHEME}data" form: a
// password without a {SCHEME} prefix gets the default scheme written out
// ("{CRYPT}$5$...", or "{MD5-CRYPT}" for a bare "$1$" string, as Verify
// reads it), so the caller never needs Options.DefaultScheme. The password is
// "" for a user whose line has none; no login can succeed for that user with
// a mechanism that needs the stored secret (APOP, CRAM-MD5, SCRAM), also
// with nopassword, which only a plaintext check (Authenticate) can honour. An
// unusable entry (unknown scheme) is returned as stored, and fails where the
// caller parses it. It returns auth.ErrUnknownUser if there is no such user.
func (d *DB) Credentials(ctx context.Context, user string) (auth.User, string, error) {
	if err := ctx.Err(); err != nil {
		return auth.User{}, "", err
	}
	d.refresh()
	e := d.data.Load().findLogin(user)
	if e == nil {
		return auth.User{}, "", auth.ErrUnknownUser
	}
	if !e.hasPassword {
		return e.user(), "", nil
	}
	return e.user(), explicitScheme(e.password, d.defaultScheme), nil
}

// DominantSCRAM implements auth.SCRAMDecoyDB: the most common kind of SCRAM
// credentials for hash ("SHA-1" or "SHA-256") in the file as last loaded,
// chosen at each load (see dominantSCRAM).
func (d *DB) DominantSCRAM(ctx context.Context, hash string) (auth.SCRAMParams, bool) {
	d.refresh()
	p, ok := d.data.Load().scram[hash]
	return p, ok
}

// CanonicalName implements auth.SCRAMDecoyDB with the rule find applies: a
// name in the file is itself; a name without '@' whose last '+' splits it,
// "user+domain", is "user@domain" unless the file has it as written. Case is
// kept: the file's names are case-sensitive.
func (d *DB) CanonicalName(user string) string {
	if e := d.data.Load().find(user); e != nil {
		return e.name
	}
	if !strings.Contains(user, "@") {
		if i := strings.LastIndexByte(user, '+'); i > 0 && i < len(user)-1 {
			return user[:i] + "@" + user[i+1:]
		}
	}
	return user
}

// explicitScheme writes out the scheme of a stored password that has no
// {SCHEME} prefix, following the rule scheme.Verify applies: a well-formed
// "{NAME}" prefix is kept, a bare "$1$" string is MD5-CRYPT, anything else
// is in defaultScheme.
func explicitScheme(stored, defaultScheme string) string {
	if strings.HasPrefix(stored, "{") && strings.IndexByte(stored, '}') > 0 {
		return stored
	}
	if strings.HasPrefix(stored, "$1$") {
		return "{MD5-CRYPT}" + stored
	}
	return "{" + strings.ToUpper(defaultScheme) + "}" + stored
}
