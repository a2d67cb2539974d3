package passwdfile

import (
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/postoffice-mail/postoffice/internal/auth"
)

// scramLine is a passwd-file line whose {SCRAM-<hash>} entry has the given
// iteration count and salt length; the keys are zeros of the hash's size.
func scramLine(user, hash string, iter, saltLen int) string {
	size := 32
	if hash == "SHA-1" {
		size = 20
	}
	b64 := base64.StdEncoding.EncodeToString
	key := b64(make([]byte, size))
	return fmt.Sprintf("%s:{SCRAM-%s}%d,%s,%s,%s", user, hash, iter, b64(make([]byte, saltLen)), key, key)
}

// DominantSCRAM reports, per hash, the most common kind of SCRAM
// credentials among the users who can use that mechanism, which the SCRAM
// server copies into an unknown user's decoy.
func TestDominantSCRAM(t *testing.T) {
	t.Parallel()
	derived := auth.SCRAMParams{Derived: true}
	for _, tc := range []struct {
		name  string
		lines []string
		want  map[string]auth.SCRAMParams // hash -> params; absent: ok=false
	}{
		{"stored SHA-256 at 10000", []string{
			scramLine("a", "SHA-256", 10000, 24),
			scramLine("b", "SHA-256", 10000, 24),
			scramLine("c", "SHA-256", 4096, 16),
			"d:{PLAIN}d",
			"e:{SHA512-CRYPT}$6$x$y", // cannot serve SCRAM: not counted
			"f:{SHA512-CRYPT}$6$x$y",
			"g:{SHA512-CRYPT}$6$x$y",
		}, map[string]auth.SCRAMParams{
			"SHA-256": {Iterations: 10000, SaltLen: 24},
			"SHA-1":   derived, // only d can serve SCRAM-SHA-1
		}},
		{"plaintext dominant", []string{
			scramLine("a", "SHA-256", 10000, 24),
			"b:{PLAIN}b",
			"c:{CLEAR}c",
			scramLine("d", "SHA-1", 8192, 16),
		}, map[string]auth.SCRAMParams{"SHA-256": derived, "SHA-1": derived}},
		{"tie goes to the first in the file", []string{
			"a:{PLAIN}a",
			scramLine("b", "SHA-256", 20000, 32),
		}, map[string]auth.SCRAMParams{"SHA-256": derived, "SHA-1": derived}},
		{"SHA-1 only", []string{
			scramLine("a", "SHA-1", 8192, 12),
		}, map[string]auth.SCRAMParams{"SHA-1": {Iterations: 8192, SaltLen: 12}}},
		{"nothing serves SCRAM", []string{
			"a:{SHA512-CRYPT}$6$x$y",
			"b",
			"c::::::::nopassword",
		}, map[string]auth.SCRAMParams{}},
	} {
		p := filepath.Join(t.TempDir(), "users")
		if err := os.WriteFile(p, []byte(strings.Join(tc.lines, "\n")+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		db, err := Open(p, Options{})
		if err != nil {
			t.Fatalf("%s: Open: %v", tc.name, err)
		}
		got := make(map[string]auth.SCRAMParams)
		for _, hash := range []string{"SHA-1", "SHA-256", "SHA-512"} {
			if params, ok := db.DominantSCRAM(t.Context(), hash); ok {
				got[hash] = params
			}
		}
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("%s: DominantSCRAM (-want +got):\n%s", tc.name, diff)
		}
	}
}

// CanonicalName maps every spelling find looks up as one entry to one name,
// and keeps apart what find keeps apart.
func TestCanonicalName(t *testing.T) {
	t.Parallel()
	db, _ := openFixture(t)
	for _, tc := range []struct{ in, want string }{
		{"alice", "alice"},
		{"bob@example.org", "bob@example.org"},
		{"bob+example.org", "bob@example.org"},     // stored user, SDPS form
		{"ghost+example.org", "ghost@example.org"}, // unknown user, SDPS form
		{"ghost@example.org", "ghost@example.org"},
		{"Ghost@example.org", "Ghost@example.org"}, // names are case-sensitive
		{"a+b@example.org", "a+b@example.org"},     // has '@': '+' is part of the local part
		{"+x", "+x"},
		{"x+", "x+"},
	} {
		if got := db.CanonicalName(tc.in); got != tc.want {
			t.Errorf("CanonicalName(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
