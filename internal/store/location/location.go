// Package location owns what the file-based stores (Maildir, mbox) share
// about where a user's mail lives: the user names a store accepts and the
// Dovecot-style path templates that place a maildrop
// ("/var/vmail/%d/%n/Maildir", "~/Maildir", "/var/mail/%u").
//
// A template is cut in two by a line (Template.Split): above it is the
// administrator's part, opened like any path; below it is the part a user
// may be able to write, where the stores follow no symbolic link. The line
// is just after the home directory when the template starts from it, else
// at the start of the first path component that holds a variable.
//
// Decisions:
//   - User names are "user" or "user@domain", as the user database stores
//     them. No login alias applies here: Demon's SDPS "user+domain" is
//     resolved by the user database at an interactive login only, so a
//     stored name "alice+example.org" is a user of its own, never
//     alice@example.org's maildrop.
//   - Every part of a name must be safe as one path component (not empty,
//     no '/', '\', NUL or other control character, no leading '.', valid
//     UTF-8), so no name climbs out of the directory its template puts it
//     in.
//   - Of Dovecot's variables, %u, %n, %d and %h (and their long forms) are
//     understood; any other is an error rather than a path with a literal
//     '%' in it.
package location

import (
	"fmt"
	"path/filepath"
	"strings"
	"unicode/utf8"

	"github.com/postoffice-mail/postoffice/internal/store"
)

// User is a validated user name split into its parts.
type User struct {
	Full   string // %u: "local" or "local@domain"
	Local  string // %n
	Domain string // %d, empty if none
}

// ParseUser validates a user name and splits it (see the package doc). An
// invalid name's error wraps store.ErrNoUser.
func ParseUser(u string) (User, error) {
	if u == "" || len(u) > 255 || !utf8.ValidString(u) {
		return User{}, fmt.Errorf("invalid user name %q: %w", u, store.ErrNoUser)
	}
	var n User
	if i := strings.LastIndexByte(u, '@'); i >= 0 {
		n.Local, n.Domain = u[:i], u[i+1:]
	} else {
		n.Local = u
	}
	if err := checkPart(n.Local); err != nil {
		return User{}, fmt.Errorf("invalid user name %q: %v: %w", u, err, store.ErrNoUser)
	}
	if strings.ContainsRune(n.Local, '@') {
		return User{}, fmt.Errorf("invalid user name %q: two '@': %w", u, store.ErrNoUser)
	}
	n.Full = n.Local
	if n.Domain != "" || strings.Contains(u, "@") {
		if err := checkPart(n.Domain); err != nil {
			return User{}, fmt.Errorf("invalid user name %q: domain: %v: %w", u, err, store.ErrNoUser)
		}
		n.Full = n.Local + "@" + n.Domain
	}
	return n, nil
}

func checkPart(s string) error {
	if s == "" {
		return fmt.Errorf("empty part")
	}
	if s[0] == '.' {
		return fmt.Errorf("leading '.'")
	}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '/' || c == '\\':
			return fmt.Errorf("path separator")
		case c < 0x20 || c == 0x7f:
			return fmt.Errorf("control character 0x%02x", c)
		}
	}
	return nil
}

// Template is a parsed path template.
type Template struct {
	tmpl string
	// NeedHome is set when the template uses the home directory (~/ or
	// %h), so expanding it needs the user's home.
	NeedHome bool
}

// Parse parses a path template: %u (full user name), %n (local part), %d
// (domain), %h or a leading ~ (home directory), %% (a '%'), and the long
// forms %{user}, %{username}, %{domain}, %{home}. The result must be an
// absolute path unless it starts from the home directory.
func Parse(path string) (Template, error) {
	if path == "" {
		return Template{}, fmt.Errorf("empty location")
	}
	t := Template{tmpl: path}
	if path[0] == '~' {
		if len(path) > 1 && path[1] != '/' {
			return Template{}, fmt.Errorf("location %q: only ~/ (the user's home) is supported", path)
		}
		t.NeedHome = true
	}
	// Dry run with a sample user to find bad escapes.
	sample := User{Full: "u@d", Local: "u", Domain: "d"}
	p, _, usedHome, err := t.expandLine(sample, "/home")
	if err != nil {
		return Template{}, err
	}
	t.NeedHome = t.NeedHome || usedHome
	if !t.NeedHome && !filepath.IsAbs(p) {
		return Template{}, fmt.Errorf("location %q is not an absolute path", path)
	}
	return t, nil
}

