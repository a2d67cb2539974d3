package passwdfile

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/postoffice-mail/postoffice/internal/auth"
	"github.com/postoffice-mail/postoffice/internal/ipgroup"
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
	noPassword  bool              // nopassword on a line without password: any password logs in
	restrict    auth.Restrictions // nologin, reason, allow_nets, allow_real_nets
	warn        string            // a problem with the line that does not stop the load
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
	if err := e.loginFields(); err != nil {
		return entry{}, false, fmt.Errorf("user %q: %w", name, err)
	}
	return e, true, nil
}

// refusedFields are Dovecot passdb extra fields that restrict, redirect or
// rename a login, which postoffice does not implement. Ignoring one would let
// in a login Dovecot refuses (delay_until, noauthenticate, an allow_ or
// deny_ list) or open another account than Dovecot would (user, proxy,
// host, master), so a file that uses one does not load. Fields that start
// with "allow_", "deny" or "proxy" are refused too, whatever follows.
var refusedFields = map[string]string{
	"user":           "renames the user",
	"username":       "renames the user",
	"domain":         "renames the user",
	"login_user":     "renames the user",
	"destuser":       "proxies the login",
	"host":           "proxies the login",
	"hostip":         "proxies the login",
	"port":           "proxies the login",
	"pass":           "proxies the login",
	"master":         "proxies the login as a master user",
	"noauthenticate": "makes the login fail after the lookup",
	"delay_until":    "delays the login",
	"k5principals":   "restricts Kerberos principals",
}

// loginFields reads the extra fields that decide whether the user may log in
// (doc.dovecot.org, "Password database extra fields"): nologin and reason,
// allow_nets, allow_real_nets and nopassword are honoured; the fields of
// refusedFields are errors. Every other field is taken as a user database
// setting (userdb_*, quota_rule, mail, nodelay, forward_*, ...), which
// restricts nothing and is only passed on in auth.User.Extra.
//
// As in Dovecot, nologin applies whatever its value; nopassword takes no
// value but "y" or "yes", since "nopassword=no" read as Dovecot reads it
// would let in any password. nopassword on a line that has a password is
// ignored with a warning (Dovecot logs an error and checks the password).
func (e *entry) loginFields() error {
	for _, k := range slices.Sorted(maps.Keys(e.extra)) {
		v := e.extra[k]
		switch k {
		case "nologin":
			e.restrict.NoLogin = true
		case "reason":
			e.restrict.Reason = v
		case "allow_nets", "allow_real_nets":
			nets, err := parseNets(v)
			if err != nil {
				return fmt.Errorf("%s: %w", k, err)
			}
			if k == "allow_nets" {
				e.restrict.AllowNets = nets
			} else {
				e.restrict.AllowRealNets = nets
			}
		case "expire_after_retrieval", "expire_after_arrival":
			// The user's expiry policy (postoffice's [expire]): checked
			// here so a typo is refused at load, not ignored at the sweep.
			if !validAge(v) {
				return fmt.Errorf("%s=%s: want an age such as 30d, 2w, 36h, or never", k, v)
			}
		case "nopassword":
			switch strings.ToLower(v) {
			case "", "y", "yes":
			default:
				return fmt.Errorf("nopassword=%s: want nopassword or nopassword=y", v)
			}
			if e.hasPassword {
				e.warn = "nopassword on a line with a password is ignored; the password applies"
			} else {
				e.noPassword = true
			}
		default:
			why, refused := refusedFields[k]
			switch {
			case refused:
			case strings.HasPrefix(k, "allow_") || strings.HasPrefix(k, "deny"):
				why = "restricts the login"
			case strings.HasPrefix(k, "proxy"):
				why = "proxies the login"
			default:
				continue
			}
			return fmt.Errorf("extra field %q %s, which postoffice does not implement; remove it or use Dovecot for this user", k, why)
		}
	}
	return nil
}

// parseNets parses a Dovecot network list: addresses and CIDR prefixes
// separated by commas (blanks around them allowed).
func parseNets(v string) ([]netip.Prefix, error) {
	var ss []string
	for f := range strings.SplitSeq(v, ",") {
		if f = strings.TrimSpace(f); f != "" {
			ss = append(ss, f)
		}
	}
	if len(ss) == 0 {
		return nil, errors.New("empty network list")
	}
	nets, err := ipgroup.ParsePrefixes(ss)
	if err != nil {
		return nil, errors.New(strings.TrimPrefix(err.Error(), "ipgroup: "))
	}
	return nets, nil
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
				if e.warn != "" {
					warns = append(warns, warning{n, e.name, e.warn, nil})
				}
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

// validAge reports whether v is an age as [expire] takes them: "never",
// whole days or weeks ("30d", "2w"), or a Go duration ("36h").
func validAge(v string) bool {
	if strings.EqualFold(v, "never") {
		return true
	}
	if n := len(v); n > 1 && (v[n-1] == 'd' || v[n-1] == 'w') {
		d, err := strconv.Atoi(v[:n-1])
		return err == nil && d >= 0 && d <= 100*365
	}
	d, err := time.ParseDuration(v)
	return err == nil && d >= 0
}
