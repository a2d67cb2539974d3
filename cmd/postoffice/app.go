package main

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/postoffice-mail/postoffice/internal/auth"
	"github.com/postoffice-mail/postoffice/internal/auth/kerberos"
	"github.com/postoffice-mail/postoffice/internal/auth/oauth"
	"github.com/postoffice-mail/postoffice/internal/auth/passwdfile"
	"github.com/postoffice-mail/postoffice/internal/backend"
	"github.com/postoffice-mail/postoffice/internal/config"
	"github.com/postoffice-mail/postoffice/internal/ledger"
	"github.com/postoffice-mail/postoffice/internal/legacy/kpop"
	"github.com/postoffice-mail/postoffice/internal/legacy/pop2"
	"github.com/postoffice-mail/postoffice/internal/lmtp"
	"github.com/postoffice-mail/postoffice/internal/metrics"
	"github.com/postoffice-mail/postoffice/internal/netlimit"
	"github.com/postoffice-mail/postoffice/internal/privdrop"
	"github.com/postoffice-mail/postoffice/internal/ratelimit"
	"github.com/postoffice-mail/postoffice/internal/sasl"
	"github.com/postoffice-mail/postoffice/internal/store"
	"github.com/postoffice-mail/postoffice/internal/store/maildir"
	"github.com/postoffice-mail/postoffice/internal/store/mbox"
	"github.com/postoffice-mail/postoffice/internal/tlsconf"
	"github.com/postoffice-mail/postoffice/pop3server"
)

// app is the one place where the commands serve, check, deliver and
// mailbox turn a configuration into components, so that they cannot drift
// apart: check builds exactly what serve builds (and so refuses what serve
// would refuse), deliver and mailbox open the store serve serves.
//
// It works in three steps:
//
//   - build makes the parts a command asks for, with the parts they need
//     first, in the order of the parts table: user database, store, TLS,
//     server identity, OAuth verifier, metrics, SASL mechanisms, limiters,
//     LMTP server, POP3 engine. Nothing is bound and no privilege changes.
//   - bind (serve only, serve.go) takes the listeners: systemd's sockets or
//     the configured addresses.
//   - run (serve only) switches to [server] user, serves, reloads on SIGHUP
//     and shuts down.
//
// Whatever must be released (sockets, listeners) is pushed on a stack of
// closers that close releases in reverse order, so each command defers
// one close instead of a chain of cleanups on every error path.
type app struct {
	cfg   *config.Config
	log   *slog.Logger
	level *slog.LevelVar
	// check is postoffice check's mode: build takes no systemd socket and
	// goes on after a failed part, building every part whose inputs were
	// built, so that one run reports every problem.
	check bool

	closers []func()

	// What build made, each nil until its part is built (and nil when the
	// configuration leaves the part out: no TLS, no LMTP, no metrics).
	socks    []privdrop.Socket // passed by systemd (serve only)
	users    auth.SCRAMDecoyDB // *passwdfile.DB or *sqlauth.DB
	store    store.Store
	tls      *tlsconf.Manager
	runAs    *identity // [server] user and group; nil when unset
	oauth    oauth.Verifier
	metrics  *metrics.Metrics
	krb      *kerberos.Acceptor // nil without [kerberos] keytab
	krbMap   *kerberos.Mapper
	mechs    *sasl.Mechanisms
	loginLim *ratelimit.Limiter
	connLim  *netlimit.Limiter
	lmtp     *lmtp.Server
	pop3     *pop3server.Server
	backend  *backend.Backend
	ledger   *ledger.Ledger     // devices, expiry and history (expire.go)
	pop3Opts pop3server.Options // what pop3 was made with, for KPOP's engine
	kpop     *kpop.Server       // nil without [kpop] listen
	pop2     *pop2.Server       // nil without [pop2] listen
}

// identity is the uid and gid of [server] user and group.
type identity struct{ uid, gid int }

// newApp returns a builder for cfg that logs to logw at cfg's log level.
func newApp(cfg *config.Config, logw io.Writer) *app {
	level := new(slog.LevelVar)
	return &app{cfg: cfg, log: newLogger(cfg.Log, logw, level), level: level}
}

// onClose pushes f on the stack of closers.
func (a *app) onClose(f func()) { a.closers = append(a.closers, f) }

// close runs the closers in reverse order of their pushing, once.
func (a *app) close() {
	for i := len(a.closers) - 1; i >= 0; i-- {
		a.closers[i]()
	}
	a.closers = nil
}

// part is one component build can make.
type part int

const (
	partUsers part = iota
	partStore
	partTLS
	partRunAs
	partOAuth
	partKerberos
	partMetrics
	partSASL
	partLimits
	partLMTP
	partPOP3
	partKPOP
	partPOP2
	numParts
)

