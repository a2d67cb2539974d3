package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/postoffice-mail/postoffice/internal/fetch"
)

const fetchHelp = `usage: postoffice fetch --config FILE [--account NAME] [--daemon] [--quiet] [--reset-state]

Fetch mail from the POP3 accounts of FILE ([[account]] tables; see
docs/fetch.md) into their targets. One run by default; with --daemon each
account is fetched every poll_interval (default 5m) until SIGTERM or SIGINT.

--reset-state accepts a server's current UIDLs after a migration: with
keep = true the messages now on the server count as retrieved (nothing is
downloaded); with keep = false the state is forgotten. Combine it with
--account.

Exit status (sysexits, as mpop; with several accounts the worst one;
--daemon exits 0 on SIGTERM/SIGINT and logs each failed poll instead):
   0  every account fetched (no new mail is success)
  65  EX_DATAERR    protocol or server data problem: bad reply, no UIDL,
                    server UIDLs changed
  69  EX_UNAVAILABLE an lmtp:/smtp: target refused the recipient, or
                    refused messages for good (recorded, left on the server)
  70  EX_SOFTWARE   internal error
  74  EX_IOERR      local delivery (Maildir, mbox, MDA) or state file failed
  75  EX_TEMPFAIL   network or temporary server error ([IN-USE],
                    [SYS/TEMP], [LOGIN-DELAY]), MDA exit 75, 4xx from an
                    lmtp:/smtp: target: try again later
  77  EX_NOPERM     authentication failed; server certificate not trusted
  78  EX_CONFIG     configuration error
   2  command line error

flags:
`

func runFetch(args []string, stdout, stderr io.Writer) error {
	// SIGTERM and SIGINT end a run or the daemon: the session in progress
	// stops, its state is saved, and the daemon exits 0.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	code, err := fetchCommand(ctx, args, stderr)
	switch {
	case err == nil && code == 0:
		return nil
	case errors.Is(err, flag.ErrHelp), errors.As(err, new(usageError)):
		return err
	}
	return exitError{code: code, err: err} // a nil err: fetch.Run has logged why
}

// fetchCommand runs postoffice fetch until done or ctx ends, and returns
// its exit status.
func fetchCommand(ctx context.Context, args []string, stderr io.Writer) (int, error) {
	fs := newFlagSet("fetch", stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, fetchHelp)
		fs.PrintDefaults()
	}
	cfgPath := fs.String("config", "", "configuration `file` (TOML)")
	account := fs.String("account", "", "fetch only the account `NAME`")
	daemon := fs.Bool("daemon", false, "poll every poll_interval until SIGTERM/SIGINT")
	quiet := fs.Bool("quiet", false, "log errors only, no progress")
	reset := fs.Bool("reset-state", false, "accept the server's current UIDLs (see above)")
	if err := parseFlags(fs, args); err != nil {
		return 2, err
	}
	if fs.NArg() > 0 {
		return 2, usageError{"unexpected arguments: " + strings.Join(fs.Args(), " ")}
	}
	if *cfgPath == "" {
		return 2, usageError{"need --config FILE"}
	}
	if *reset && *daemon {
		return 2, usageError{"--reset-state and --daemon exclude each other"}
	}
	cfg, err := fetch.LoadConfig(*cfgPath)
	if err != nil {
		return fetch.ExitCode(err), err
	}
	accounts := cfg.Accounts
	if *account != "" {
		accounts = nil
		for _, a := range cfg.Accounts {
			if a.Name == *account {
				accounts = append(accounts, a)
			}
		}
		if accounts == nil {
			return fetch.ExitConfig, fmt.Errorf("fetch: no account %q in %s", *account, *cfgPath)
		}
	}
	level := slog.LevelInfo
	if *quiet {
		level = slog.LevelError
	}
	opts := fetch.Options{
		Logger:     slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level})),
		ResetState: *reset,
	}
	if f, ok := stderr.(*os.File); ok && !*quiet && !*daemon {
		if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			opts.Progress = stderr
		}
	}
	if *daemon {
		var wg sync.WaitGroup
		for _, a := range accounts {
			wg.Go(func() {
				for {
					fetch.Run(ctx, a, opts) // logged by Run
					select {
					case <-ctx.Done():
						return
					case <-time.After(a.Poll()):
					}
				}
			})
		}
		wg.Wait()
		return 0, nil
	}
	code := 0
	for _, a := range accounts {
		_, err := fetch.Run(ctx, a, opts) // logged by Run
		code = fetch.Worst(code, fetch.ExitCode(err))
	}
	return code, nil
}
