package mbox

import (
	"fmt"
	"strings"

	"github.com/postoffice-mail/postoffice/internal/store/location"
)

// userName is a validated user name split into its parts.
type userName struct {
	full   string // %u: "local" or "local@domain"
	local  string // %n
	domain string // %d, empty if none
}

// parseUser validates a user name and splits it (location.ParseUser: no
// login alias, every part safe as one path component). The error wraps
// store.ErrNoUser.
func parseUser(u string) (userName, error) {
	n, err := location.ParseUser(u)
	if err != nil {
		return userName{}, fmt.Errorf("mbox: %w", err)
	}
	return userName{full: n.Full, local: n.Local, domain: n.Domain}, nil
}

func (u userName) user() location.User {
	return location.User{Full: u.full, Local: u.local, Domain: u.domain}
}

// parseLocation parses a Dovecot-style mbox location: the path template of
// the mbox file itself ("/var/mail/%u", "~/mbox"; location.Parse). Of
// Dovecot's ":KEY=value" parameters, INDEX=<directory template> places the
// index and the session lock file (see the package doc); INBOX= is accepted
// as the mbox path when the main path is a directory of folders
// ("mbox:~/mail:INBOX=/var/mail/%u", Dovecot's usual form), and LAYOUT is
// ignored (only INBOX is served). Any other parameter is an error rather
// than silently meaning something else.
func parseLocation(s string) (file pathTemplate, index *pathTemplate, err error) {
	path, params := location.Params(strings.TrimPrefix(s, "mbox:"))
	for _, p := range params {
		switch p.Key {
		case "INDEX":
			if strings.EqualFold(p.Value, "MEMORY") || p.Value == "" {
				return pathTemplate{}, nil, fmt.Errorf("mbox: location: INDEX=%q: an index directory is required (UIDLs must persist)", p.Value)
			}
			l, err := parseTemplate(p.Value)
			if err != nil {
				return pathTemplate{}, nil, err
			}
			index = &l
		case "INBOX":
			path = p.Value
		case "LAYOUT":
		default:
			return pathTemplate{}, nil, fmt.Errorf("mbox: location parameter %q not supported", p.Key)
		}
	}
	file, err = parseTemplate(path)
	return file, index, err
}

// pathTemplate is a parsed path template (location.Template) with the
// package's error prefix.
type pathTemplate struct {
	t        location.Template
	needHome bool
}

func parseTemplate(path string) (pathTemplate, error) {
	t, err := location.Parse(path)
	if err != nil {
		return pathTemplate{}, fmt.Errorf("mbox: %w", err)
	}
	return pathTemplate{t: t, needHome: t.NeedHome}, nil
}

// split returns the path for u cut at the line between the administrator's
// part and the user's (location.Template.Split; see the package doc,
// "Symbolic links").
func (l pathTemplate) split(u userName, home string) (top string, below []string, err error) {
	top, below, err = l.t.Split(u.user(), home)
	if err != nil {
		return "", nil, fmt.Errorf("mbox: %w", err)
	}
	return top, below, nil
}
