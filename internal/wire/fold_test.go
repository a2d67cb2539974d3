package wire

import (
	"strings"
	"testing"
)

// Only ASCII letters fold: the Unicode letters strings.EqualFold and
// strings.ToUpper map onto ASCII ones do not.
func TestFoldASCII(t *testing.T) {
	eq := []struct {
		s, t string
		want bool
	}{
		{"STAT", "stat", true},
		{"sTaT", "STAT", true},
		{"UTF8", "utf8", true},
		{"SYS/TEMP", "sys/temp", true},
		{"", "", true},
		{"ſtat", "STAT", false},          // U+017F LATIN SMALL LETTER LONG S
		{"lıst", "LIST", false},          // U+0131 LATIN SMALL LETTER DOTLESS I
		{"\u212Aelvin", "KELVIN", false}, // U+212A KELVIN SIGN
		{"\u212A", "k", false},
		{"STAT", "STA", false},
		{"@", "`", false}, // 0x40 and 0x60 differ by the case bit but are no letters
		{"[", "{", false},
	}
	for _, tc := range eq {
		if got := EqualFoldASCII(tc.s, tc.t); got != tc.want {
			t.Errorf("EqualFoldASCII(%q, %q) = %v, want %v", tc.s, tc.t, got, tc.want)
		}
		if got := HasPrefixFoldASCII([]byte(tc.s+" x"), tc.t+" "); got != tc.want {
			t.Errorf("HasPrefixFoldASCII(%q, %q) = %v, want %v", tc.s+" x", tc.t+" ", got, tc.want)
		}
		if tc.want != strings.EqualFold(tc.s, tc.t) {
			// Where Unicode folding disagrees, it is the bug this guards.
			t.Logf("strings.EqualFold(%q, %q) = %v", tc.s, tc.t, !tc.want)
		}
	}
	for _, tc := range []struct{ in, upper, lower string }{
		{"stat", "STAT", "stat"},
		{"Scram-Sha-256", "SCRAM-SHA-256", "scram-sha-256"},
		{"ſtat", "ſTAT", "ſtat"},
		{"plaın", "PLAıN", "plaın"},
		{"\u212A", "\u212A", "\u212A"},
		{"", "", ""},
	} {
		if got := ToUpperASCII(tc.in); got != tc.upper {
			t.Errorf("ToUpperASCII(%q) = %q, want %q", tc.in, got, tc.upper)
		}
		if got := ToLowerASCII(tc.in); got != tc.lower {
			t.Errorf("ToLowerASCII(%q) = %q, want %q", tc.in, got, tc.lower)
		}
	}
}
