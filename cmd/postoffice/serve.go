package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/postoffice-mail/postoffice/internal/auth"
	"github.com/postoffice-mail/postoffice/internal/auth/oauth"
	"github.com/postoffice-mail/postoffice/internal/auth/passwdfile"
	"github.com/postoffice-mail/postoffice/internal/backend"
	"github.com/postoffice-mail/postoffice/internal/config"
	"github.com/postoffice-mail/postoffice/internal/lmtp"
	"github.com/postoffice-mail/postoffice/internal/metrics"
	"github.com/postoffice-mail/postoffice/internal/netlimit"
	"github.com/postoffice-mail/postoffice/internal/privdrop"
	"github.com/postoffice-mail/postoffice/internal/ratelimit"
	"github.com/postoffice-mail/postoffice/internal/sasl"
	"github.com/postoffice-mail/postoffice/internal/store"
	"github.com/postoffice-mail/postoffice/internal/store/maildir"
	"github.com/postoffice-mail/postoffice/internal/tlsconf"
	"github.com/postoffice-mail/postoffice/pop3server"
)

func runServe(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("serve", stderr)
	cfgPath := fs.String("config", "", "configuration `file` (TOML)")
	dev := fs.Bool("dev", false, "run on loopback ports with a demo user and sample mail in --data")
	dataDir := fs.String("data", "postoffice-dev", "data `directory` for --dev (created if missing)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError{"unexpected arguments: " + strings.Join(fs.Args(), " ")}
	}
	var cfg *config.Config
	var err error
	var ready func()
	switch {
	case *dev && *cfgPath != "":
		return usageError{"--dev and --config exclude each other"}
	case *dev:
		var banner string
		cfg, banner, err = setupDev(*dataDir)
		ready = func() { io.WriteString(stdout, banner) }
	case *cfgPath != "":
		cfg, err = config.Load(*cfgPath)
	default:
		return usageError{"need --config FILE (or --dev for a local trial)"}
	}
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return serve(ctx, cfg, stderr, ready)
}

// newLogger returns the server's logger, its level in level (set from
// cfg, changed by a reload).
func newLogger(cfg config.Log, w io.Writer, level *slog.LevelVar) *slog.Logger {
	setLevel(level, cfg.Level)
	hopts := &slog.HandlerOptions{Level: level}
	if cfg.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, hopts))
	}
	return slog.New(slog.NewTextHandler(w, hopts))
}

// setLevel sets lv from a validated log.level.
func setLevel(lv *slog.LevelVar, name string) {
	var l slog.Level
	l.UnmarshalText([]byte(name))
	lv.Set(l)
}

