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
	"github.com/postoffice-mail/postoffice/internal/store"
	"github.com/postoffice-mail/postoffice/internal/sysexits"
)

const deviceUsage = `usage: postoffice user device add|del|list [--config FILE] [--json] USER [NAME]

  add USER NAME   make device NAME of USER and print its password, once;
                  logging in as USER with it selects the device (the user
                  may also log in as USER#NAME with their own password)
  del USER NAME   forget the device: it no longer holds messages back
  list USER       the devices, when each was last used, and whether active

Needs [devices] enabled = true. add and del lock the maildrop as a POP3
session does: while a session holds it they exit with status 75; try
again later.`

// runDevice is "postoffice user device".
func runDevice(args []string, stdout, stderr io.Writer) error {
	sub, err := subcommand(args, deviceUsage, stderr)
	if err != nil {
		return err
	}
	fs := newFlagSet("user device "+sub, stderr)
	cfgPath := fs.String("config", defaultConfig, "configuration `file` (TOML)")
	asJSON := fs.Bool("json", false, "list: print JSON")
	if err := parseFlags(fs, args[1:]); err != nil {
		return err
	}
	want := map[string]int{"add": 2, "del": 2, "list": 1}[sub]
	if want == 0 {
		return usageError{fmt.Sprintf("unknown subcommand %q (add, del, list)", sub)}
	}
	if fs.NArg() != want {
		return usageError{deviceUsage}
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		return exitError{code: sysexits.Config, err: err}
	}
	if !cfg.Devices.Enabled {
		return exitError{code: sysexits.Config, err: errors.New("devices are off: set [devices] enabled = true")}
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
	l := a.newLedger()
	inUse := func(err error) error {
		if errors.Is(err, store.ErrInUse) {
			return exitError{code: sysexits.TempFail, err: fmt.Errorf("maildrop of %q is in use by a POP3 session; try again when it ends", u.Name)}
		}
		return exitError{code: sysexits.TempFail, err: err}
	}
	switch sub {
	case "add":
		pw, err := l.AddDevice(ctx, a.store, u.Name, fs.Arg(1))
		if err != nil {
			return inUse(err)
		}
		fmt.Fprintln(stdout, pw)
	case "del":
		if err := l.RemoveDevice(ctx, a.store, u.Name, fs.Arg(1)); err != nil {
			return inUse(err)
		}
	case "list":
		devs, err := l.ListDevices(ctx, a.store, u.Name)
		if err != nil {
			return exitError{code: sysexits.TempFail, err: err}
		}
		if *asJSON {
			return json.NewEncoder(stdout).Encode(devs)
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "DEVICE\tLAST USED\tACTIVE\tPASSWORD\tHIDDEN")
		for _, d := range devs {
			name := d.Name
			if name == "" {
				name = "(default)"
			}
			fmt.Fprintf(tw, "%s\t%s\t%v\t%v\t%d\n", name, d.LastUsed.Format(time.RFC3339), d.Active, d.Password, d.Deleted)
		}
		return tw.Flush()
	}
	return nil
}
