package sasl

import (
	"context"
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/postoffice-mail/postoffice/internal/auth/passwdfile"
)

// scramEntry is a {SCRAM-SHA-256} passwd-file entry for password with iter
// iterations and a salt of saltLen bytes (RFC 5802 §3), as doveadm pw
// writes it with other parameters.
func scramEntry(t testing.TB, password string, iter, saltLen int) string {
	t.Helper()
	salt := make([]byte, saltLen)
	for i := range salt {
		salt[i] = byte(i*7 + len(password))
	}
	salted, err := pbkdf2.Key(sha256.New, password, salt, iter, sha256.Size)
	if err != nil {
		t.Fatal(err)
	}
	mac := hmac.New(sha256.New, salted)
	mac.Write([]byte("Client Key"))
	storedKey := sha256.Sum256(mac.Sum(nil))
	mac = hmac.New(sha256.New, salted)
	mac.Write([]byte("Server Key"))
	b64 := base64.StdEncoding.EncodeToString
	return fmt.Sprintf("{SCRAM-SHA-256}%d,%s,%s,%s", iter, b64(salt), b64(storedKey[:]), b64(mac.Sum(nil)))
}

// passwdMechs is a mechanism table over a real passwd-file holding lines.
func passwdMechs(t testing.TB, lines ...string) *Mechanisms {
	t.Helper()
	path := filepath.Join(t.TempDir(), "users")
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	db, err := passwdfile.Open(path, passwdfile.Options{})
	if err != nil {
		t.Fatal(err)
	}
	m, err := New(Options{Users: db, Enabled: []string{ScramSHA256, ScramSHA1}})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// serverFirst runs a SCRAM exchange up to the server-first message and
// returns its attributes (RFC 5802 §7: r=, s=, i=).
func serverFirst(t testing.TB, m *Mechanisms, mech, user string) map[string]string {
	t.Helper()
	ctx := context.Background()
	s, err := m.Start(ctx, mech, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, ir, _ := newSCRAMClient(t, mech, user, "guess", nil, false).Start()
	ch, done, err := s.Next(ctx, ir)
	if err != nil || done {
		t.Fatalf("%s client-first for %q: done=%v err=%v", mech, user, done, err)
	}
	attrs := make(map[string]string)
	for _, f := range strings.Split(string(ch), ",") {
		k, v, _ := strings.Cut(f, "=")
		attrs[k] = v
	}
	return attrs
}

// saltLen is the decoded length of a server-first message's salt.
func saltLen(t testing.TB, attrs map[string]string) int {
	t.Helper()
	b, err := base64.StdEncoding.DecodeString(attrs["s"])
	if err != nil {
		t.Fatalf("salt %q: %v", attrs["s"], err)
	}
	return len(b)
}

// An unknown user's server-first message carries the iteration count and
// salt length of the file's dominant SCRAM entries, not fixed ones, so the
// i= value does not tell it from a real user.
func TestSCRAMDecoyFollowsDominantParams(t *testing.T) {
	t.Parallel()
	m := passwdMechs(t,
		"alice@example.org:"+scramEntry(t, "a", 10000, 24),
		"bob@example.org:"+scramEntry(t, "b", 10000, 24),
		"carol@example.org:"+scramEntry(t, "c", 10000, 24),
		"dave@example.org:{PLAIN}d",           // derived: 4096 iterations, a minority
		"erin@example.org:{SHA512-CRYPT}$6$x", // cannot serve SCRAM: a decoy itself
	)
	known := serverFirst(t, m, ScramSHA256, "alice@example.org")
	if known["i"] != "10000" || saltLen(t, known) != 24 {
		t.Fatalf("known user: i=%s, salt of %d bytes; want the stored 10000 and 24", known["i"], saltLen(t, known))
	}
	for _, user := range []string{"ghost@example.org", "nobody", "erin@example.org"} {
		got := serverFirst(t, m, ScramSHA256, user)
		if got["i"] != known["i"] {
			t.Errorf("server-first for %q has i=%s, a known user's has i=%s", user, got["i"], known["i"])
		}
		if n := saltLen(t, got); n != saltLen(t, known) {
			t.Errorf("server-first for %q has a salt of %d bytes, a known user's %d", user, n, saltLen(t, known))
		}
	}

	// SCRAM-SHA-1: no stored SCRAM-SHA-1 entry, one plaintext user, so an
	// unknown user looks derived (4096 iterations, 16-byte salt) as dave does.
	derived := serverFirst(t, m, ScramSHA1, "dave@example.org")
	got := serverFirst(t, m, ScramSHA1, "ghost@example.org")
	if got["i"] != derived["i"] || saltLen(t, got) != saltLen(t, derived) {
		t.Errorf("SCRAM-SHA-1 unknown user: i=%s, salt %d bytes; derived user: i=%s, salt %d bytes",
			got["i"], saltLen(t, got), derived["i"], saltLen(t, derived))
	}
}

// An unknown name gets the same salt at every attempt, whichever spelling
// of it the client uses that the user database treats as one name
// ("user+domain" is "user@domain"), as a stored user's salt is. Names the
// database tells apart (case) get different salts, as two stored users do.
func TestSCRAMDecoySaltStable(t *testing.T) {
	t.Parallel()
	m := passwdMechs(t,
		"alice@example.org:"+scramEntry(t, "a", 10000, 24),
		"bob@example.org:"+scramEntry(t, "b", 10000, 24),
		"dave@example.org:{PLAIN}d",
	)
	salt := func(user string) string { return serverFirst(t, m, ScramSHA256, user)["s"] }
	for _, tc := range []struct {
		name string
		a, b string
		same bool
	}{
		{"stored user, two attempts", "alice@example.org", "alice@example.org", true},
		{"stored user, SDPS spelling", "alice@example.org", "alice+example.org", true},
		{"derived user, SDPS spelling", "dave@example.org", "dave+example.org", true},
		{"unknown user, two attempts", "ghost@example.org", "ghost@example.org", true},
		{"unknown user, SDPS spelling", "ghost@example.org", "ghost+example.org", true},
		{"unknown user, another case", "ghost@example.org", "Ghost@example.org", false},
		{"stored user, another case", "alice@example.org", "Alice@example.org", false},
		{"two unknown users", "ghost@example.org", "ghoul@example.org", false},
	} {
		a, b := salt(tc.a), salt(tc.b)
		if (a == b) != tc.same {
			t.Errorf("%s: salt(%q) = %s, salt(%q) = %s; want same=%v", tc.name, tc.a, a, tc.b, b, tc.same)
		}
	}
}

// The time to the first challenge for an unknown name is about the time for
// a user of the dominant kind: no key derivation when the dominant entries
// are stored {SCRAM-*} keys, one PBKDF2 when they are derived from a
// plaintext-equivalent password. Medians of interleaved samples are
// compared within a generous 0.5x-2x band.
func TestSCRAMDecoyTiming(t *testing.T) {
	if testing.Short() {
		t.Skip("timing comparison skipped in -short mode")
	}
	for _, tc := range []struct {
		name  string
		lines []string
		known string
		batch int // exchanges per sample: enough to lift a sample well above the clock's grain
	}{
		{"stored SCRAM-SHA-256 dominant", []string{
			"alice@example.org:" + scramEntry(t, "a", 10000, 24),
			"bob@example.org:" + scramEntry(t, "b", 10000, 24),
			"carol@example.org:" + scramEntry(t, "c", 10000, 24),
			"dave@example.org:{PLAIN}d",
		}, "alice@example.org", 20},
		{"plaintext dominant", []string{
			"alice@example.org:{PLAIN}a",
			"bob@example.org:{PLAIN}b",
			"carol@example.org:" + scramEntry(t, "c", 10000, 24),
		}, "alice@example.org", 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := passwdMechs(t, tc.lines...)
			const rounds = 41
			// The CPU time of the process (cost), not the wall clock, so
			// that other test binaries on the machine do not decide it;
			// this test does not run in parallel with the package's others.
			sample := func(user string) time.Duration {
				return cost(func() {
					for range tc.batch {
						serverFirst(t, m, ScramSHA256, user)
					}
				})
			}
			sample(tc.known) // warm up
			var known, unknown []time.Duration
			for i := range rounds {
				if i%2 == 0 {
					known = append(known, sample(tc.known))
					unknown = append(unknown, sample(fmt.Sprintf("ghost%d@example.org", i)))
				} else {
					unknown = append(unknown, sample(fmt.Sprintf("ghost%d@example.org", i)))
					known = append(known, sample(tc.known))
				}
			}
			slices.Sort(known)
			slices.Sort(unknown)
			k, u := known[rounds/2], unknown[rounds/2]
			ratio := float64(u) / float64(k)
			t.Logf("median of %d first challenges: known %v, unknown %v, ratio %.2f", tc.batch, k, u, ratio)
			if ratio < 0.5 || ratio > 2 {
				t.Errorf("unknown/known median time to the first challenge = %.2f (%v / %v), want within 0.5-2", ratio, u, k)
			}
		})
	}
}
