package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/postoffice-mail/postoffice/internal/auth"
	"github.com/postoffice-mail/postoffice/internal/config"
	"github.com/postoffice-mail/postoffice/internal/sysexits"
)

const historyUsage = `usage: postoffice history [--config FILE] [--since AGE|TIME] [--json] USER

Prints who retrieved (retr) or deleted (dele) which message of USER's
maildrop, and when: device, client address, TLS version, login method;
and the messages the expiry sweep removed (expire), those that left once
every device deleted them (remove), and re-download storms (storm). The
journal is read without the maildrop's lock, so it works while a session
holds the maildrop. --since takes an age (7d, 12h) or an RFC 3339 time.

Exit status: 0 done; 2 command line error; 67 unknown user; 75 temporary
failure; 78 configuration error.`

// runHistory is "postoffice history".
func runHistory(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("history", stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, historyUsage)
		fs.PrintDefaults()
	}
	cfgPath := fs.String("config", defaultConfig, "configuration `file` (TOML)")
	sinceFlag := fs.String("since", "", "only entries since `AGE` (7d, 12h) or TIME (RFC 3339)")
	asJSON := fs.Bool("json", false, "print JSON")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usageError{"history needs exactly one USER"}
	}
	var since time.Time
	if s := *sinceFlag; s != "" {
		if t, err := time.Parse(time.RFC3339, s); err == nil {
			since = t
		} else if d, err := parseAge(s); err == nil {
			since = time.Now().Add(-d)
		} else {
			return usageError{fmt.Sprintf("--since %q: want an age such as 7d or an RFC 3339 time", s)}
		}
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
	ctx := context.Background()
	u, err := a.users.Lookup(ctx, fs.Arg(0))
	if errors.Is(err, auth.ErrUnknownUser) {
		return exitError{code: sysexits.NoUser, err: fmt.Errorf("unknown user %q", fs.Arg(0))}
	} else if err != nil {
		return exitError{code: sysexits.TempFail, err: err}
	}
	evs, err := a.newLedger().History(ctx, a.store, u.Name, since)
	if err != nil {
		return exitError{code: sysexits.TempFail, err: err}
	}
	if *asJSON {
		if evs == nil {
			return json.NewEncoder(stdout).Encode([]any{})
		}
		return json.NewEncoder(stdout).Encode(evs)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TIME\tACTION\tUIDL\tDEVICE\tREMOTE\tTLS\tMETHOD\tNOTE")
	for _, e := range evs {
		note := e.Reason
		if e.Action == "storm" {
			note = fmt.Sprintf("%d messages retrieved again", e.Count)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", e.Time.UTC().Format(time.RFC3339), e.Action, dash(e.UIDL),
			dash(e.Device), dash(e.Remote), dash(e.TLS), dash(e.Mech), note)
	}
	return tw.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