// String returns the template as it was written.
func (t Template) String() string { return t.tmpl }

// Expand returns the cleaned path for u.
func (t Template) Expand(u User, home string) (string, error) {
	p, _, _, err := t.expandLine(u, home)
	if err != nil {
		return "", err
	}
	p = filepath.Clean(p)
	if !filepath.IsAbs(p) {
		return "", fmt.Errorf("location for %q is not absolute: %q", u.Full, p)
	}
	return p, nil
}

// Split returns the path for u cut at the line between the administrator's
// part and the user's (see the package doc): top, and the components below
// it. A template without a variable is all top. Each part is cleaned; a
// component below the line that would climb (..) is refused.
func (t Template) Split(u User, home string) (top string, below []string, err error) {
	p, line, _, err := t.expandLine(u, home)
	if err != nil {
		return "", nil, err
	}
	top = filepath.Clean(p[:line])
	if !filepath.IsAbs(top) {
		return "", nil, fmt.Errorf("location for %q is not absolute: %q", u.Full, p)
	}
	for c := range strings.SplitSeq(p[line:], "/") {
		switch c {
		case "", ".":
		case "..":
			return "", nil, fmt.Errorf("location for %q climbs with '..' below %s", u.Full, top)
		default:
			below = append(below, c)
		}
	}
	return top, below, nil
}

// expandLine expands the template for u and returns where in the result
// the line falls (see Split).
func (t Template) expandLine(u User, home string) (p string, line int, usedHome bool, err error) {
	var b strings.Builder
	line = -1
	s := t.tmpl
	if s[0] == '~' {
		b.WriteString(home)
		s = s[1:]
		line = b.Len()
		usedHome = true
	}
	for len(s) > 0 {
		i := strings.IndexByte(s, '%')
		if i < 0 {
			b.WriteString(s)
			break
		}
		b.WriteString(s[:i])
		s = s[i+1:]
		if s == "" {
			return "", 0, false, fmt.Errorf("location %q ends in '%%'", t.tmpl)
		}
		var name string
		if s[0] == '{' {
			j := strings.IndexByte(s, '}')
			if j < 0 {
				return "", 0, false, fmt.Errorf("location %q: unterminated %%{", t.tmpl)
			}
			name, s = s[1:j], s[j+1:]
		} else {
			name, s = s[:1], s[1:]
		}
		if name != "%" && line < 0 {
			// The first variable: the line is at the start of its
			// component, or after the home directory.
			line = strings.LastIndexByte(b.String(), '/') + 1
		}
		switch name {
		case "%":
			b.WriteByte('%')
		case "u", "user":
			b.WriteString(u.Full)
		case "n", "username":
			b.WriteString(u.Local)
		case "d", "domain":
			b.WriteString(u.Domain)
		case "h", "home":
			b.WriteString(home)
			usedHome = true
			if line == strings.LastIndexByte(b.String()[:b.Len()-len(home)], '/')+1 {
				line = b.Len() // the home directory is the administrator's
			}
		default:
			return "", 0, false, fmt.Errorf("location %q: unknown variable %%%s", t.tmpl, name)
		}
	}
	if line < 0 {
		line = b.Len()
	}
	return b.String(), line, usedHome, nil
}

// Params splits a location's path from Dovecot's ":KEY=value" parameters
// ("/var/mail/%u:INDEX=/var/index/%u"), keys upper-cased. The store that
// reads them decides which it supports; it should refuse the others rather
// than ignore a setting that would mean something else.
func Params(s string) (path string, params []Param) {
	path, rest, _ := strings.Cut(s, ":")
	if rest == "" {
		return path, nil
	}
	for p := range strings.SplitSeq(rest, ":") {
		k, v, _ := strings.Cut(p, "=")
		params = append(params, Param{Key: strings.ToUpper(k), Value: v})
	}
	return path, params
}

// Param is one ":KEY=value" parameter of a location.
type Param struct{ Key, Value string }
