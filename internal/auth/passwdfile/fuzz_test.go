package passwdfile

import (
	"maps"
	"strings"
	"testing"

	"github.com/postoffice-mail/postoffice/internal/auth/scheme"
)

// FuzzParseLine checks that the line parser never panics, that setting a
// password on a line it accepts changes the password and nothing else, which
// is what SetPassword relies on, and that the explicit-scheme form
// Credentials hands out is usable exactly when the stored password is under
// the default scheme. Seeds are in testdata/fuzz/FuzzParseLine (taken from
// testdata/users.passwd) plus the lines added here.
func FuzzParseLine(f *testing.F) {
	for _, s := range []string{
		"alice:{PLAIN}a:1000:1000:Alice:/home/alice:/bin/false:userdb_mail=maildir:~/Mail k",
		"dave:$5$izKs1KlirzSf5Gsb$HX04T6fcU0p4svIfKfYVFTLSXGBu4KkNpSVhDNMfqt9", "v:$1$s$x", "w:{x", "x:{}y",
		"heidi", "# comment", "   ", ":x", "a:b:c:d:e:f:g::maildir:/x", "a:b\r", "a::::::: x= =y",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		if _, _, err := parse(strings.NewReader(line), "fuzz", nil); err != nil && !strings.HasPrefix(err.Error(), "passwdfile: ") {
			t.Fatalf("parse(%q) error %q lacks the passwdfile: prefix", line, err)
		}
		e, ok, err := parseLine(line)
		if err != nil || !ok {
			return
		}
		if name, _ := lineName(line); name != e.name {
			t.Fatalf("parseLine(%q) name %q, lineName %q", line, e.name, name)
		}
		if err := checkUsername(e.name); err != nil {
			t.Fatalf("parseLine(%q) accepted user name %q: %v", line, e.name, err)
		}
		changed := replacePassword(line, "{PLAIN}x")
		e2, ok, err := parseLine(changed)
		if err != nil || !ok {
			t.Fatalf("parseLine(replacePassword(%q)) = %v, %v", line, ok, err)
		}
		if e2.name != e.name || e2.password != "{PLAIN}x" || e2.uid != e.uid || e2.gid != e.gid ||
			e2.gecos != e.gecos || e2.home != e.home || e2.shell != e.shell || !maps.Equal(e2.extra, e.extra) {
			t.Fatalf("replacePassword(%q) = %q, which parses to %+v, want %+v with the new password", line, changed, e2, e)
		}
		for _, def := range []string{scheme.DovecotDefaultScheme, "PLAIN"} {
			explicit := explicitScheme(e.password, def)
			if !strings.HasPrefix(explicit, "{") {
				t.Fatalf("explicitScheme(%q, %s) = %q, want a {SCHEME} prefix", e.password, def, explicit)
			}
			// Check does the parsing without the hashing work.
			if a, b := scheme.Check(e.password, def), scheme.Check(explicit, ""); (a == nil) != (b == nil) {
				t.Fatalf("Check(%q, %s) = %v but Check(%q, \"\") = %v", e.password, def, a, explicit, b)
			}
		}
	})
}
