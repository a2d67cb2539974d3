package main

import (
	"context"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/postoffice-mail/postoffice/internal/probe"
	"github.com/postoffice-mail/postoffice/internal/sysexits"
)

const probeUsage = `usage: postoffice probe [flags] pop3://[user@]host[:port] | pop3s://[user@]host[:port]

Checks a POP3 server (any server, not only postoffice) and prints a report
a user can act on; docs/probe.md explains each check. With a user, the
password comes from --password-file or $POSTOFFICE_PROBE_PASSWORD (never
the command line, where other local users can read it); the probe then
also checks the maildrop without changing it (it never sends DELE).

Exit status, as monitoring plugins use it: 0 nothing to fix, 1 warnings,
2 failures (or no connection), 64 a bad command line.`

// runProbe is `postoffice probe`: flags here, the checks in internal/probe.
func runProbe(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("probe", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, probeUsage)
		fmt.Fprintln(stderr, "\nflags:")
		fs.PrintDefaults()
	}
	asJSON := fs.Bool("json", false, "print the report as JSON")
	user := fs.String("user", "", "log in as this user (overrides the URL's)")
	pwFile := fs.String("password-file", "", "read the password from the first line of this file")
	caFile := fs.String("ca", "", "PEM file of CA certificates to trust instead of the system's")
	timeout := fs.Duration("timeout", 15*time.Second, "bound of each connection step")
	maxMsgs := fs.Int("max-messages", 10, "messages to RETR and TOP at most (smallest first)")
	plain := fs.Bool("plaintext-login", false, "send the password even without TLS (trusted networks only)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return exitError{code: sysexits.Usage}
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return exitError{code: sysexits.Usage, err: errors.New("need one pop3:// or pop3s:// URL")}
	}
	t, err := probe.ParseTarget(fs.Arg(0))
	if err != nil {
		return exitError{code: sysexits.Usage, err: err}
	}
	if *user != "" {
		t.User = *user
	}
	if t.Password != "" {
		fmt.Fprintln(stderr, "postoffice probe: warning: a password in the URL is visible to other local users; use --password-file")
	}
	switch {
	case *pwFile != "":
		b, err := os.ReadFile(*pwFile)
		if err != nil {
			return exitError{code: sysexits.Usage, err: err}
		}
		t.Password, _, _ = strings.Cut(string(b), "\n")
		t.Password = strings.TrimSuffix(t.Password, "\r")
	case os.Getenv("POSTOFFICE_PROBE_PASSWORD") != "":
		t.Password = os.Getenv("POSTOFFICE_PROBE_PASSWORD")
	}
	if t.User != "" && t.Password == "" {
		return exitError{code: sysexits.Usage, err: errors.New("a user needs a password: --password-file or $POSTOFFICE_PROBE_PASSWORD")}
	}
	opts := probe.Options{Timeout: *timeout, MaxMessages: *maxMsgs, PlaintextLogin: *plain}
	if *caFile != "" {
		pem, err := os.ReadFile(*caFile)
		if err != nil {
			return exitError{code: sysexits.Usage, err: err}
		}
		opts.RootCAs = x509.NewCertPool()
		if !opts.RootCAs.AppendCertsFromPEM(pem) {
			return exitError{code: sysexits.Usage, err: fmt.Errorf("%s: no PEM certificates", *caFile)}
		}
	}
	r := probe.Run(context.Background(), t, opts)
	if *asJSON {
		err = probe.WriteJSON(stdout, r)
	} else {
		err = probe.WriteText(stdout, r)
	}
	if err != nil {
		return err
	}
	if r.Worst == probe.OK {
		return nil
	}
	return exitError{code: int(r.Worst)}
}
