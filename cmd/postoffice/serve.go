package main

import (
	"context"
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

	"github.com/postoffice-mail/postoffice/internal/config"
	"github.com/postoffice-mail/postoffice/internal/lmtp"
	"github.com/postoffice-mail/postoffice/internal/metrics"
	"github.com/postoffice-mail/postoffice/internal/privdrop"
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
	a := newApp(cfg, logw)
	defer a.close()
	// Take systemd's sockets first, so that they are closed on every
	// error below and the LISTEN_* variables reach no child process.
	if err := a.takeSockets(); err != nil {
		return err
	}
	if errs := a.build(allParts...); errs != nil {
		return errs[0]
	}
	// Bind everything before serving anything, so a bad address fails
	// fast; then switch user, then serve (docs/security.md, Privileges).
	b, err := a.bind()
	if err != nil {
		return err
	}
	return a.run(ctx, b, ready)
}

// takeSockets takes the sockets systemd passed, if any; they are closed
// with the app unless a server has taken them over (closing one twice is
// harmless).
func (a *app) takeSockets() error {
	socks, err := activatedSockets(a.cfg)
	if err != nil {
		return err
	}
	a.socks = socks
	a.onClose(func() {
		for _, s := range socks {
			s.Listener.Close()
		}
	})
	return nil
}

// bound is one POP3 listener.
type bound struct {
	l       net.Listener
	tls     bool
	systemd bool
}

// listeners are what bind took.
type listeners struct {
	pop3    []bound
	lmtp    []net.Listener
	metrics []net.Listener
	kpop    []net.Listener
	pop2    []net.Listener
}

// bind takes a listener for every configured address or, in its place,
// the systemd socket of its kind. Every listener is closed with the app.
func (a *app) bind() (*listeners, error) {
	cfg := a.cfg
	b := &listeners{}
	listen := func(network, key, addr string) (net.Listener, error) {
		l, err := net.Listen(network, addr)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", key, err)
		}
		a.onClose(func() { l.Close() })
		return l, nil
	}
	pop3 := func(key, name string, addrs []string, tls bool) error {
		if act := privdrop.Named(a.socks, name); len(act) > 0 {
			for _, l := range act {
				b.pop3 = append(b.pop3, bound{l, tls, true})
			}
			return nil
		}
		for _, addr := range addrs {
			l, err := listen("tcp", key, addr)
			if err != nil {
				return err
			}
			b.pop3 = append(b.pop3, bound{l, tls, false})
		}
		return nil
	}
	if err := pop3("pop3.listen", socketPOP3, cfg.POP3.Listen, false); err != nil {
		return nil, err
	}
	if err := pop3("pop3.listen_tls", socketPOP3S, cfg.POP3.ListenTLS, true); err != nil {
		return nil, err
	}
	if a.lmtp != nil {
		if act := privdrop.Named(a.socks, socketLMTP); len(act) > 0 {
			b.lmtp = act
		} else {
			for _, addr := range cfg.LMTP.Listen {
				l, err := listen("tcp", "lmtp.listen", addr)
				if err != nil {
					return nil, err
				}
				b.lmtp = append(b.lmtp, l)
			}
			if sock := cfg.LMTP.Socket; sock != "" {
				l, err := lmtp.ListenUnix(sock, cfg.LMTP.SocketPerm())
				if err != nil {
					return nil, fmt.Errorf("lmtp.socket: %w", err)
				}
				a.onClose(func() { l.Close() })
				b.lmtp = append(b.lmtp, l)
				if err := a.chownToServerUser(sock); err != nil {
					return nil, fmt.Errorf("lmtp.socket: %w", err)
				}
			}
		}
	}
	if a.kpop != nil {
		for _, addr := range cfg.KPOP.Listen {
			l, err := listen("tcp", "kpop.listen", addr)
			if err != nil {
				return nil, err
			}
			b.kpop = append(b.kpop, l)
		}
	}
	if a.pop2 != nil {
		for _, addr := range cfg.POP2.Listen {
			l, err := listen("tcp", "pop2.listen", addr)
			if err != nil {
				return nil, err
			}
			b.pop2 = append(b.pop2, l)
		}
	}
	if a.metrics != nil {
		if act := privdrop.Named(a.socks, socketMetrics); len(act) > 0 {
			b.metrics = act
		} else {
			l, err := listen("tcp", "metrics.listen", cfg.Metrics.Listen)
			if err != nil {
				return nil, err
			}
			b.metrics = []net.Listener{l}
		}
	}
	return b, nil
}