// serve runs the server until ctx is done, then shuts it down gracefully.
// ready, if not nil, is called once every listener is bound and served
// (after the "listening" log lines): what it prints can be acted on at
// once.
func serve(ctx context.Context, cfg *config.Config, logw io.Writer, ready func()) error {
	level := new(slog.LevelVar)
	log := newLogger(cfg.Log, logw, level)
	// Take systemd's sockets first, so that they are closed on every
	// error below and the LISTEN_* variables reach no child process.
	socks, err := activatedSockets(cfg)
	if err != nil {
		return err
	}
	var passed []net.Listener
	for _, s := range socks {
		passed = append(passed, s.Listener)
	}
	closePassed := true
	defer func() {
		if closePassed {
			closeListeners(passed)
		}
	}()
	users, err := passwdfile.Open(cfg.Auth.PasswdFile, passwdfile.Options{
		DefaultScheme: cfg.Auth.DefaultScheme,
		Logger:        log,
	})
	if err != nil {
		return err
	}
	st, err := maildir.New(maildirOptions(cfg, users, log))
	if err != nil {
		return err
	}
	var tlsm *tlsconf.Manager
	if pairs := cfg.TLS.Pairs(); pairs != nil {
		tp := make([]tlsconf.Pair, len(pairs))
		for i, p := range pairs {
			tp[i] = tlsconf.Pair(p)
		}
		tlsm, err = tlsconf.New(tlsconf.Options{Pairs: tp, ClientCAFile: cfg.TLS.ClientCA, Logger: log})
		if err != nil {
			return err
		}
		logExpiry(log, tlsm)
	}
	var met *metrics.Metrics
	if cfg.Metrics.Listen != "" || len(privdrop.Named(socks, socketMetrics)) > 0 {
		met = metrics.New()
		if tlsm != nil {
			met.WatchCertificates(tlsm)
		}
	}
	mechs, err := newMechanisms(cfg, users, tlsm, log)
	if err != nil {
		return err
	}
	be, err := backend.New(backend.Options{
		Users:      users,
		Store:      st,
		Logger:     log,
		LoginDelay: cfg.POP3.LoginDelay.Duration,
		APOP:       cfg.Auth.APOP,
		SASL:       mechs,
	})
	if err != nil {
		return err
	}
	opts := pop3server.Options{
		Backend:        be,
		Logger:         log,
		Greeting:       cfg.POP3.Greeting,
		IdleTimeout:    cfg.POP3.IdleTimeout.Duration,
		AuthFailDelay:  cfg.POP3.AuthFailDelay.Duration,
		MaxBadCommands: cfg.POP3.MaxBadCommands,
		LoginDelay:     cfg.POP3.LoginDelay.Duration,
		Expire:         cfg.POP3.Expire,

		AllowPlaintextAuth: cfg.Auth.AllowPlaintext,
	}
	if opts.AuthFailDelay == 0 {
		opts.AuthFailDelay = -1 // configured as "0s": no delay
	}
	loginLim, err := newLoginLimiter(cfg)
	if err != nil {
		return err
	}
	setLimits(&opts, cfg, loginLim, met)
	if met != nil {
		opts.Observer = met
	}
	raiseFileLimit(log, cfg.Limits.MaxConnections)
	connLim, err := newConnLimiter(cfg, log, met)
	if err != nil {
		return err
	}
	if tlsm != nil {
		// Implicit TLS listeners and STLS on the plain ones share it; it
		// follows SIGHUP reloads without being rebuilt.
		opts.TLSConfig = tlsm.Config()
	}
	srv, err := pop3server.New(opts)
	if err != nil {
		return err
	}

	// Bind everything before serving anything, so a bad address fails
	// fast; then switch user, then serve (docs/security.md, Privileges).
	type bound struct {
		l       net.Listener
		tls     bool
		systemd bool
	}
	var ls []bound
	closeAll := func() {
		for _, b := range ls {
			b.l.Close()
		}
	}
	bind := func(key, name string, addrs []string, tls bool) error {
		if act := privdrop.Named(socks, name); len(act) > 0 {
			for _, l := range act {
				ls = append(ls, bound{l, tls, true})
			}
			return nil
		}
		for _, a := range addrs {
			l, err := net.Listen("tcp", a)
			if err != nil {
				return fmt.Errorf("%s: %w", key, err)
			}
			ls = append(ls, bound{l, tls, false})
		}
		return nil
	}
	// On an error below, closing a passed socket twice (through ls and
	// the deferred closePassed) is harmless.
	if err := bind("pop3.listen", socketPOP3, cfg.POP3.Listen, false); err != nil {
		closeAll()
		return err
	}
	if err := bind("pop3.listen_tls", socketPOP3S, cfg.POP3.ListenTLS, true); err != nil {
		closeAll()
		return err
	}
	lsrv, lls, err := listenLMTP(cfg, log, users, st, met, privdrop.Named(socks, socketLMTP))
	if err != nil {
		closeAll()
		return err
	}
	mls, err := listenMetrics(cfg, met, privdrop.Named(socks, socketMetrics))
	if err != nil {
		closeAll()
		closeListeners(lls)
		return err
	}
	if err := dropPrivileges(cfg, log); err != nil {
		closeAll()
		closeListeners(lls)
		closeListeners(mls)
		return err
	}
	closePassed = false // the servers own them now
	errc := make(chan error, len(ls)+len(lls)+len(mls))
	for _, l := range lls {
		log.Info("lmtp listening", "addr", l.Addr().String())
		go func() { errc <- lsrv.Serve(l) }()
	}
	var msrv *http.Server
	if len(mls) > 0 {
		msrv = metricsServer(met, log)
		for _, l := range mls {
			log.Info("metrics listening", "addr", l.Addr().String())
			go func() {
				if err := msrv.Serve(l); err != http.ErrServerClosed {
					errc <- fmt.Errorf("metrics: %w", err)
				}
			}()
		}
		defer msrv.Close()
	}
	for _, b := range ls {
		// One connection limiter for every POP3 listener: it reads PROXY
		// headers and counts clients before the engine (and, on implicit
		// TLS, the handshake) sees them.
		l := connLim.Listen(b.l)
		log.Info("listening", "addr", b.l.Addr().String(), "tls", b.tls, "systemd", b.systemd)
		go func() {
			if b.tls {
				errc <- srv.ServeTLS(l)
			} else {
				errc <- srv.Serve(l)
			}
		}()
	}
	// The listeners are bound (connections queue in the kernel until
	// Accept) and served: a client may connect now.
	if ready != nil {
		ready()
	}
	// SIGHUP re-reads the certificates (the passwd-file reloads by
	// itself when it changes). Without this, SIGHUP would kill the server.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
wait:
	for {
		select {
		case <-ctx.Done():
			log.Info("shutting down")
			break wait
		case <-hup:
			log.Info("reloading")
			cfg = reloadConfig(cfg, log, level, connLim, loginLim, met)
			if tlsm != nil {
				if err := tlsm.Reload(); err != nil {
					log.Error("tls reload failed; keeping the previous certificates", "err", err)
				} else {
					logExpiry(log, tlsm)
				}
			}
		case err := <-errc:
			srv.Close()
			if lsrv != nil {
				lsrv.Close()
			}
			return err
		}
	}
	sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	lerrc := make(chan error, 1)
	go func() {
		if lsrv == nil {
			lerrc <- nil
			return
		}
		lerrc <- lsrv.Shutdown(sctx)
	}()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	if err := <-lerrc; err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	log.Info("stopped")
	return nil
}

