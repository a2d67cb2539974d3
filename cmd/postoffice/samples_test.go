package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/postoffice-mail/postoffice/internal/certutil"
	"github.com/postoffice-mail/postoffice/internal/config"
)

// sampleConfigs returns the configuration samples the documentation
// shows: the ```toml blocks of README.md and docs/*.md, and the .toml
// files under testdata/ directories of the repository, by a name saying
// where each comes from.
func sampleConfigs(t *testing.T) map[string]string {
	t.Helper()
	root := filepath.Join("..", "..")
	samples := make(map[string]string)
	docs, _ := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	for _, md := range append([]string{filepath.Join(root, "README.md")}, docs...) {
		text, err := os.ReadFile(md)
		if err != nil {
			t.Fatal(err)
		}
		for i, block := range tomlBlocks(string(text)) {
			samples[fmt.Sprintf("%s#%d", filepath.Base(md), i+1)] = block
		}
	}
	filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() && d.Name() == ".git" {
			return filepath.SkipDir
		}
		if !d.IsDir() && strings.HasSuffix(path, ".toml") && strings.Contains(filepath.ToSlash(path), "/testdata/") {
			text, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			samples[path] = string(text)
		}
		return nil
	})
	return samples
}

// tomlBlocks returns the text between each "```toml" line and the next
// "```" line of a Markdown file.
func tomlBlocks(md string) []string {
	var blocks []string
	var cur *strings.Builder
	for line := range strings.Lines(md) {
		trimmed := strings.TrimSpace(line)
		switch {
		case cur == nil && trimmed == "```toml":
			cur = new(strings.Builder)
		case cur != nil && trimmed == "```":
			blocks = append(blocks, cur.String())
			cur = nil
		case cur != nil:
			cur.WriteString(line)
		}
	}
	return blocks
}

var (
	// addrValue is a quoted host:port: every listener of a sample is moved
	// to a free loopback port, so that binding needs no privilege and
	// clashes with nothing.
	addrValue = regexp.MustCompile(`"[0-9a-zA-Z.\[\]:-]*:[0-9]+"`)
	// pathValue is a quoted absolute path, or a maildir: location.
	pathValue = regexp.MustCompile(`"(maildir:)?(/[^"]*)"`)
)