// run switches to [server] user, serves b until ctx is done or a listener
// fails, re-reads what it can on SIGHUP, and then shuts down: new
// connections are refused at once, sessions get 30 seconds to end.
func (a *app) run(ctx context.Context, b *listeners, ready func()) error {
	log := a.log
	raiseFileLimit(log, a.cfg.Limits.MaxConnections)
	if err := a.dropPrivileges(); err != nil {
		return err
	}
	srv, lsrv := a.pop3, a.lmtp
	errc := make(chan error, len(b.pop3)+len(b.lmtp)+len(b.metrics)+len(b.kpop)+len(b.pop2))
	p2srv := a.pop2
	for _, l := range b.pop2 {
		pl := a.connLim.Listen(l)
		log.Info("pop2 listening", "addr", l.Addr().String())
		go func() { errc <- p2srv.Serve(pl) }()
	}
	ksrv := a.kpop
	for _, l := range b.kpop {
		// Through the same connection limiter as POP3 (limits and the
		// PROXY protocol apply alike).
		kl := a.connLim.Listen(l)
		log.Info("kpop listening", "addr", l.Addr().String())
		go func() { errc <- ksrv.Serve(kl) }()
	}
	for _, l := range b.lmtp {
		log.Info("lmtp listening", "addr", l.Addr().String())
		go func() { errc <- lsrv.Serve(l) }()
	}
	if len(b.metrics) > 0 {
		msrv := metricsServer(a.metrics, log)
		for _, l := range b.metrics {
			log.Info("metrics listening", "addr", l.Addr().String())
			go func() {
				if err := msrv.Serve(l); err != http.ErrServerClosed {
					errc <- fmt.Errorf("metrics: %w", err)
				}
			}()
		}
		a.onClose(func() { msrv.Close() })
	}
	for _, p := range b.pop3 {
		// One connection limiter for every POP3 listener: it reads PROXY
		// headers and counts clients before the engine (and, on implicit
		// TLS, the handshake) sees them.
		l := a.connLim.Listen(p.l)
		log.Info("listening", "addr", p.l.Addr().String(), "tls", p.tls, "systemd", p.systemd)
		go func() {
			if p.tls {
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
	// SIGHUP re-reads the config and the certificates (the passwd-file
	// reloads by itself when it changes). Without this, SIGHUP would kill
	// the server.
	a.startSweeper(ctx) // expire.go
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
			a.reloadConfig()
			if a.tls != nil {
				// tlsconf logs each certificate's expiry on success.
				if err := a.tls.Reload(); err != nil {
					log.Error("tls reload failed; keeping the previous certificates", "err", err)
				}
			}
		case err := <-errc:
			srv.Close()
			if lsrv != nil {
				lsrv.Close()
			}
			if ksrv != nil {
				ksrv.Close()
			}
			if p2srv != nil {
				p2srv.Close()
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
	kerrc := make(chan error, 1)
	go func() {
		if ksrv == nil {
			kerrc <- nil
			return
		}
		kerrc <- ksrv.Shutdown(sctx)
	}()
	if p2srv != nil {
		// POP2/POP1 sessions that did not QUIT delete nothing.
		p2srv.Shutdown(sctx)
	}
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	if err := <-kerrc; err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	if err := <-lerrc; err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	log.Info("stopped")
	return nil
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
// bans. A file that does not load changes nothing. a.cfg becomes the
// configuration now in force.
func (a *app) reloadConfig() {
	cfg, log, met := a.cfg, a.log, a.metrics
	if cfg.Path() == "" {
		return // serve --dev: nothing to read again
	}
	failed := func(err error) {
		log.Error("config reload failed; keeping the running configuration", "err", err)
		if met != nil {
			met.ConfigReloaded(false)
		}
	}
	next, err := config.Load(cfg.Path())
	if err != nil {
		failed(err)
		return
	}
	merged, restart := config.Reloaded(cfg, next)
	l := merged.Limits
	// SetPenalty and SetLimits refuse only negative values, which the
	// config's validation has ruled out.
	if a.loginLim != nil {
		if err := a.loginLim.SetPenalty(loginLimiterOptions(merged)); err != nil {
			failed(err)
			return
		}
	}
	if err := a.connLim.SetLimits(l.MaxConnections, l.MaxConnectionsPerIP, l.Trusted()); err != nil {
		failed(err)
		return
	}
	if a.loginLim != nil {
		a.loginLim.SetTrusted(l.Trusted())
	}
	if met != nil {
		met.ConfigReloaded(true)
	}
	setLevel(a.level, merged.Log.Level)
	if len(restart) > 0 {
		log.Warn("config changes that need a restart were not applied", "tables", strings.Join(restart, ","))
	}
	log.Info("config reloaded", "file", cfg.Path(), "max_connections", l.MaxConnections,
		"max_connections_per_ip", l.MaxConnectionsPerIP, "trusted_networks", strings.Join(l.TrustedNetworks, ","), "log_level", merged.Log.Level)
	a.cfg = merged
}
