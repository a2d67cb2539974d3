package pop3server

import (
	"testing"

	"github.com/postoffice-mail/postoffice/internal/wire"
)

// FuzzKeyword checks that keyword folds ASCII only (RFC 1939 §3): it finds
// a keyword exactly when the input is that keyword in some mix of ASCII
// case. Seeds include letters that Unicode folds onto ASCII ones.
func FuzzKeyword(f *testing.F) {
	for _, s := range []string{"STAT", "stat", "sTaT", "ſtat", "lıst", "uıdl", "\u212Aapa", "TOP", "top ", "", "RETRR"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, kw []byte) {
		got := keyword(kw)
		want := ""
		for _, k := range keywords {
			if wire.EqualFoldASCII(string(kw), k) {
				want = k
			}
		}
		if got != want {
			t.Errorf("keyword(%q) = %q, want %q", kw, got, want)
		}
	})
}