// parts is the build table, in dependency order: every part's needs come
// before it (TestPartsOrdered checks this).
var parts = [numParts]struct {
	name  string
	needs []part
	build func(*app) error
}{
	partUsers:    {"users", nil, (*app).buildUsers},
	partStore:    {"store", []part{partUsers}, (*app).buildStore},
	partTLS:      {"tls", nil, (*app).buildTLS},
	partRunAs:    {"server", nil, (*app).buildRunAs},
	partOAuth:    {"oauth", nil, (*app).buildOAuth},
	partKerberos: {"kerberos", nil, (*app).buildKerberos},
	partMetrics:  {"metrics", []part{partTLS}, (*app).buildMetrics},
	partSASL:     {"sasl", []part{partUsers, partTLS, partOAuth, partKerberos}, (*app).buildSASL},
	partLimits:   {"limits", []part{partMetrics}, (*app).buildLimits},
	partLMTP:     {"lmtp", []part{partUsers, partStore, partMetrics}, (*app).buildLMTP},
	partPOP3:     {"pop3", []part{partUsers, partStore, partTLS, partSASL, partLimits, partMetrics}, (*app).buildPOP3},
	partKPOP:     {"kpop", []part{partKerberos, partPOP3}, (*app).buildKPOP},
	partPOP2:     {"pop2", []part{partPOP3}, (*app).buildPOP2},
}

// allParts is what serve runs and check checks.
var allParts = []part{partRunAs, partLMTP, partPOP3, partKPOP, partPOP2}

// buildError is a part that failed to build; its text is the cause's.
type buildError struct {
	part part
	err  error
}

func (e *buildError) Error() string { return e.err.Error() }
func (e *buildError) Unwrap() error { return e.err }

// build makes the goals and every part they need, in table order. It
// returns nil when all were built. Outside check mode it stops at the
// first failure and returns it alone; in check mode it returns every
// failure, skipping the parts whose inputs failed. Each error is a
// *buildError naming its part.
func (a *app) build(goals ...part) []error {
	var want, failed [numParts]bool
	var mark func(p part)
	mark = func(p part) {
		if want[p] {
			return
		}
		want[p] = true
		for _, n := range parts[p].needs {
			mark(n)
		}
	}
	for _, g := range goals {
		mark(g)
	}
	var errs []error
	for p := range numParts {
		if !want[p] {
			continue
		}
		skip := false
		for _, n := range parts[p].needs {
			skip = skip || failed[n]
		}
		if skip {
			failed[p] = true
			continue
		}
		if err := parts[p].build(a); err != nil {
			failed[p] = true
			errs = append(errs, &buildError{p, err})
			if !a.check {
				return errs
			}
		}
	}
	return errs
}

// buildUsers opens [auth] passwd_file, or the SQL user database of
// auth.database (pg.go).
func (a *app) buildUsers() error {
	if a.cfg.Auth.Database != "" {
		return a.buildSQLUsers()
	}
	db, err := passwdfile.Open(a.cfg.Auth.PasswdFile, passwdfile.Options{
		DefaultScheme: a.cfg.Auth.DefaultScheme,
		Logger:        a.log,
	})
	if err != nil {
		return fmt.Errorf("auth.passwd_file: %w", err)
	}
	a.users = db
	return nil
}

// buildStore makes the store of [mail] location. It is the only place a
// command makes its store, so serve, LMTP, deliver, check and mailbox see
// the same maildrops with the same options (maildirOptions, mboxOptions).
// A PostgreSQL location builds the PostgreSQL store (pg.go).
func (a *app) buildStore() error {
	if dsn, ok := a.cfg.Mail.PostgresDSN(); ok {
		return a.buildPGStore(dsn)
	}
	var st store.Store
	var err error
	if a.cfg.Mail.Store() == "mbox" {
		st, err = mbox.New(mboxOptions(a.cfg, a.users, a.log))
	} else {
		st, err = maildir.New(maildirOptions(a.cfg, a.users, a.log))
	}
	if err != nil {
		return fmt.Errorf("mail.location: %w", err)
	}
	a.store = st
	return nil
}

// buildTLS loads [tls]: the certificates (each logged with its expiry by
// tlsconf) and the client CA. No certificate configured builds nothing.
func (a *app) buildTLS() error {
	pairs := a.cfg.TLS.Pairs()
	if pairs == nil {
		return nil
	}
	tp := make([]tlsconf.Pair, len(pairs))
	for i, p := range pairs {
		tp[i] = tlsconf.Pair(p)
	}
	m, err := tlsconf.New(tlsconf.Options{Pairs: tp, ClientCAFile: a.cfg.TLS.ClientCA, Logger: a.log})
	if err != nil {
		return err
	}
	a.tls = m
	return nil
}

