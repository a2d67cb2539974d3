package main

import (
	"fmt"
	"log/slog"
	"os"
	"os/user"
	"slices"
	"strconv"
	"syscall"
	"time"

	"github.com/postoffice-mail/postoffice/internal/config"
	"github.com/postoffice-mail/postoffice/internal/metrics"
	"github.com/postoffice-mail/postoffice/internal/netlimit"
	"github.com/postoffice-mail/postoffice/internal/privdrop"
	"github.com/postoffice-mail/postoffice/internal/ratelimit"
	"github.com/postoffice-mail/postoffice/pop3server"
)

// connRefusal is written to a POP3 client refused by a connection limit
// (RFC 3206 §4: a temporary condition; retry later).
const connRefusal = "-ERR [SYS/TEMP] Too many connections; try again in a minute\r\n"

// Names of the sockets systemd may pass (FileDescriptorName= in the
// .socket units, docs/systemd.md). Each replaces the configured addresses
// of its kind: "pop3" pop3.listen, "pop3s" pop3.listen_tls, "lmtp"
// lmtp.listen and lmtp.socket.
const (
	socketPOP3    = "pop3"
	socketPOP3S   = "pop3s"
	socketLMTP    = "lmtp"
	socketMetrics = "metrics"
)

// activatedSockets takes the sockets systemd passed, if any, and checks
// their names.
func activatedSockets(cfg *config.Config) ([]privdrop.Socket, error) {
	socks, err := privdrop.Activated()
	if err != nil {
		return nil, err
	}
	known := []string{socketPOP3, socketPOP3S, socketLMTP, socketMetrics}
	var problem error
	for _, s := range socks {
		switch {
		case !slices.Contains(known, s.Name):
			problem = fmt.Errorf("systemd socket %q: unknown name (set FileDescriptorName= to pop3, pop3s, lmtp or metrics)", s.Name)
		case s.Name == socketPOP3S && !cfg.STLS():
			problem = fmt.Errorf("systemd socket %q: implicit TLS needs tls.cert and tls.key", s.Name)
		}
	}
	if problem != nil {
		for _, s := range socks {
			s.Listener.Close()
		}
		return nil, problem
	}
	return socks, nil
}

// newLoginLimiter builds the auth penalty from [auth] and [limits]; nil
// when auth.penalty is false. The caller must not store a nil
// *ratelimit.Limiter in pop3server.Options.LoginLimiter: that would be a
// non-nil interface.
func newLoginLimiter(cfg *config.Config) (*ratelimit.Limiter, error) {
	if !cfg.Auth.Penalty {
		return nil, nil
	}
	return ratelimit.New(loginLimiterOptions(cfg))
}

// loginLimiterOptions translates [auth] penalty keys and [limits] into
// ratelimit.Options.
func loginLimiterOptions(cfg *config.Config) ratelimit.Options {
	a := cfg.Auth
	// The config's "0" and "0s" mean off; ratelimit's zero values mean
	// its defaults and negative values mean off.
	off := func(d time.Duration) time.Duration {
		if d == 0 {
			return -1
		}
		return d
	}
	offN := func(n int) int {
		if n == 0 {
			return -1
		}
		return n
	}
	return ratelimit.Options{
		Trusted:        cfg.Limits.Trusted(),
		IPv6Prefix:     cfg.Limits.IPv6Prefix,
		BaseDelay:      off(a.PenaltyBase.Duration),
		MaxDelay:       a.PenaltyMax.Duration,
		BanAfter:       offN(a.BanAfter),
		BanDuration:    a.BanTime.Duration,
		UserDelayAfter: offN(a.UserPenaltyAfter),
		UserMaxDelay:   a.UserPenaltyMax.Duration,
		Window:         a.PenaltyWindow.Duration,
	}
}

// newConnLimiter builds the connection limits and PROXY protocol policy
// shared by every POP3 listener.
func newConnLimiter(cfg *config.Config, log *slog.Logger, met *metrics.Metrics) (*netlimit.Limiter, error) {
	l := cfg.Limits
	var onRefuse func(string)
	if met != nil {
		onRefuse = met.ConnRefused
	}
	return netlimit.New(netlimit.Options{
		OnRefuse: onRefuse,
		MaxConns: l.MaxConnections,
		// At the cap the oldest connection not logged in makes room, as
		// Dovecot's login processes do: idle unauthenticated connections
		// cannot lock users out. Logged-in sessions are never evicted.
		EvictPreLogin:      true,
		MaxConnsPerIP:      l.MaxConnectionsPerIP,
		IPv6Prefix:         l.IPv6Prefix,
		Exempt:             l.Trusted(),
		Refusal:            []byte(connRefusal),
		ProxyFrom:          l.ProxyFrom(),
		ProxyHeaderTimeout: l.ProxyHeaderTimeout.Duration,
		Logger:             log,
	})
}

