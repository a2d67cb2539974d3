package main

import (
	"bufio"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
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

The passwd-file is --passwd-file, or auth.passwd_file of --config.`

// stdin is where --password-stdin reads; a variable for tests.
var stdin io.Reader = os.Stdin

func runUser(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" {
		fmt.Fprintln(stderr, userUsage)
		if len(args) == 0 {
			return usageError{"need a subcommand"}
		}
		return nil
	}
	sub := args[0]
	fs := newFlagSet("user "+sub, stderr)
	cfgPath := fs.String("config", "", "server configuration `file`, for auth.passwd_file")
	file := fs.String("passwd-file", "", "passwd-file `path` (overrides --config)")
	schemeName := fs.String("scheme", "SHA512-CRYPT", "password `scheme` for add and passwd (e.g. SHA512-CRYPT, BLF-CRYPT, ARGON2ID, SCRAM-SHA-256, PLAIN)")
	fromStdin := fs.Bool("password-stdin", false, "read the password from the first line of standard input")
	if err := parseFlags(fs, args[1:]); err != nil {
		return err
	}
	path := *file
	if path == "" && *cfgPath != "" {
		cfg, err := config.Load(*cfgPath)
		if err != nil {
			return err
		}
		path = cfg.Auth.PasswdFile
	}
	if path == "" {
		return usageError{"need --passwd-file PATH or --config FILE"}
	}
	name := func() (string, error) {
		if fs.NArg() != 1 {
			return "", usageError{sub + " needs exactly one user NAME"}
		}
		return fs.Arg(0), nil
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