// buildRunAs resolves [server] user and group, so that a name that does not
// exist, or one that is root under another name, fails before any port is
// bound (the switch itself happens after binding, in run).
func (a *app) buildRunAs() error {
	s := a.cfg.Server
	if s.User == "" {
		return nil
	}
	uid, gid, err := lookupIDs(s.User, s.Group)
	if err != nil {
		return fmt.Errorf("server.user: %w", err)
	}
	if uid == 0 || gid == 0 {
		// The config refuses the names root and 0; this catches aliases.
		return fmt.Errorf("server.user: %s:%s is uid %d, gid %d: must not be root", s.User, s.Group, uid, gid)
	}
	a.runAs = &identity{uid, gid}
	return nil
}

// buildOAuth builds the token verifier of [auth.oauth], none when the table
// is absent: the JWKS file is loaded or the client secret read, and every
// check the table configures (issuer, audience, accepted_client_ids,
// username_claim) reaches the verifier.
func (a *app) buildOAuth() error {
	o := a.cfg.Auth.OAuth
	if o == nil {
		return nil
	}
	if o.JWKSFile != "" {
		v, err := oauth.NewJWT(oauth.JWTOptions{
			JWKSFile: o.JWKSFile, Issuer: o.Issuer, Audience: o.Audience,
			ClientIDs: o.ClientIDs, UsernameClaim: o.UsernameClaim, Logger: a.log,
		})
		if err != nil {
			return err
		}
		a.oauth = v
		return nil
	}
	secret, err := os.ReadFile(o.ClientSecretFile)
	if err != nil {
		return fmt.Errorf("auth.oauth.client_secret_file: %w", err)
	}
	v, err := oauth.NewIntrospection(oauth.IntrospectionOptions{
		URL: o.IntrospectionURL, ClientID: o.ClientID,
		ClientSecret: strings.TrimSpace(string(secret)),
		Issuer:       o.Issuer, Audience: o.Audience, ClientIDs: o.ClientIDs,
		UsernameClaim: o.UsernameClaim,
	})
	if err != nil {
		return err
	}
	a.oauth = v
	return nil
}

// buildMetrics makes the Prometheus registry when [metrics] listen is set
// or systemd passed a "metrics" socket.
func (a *app) buildMetrics() error {
	if a.cfg.Metrics.Listen == "" && len(privdrop.Named(a.socks, socketMetrics)) == 0 {
		return nil
	}
	a.metrics = metrics.New()
	if a.tls != nil {
		a.metrics.WatchCertificates(a.tls)
	}
	return nil
}

// buildSASL makes the SASL mechanism table from [auth] and [auth.oauth].
func (a *app) buildSASL() error {
	// Options.Secret is left nil: the decoy SCRAM salts of unknown users are
	// keyed with a random key of this process, which nobody else can compute
	// (see sasl.Options.Secret for why that beats a key that survives a
	// restart).
	opts := sasl.Options{
		Users:            a.users,
		OAuth:            a.oauth,
		Enabled:          a.cfg.Auth.Mechanisms,
		ExternalUsername: a.cfg.Auth.ExternalUsername,
		GSSAPI:           a.krb,
		GSSAPIMapper:     a.krbMap,
		Logger:           a.log,
	}
	if tlsm := a.tls; tlsm != nil {
		opts.ServerCertificate = func(cs *tls.ConnectionState) *x509.Certificate { return tlsm.Leaf(cs.ServerName) }
	}
	if h, err := os.Hostname(); err == nil {
		opts.Hostname = h
	}
	m, err := sasl.New(opts)
	if err != nil {
		return err
	}
	a.mechs = m
	return nil
}

// buildLimits makes the login penalty ([auth] penalty keys) and the
// connection limits with the PROXY protocol policy ([limits]).
func (a *app) buildLimits() error {
	lim, err := newLoginLimiter(a.cfg)
	if err != nil {
		return err
	}
	conn, err := newConnLimiter(a.cfg, a.log, a.metrics)
	if err != nil {
		return err
	}
	a.loginLim, a.connLim = lim, conn
	return nil
}

