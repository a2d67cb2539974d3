// Package uidlfmt parses and expands UIDL format templates in the syntax of
// Dovecot's pop3_uidl_format setting, so that a server taking over a
// maildrop from Dovecot can serve the UIDLs (RFC 1939 §7) Dovecot served.
//
// The expansion is Dovecot 2.3's var_expand (src/lib/var-expand.c) with
// the variable table of its POP3 UIDL command (src/pop3/pop3-commands.c,
// pop3_get_uid):
//
//	%u %{uid}          the message's IMAP UID, in decimal
//	%v %{uidvalidity}  the mailbox's UIDVALIDITY, in decimal
//	%m %{md5}          MD5 of the message header in lowercase hex (mbox only)
//	%f %{filename}     the Maildir file name without its info part (Maildir only)
//	%g %{guid}         the message GUID (Maildir: the G field of dovecot-uidlist, else %f)
//	%%                 a '%'
//
// Each variable may carry, between '%' and the letter, Dovecot's
// "[-][0][width][.[0][-]width]" offset and width and any of the modifiers
// L (lowercase), U (uppercase), E (backslash before ", ' and \), X (the
// decimal value in hexadecimal), R (reverse), M (MD5 in hex), D ('.'
// becomes ",dc="), T (trim trailing white space), applied in order. X
// prints lowercase digits, as Dovecot's "%llx" does: Dovecot 2.3's default
// format "%08Xu%08Xv" gives "000000016b16e363" for UID 1 of UIDVALIDITY
// 1796662115, never "000000016B16E363". "08" pads with zeros and never
// truncates; a width without the zero truncates. The hash modifiers H and
// N, hash functions (%{sha1:...}), %{env:...} and any other variable are
// refused by Parse, so a configuration that Dovecot would expand to
// "UNSUPPORTED_VARIABLE_x" is an error before a UIDL is ever served.
package uidlfmt

import (
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Default is Dovecot 2.3's default pop3_uidl_format.
const Default = "%08Xu%08Xv"

// Vars is a set of the variables a format uses.
type Vars uint8

// The variables of a UIDL format.
const (
	UID Vars = 1 << iota
	UIDValidity
	MD5
	Filename
	GUID
)

// Values are what a format's variables expand to for one message. Only
// those the format uses are read.
type Values struct {
	UID, UIDValidity uint32
	MD5              string // lowercase hex
	Filename, GUID   string
}

// Format is a parsed UIDL format. The zero value is not usable; a nil
// *Format means "no format configured" to its users.
type Format struct {
	src   string
	parts []part
	vars  Vars
}

type part struct {
	lit       string // literal text; when v == 0 the whole part
	v         Vars
	mods      string // modifier letters, in order
	offset    int
	width     int
	zeroPad   bool
	hasOffset bool
}

var names = map[string]Vars{
	"u": UID, "uid": UID,
	"v": UIDValidity, "uidvalidity": UIDValidity,
	"m": MD5, "md5": MD5,
	"f": Filename, "filename": Filename,
	"g": GUID, "guid": GUID,
}

const modifiers = "LUEXRHNMDT"

// Parse parses a pop3_uidl_format template. An empty template, an unknown
// variable or modifier, or a template that uses no variable at all (every
// message would have the same UIDL) is an error.
func Parse(s string) (*Format, error) {
	if s == "" {
		return nil, errors.New("empty UIDL format")
	}
	f := &Format{src: s}
	var lit strings.Builder
	flush := func() {
		if lit.Len() > 0 {
			f.parts = append(f.parts, part{lit: lit.String()})
			lit.Reset()
		}
	}
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			lit.WriteByte(s[i])
			continue
		}
		start := i
		i++
		var p part
		// [<offset>.]<width>[<modifiers>]<variable>, as var_expand_with_funcs.
		sign := 1
		if i < len(s) && s[i] == '-' {
			sign = -1
			i++
		}
		if i < len(s) && s[i] == '0' {
			p.zeroPad = true
			i++
		}
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			p.width = p.width*10 + int(s[i]-'0')
			if p.width > 1000 {
				return nil, fmt.Errorf("width too large at %q", s[start:])
			}
			i++
		}
		if i < len(s) && s[i] == '.' {
			p.offset = sign * p.width
			p.hasOffset = true
			sign = 1
			p.width = 0
			i++
			p.zeroPad = false
			if i < len(s) && s[i] == '0' {
				p.zeroPad = true
				i++
			}
			if i < len(s) && s[i] == '-' {
				sign = -1
				i++
			}
			for i < len(s) && s[i] >= '0' && s[i] <= '9' {
				p.width = p.width*10 + int(s[i]-'0')
				if p.width > 1000 {
					return nil, fmt.Errorf("width too large at %q", s[start:])
				}
				i++
			}
			p.width *= sign
		}
		for i < len(s) && strings.IndexByte(modifiers, s[i]) >= 0 && len(p.mods) < 10 {
			if s[i] == 'H' || s[i] == 'N' {
				return nil, fmt.Errorf("modifier %%%c (hash) is not supported", s[i])
			}
			p.mods += string(s[i])
			i++
		}
		if i >= len(s) {
			return nil, fmt.Errorf("%q ends inside a variable", s)
		}
		var name string
		if s[i] == '{' {
			end := strings.IndexByte(s[i:], '}')
			if end < 0 {
				return nil, fmt.Errorf("unterminated %%{ in %q", s[start:])
			}
			name = s[i+1 : i+end]
			i += end
		} else {
			name = s[i : i+1]
		}
		if name == "%" {
			lit.WriteByte('%')
			continue
		}
		v, ok := names[name]
		if !ok {
			return nil, fmt.Errorf("unknown variable %q (known: %%u %%v %%m %%f %%g)", "%"+braced(name))
		}
		p.v = v
		f.vars |= v
		flush()
		f.parts = append(f.parts, p)
	}
	flush()
	if f.vars == 0 {
		return nil, fmt.Errorf("%q uses no variable: every message would have the same UIDL", s)
	}
	return f, nil
}

