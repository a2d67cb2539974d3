// Command configdoc writes docs/configuration.md: every key of the server
// configuration (internal/config.Config) and of the fetch configuration
// (internal/fetch.Config), with its TOML type, its default, an example and
// its description.
//
// Nothing in the page is written by hand, so it cannot drift from the code:
//
//   - the keys and their types come from the structs' `toml` tags, by
//     reflection;
//   - the defaults are what the packages themselves fill in: for the server,
//     the values config.Parse leaves in a minimal valid file; for fetch, the
//     values fetch.ParseConfig leaves in a minimal valid account (and the
//     accessors KeepOnServer and Poll, which give the defaults of keep and
//     poll_interval). A key whose removal from the minimal file makes the
//     parser refuse it is marked required;
//   - the descriptions are the comments on the struct fields, read from the
//     packages' source with go/parser;
//   - the examples are the key's line in the annotated sample files of the
//     documentation: the TOML block of README.md for the server, the one of
//     docs/fetch.md for fetch (a key without one shows its default).
//
// Run it from anywhere inside the module:
//
//	go run ./internal/configdoc        # or: go generate ./internal/configdoc
//
// The test in this package fails, naming the keys, whenever the page and
// the structs disagree.
package main

//go:generate go run .

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
)

// output is the generated page, relative to the module root.
const output = "docs/configuration.md"

func main() {
	check := flag.Bool("check", false, "do not write: exit 1 when "+output+" is out of date")
	flag.Parse()
	if err := run(*check); err != nil {
		fmt.Fprintln(os.Stderr, "configdoc:", err)
		os.Exit(1)
	}
}

func run(check bool) error {
	root, err := moduleRoot()
	if err != nil {
		return err
	}
	page, err := Generate(root)
	if err != nil {
		return err
	}
	path := filepath.Join(root, output)
	if check {
		old, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if !bytes.Equal(old, page) {
			return fmt.Errorf("%s is out of date: run go run ./internal/configdoc", output)
		}
		return nil
	}
	return os.WriteFile(path, page, 0o644)
}

// moduleRoot returns the nearest directory at or above the working
// directory that holds go.mod.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for range 64 {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			break
		}
		dir = parent
	}
	return "", errors.New("no go.mod at or above the working directory: run inside the postoffice module")
}
