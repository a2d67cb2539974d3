package main

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/postoffice-mail/postoffice/internal/sasl"
)

// The key of the decoy SCRAM salts must not be computable by anyone else:
// with a key derived from the config and the machine's identity (a
// world-readable /etc/machine-id, empty in many containers), an attacker
// would compute an unknown name's decoy salt and tell, from one
// server-first message, whether the name exists. Two mechanism tables built
// from one config must therefore use different keys.
func TestDecoyKeyIsRandom(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "users")
	if err := os.WriteFile(path, []byte("alice@example.org:{PLAIN}secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := parseConfig(t, `mechanisms = ["SCRAM-SHA-256"]`)
	cfg.Auth.PasswdFile = path
	salt := func() string {
		t.Helper()
		a := newApp(cfg, io.Discard)
		defer a.close()
		if errs := a.build(partSASL); errs != nil {
			t.Fatal(errs)
		}
		m := a.mechs
		ctx := context.Background()
		s, err := m.Start(ctx, sasl.ScramSHA256, nil)
		if err != nil {
			t.Fatal(err)
		}
		ch, _, err := s.Next(ctx, []byte("n,,n=ghost@example.org,r=abcdefghijklmnop"))
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range strings.Split(string(ch), ",") {
			if v, ok := strings.CutPrefix(f, "s="); ok {
				return v
			}
		}
		t.Fatalf("server-first %q has no salt", ch)
		return ""
	}
	if a, b := salt(), salt(); a == b {
		t.Errorf("two mechanism tables from one config give an unknown user the same decoy salt %s: the key is predictable", a)
	}
}