// buildLMTP makes the LMTP server when [lmtp] has a listener or systemd
// passed an "lmtp" socket.
//
// LMTP gets no connection limits and no PROXY protocol: its clients are
// the local MTA, which has its own concurrency limits, and refusing it
// would only defer mail.
func (a *app) buildLMTP() error {
	c := a.cfg.LMTP
	if len(c.Listen) == 0 && c.Socket == "" && len(privdrop.Named(a.socks, socketLMTP)) == 0 {
		return nil
	}
	var onDelivery func(string, int64, time.Duration)
	if a.metrics != nil {
		onDelivery = a.metrics.Delivery
	}
	drop, err := sdpsDrop(a.cfg)
	if err != nil {
		return err
	}
	srv, err := lmtp.New(lmtp.Options{
		OnDelivery:         onDelivery,
		Users:              a.users,
		Store:              a.store,
		Logger:             a.log,
		Hostname:           c.Hostname,
		MaxMessageSize:     c.MaxMessageSize,
		SpoolDir:           c.SpoolDir,
		Quota:              lmtp.Quota(a.cfg.Quota),
		RecipientDelimiter: c.RecipientDelimiter,
		Drop:               drop,
	})
	if err != nil {
		return err
	}
	a.lmtp = srv
	return nil
}

// buildPOP3 joins the user database and the store into the backend and
// makes the POP3 engine with [pop3], [limits] and the TLS configuration.
func (a *app) buildPOP3() error {
	cfg := a.cfg
	a.ledger = a.newLedger()
	bo := backend.Options{
		Ledger:     a.ledger,
		Policy:     policy(cfg),
		Users:      a.users,
		Store:      a.store,
		Logger:     a.log,
		LoginDelay: cfg.POP3.LoginDelay.Duration,
		APOP:       cfg.Auth.APOP,
		SASL:       a.mechs,
		// The [IN-USE] reply says when a held maildrop is released at the latest.
		IdleTimeout: cfg.POP3.IdleTimeout.Duration,
	}
	if err := legacyBackend(cfg, &bo); err != nil {
		return err
	}
	be, err := backend.New(bo)
	if err != nil {
		return err
	}
	opts := pop3server.Options{
		Backend:        be,
		Logger:         a.log,
		Greeting:       cfg.POP3.Greeting,
		IdleTimeout:    cfg.POP3.IdleTimeout.Duration,
		AuthFailDelay:  cfg.POP3.AuthFailDelay.Duration,
		MaxBadCommands: cfg.POP3.MaxBadCommands,
		LoginDelay:     cfg.POP3.LoginDelay.Duration,
		Expire:         cfg.ExpireCapa(),
		NoSendfile:     !cfg.POP3.Sendfile,

		AllowPlaintextAuth: cfg.Auth.AllowPlaintext,
	}
	if opts.AuthFailDelay == 0 {
		opts.AuthFailDelay = -1 // configured as "0s": no delay
	}
	setLimits(&opts, cfg, a.loginLim, a.metrics)
	if err := legacyEngine(cfg, &opts); err != nil {
		return err
	}
	if a.metrics != nil {
		opts.Observer = a.metrics
	}
	if a.tls != nil {
		// Implicit TLS listeners and STLS on the plain ones share it; it
		// follows SIGHUP reloads without being rebuilt.
		opts.TLSConfig = a.tls.Config()
	}
	if err := a.addPOP4(&opts); err != nil {
		return err
	}
	srv, err := pop3server.New(opts)
	if err != nil {
		return err
	}
	a.pop3, a.backend, a.pop3Opts = srv, be, opts
	return nil
}

// buildKerberos loads [kerberos] keytab and checks that it holds a key of
// the service principal, and makes the principal mapping. Without a keytab
// it builds nothing: GSSAPI is not offered and KPOP cannot run.
func (a *app) buildKerberos() error {
	k := a.cfg.Kerberos
	if k.Keytab == "" {
		return nil
	}
	acc, err := kerberos.NewAcceptor(kerberos.AcceptorOptions{
		Keytab: k.Keytab, Service: k.Service, Realm: k.Realm, Hostname: k.Hostname,
		MaxClockSkew: k.ClockSkew.Duration,
	})
	if err != nil {
		return fmt.Errorf("kerberos.keytab: %w", err)
	}
	m, err := kerberos.NewMapper(kerberos.MapperOptions{
		Mode: k.Mapping, Realm: acc.Realm(), File: k.MapFile, Authorize: k.Authorize,
	})
	if err != nil {
		return fmt.Errorf("kerberos.mapping: %w", err)
	}
	a.log.Info("kerberos service principals", "principals", strings.Join(acc.Principals(), " "))
	a.krb, a.krbMap = acc, m
	return nil
}

// buildKPOP makes the KPOP server of [kpop] listen, on the POP3 engine's
// options and backend.
func (a *app) buildKPOP() error {
	if len(a.cfg.KPOP.Listen) == 0 {
		return nil
	}
	if a.krb == nil {
		return fmt.Errorf("kpop.listen: needs kerberos.keytab")
	}
	srv, err := kpop.New(kpop.Options{
		Acceptor: a.krb, Mapper: a.krbMap, Opener: a.backend, POP3: a.pop3Opts, Logger: a.log,
	})
	if err != nil {
		return err
	}
	a.kpop = srv
	return nil
}
