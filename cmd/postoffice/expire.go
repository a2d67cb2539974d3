package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/postoffice-mail/postoffice/internal/auth"
	"github.com/postoffice-mail/postoffice/internal/config"
	"github.com/postoffice-mail/postoffice/internal/ledger"
	"github.com/postoffice-mail/postoffice/internal/sysexits"
)

const expireUsage = `usage: postoffice expire [--config FILE] [--dry-run] [--at TIME] [--json] [USER...]

Runs one expiry sweep now over every user of the user database (or the
USERs named): removes the messages the [expire] policy (and the user's
domain table and passwd-file fields) says are due, and, with [devices]
enabled, those every active device has deleted. --at TIME (RFC 3339,
"2026-03-01T12:00:00Z") sweeps as if it were that time; --dry-run
prints what would go and removes nothing. A maildrop held by a POP3
session is skipped and reported, never touched.

Exit status: 0 done; 2 command line error; 75 some maildrop was in use
or could not be swept (try again later); 78 configuration error.`

// newLedger makes the ledger of cfg, counting into the metrics if any.
func (a *app) newLedger() *ledger.Ledger {
	o := a.cfg.LedgerOptions()
	o.Logger = a.log
	if m := a.metrics; m != nil {
		o.OnRemoved, o.OnStorm = m.Removed, m.Storm
	}
	return ledger.New(o)
}

// policy is the backend's Policy for cfg.
func policy(cfg *config.Config) func(auth.User) ledger.Policy {
	return func(u auth.User) ledger.Policy { return cfg.Policy(u.Name, u.Extra) }
}

// userLister is a user database that can list its users (passwd-file,
// SQL).
type userLister interface {
	List(ctx context.Context) ([]string, error)
}

// sweepAll sweeps users (all of the database's when empty) as at at.
func (a *app) sweepAll(ctx context.Context, l *ledger.Ledger, users []string, at time.Time, dry bool) ([]ledger.SweepResult, error) {
	if len(users) == 0 {
		ul, ok := a.users.(userLister)
		if !ok {
			return nil, errors.New("expire: this user database cannot list its users: name them")
		}
		var err error
		if users, err = ul.List(ctx); err != nil {
			return nil, err
		}
	}
	var out []ledger.SweepResult
	for _, name := range users {
		if ctx.Err() != nil {
			break
		}
		u, err := a.users.Lookup(ctx, name)
		if err != nil {
			out = append(out, ledger.SweepResult{User: name, Err: err})
			continue
		}
		res := l.Sweep(ctx, a.store, u.Name, a.cfg.Policy(u.Name, u.Extra), at, dry)
		switch {
		case res.InUse:
			a.log.Info("expire: maildrop in use, skipped", "user", u.Name)
		case res.Err != nil:
			a.log.Warn("expire: sweep failed", "user", u.Name, "err", res.Err)
		}
		out = append(out, res)
	}
	return out, nil
}

// startSweeper runs the expiry sweep every expire.sweep_interval (default
// 1h) until ctx ends, when [expire] or [devices] is set.
func (a *app) startSweeper(ctx context.Context) {
	if a.ledger == nil || (!a.cfg.Expire.Configured() && !a.cfg.Devices.Enabled) {
		return
	}
	every := a.cfg.Expire.SweepInterval.Duration
	if every <= 0 {
		every = time.Hour
	}
	go func() {
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if _, err := a.sweepAll(ctx, a.ledger, nil, time.Now(), false); err != nil {
					a.log.Warn("expire: cannot list users", "err", err)
				}
			}
		}
	}()
}

// runExpire is "postoffice expire".
func runExpire(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("expire", stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, expireUsage)
		fs.PrintDefaults()
	}
	cfgPath := fs.String("config", defaultConfig, "configuration `file` (TOML)")
	dry := fs.Bool("dry-run", false, "print what would be removed, remove nothing")
	atFlag := fs.String("at", "", "sweep as if at `TIME` (RFC 3339)")
	asJSON := fs.Bool("json", false, "print JSON")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	at := time.Now()
	if *atFlag != "" {
		t, err := time.Parse(time.RFC3339, *atFlag)
		if err != nil {
			return usageError{fmt.Sprintf("--at %q: want an RFC 3339 time such as 2026-03-01T12:00:00Z", *atFlag)}
		}
		at = t
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		return exitError{code: sysexits.Config, err: err}
	}
	a := newApp(cfg, stderr)
	defer a.close()
	if errs := a.build(partStore); errs != nil {
		return exitError{code: sysexits.Config, err: errs[0]}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	res, err := a.sweepAll(ctx, a.newLedger(), fs.Args(), at, *dry)
	if err != nil {
		return exitError{code: sysexits.TempFail, err: err}
	}
	var removals []ledger.Removal
	var skipped []string
	failed := false
	for _, r := range res {
		removals = append(removals, r.Removals...)
		if r.InUse {
			skipped = append(skipped, r.User)
		}
		failed = failed || r.Err != nil || r.InUse
	}
	if *asJSON {
		err = json.NewEncoder(stdout).Encode(struct {
			DryRun   bool             `json:"dry_run"`
			At       time.Time        `json:"at"`
			Removed  []ledger.Removal `json:"removed"`
			Skipped  []string         `json:"in_use"`
			Failures int              `json:"failures"`
		}{*dry, at.UTC(), removals, skipped, countErrs(res)})
	} else {
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		verb := "removed"
		if *dry {
			verb = "would remove"
		}
		for _, r := range removals {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", verb, r.User, r.UIDL, r.Reason)
		}
		for _, u := range skipped {
			fmt.Fprintf(tw, "skipped\t%s\tin use by a session\t\n", u)
		}
		for _, r := range res {
			if r.Err != nil {
				fmt.Fprintf(tw, "failed\t%s\t%v\t\n", r.User, r.Err)
			}
		}
		tw.Flush()
		fmt.Fprintf(stdout, "%d message(s) %s, %d maildrop(s) in use\n", len(removals), verb, len(skipped))
	}
	if err != nil {
		return err
	}
	if failed {
		return exitError{code: sysexits.TempFail, err: errors.New("some maildrops were not swept; run again later")}
	}
	return nil
}

func countErrs(res []ledger.SweepResult) int {
	n := 0
	for _, r := range res {
		if r.Err != nil {
			n++
		}
	}
	return n
}
