// Command postoffice is the one postoffice binary: a POP3 server on
// Maildirs with LMTP delivery, the local delivery agent, the POP3 fetcher,
// a load generator, and the commands that administer them.
//
//	postoffice serve --config FILE     run the server (POP3, LMTP, metrics)
//	postoffice serve --dev             run on loopback with a demo user
//	postoffice deliver -u USER         deliver one message from stdin
//	postoffice fetch --config FILE     fetch mail from POP3 accounts
//	postoffice bench ...               load-test a POP3 server
//	postoffice user add|passwd|del|list  manage the passwd-file
//	postoffice check --config FILE     load and check everything serve would
//	postoffice db migrate --config FILE  create or upgrade the PostgreSQL schema
//	postoffice migrate --from LOC --to LOC  copy maildrops between stores, UIDLs kept
//	postoffice mailbox stat|list|purge USER  look into and clean out a maildrop
//	postoffice migrate uidl|verify ... take over UIDLs from a live old server, verify a cut-over
//	postoffice probe pop3s://host      check any POP3 server and report what to fix
//	postoffice expire [--dry-run]      run one expiry sweep now
//	postoffice history USER            who retrieved or deleted which message
//	postoffice user device add USER N  make a device and print its password
//	postoffice version
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"sort"
)

// command is one subcommand.
type command struct {
	name    string
	summary string
	run     func(args []string, stdout, stderr io.Writer) error
}

var commands []command

func init() {
	commands = []command{
		{"bench", "load-test a POP3 server; seed Maildirs; run the in-memory responder", runBench},
		{"expire", "run one expiry sweep now (--dry-run, --at TIME)", runExpire},
		{"history", "show who retrieved or deleted which message of a user, and re-download storms", runHistory},
		{"fetch", "fetch mail from POP3 accounts into Maildir, mbox, an MDA, LMTP or SMTP", runFetch},
		{"check", "check a config: load everything serve would, report problems (--config FILE)", runCheck},
		{"db", "create or upgrade the PostgreSQL schema: migrate --config FILE", runDB},
		{"deliver", "deliver one message from stdin to a user's maildrop (-u USER)", runDeliver},
		{"migrate", "copy maildrops between stores, UIDLs kept ([copy] --from LOC --to LOC); uidl, verify: take over from a live POP3 server", runMigrate},
		{"mailbox", "show or purge a user's maildrop: stat, list, purge USER", runMailbox},
		{"probe", "check any POP3 server's TLS, authentication and RFC 1939 behaviour (pop3[s]://host)", runProbe},
		{"serve", "run the POP3 server (--config FILE, or --dev for a local trial)", runServe},
		{"user", "manage users in the passwd-file: add, passwd, del, list", runUser},
		{"version", "print the version", runVersion},
	}
}

// exitError carries a command's own exit status (sysexits for fetch and
// deliver). A nil err means the command has already said why.
type exitError struct {
	code int
	err  error
}

func (e exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit status %d", e.code)
	}
	return e.err.Error()
}
func (e exitError) Unwrap() error { return e.err }

// usageError is an error caused by the command line: exit status 2.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stderr)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	for _, c := range commands {
		if c.name == args[0] {
			err := c.run(args[1:], stdout, stderr)
			switch {
			case err == nil:
				return 0
			case errors.Is(err, flag.ErrHelp):
				return 0
			case errors.As(err, new(exitError)):
				var ee exitError
				errors.As(err, &ee)
				if ee.err != nil {
					fmt.Fprintf(stderr, "postoffice %s: %v\n", c.name, err)
				}
				return ee.code
			case errors.As(err, new(usageError)):
				fmt.Fprintf(stderr, "postoffice %s: %v\n", c.name, err)
				return 2
			default:
				fmt.Fprintf(stderr, "postoffice %s: %v\n", c.name, err)
				return 1
			}
		}
	}
	fmt.Fprintf(stderr, "postoffice: unknown command %q\n\n", args[0])
	usage(stderr)
	return 2
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: postoffice COMMAND [flags]")
	fmt.Fprintln(w, "\ncommands:")
	cs := append([]command(nil), commands...)
	sort.Slice(cs, func(i, j int) bool { return cs[i].name < cs[j].name })
	for _, c := range cs {
		fmt.Fprintf(w, "  %-8s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "\nRun 'postoffice COMMAND -h' for a command's flags.")
}

func version() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "devel"
}

func runVersion(args []string, stdout, stderr io.Writer) error {
	fmt.Fprintln(stdout, "postoffice", version())
	return nil
}

// subcommand returns the subcommand args[0] of a command that has several
// (user, mailbox). Given none, or -h, it prints usage and returns the error
// for run: a usage error, or flag.ErrHelp (exit status 0).
func subcommand(args []string, usage string, stderr io.Writer) (string, error) {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" {
		fmt.Fprintln(stderr, usage)
		if len(args) == 0 {
			return "", usageError{"need a subcommand"}
		}
		return "", flag.ErrHelp
	}
	return args[0], nil
}

// newFlagSet returns a FlagSet that reports errors instead of exiting.
func newFlagSet(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("postoffice "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

// parseFlags parses args and turns flag errors into usage errors.
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err.Error()}
	}
	return nil
}
