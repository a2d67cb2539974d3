package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/postoffice-mail/postoffice/internal/auth"
	"github.com/postoffice-mail/postoffice/internal/auth/passwdfile"
	"github.com/postoffice-mail/postoffice/internal/backend"
	"github.com/postoffice-mail/postoffice/internal/config"
	"github.com/postoffice-mail/postoffice/internal/lmtp"
	"github.com/postoffice-mail/postoffice/internal/store"
	"github.com/postoffice-mail/postoffice/internal/store/maildir"
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
	switch {
	case *dev && *cfgPath != "":
		return usageError{"--dev and --config exclude each other"}
	case *dev:
		cfg, err = setupDev(*dataDir, stdout)
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
	return serve(ctx, cfg, stderr)
}

func newLogger(cfg config.Log, w io.Writer) *slog.Logger {
	var level slog.Level
	level.UnmarshalText([]byte(cfg.Level))
	hopts := &slog.HandlerOptions{Level: level}
	if cfg.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, hopts))
	}
	return slog.New(slog.NewTextHandler(w, hopts))
}

// serve runs the server until ctx is done, then shuts it down gracefully.
func serve(ctx context.Context, cfg *config.Config, logw io.Writer) error {
	log := newLogger(cfg.Log, logw)
	users, err := passwdfile.Open(cfg.Auth.PasswdFile, passwdfile.Options{
		DefaultScheme: cfg.Auth.DefaultScheme,
		Logger:        log,
	})
	if err != nil {
		return err
	}
	st, err := maildir.New(maildir.Options{Location: cfg.Mail.MaildirPath(), Logger: log})
	if err != nil {
		return err
	}
	be, err := backend.New(backend.Options{
		Users:      users,
		Store:      st,
		Logger:     log,
		LoginDelay: cfg.POP3.LoginDelay.Duration,
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
	}
	if opts.AuthFailDelay == 0 {
		opts.AuthFailDelay = -1 // configured as "0s": no delay
	}
	if len(cfg.POP3.ListenTLS) > 0 {
		cert, err := tls.LoadX509KeyPair(cfg.TLS.Cert, cfg.TLS.Key)
		if err != nil {
			return fmt.Errorf("tls: loading tls.cert and tls.key: %w", err)
		}
		opts.TLSConfig = &tls.Config{
			Certificates: []tls.Certificate{cert},
			MinVersion:   tls.VersionTLS12,
		}
	}
	srv, err := pop3server.New(opts)
	if err != nil {
		return err
	}

	// Bind everything before serving anything, so a bad address fails fast.
	type bound struct {
		l   net.Listener
		tls bool
	}
	var ls []bound
	closeAll := func() {
		for _, b := range ls {
			b.l.Close()
		}
	}
	for _, a := range cfg.POP3.Listen {
		l, err := net.Listen("tcp", a)
		if err != nil {
			closeAll()
			return fmt.Errorf("pop3.listen: %w", err)
		}
		ls = append(ls, bound{l, false})
	}
	for _, a := range cfg.POP3.ListenTLS {
		l, err := net.Listen("tcp", a)
		if err != nil {
			closeAll()
			return fmt.Errorf("pop3.listen_tls: %w", err)
		}
		ls = append(ls, bound{l, true})
	}
	lsrv, lls, err := listenLMTP(cfg, log, users, st)
	if err != nil {
		closeAll()
		return err
	}
	errc := make(chan error, len(ls)+len(lls))
	for _, l := range lls {
		log.Info("lmtp listening", "addr", l.Addr().String())
		go func() { errc <- lsrv.Serve(l) }()
	}
	for _, b := range ls {
		log.Info("listening", "addr", b.l.Addr().String(), "tls", b.tls)
		go func() {
			if b.tls {
				errc <- srv.ServeTLS(b.l)
			} else {
				errc <- srv.Serve(b.l)
			}
		}()
	}
	select {
	case <-ctx.Done():
		log.Info("shutting down")
	case err := <-errc:
		srv.Close()
		if lsrv != nil {
			lsrv.Close()
		}
		return err
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

// listenLMTP binds the [lmtp] listeners (TCP addresses and the unix socket)
// and returns the LMTP server for them; none configured gives nil, nil, nil.
func listenLMTP(cfg *config.Config, log *slog.Logger, users auth.DB, st store.Store) (*lmtp.Server, []net.Listener, error) {
	c := cfg.LMTP
	if len(c.Listen) == 0 && c.Socket == "" {
		return nil, nil, nil
	}
	srv, err := lmtp.New(lmtp.Options{
		Users:          users,
		Store:          st,
		Logger:         log,
		Hostname:       c.Hostname,
		MaxMessageSize: c.MaxMessageSize,
		SpoolDir:       c.SpoolDir,
		Quota:          lmtp.Quota(cfg.Quota),
	})
	if err != nil {
		return nil, nil, err
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
	}
	return srv, ls, nil
}