func braced(name string) string {
	if len(name) == 1 {
		return name
	}
	return "{" + name + "}"
}

// MustParse is Parse for formats known to be valid; it panics otherwise.
func MustParse(s string) *Format {
	f, err := Parse(s)
	if err != nil {
		panic(err)
	}
	return f
}

// String returns the template as given to Parse.
func (f *Format) String() string { return f.src }

// Uses reports whether the format uses any of the variables in v.
func (f *Format) Uses(v Vars) bool { return f.vars&v != 0 }

// Vars returns the variables the format uses.
func (f *Format) Vars() Vars { return f.vars }

// Expand returns the UIDL of a message with the values v, octet for octet
// what Dovecot 2.3 prints for the same values. The caller checks that the
// result is a valid UIDL (RFC 1939 §7: 1-70 characters of 0x21-0x7E).
func (f *Format) Expand(v Values) string {
	var b strings.Builder
	for _, p := range f.parts {
		if p.v == 0 {
			b.WriteString(p.lit)
			continue
		}
		var s string
		switch p.v {
		case UID:
			s = strconv.FormatUint(uint64(v.UID), 10)
		case UIDValidity:
			s = strconv.FormatUint(uint64(v.UIDValidity), 10)
		case MD5:
			s = v.MD5
		case Filename:
			s = v.Filename
		case GUID:
			s = v.GUID
		}
		for _, m := range p.mods {
			s = modify(byte(m), s)
		}
		if p.offset < 0 {
			if n := -p.offset; len(s) > n {
				s = s[len(s)-n:]
			}
		} else if p.offset > 0 {
			s = s[min(p.offset, len(s)):]
		}
		width := p.width
		switch {
		case width == 0:
			b.WriteString(s)
		case !p.zeroPad:
			if width < 0 {
				width = len(s) + width
			}
			if width < 0 {
				// Dovecot passes the negative width to str_append_max as
				// a size_t: everything is appended.
				width = len(s)
			}
			b.WriteString(s[:min(width, len(s))])
		default:
			// %05d-like padding, no truncation.
			for n := len(s); n < width; n++ {
				b.WriteByte('0')
			}
			b.WriteString(s)
		}
	}
	return b.String()
}

// modify applies one var_expand modifier.
func modify(m byte, s string) string {
	switch m {
	case 'L':
		return asciiMap(s, 'A', 'Z', 'a'-'A')
	case 'U':
		return asciiMap(s, 'a', 'z', 'A'-'a')
	case 'E':
		var b strings.Builder
		for i := 0; i < len(s); i++ {
			if c := s[i]; c == '"' || c == '\'' || c == '\\' {
				b.WriteByte('\\')
			}
			b.WriteByte(s[i])
		}
		return b.String()
	case 'X':
		// str_to_ullong: decimal digits only, else 0.
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			n = 0
		}
		return strconv.FormatUint(n, 16)
	case 'R':
		b := []byte(s)
		for i, j := 0, len(b)-1; i < j; i, j = i+1, j-1 {
			b[i], b[j] = b[j], b[i]
		}
		return string(b)
	case 'M':
		sum := md5.Sum([]byte(s))
		return hex.EncodeToString(sum[:])
	case 'D':
		return strings.ReplaceAll(s, ".", ",dc=")
	case 'T':
		return strings.TrimRight(s, " \t\n\v\f\r")
	}
	return s
}

func asciiMap(s string, lo, hi byte, delta int) string {
	b := []byte(s)
	for i, c := range b {
		if c >= lo && c <= hi {
			b[i] = byte(int(c) + delta)
		}
	}
	return string(b)
}
