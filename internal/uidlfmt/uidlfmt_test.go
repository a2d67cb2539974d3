package uidlfmt

import (
	"strings"
	"testing"
)

// TestExpand pins expansions against what Dovecot 2.3's var_expand prints
// for the same values (the first case was seen live from Dovecot 2.3.19).
func TestExpand(t *testing.T) {
	t.Parallel()
	v := Values{UID: 1, UIDValidity: 1796662115, MD5: "0123456789abcdef0123456789abcdef",
		Filename: "1700000001.M1P1.mx.example.org,S=10,W=12", GUID: "a1b2c3"}
	cases := []struct{ format, want string }{
		{Default, "000000016b16e363"},
		{"%u", "1"},
		{"%v.%u", "1796662115.1"},
		{"%{uidvalidity}-%{uid}", "1796662115-1"},
		{"%Xv", "6b16e363"},
		{"%UXv", "6b16e363"}, // modifiers apply in order: U, then X
		{"%XUv", "6B16E363"},
		{"%08u", "00000001"},
		{"%m", "0123456789abcdef0123456789abcdef"},
		{"%8m", "01234567"},
		{"%4.8m", "456789ab"},
		{"%-4.m", "cdef"},
		{"%f", "1700000001.M1P1.mx.example.org,S=10,W=12"},
		{"%g", "a1b2c3"},
		{"%Rg", "3c2b1a"},
		{"%Mu", "c4ca4238a0b923820dcc509a6f75849b"},
		{"%%%u%%", "%1%"},
		{"x%uy", "x1y"},
	}
	for _, c := range cases {
		f, err := Parse(c.format)
		if err != nil {
			t.Errorf("Parse(%q): %v", c.format, err)
			continue
		}
		if got := f.Expand(v); got != c.want {
			t.Errorf("Parse(%q).Expand = %q, want %q", c.format, got, c.want)
		}
	}
}

func TestParseErrors(t *testing.T) {
	t.Parallel()
	cases := []struct{ format, want string }{
		{"", "empty"},
		{"%x", "unknown variable"},
		{"%{user}", "unknown variable"},
		{"%{sha1:uid}", "unknown variable"},
		{"%Hu", "not supported"},
		{"abc", "no variable"},
		{"%%", "no variable"},
		{"%u%", "ends inside"},
		{"%{uid", "unterminated"},
	}
	for _, c := range cases {
		_, err := Parse(c.format)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Parse(%q) = %v, want an error containing %q", c.format, err, c.want)
		}
	}
}

func TestUses(t *testing.T) {
	t.Parallel()
	f := MustParse("%08Xu%08Xv")
	if !f.Uses(UID) || !f.Uses(UIDValidity) || f.Uses(MD5|Filename|GUID) {
		t.Errorf("Uses of %q: vars %b", f, f.Vars())
	}
}
