package wire

// The words of the protocol compare case-insensitively in ASCII only:
// command keywords (RFC 1939 §3), capability names and response codes
// (RFC 2449 §5, §8) and SASL mechanism names (RFC 4422 §3.1, upper-case
// ASCII). strings.EqualFold and strings.ToUpper fold Unicode as well, so
// with them "ſtat" (U+017F LATIN SMALL LETTER LONG S) would be STAT, "lıst"
// (U+0131 dotless i) LIST and "\u212A" (KELVIN SIGN) the letter K: a word
// no client should send would pass a filter that looks for ASCII, and a
// peer could smuggle one keyword past a check on another. These helpers
// fold 'a'-'z' and 'A'-'Z' only and leave every other byte as it is.

// EqualFoldASCII reports whether s and t are equal when ASCII letters are
// compared case-insensitively; any other byte must be equal.
func EqualFoldASCII(s, t string) bool {
	if len(s) != len(t) {
		return false
	}
	for i := 0; i < len(s); i++ {
		if upper(s[i]) != upper(t[i]) {
			return false
		}
	}
	return true
}

// HasPrefixFoldASCII reports whether b begins with prefix, ASCII letters
// compared case-insensitively.
func HasPrefixFoldASCII(b []byte, prefix string) bool {
	if len(b) < len(prefix) {
		return false
	}
	for i := 0; i < len(prefix); i++ {
		if upper(b[i]) != upper(prefix[i]) {
			return false
		}
	}
	return true
}

// ToUpperASCII returns s with 'a'-'z' mapped to 'A'-'Z', every other byte
// unchanged. It does not allocate when s has no lower-case ASCII letter.
func ToUpperASCII(s string) string {
	return mapASCII(s, 'a', 'z', 'A'-'a')
}

// ToLowerASCII returns s with 'A'-'Z' mapped to 'a'-'z', every other byte
// unchanged. It does not allocate when s has no upper-case ASCII letter.
func ToLowerASCII(s string) string {
	return mapASCII(s, 'A', 'Z', 'a'-'A')
}

func mapASCII(s string, lo, hi byte, delta int) string {
	i := 0
	for i < len(s) && (s[i] < lo || s[i] > hi) {
		i++
	}
	if i == len(s) {
		return s
	}
	b := []byte(s)
	for ; i < len(b); i++ {
		if lo <= b[i] && b[i] <= hi {
			b[i] = byte(int(b[i]) + delta)
		}
	}
	return string(b)
}

func upper(c byte) byte {
	if 'a' <= c && c <= 'z' {
		return c - ('a' - 'A')
	}
	return c
}