// logExpiry logs each certificate's expiry, as a warning within 14 days.
func logExpiry(log *slog.Logger, m *tlsconf.Manager) {
	for _, e := range m.Expiry() {
		left := time.Until(e.NotAfter)
		attrs := []any{"file", e.CertFile, "names", strings.Join(e.Names, ","), "not_after", e.NotAfter.UTC().Format(time.RFC3339)}
		if left < 14*24*time.Hour {
			log.Warn("certificate expires soon", attrs...)
		} else {
			log.Info("certificate loaded", attrs...)
		}
	}
}

// newOAuthVerifier builds the token verifier of [auth.oauth], nil when the
// table is absent. serve and check both call it, so check refuses what
// serve would: every check the table configures (issuer, audience,
// accepted_client_ids, username_claim) reaches the verifier of either mode.
func newOAuthVerifier(cfg *config.Config, log *slog.Logger) (oauth.Verifier, error) {
	o := cfg.Auth.OAuth
	if o == nil {
		return nil, nil
	}
	if o.JWKSFile != "" {
		return oauth.NewJWT(oauth.JWTOptions{
			JWKSFile: o.JWKSFile, Issuer: o.Issuer, Audience: o.Audience,
			ClientIDs: o.ClientIDs, UsernameClaim: o.UsernameClaim, Logger: log,
		})
	}
	secret, err := os.ReadFile(o.ClientSecretFile)
	if err != nil {
		return nil, fmt.Errorf("auth.oauth.client_secret_file: %w", err)
	}
	return oauth.NewIntrospection(oauth.IntrospectionOptions{
		URL: o.IntrospectionURL, ClientID: o.ClientID,
		ClientSecret: strings.TrimSpace(string(secret)),
		Issuer:       o.Issuer, Audience: o.Audience, ClientIDs: o.ClientIDs,
		UsernameClaim: o.UsernameClaim,
	})
}

// newMechanisms builds the SASL mechanism table from [auth] and [auth.oauth].
func newMechanisms(cfg *config.Config, users auth.DB, tlsm *tlsconf.Manager, log *slog.Logger) (*sasl.Mechanisms, error) {
	verifier, err := newOAuthVerifier(cfg, log)
	if err != nil {
		return nil, err
	}
	// Options.Secret is left nil: the decoy SCRAM salts of unknown users are
	// keyed with a random key of this process, which nobody else can compute
	// (see sasl.Options.Secret for why that beats a key that survives a
	// restart).
	opts := sasl.Options{
		Users:            users,
		OAuth:            verifier,
		Enabled:          cfg.Auth.Mechanisms,
		ExternalUsername: cfg.Auth.ExternalUsername,
		Logger:           log,
	}
	if tlsm != nil {
		opts.ServerCertificate = func(cs *tls.ConnectionState) *x509.Certificate { return tlsm.Leaf(cs.ServerName) }
	}
	if h, err := os.Hostname(); err == nil {
		opts.Hostname = h
	}
	return sasl.New(opts)
}

