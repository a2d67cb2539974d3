package main

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// regenerate is what every failure below tells the reader to run.
const regenerate = "regenerate it from the repository root with:\n\tgo run ./internal/configdoc\n" +
	"(or go generate ./internal/configdoc), then commit " + output

const root = "../.."

// reflectedKeys returns every key of both configuration files, by table.
func reflectedKeys(t *testing.T) []string {
	t.Helper()
	server, err := ServerTables(root)
	if err != nil {
		t.Fatal(err)
	}
	fetchTables, err := FetchTables(root)
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, tb := range slices.Concat(server, fetchTables) {
		for _, k := range tb.Keys {
			keys = append(keys, k.Full())
		}
	}
	return keys
}

var (
	docHeading = regexp.MustCompile("^### `\\[\\[?([a-z0-9_.]+)\\]\\]?`$")
	docRow     = regexp.MustCompile("^\\| `([a-z0-9_]+)` \\|")
)

// documentedKeys returns the keys the page lists: each row's key under the
// table heading above it.
func documentedKeys(t *testing.T, page string) []string {
	t.Helper()
	var keys []string
	table := ""
	for _, line := range strings.Split(page, "\n") {
		if m := docHeading.FindStringSubmatch(line); m != nil {
			table = m[1]
		} else if m := docRow.FindStringSubmatch(line); m != nil {
			keys = append(keys, table+"."+m[1])
		}
	}
	return keys
}

// TestEveryKeyDocumented compares the keys docs/configuration.md lists with
// the keys the config structs have, and names each one on either side only.
func TestEveryKeyDocumented(t *testing.T) {
	page, err := os.ReadFile(filepath.Join(root, output))
	if err != nil {
		t.Fatalf("%v: %s", err, regenerate)
	}
	have := documentedKeys(t, string(page))
	want := reflectedKeys(t)
	for _, k := range want {
		if !slices.Contains(have, k) {
			t.Errorf("key %s is not documented in %s", k, output)
		}
	}
	for _, k := range have {
		if !slices.Contains(want, k) {
			t.Errorf("%s documents %s, which no config struct has", output, k)
		}
	}
	if t.Failed() {
		t.Log(regenerate)
	}
}

// TestPageUpToDate requires the page to be exactly what the generator
// writes now, so a changed default, type or comment needs a regeneration
// too.
func TestPageUpToDate(t *testing.T) {
	page, err := os.ReadFile(filepath.Join(root, output))
	if err != nil {
		t.Fatalf("%v: %s", err, regenerate)
	}
	gen, err := Generate(root)
	if err != nil {
		t.Fatal(err)
	}
	if string(gen) != string(page) {
		t.Errorf("%s is out of date (its keys, defaults, comments or the examples in README.md or docs/*.md changed); %s\ndiff (-file +generated):\n%s",
			output, regenerate, cmp.Diff(strings.Split(string(page), "\n"), strings.Split(string(gen), "\n")))
	}
}

// TestGeneratedFacts spot-checks that the page says what the code does.
func TestGeneratedFacts(t *testing.T) {
	server, err := ServerTables(root)
	if err != nil {
		t.Fatal(err)
	}
	fetchTables, err := FetchTables(root)
	if err != nil {
		t.Fatal(err)
	}
	find := func(full string) Key {
		for _, tb := range slices.Concat(server, fetchTables) {
			for _, k := range tb.Keys {
				if k.Full() == full {
					return k
				}
			}
		}
		t.Fatalf("no key %s", full)
		return Key{}
	}
	for _, tc := range []struct {
		key, typ, def string
		required      bool
	}{
		{"pop3.idle_timeout", "duration", `"10m"`, false},
		{"pop3.listen", "array of strings", `["127.0.0.1:1110"]`, false},
		{"auth.passwd_file", "string", "required", true},
		{"auth.penalty", "boolean", "true", false},
		{"lmtp.max_message_size", "integer", "52428800", false},
		{"tls.certificates", "array of tables (cert, key)", "[]", false},
		{"account.keep", "boolean", "true", false},
		{"account.poll_interval", "string", `"5m"`, false},
		{"account.tls", "string", `"implicit"`, false},
		{"account.state_dir", "string", "required", true},
	} {
		k := find(tc.key)
		if k.Type != tc.typ || k.Default != tc.def || k.Required != tc.required {
			t.Errorf("%s: type %q, default %q, required %v; want %q, %q, %v",
				tc.key, k.Type, k.Default, k.Required, tc.typ, tc.def, tc.required)
		}
	}
}

func TestValueOf(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{`"x"   # comment`, `"x"`},
		{`"a#b" # c`, `"a#b"`},
		{`["a", "b"]  # list`, `["a", "b"]`},
		{`[{ cert = "/x#y", key = "k" }]  # more`, `[{ cert = "/x#y", key = "k" }]`},
		{`10`, `10`},
		{`"AB:CD:..."            # SHA-256`, `"AB:CD:..."`},
	} {
		if got := valueOf(tc.in); got != tc.want {
			t.Errorf("valueOf(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestKeyNames(t *testing.T) {
	names := map[string]string{"APOP": "apop", "PasswordCommand": "password_command", "TLS": "tls"}
	for _, tc := range []struct{ doc, self, want string }{
		{"APOP offers APOP (RFC 1939 §7).", "apop", "`apop` offers APOP (RFC 1939 §7)."},
		{"or PasswordCommand", "password", "or `password_command`"},
		{"needs TLS", "cert_file", "needs TLS"},
		{"TLS mode", "server", "TLS mode"},
	} {
		if got := keyNames(tc.doc, tc.self, names); got != tc.want {
			t.Errorf("keyNames(%q, %q) = %q, want %q", tc.doc, tc.self, got, tc.want)
		}
	}
}

func TestShortDuration(t *testing.T) {
	for _, tc := range []struct {
		d    time.Duration
		want string
	}{
		{10 * time.Minute, "10m"}, {time.Hour, "1h"}, {90 * time.Minute, "1h30m"},
		{15 * time.Second, "15s"}, {0, "0s"}, {1500 * time.Millisecond, "1.5s"},
	} {
		if got := shortDuration(tc.d); got != tc.want {
			t.Errorf("shortDuration(%v) = %q, want %q", tc.d, got, tc.want)
		}
	}
}
