package passwdfile

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode"
	"unicode/utf8"
)

// maxLineLen bounds one line of the file.
const maxLineLen = 64 << 10

// entry is one user line of a passwd-file.
type entry struct {
	line        int // 1-based line number
	name        string
	password    string // as stored; "" if absent or empty
	uid, gid    string // decimal or empty
	gecos       string
	home        string // the home field, overridden by userdb_home
	shell       string
	extra       map[string]string // extra_fields; nil if none
	hasPassword bool              // the line has a non-empty password field
}

// ParseError is a line of a passwd-file that cannot be used. Open returns
// it, and a reload that meets one logs it and keeps the previous data.
type ParseError struct {
	Path string // file name, may be empty
	Line int    // 1-based
	Err  error
}

func (e *ParseError) Error() string {
	return fmt.Sprintf("passwdfile: %s:%d: %v", e.Path, e.Line, e.Err)
}

func (e *ParseError) Unwrap() error { return e.Err }

// lineName returns the user name a raw line (without its line terminator)
// defines, or ok=false for a blank line or a comment. It is the one rule both
// the parser and the editors use to find a user's line. As in Dovecot, a line
// whose first byte is ':' defines no user; unlike Dovecot, which would make a
// user of it, a '#' after leading blanks also starts a comment.
func lineName(line string) (name string, ok bool) {
	line = strings.TrimSuffix(line, "\r")
	trimmed := strings.TrimLeft(line, " \t")
	if trimmed == "" || trimmed[0] == '#' || line[0] == ':' {
		return "", false
	}
	name, _, _ = strings.Cut(line, ":")
	return name, true
}

// parseLine parses one line of the file, Dovecot's
// user:password:uid:gid:gecos:home:shell:extra_fields, where every field
// after the user name is optional. extra_fields is a space-separated list of
// key=value (or bare key) that may itself contain ':'. The old format with an
// empty eighth field and a mail location after it becomes userdb_mail.
// ok is false for blank and comment lines.
func parseLine(line string) (e entry, ok bool, err error) {
	name, ok := lineName(line)
	if !ok {
		return entry{}, false, nil
	}
	line = strings.TrimSuffix(line, "\r")
	if err := checkUsername(name); err != nil {
		return entry{}, false, err
	}
	if strings.ContainsFunc(line, func(r rune) bool { return r == 0 || r == '\n' || r == '\r' }) {
		return entry{}, false, errors.New("line contains a NUL or CR byte")
	}
	f := strings.Split(line, ":")
	field := func(i int) string {
		if i < len(f) {
			return f[i]
		}
		return ""
	}
	e = entry{
		name:     name,
		password: field(1),
		uid:      field(2),
		gid:      field(3),
		gecos:    field(4),
		home:     field(5),
		shell:    field(6),
	}
	e.hasPassword = e.password != ""
	for _, id := range []struct{ what, v string }{{"uid", e.uid}, {"gid", e.gid}} {
		if id.v != "" && strings.TrimLeft(id.v, "0123456789") != "" {
			return entry{}, false, fmt.Errorf("user %q: %s %q is not a number", name, id.what, id.v)
		}
	}
	var extra string
	switch {
	case len(f) > 8 && f[7] == "":
		// Old format: the field is empty and the next holds the mail location.
		if mail := strings.Join(f[8:], ":"); mail != "" {
			extra = "userdb_mail=" + mail
		}
	case len(f) > 7:
		extra = strings.Join(f[7:], ":")
	}
	for kv := range strings.FieldsSeq(extra) {
		k, v, _ := strings.Cut(kv, "=")
		if k == "" {
			return entry{}, false, fmt.Errorf("user %q: extra field %q has no name", name, kv)
		}
		if e.extra == nil {
			e.extra = make(map[string]string)
		}
		e.extra[k] = v
	}
	if h, ok := e.extra["userdb_home"]; ok {
		e.home = h
	}
	return e, true, nil
}

// warning is a problem with one line that does not stop the file loading.
type warning struct {
	line int
	user string
	msg  string
	err  error
}

// parse reads a whole passwd-file. The first line that does not parse is
// returned as a *ParseError naming path and the line number. A user defined
// twice keeps its first line, as in Dovecot, and yields a warning; so does a
// password check rejects (an unknown scheme, traditional DES), which leaves
// that user unable to log in.
func parse(r io.Reader, path string, check func(password string) error) (map[string]*entry, []warning, error) {
	users := make(map[string]*entry)
	var warns []warning
	br := bufio.NewReader(r)
	for n := 1; ; n++ {
		line, err := br.ReadString('\n')
		if len(line) > maxLineLen {
			return nil, nil, &ParseError{path, n, fmt.Errorf("line longer than %d bytes", maxLineLen)}
		}
		if err != nil && err != io.EOF {
			return nil, nil, fmt.Errorf("passwdfile: reading %s: %w", path, err)
		}
		if line == "" && err == io.EOF {
			break
		}
		line = strings.TrimSuffix(line, "\n")
		if !utf8.ValidString(line) {
			return nil, nil, &ParseError{path, n, errors.New("line is not valid UTF-8")}
		}
		e, ok, perr := parseLine(line)
		if perr != nil {
			return nil, nil, &ParseError{path, n, perr}
		}
		if ok {
			e.line = n
			if first, dup := users[e.name]; dup {
				warns = append(warns, warning{n, e.name, fmt.Sprintf("user defined again (first on line %d); this line is ignored", first.line), nil})
			} else {
				users[e.name] = &e
				if e.hasPassword && check != nil {
					if cerr := check(e.password); cerr != nil {
						warns = append(warns, warning{n, e.name, "password entry is unusable; the user cannot log in", cerr})
					}
				}
			}
		}
		if err == io.EOF {
			break
		}
	}
	return users, warns, nil
}

// ValidateUsername reports whether name can be a user in a passwd-file
// written by postoffice: non-empty valid UTF-8 without ':', whitespace,
// control characters or '/', and not starting with '.'. The mail location
// template puts the name into a path, hence the last two rules. The loader
// applies the same rules to existing files.
func ValidateUsername(name string) error {
	if err := checkUsername(name); err != nil {
		return fmt.Errorf("passwdfile: %w", err)
	}
	return nil
}

func checkUsername(name string) error {
	switch {
	case name == "":
		return errors.New("empty user name")
	case !utf8.ValidString(name):
		return fmt.Errorf("user name %q is not valid UTF-8", name)
	case strings.HasPrefix(name, "."):
		return fmt.Errorf("user name %q starts with '.'", name)
	}
	for _, r := range name {
		switch {
		case r == ':':
			return fmt.Errorf("user name %q contains ':'", name)
		case r == '/':
			return fmt.Errorf("user name %q contains '/'", name)
		case unicode.IsSpace(r):
			return fmt.Errorf("user name %q contains white space", name)
		case unicode.IsControl(r):
			return fmt.Errorf("user name %q contains a control character", name)
		}
	}
	return nil
}
