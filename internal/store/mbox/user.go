package mbox

import (
	"fmt"
	"path/filepath"
	"strings"
	"unicode/utf8"

	"github.com/postoffice-mail/postoffice/internal/store"
)

// userName is a validated user name split into its parts.
type userName struct {
	full   string // %u: "local" or "local@domain"
	local  string // %n
	domain string // %d, empty if none
}

// parseUser validates a user name and splits it. Accepted forms are "user"
// and "user@domain". The store is given the user database's canonical name,
// never what a client typed, so it applies no login alias: Demon's SDPS
// "user+domain" is resolved to "user@domain" by the user database at an
// interactive login only, and a stored name "alice+example.org" is a user of
// its own whose maildrop must not be alice@example.org's. Every part must be safe as one path
// component: not empty, no '/', '\', NUL or other control character, no
// leading '.', valid UTF-8. So no name can climb out of the directory the
// location template puts it in.
func parseUser(u string) (userName, error) {
	if u == "" || len(u) > 255 || !utf8.ValidString(u) {
		return userName{}, fmt.Errorf("mbox: invalid user name %q: %w", u, store.ErrNoUser)
	}
	var n userName
	if i := strings.LastIndexByte(u, '@'); i >= 0 {
		n.local, n.domain = u[:i], u[i+1:]
	} else {
		n.local = u
	}
	if err := checkPart(n.local); err != nil {
		return userName{}, fmt.Errorf("mbox: invalid user name %q: %v: %w", u, err, store.ErrNoUser)
	}
	if strings.ContainsRune(n.local, '@') {
		return userName{}, fmt.Errorf("mbox: invalid user name %q: two '@': %w", u, store.ErrNoUser)
	}
	n.full = n.local
	if n.domain != "" || strings.Contains(u, "@") {
		if err := checkPart(n.domain); err != nil {
			return userName{}, fmt.Errorf("mbox: invalid user name %q: domain: %v: %w", u, err, store.ErrNoUser)
		}
		n.full = n.local + "@" + n.domain
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

// location is a parsed path template (the mbox file, or the index
// directory).
type location struct {
	tmpl     string
	needHome bool
}

// parseLocation parses a Dovecot-style mbox location: the path template of
// the mbox file itself ("/var/mail/%u", "~/mbox"), with %u (full user
// name), %n (local part), %d (domain), %h or a leading ~ (home directory),
// %% (a '%'), and the long forms %{user}, %{username}, %{domain},
// %{home}. Of Dovecot's ":KEY=value" parameters, INDEX=<directory
// template> places the index and the session lock file (see the package
// doc); INBOX= is accepted as the mbox path when the main path is a
// directory of folders ("mbox:~/mail:INBOX=/var/mail/%u", Dovecot's usual
// form), and LAYOUT is ignored (only INBOX is served). Any other parameter
// is an error rather than silently meaning something else.
func parseLocation(s string) (file location, index *location, err error) {
	s = strings.TrimPrefix(s, "mbox:")
	path, params, _ := strings.Cut(s, ":")
	if params != "" {
		for p := range strings.SplitSeq(params, ":") {
			k, v, _ := strings.Cut(p, "=")
			switch strings.ToUpper(k) {
			case "INDEX":
				if strings.EqualFold(v, "MEMORY") || v == "" {
					return location{}, nil, fmt.Errorf("mbox: location: INDEX=%q: an index directory is required (UIDLs must persist)", v)
				}
				l, err := parsePath(v)
				if err != nil {
					return location{}, nil, err
				}
				index = &l
			case "INBOX":
				path = v
			case "LAYOUT":
			default:
				return location{}, nil, fmt.Errorf("mbox: location parameter %q not supported", k)
			}
		}
	}
	file, err = parsePath(path)
	return file, index, err
}

// parsePath parses one path template.
func parsePath(path string) (location, error) {
	if path == "" {
		return location{}, fmt.Errorf("mbox: empty location")
	}
	l := location{tmpl: path}
	if path[0] == '~' {
		if len(path) > 1 && path[1] != '/' {
			return location{}, fmt.Errorf("mbox: location %q: only ~/ (the user's home) is supported", path)
		}
		l.needHome = true
	}
	// Dry run with a sample user to find bad escapes.
	sample := userName{full: "u@d", local: "u", domain: "d"}
	p, usedHome, err := l.expandRaw(sample, "/home")
	if err != nil {
		return location{}, err
	}
	l.needHome = l.needHome || usedHome
	if !l.needHome && !filepath.IsAbs(p) {
		return location{}, fmt.Errorf("mbox: location %q is not an absolute path", path)
	}
	return l, nil
}

// split returns the mbox path for u cut at the line between the
// administrator's part and the user's (see the package doc, "Symbolic
// links"): top, and the components below it. The line is just after the
// home directory when the template starts from it, else at the start of
// the first component that holds a variable; a template without one is
// all top. Each part is cleaned; a component below the line that would
// climb (..) is refused.
func (l location) split(u userName, home string) (top string, below []string, err error) {
	p, line, _, err := l.expandLine(u, home)
	if err != nil {
		return "", nil, err
	}
	top = filepath.Clean(p[:line])
	if !filepath.IsAbs(top) {
		return "", nil, fmt.Errorf("mbox: location for %q is not absolute: %q", u.full, p)
	}
	for c := range strings.SplitSeq(p[line:], "/") {
		switch c {
		case "", ".":
		case "..":
			return "", nil, fmt.Errorf("mbox: location for %q climbs with '..' below %s", u.full, top)
		default:
			below = append(below, c)
		}
	}
	return top, below, nil
}

func (l location) expandRaw(u userName, home string) (string, bool, error) {
	p, _, usedHome, err := l.expandLine(u, home)
	return p, usedHome, err
}

// expandLine expands the template for u and returns where in the result
// the line falls (see split).
func (l location) expandLine(u userName, home string) (p string, line int, usedHome bool, err error) {
	var b strings.Builder
	line = -1
	t := l.tmpl
	if t[0] == '~' {
		b.WriteString(home)
		t = t[1:]
		line = b.Len()
		usedHome = true
	}
	for len(t) > 0 {
		i := strings.IndexByte(t, '%')
		if i < 0 {
			b.WriteString(t)
			break
		}
		b.WriteString(t[:i])
		t = t[i+1:]
		if t == "" {
			return "", 0, false, fmt.Errorf("mbox: location %q ends in '%%'", l.tmpl)
		}
		var name string
		if t[0] == '{' {
			j := strings.IndexByte(t, '}')
			if j < 0 {
				return "", 0, false, fmt.Errorf("mbox: location %q: unterminated %%{", l.tmpl)
			}
			name, t = t[1:j], t[j+1:]
		} else {
			name, t = t[:1], t[1:]
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
			b.WriteString(u.full)
		case "n", "username":
			b.WriteString(u.local)
		case "d", "domain":
			b.WriteString(u.domain)
		case "h", "home":
			b.WriteString(home)
			usedHome = true
			if line == strings.LastIndexByte(b.String()[:b.Len()-len(home)], '/')+1 {
				line = b.Len() // the home directory is the administrator's
			}
		default:
			return "", 0, false, fmt.Errorf("mbox: location %q: unknown variable %%%s", l.tmpl, name)
		}
	}
	if line < 0 {
		line = b.Len()
	}
	return b.String(), line, usedHome, nil
}
