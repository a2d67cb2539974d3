package main

import (
	"errors"
	"io"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/postoffice-mail/postoffice/internal/config"
)

// Every part's inputs come before it in the build table, so building in
// table order builds inputs first.
func TestPartsOrdered(t *testing.T) {
	t.Parallel()
	for p := range numParts {
		if parts[p].build == nil || parts[p].name == "" {
			t.Errorf("part %d has no entry in the table", p)
		}
		for _, n := range parts[p].needs {
			if n >= p {
				t.Errorf("part %s needs %s, which comes later", parts[p].name, parts[n].name)
			}
		}
	}
}

// In check mode build reports every part that fails and skips the parts
// whose inputs failed; otherwise it stops at the first failure. Neither
// leaves a part it skipped half made.
func TestBuildModes(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cfg := config.Default()
	cfg.POP3.Listen = []string{"127.0.0.1:0"}
	cfg.Auth.PasswdFile = filepath.Join(dir, "missing.passwd") // users fails: store, sasl, lmtp, pop3 skipped
	cfg.Mail.Location = "maildir:" + filepath.Join(dir, "%u")
	cfg.Server.User = "no-such-user-postoffice" // server fails on its own
	partsOf := func(errs []error) []string {
		var names []string
		for _, err := range errs {
			var be *buildError
			if !errors.As(err, &be) {
				t.Fatalf("build error %v is not a *buildError", err)
			}
			names = append(names, parts[be.part].name)
		}
		return names
	}
	check := newApp(&cfg, io.Discard)
	check.check = true
	defer check.close()
	if diff := cmp.Diff([]string{"users", "server"}, partsOf(check.build(allParts...))); diff != "" {
		t.Errorf("check mode: failed parts (-want +got):\n%s", diff)
	}
	if check.store != nil || check.mechs != nil || check.pop3 != nil {
		t.Errorf("check mode built parts whose inputs failed: store %v, sasl %v, pop3 %v", check.store, check.mechs, check.pop3)
	}
	serve := newApp(&cfg, io.Discard)
	defer serve.close()
	if diff := cmp.Diff([]string{"users"}, partsOf(serve.build(allParts...))); diff != "" {
		t.Errorf("serve mode: failed parts (-want +got):\n%s", diff)
	}
}
