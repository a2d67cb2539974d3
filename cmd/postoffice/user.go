package main

import (
	"bufio"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/postoffice-mail/postoffice/internal/auth/passwdfile"
	"github.com/postoffice-mail/postoffice/internal/auth/scheme"
	"github.com/postoffice-mail/postoffice/internal/config"
)

const userUsage = `usage: postoffice user add|passwd|del|list [flags] [NAME]

  add NAME      add a user (password from --password-stdin, else a random one is printed)
  passwd NAME   set a user's password (same password sources)
  del NAME      delete a user
  list          list users

The passwd-file is --passwd-file, or auth.passwd_file of --config; with
auth.database in --config, the users are rows of postoffice's own table in
PostgreSQL (run postoffice db migrate first). With
--config, add and passwd warn when the --scheme cannot serve a login method
the config enables: APOP needs PLAIN; CRAM-MD5 needs CRAM-MD5 or PLAIN;
SCRAM-SHA-256 and SCRAM-SHA-1 (and -PLUS) need their own scheme or PLAIN.`

// stdin is where --password-stdin reads; a variable for tests.
var stdin io.Reader = os.Stdin

func runUser(args []string, stdout, stderr io.Writer) error {
	sub, err := subcommand(args, userUsage, stderr)
	if err != nil {
		return err
	}
	if sub == "device" {
		return runDevice(args[1:], stdout, stderr) // device.go
	}
	fs := newFlagSet("user "+sub, stderr)
	cfgPath := fs.String("config", "", "server configuration `file`, for auth.passwd_file or auth.database")
	file := fs.String("passwd-file", "", "passwd-file `path` (overrides --config)")
	schemeName := fs.String("scheme", scheme.DefaultNewScheme, "password `scheme` for add and passwd: "+strings.Join(scheme.HashSchemes(), ", "))
	fromStdin := fs.Bool("password-stdin", false, "read the password from the first line of standard input")
	if err := parseFlags(fs, args[1:]); err != nil {
		return err
	}
	path := *file
	var cfg *config.Config
	if *cfgPath != "" {
		var err error
		if cfg, err = config.Load(*cfgPath); err != nil {
			return err
		}
		if path == "" {
			path = cfg.Auth.PasswdFile
		}
	}
	name := func() (string, error) {
		if fs.NArg() != 1 {
			return "", usageError{sub + " needs exactly one user NAME"}
		}
		return fs.Arg(0), nil
	}
	if *file == "" && cfg != nil && cfg.Auth.Database != "" {
		return runUserSQL(sub, cfg, name, *schemeName, *fromStdin, fs.NArg(), stdout, stderr)
	}
	if path == "" {
		return usageError{"need --passwd-file PATH or --config FILE"}
	}
	switch sub {
	case "add", "passwd":
		user, err := name()
		if err != nil {
			return err
		}
		password, generated, err := readPassword(*fromStdin)
		if err != nil {
			return err
		}
		hash, err := scheme.Hash(*schemeName, password)
		if err != nil {
			return usageError{err.Error()}
		}
		if sub == "add" {
			err = passwdfile.AddUser(path, user, hash)
		} else {
			err = passwdfile.SetPassword(path, user, hash)
		}
		if err != nil {
			return err
		}
		if generated {
			fmt.Fprintf(stdout, "%s password: %s\n", user, password)
		}
		if cfg != nil {
			warnUnservable(stderr, user, *schemeName, hash, cfg.Auth)
		}
		return nil
	case "del":
		user, err := name()
		if err != nil {
			return err
		}
		return passwdfile.DeleteUser(path, user)
	case "list":
		if fs.NArg() != 0 {
			return usageError{"list takes no arguments"}
		}
		users, err := passwdfile.ListUsers(path)
		if err != nil {
			return err
		}
		for _, u := range users {
			fmt.Fprintln(stdout, u)
		}
		return nil
	}
	return usageError{fmt.Sprintf("unknown subcommand %q (add, passwd, del, list)", sub)}
}

func readPassword(fromStdin bool) (password string, generated bool, err error) {
	if !fromStdin {
		return rand.Text()[:20], true, nil
	}
	line, err := bufio.NewReader(stdin).ReadString('\n')
	if err != nil && !(errors.Is(err, io.EOF) && line != "") {
		return "", false, errors.New("reading password from standard input: no line")
	}
	password = strings.TrimRight(line, "\r\n")
	if password == "" {
		return "", false, errors.New("empty password")
	}
	return password, false, nil
}

// serves reports whether the stored entry hash can serve a login method
// that computes a proof from the stored secret instead of checking a
// password sent in full: a plaintext-equivalent entry serves them all,
// {CRAM-MD5} or {HMAC-MD5} serves CRAM-MD5, {SCRAM-SHA-x} serves SCRAM-SHA-x
// with and without -PLUS. ok is false for the methods that need no such
// secret (USER/PASS, PLAIN and LOGIN check a password against any scheme;
// OAUTHBEARER, XOAUTH2 and EXTERNAL use none).
func serves(hash, method string) (served, ok bool) {
	_, plain := scheme.PlaintextEquivalent(hash)
	switch method {
	case "APOP":
		return plain, true
	case "CRAM-MD5":
		name := scheme.Name(hash, "")
		cram := name == "CRAM-MD5" || name == "HMAC-MD5"
		return plain || cram, true
	case "SCRAM-SHA-1", "SCRAM-SHA-1-PLUS", "SCRAM-SHA-256", "SCRAM-SHA-256-PLUS":
		_, _, _, _, h, err := scheme.ParseSCRAM(hash)
		same := err == nil && strings.TrimSuffix(strings.TrimPrefix(method, "SCRAM-"), "-PLUS") == h
		return plain || same, true
	}
	return false, false
}

// warnUnservable prints a warning naming the login methods enabled in the
// config (auth.apop, auth.mechanisms) that user's new password entry cannot
// serve, and a scheme that would serve them all.
func warnUnservable(w io.Writer, user, schemeName, hash string, a config.Auth) {
	methods := a.Mechanisms
	if a.APOP {
		methods = append([]string{"APOP"}, methods...)
	}
	var enabled, missing []string
	for _, m := range methods {
		served, ok := serves(hash, m)
		if !ok {
			continue
		}
		enabled = append(enabled, m)
		if !served {
			missing = append(missing, m)
		}
	}
	if len(missing) == 0 {
		return
	}
	// The narrowest scheme serving every enabled method; PLAIN serves all.
	suggest, plainEq := "PLAIN", true
	for _, cand := range []string{"SCRAM-SHA-256", "SCRAM-SHA-1", "CRAM-MD5"} {
		if !slices.ContainsFunc(enabled, func(m string) bool { return strings.TrimSuffix(m, "-PLUS") != cand }) {
			suggest, plainEq = cand, cand == "CRAM-MD5"
			break
		}
	}
	hint := "--scheme " + suggest + " would serve them all"
	if plainEq {
		hint += ", but stores a plaintext-equivalent secret"
	}
	fmt.Fprintf(w, "postoffice user: warning: %s will not be able to log in with %s (enabled in the config): a password stored as %s cannot serve them; %s\n",
		user, strings.Join(missing, ", "), strings.ToUpper(schemeName), hint)
}