// setLimits copies the engine's abuse limits into opts. lim and met may be
// nil.
func setLimits(opts *pop3server.Options, cfg *config.Config, lim *ratelimit.Limiter, met *metrics.Metrics) {
	l := cfg.Limits
	opts.PreLoginTimeout = l.PreLoginTimeout.Duration
	opts.WriteTimeout = l.WriteTimeout.Duration
	opts.MaxLoginCommands = l.MaxLoginCommands
	opts.MaxCommands = l.MaxCommands
	if lim != nil {
		opts.LoginLimiter = lim
		if met != nil {
			opts.LoginLimiter = met.LoginLimiter(lim)
		}
	}
}

// dropPrivileges switches to [server] user and group, once every socket
// is bound and every key read. Without a user it only warns when running
// as root: a development setup may want that, a server should not.
func (a *app) dropPrivileges() error {
	s := a.cfg.Server
	if s.User == "" {
		if os.Geteuid() == 0 {
			a.log.Warn("running as root: set [server] user to switch to an unprivileged user")
		}
		return nil
	}
	if err := privdrop.DropTo(s.User, s.Group); err != nil {
		return fmt.Errorf("server.user: %w", err)
	}
	a.log.Info("running as", "uid", os.Getuid(), "gid", os.Getgid())
	return nil
}

// chownToServerUser gives path to [server] user and group when the
// process is root and will switch to them, so that the socket's mode
// (lmtp.socket_mode) is meant for that user and it can remove the socket
// when it stops (given write access to the directory).
func (a *app) chownToServerUser(path string) error {
	if a.runAs == nil || os.Geteuid() != 0 {
		return nil
	}
	return os.Chown(path, a.runAs.uid, a.runAs.gid)
}

// lookupIDs resolves a user and group (names or numeric ids; an empty
// group is the user's primary group), like privdrop.DropTo does.
func lookupIDs(userName, groupName string) (uid, gid int, err error) {
	u, err := user.Lookup(userName)
	if err != nil {
		if _, nerr := strconv.Atoi(userName); nerr != nil {
			return 0, 0, err
		}
		if u, err = user.LookupId(userName); err != nil {
			return 0, 0, err
		}
	}
	gidStr := u.Gid
	if groupName != "" {
		g, err := user.LookupGroup(groupName)
		if err != nil {
			if _, nerr := strconv.Atoi(groupName); nerr != nil {
				return 0, 0, err
			}
			if g, err = user.LookupGroupId(groupName); err != nil {
				return 0, 0, err
			}
		}
		gidStr = g.Gid
	}
	if uid, err = strconv.Atoi(u.Uid); err != nil {
		return 0, 0, fmt.Errorf("user %q has uid %q", userName, u.Uid)
	}
	if gid, err = strconv.Atoi(gidStr); err != nil {
		return 0, 0, fmt.Errorf("group %q has gid %q", groupName, gidStr)
	}
	return uid, gid, nil
}

// raiseFileLimit raises the soft RLIMIT_NOFILE to the hard limit (the Go
// runtime does so too on Linux; doing it here makes it explicit and lets
// us check) and warns when the hard limit cannot hold max_connections:
// a logged-in session on a Maildir holds three descriptors (its socket, its
// maildrop lock, and the Maildir's directory handle, kept open so that
// nothing below it is reached through a symbolic link), plus a reserve for
// listeners, the passwd-file, logs and LMTP. It returns the soft limit in
// force.
func raiseFileLimit(log *slog.Logger, maxConns int) uint64 {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		log.Warn("cannot read the file descriptor limit", "err", err)
		return 0
	}
	if rl.Cur < rl.Max {
		want := rl
		want.Cur = rl.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &want); err != nil {
			log.Warn("cannot raise the file descriptor limit", "soft", rl.Cur, "hard", rl.Max, "err", err)
		} else {
			rl = want
		}
	}
	cur := uint64(rl.Cur) // int64 on the BSDs
	if need := fileLimitNeeded(maxConns); maxConns > 0 && cur < need {
		log.Warn("file descriptor limit too low for limits.max_connections: raise LimitNOFILE (systemd) or ulimit -n, or lower max_connections",
			"limit", cur, "needed", need, "max_connections", maxConns)
	}
	return cur
}

// fileLimitNeeded is the descriptors max_connections logged-in sessions
// need: three each on a Maildir (see raiseFileLimit), and a reserve of 100
// for everything else.
func fileLimitNeeded(maxConns int) uint64 { return 3*uint64(maxConns) + 100 }