// withFixtures rewrites sample so that what it names exists: each absolute
// path moves below root, where a file of the kind its name suggests is
// made (a certificate, its key, a passwd-file, a JWKS, a client secret; a
// directory for the rest), [server] user and group become nobody and
// nogroup, and the keys a fragment leaves out that the config requires
// (auth.passwd_file, mail.location, a POP3 listener) are added.
func withFixtures(t *testing.T, sample, root string) string {
	t.Helper()
	pair, err := certutil.SelfSigned(90 * 24 * time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	write := func(path string, data []byte) {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	passwd := "alice:{PLAIN}secret\n"
	text := pathValue.ReplaceAllStringFunc(sample, func(q string) string {
		m := pathValue.FindStringSubmatch(q)
		path := filepath.Join(root, m[2])
		name := filepath.Base(m[2])
		switch {
		case m[1] != "": // a location: the part before the first %
			base := path
			if i := strings.IndexByte(base, '%'); i >= 0 {
				base = filepath.Dir(base[:i] + "x")
			}
			os.MkdirAll(base, 0o755)
		case strings.HasSuffix(name, ".key") || strings.Contains(name, "privkey"):
			write(path, pair.KeyPEM)
		case strings.HasSuffix(name, ".pem"):
			write(path, pair.CertPEM) // also serves as a client CA: it is its own CA
		case strings.Contains(name, "jwks"):
			write(path, testJWKS(t))
		case strings.Contains(name, "secret"):
			write(path, []byte("s3cret\n"))
		case name == "users" || strings.Contains(name, "passwd"):
			write(path, []byte(passwd))
		case strings.HasSuffix(name, ".sock"):
			os.MkdirAll(filepath.Dir(path), 0o755)
		default:
			os.MkdirAll(path, 0o755)
		}
		return `"` + m[1] + path + `"`
	})
	text = regexp.MustCompile(`(?m)^(\s*user\s*=\s*)"[^"]*"`).ReplaceAllString(text, `${1}"nobody"`)
	text = regexp.MustCompile(`(?m)^(\s*group\s*=\s*)"[^"]*"`).ReplaceAllString(text, `${1}"nogroup"`)
	require := func(key, table, line string) {
		if regexp.MustCompile(`(?m)^\s*` + key + `\s*=`).MatchString(text) {
			return
		}
		header := regexp.MustCompile(`(?m)^\[` + regexp.QuoteMeta(table) + `\][^\n]*\n`)
		if loc := header.FindStringIndex(text); loc != nil {
			text = text[:loc[1]] + line + "\n" + text[loc[1]:]
			return
		}
		text += "\n[" + table + "]\n" + line + "\n"
	}
	p := filepath.Join(root, "fixture.passwd")
	write(p, []byte(passwd))
	os.MkdirAll(filepath.Join(root, "vmail"), 0o755)
	require("passwd_file", "auth", `passwd_file = "`+p+`"`)
	require("location", "mail", `location = "maildir:`+filepath.Join(root, "vmail")+`/%u/Maildir"`)
	require("listen", "pop3", `listen = ["127.0.0.1:0"]`)
	return text
}

// testJWKS returns a JWK set with one P-256 signature key (RFC 7517,
// RFC 7518 §6.2).
func testJWKS(t *testing.T) []byte {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := k.PublicKey.Bytes() // 0x04 || X || Y
	if err != nil {
		t.Fatal(err)
	}
	b64 := base64.RawURLEncoding.EncodeToString
	return fmt.Appendf(nil, `{"keys":[{"kty":"EC","crv":"P-256","x":%q,"y":%q,"use":"sig","alg":"ES256","kid":"test"}]}`,
		b64(pub[1:33]), b64(pub[33:]))
}

// serveRefuses is what serve would do with the config file at path up to
// the point where it switches user and serves: load, build every part,
// bind every listener. It returns why serve would not start, or nil.
func serveRefuses(path string) error {
	cfg, err := config.Load(path)
	if err != nil {
		return err
	}
	a := newApp(cfg, io.Discard)
	defer a.close()
	if errs := a.build(allParts...); errs != nil {
		return errs[0]
	}
	_, err = a.bind()
	return err
}

// postoffice check passes exactly the sample configurations serve starts
// with, and refuses the others naming the problem serve stops at: each
// sample of the documentation, as written and with the files it names
// made, goes through check and through serve's build and bind (listeners
// moved to free loopback ports).
func TestSamplesCheckAgreesWithServe(t *testing.T) {
	samples := sampleConfigs(t)
	for _, want := range []string{"README.md#1", "auth.md#1", "tls.md#1", "security.md#3"} {
		if _, ok := samples[want]; !ok {
			t.Fatalf("no sample %s among %d found", want, len(samples))
		}
	}
	accepted := 0
	for name, sample := range samples {
		sample = addrValue.ReplaceAllString(sample, `"127.0.0.1:0"`)
		for _, variant := range []string{"as written", "with fixtures"} {
			t.Run(name+"/"+variant, func(t *testing.T) {
				dir := t.TempDir()
				text := sample
				if variant == "with fixtures" {
					text = withFixtures(t, sample, dir)
				}
				path := filepath.Join(dir, "postoffice.toml")
				if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
					t.Fatal(err)
				}
				refused := serveRefuses(path)
				t.Logf("serve: %v", refused)
				code, out, errs := runCmd(t, "", "check", "--config", path)
				switch {
				case refused == nil && code != 0:
					t.Errorf("serve starts, check exits %d:\n%s%s\nconfig:\n%s", code, out, errs, text)
				case refused != nil && code != 1:
					t.Errorf("serve refuses (%v), check exits %d:\n%s%s\nconfig:\n%s", refused, code, out, errs, text)
				case refused != nil && !strings.Contains(out, "error: "+refused.Error()+"\n"):
					t.Errorf("serve refuses with %q, check says otherwise:\n%s\nconfig:\n%s", refused, out, text)
				case refused == nil:
					accepted++
				}
			})
		}
	}
	// The fixtures must make some samples whole, or only refusals would
	// be compared.
	if accepted == 0 {
		t.Errorf("no sample was accepted by both")
	}
}