// listenLMTP binds the [lmtp] listeners (TCP addresses and the unix socket)
// and returns the LMTP server for them; none configured gives nil, nil, nil.
// Sockets passed by systemd (activated) replace the configured ones; on
// error they are closed too.
//
// LMTP gets no connection limits and no PROXY protocol: its clients are
// the local MTA, which has its own concurrency limits, and refusing it
// would only defer mail.
func listenLMTP(cfg *config.Config, log *slog.Logger, users auth.DB, st store.Store, met *metrics.Metrics, activated []net.Listener) (*lmtp.Server, []net.Listener, error) {
	c := cfg.LMTP
	if len(c.Listen) == 0 && c.Socket == "" && len(activated) == 0 {
		return nil, nil, nil
	}
	var onDelivery func(string, int64, time.Duration)
	if met != nil {
		onDelivery = met.Delivery
	}
	srv, err := lmtp.New(lmtp.Options{
		OnDelivery:         onDelivery,
		Users:              users,
		Store:              st,
		Logger:             log,
		Hostname:           c.Hostname,
		MaxMessageSize:     c.MaxMessageSize,
		SpoolDir:           c.SpoolDir,
		Quota:              lmtp.Quota(cfg.Quota),
		RecipientDelimiter: c.RecipientDelimiter,
	})
	if err != nil {
		closeListeners(activated)
		return nil, nil, err
	}
	if len(activated) > 0 {
		return srv, activated, nil
	}
	var ls []net.Listener
	fail := func(err error) (*lmtp.Server, []net.Listener, error) {
		for _, l := range ls {
			l.Close()
		}
		return nil, nil, err
	}
	for _, a := range c.Listen {
		l, err := net.Listen("tcp", a)
		if err != nil {
			return fail(fmt.Errorf("lmtp.listen: %w", err))
		}
		ls = append(ls, l)
	}
	if c.Socket != "" {
		l, err := lmtp.ListenUnix(c.Socket, c.SocketPerm())
		if err != nil {
			return fail(fmt.Errorf("lmtp.socket: %w", err))
		}
		ls = append(ls, l)
		if err := chownToServerUser(cfg, c.Socket); err != nil {
			return fail(fmt.Errorf("lmtp.socket: %w", err))
		}
	}
	return srv, ls, nil
}

// listenMetrics binds [metrics] listen, or takes systemd's "metrics"
// socket; none when metrics are off.
func listenMetrics(cfg *config.Config, met *metrics.Metrics, activated []net.Listener) ([]net.Listener, error) {
	if met == nil {
		return nil, nil
	}
	if len(activated) > 0 {
		return activated, nil
	}
	l, err := net.Listen("tcp", cfg.Metrics.Listen)
	if err != nil {
		return nil, fmt.Errorf("metrics.listen: %w", err)
	}
	return []net.Listener{l}, nil
}

// metricsServer serves GET /metrics, with timeouts so that a stuck
// scraper cannot pile up connections.
func metricsServer(met *metrics.Metrics, log *slog.Logger) *http.Server {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", met.Handler())
	return &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
}

// reloadConfig reads the config file again (SIGHUP) and applies what a
// running server can change (config.Reloaded): the log level, the
// connection caps, trusted_networks and the login penalty's delays and
// bans. A file that does not load changes nothing. It returns the
// configuration now in force.
func reloadConfig(cfg *config.Config, log *slog.Logger, level *slog.LevelVar, connLim *netlimit.Limiter, loginLim *ratelimit.Limiter, met *metrics.Metrics) *config.Config {
	if cfg.Path() == "" {
		return cfg // serve --dev: nothing to read again
	}
	failed := func(err error) *config.Config {
		log.Error("config reload failed; keeping the running configuration", "err", err)
		if met != nil {
			met.ConfigReloaded(false)
		}
		return cfg
	}
	next, err := config.Load(cfg.Path())
	if err != nil {
		return failed(err)
	}
	merged, restart := config.Reloaded(cfg, next)
	l := merged.Limits
	// SetPenalty and SetLimits refuse only negative values, which the
	// config's validation has ruled out.
	if loginLim != nil {
		if err := loginLim.SetPenalty(loginLimiterOptions(merged)); err != nil {
			return failed(err)
		}
	}
	if err := connLim.SetLimits(l.MaxConnections, l.MaxConnectionsPerIP, l.Trusted()); err != nil {
		return failed(err)
	}
	if loginLim != nil {
		loginLim.SetTrusted(l.Trusted())
	}
	if met != nil {
		met.ConfigReloaded(true)
	}
	setLevel(level, merged.Log.Level)
	if len(restart) > 0 {
		log.Warn("config changes that need a restart were not applied", "tables", strings.Join(restart, ","))
	}
	log.Info("config reloaded", "file", cfg.Path(), "max_connections", l.MaxConnections,
		"max_connections_per_ip", l.MaxConnectionsPerIP, "trusted_networks", strings.Join(l.TrustedNetworks, ","), "log_level", merged.Log.Level)
	return merged
}
