package maildir

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
		return userName{}, fmt.Errorf("maildir: %w", err)
	}
	return userName{full: n.Full, local: n.Local, domain: n.Domain}, nil
}

func (u userName) user() location.User {
	return location.User{Full: u.full, Local: u.local, Domain: u.domain}
}

// parseLocation parses a Dovecot-style maildir location: a path template
// (location.Parse). Dovecot's ":KEY=value" parameters INDEX and LAYOUT are
// accepted and ignored (we keep no Dovecot index, and only INBOX is read);
// any other parameter is an error rather than silently meaning something
// else.
func parseLocation(s string) (pathTemplate, error) {
	path, params := location.Params(strings.TrimPrefix(s, "maildir:"))
	for _, p := range params {
		switch p.Key {
		case "INDEX", "LAYOUT":
		default:
			return pathTemplate{}, fmt.Errorf("maildir: location parameter %q not supported", p.Key)
		}
	}
	return parseTemplate(path)
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
		return pathTemplate{}, fmt.Errorf("maildir: %w", err)
	}
	return pathTemplate{t: t, needHome: t.NeedHome}, nil
}

// expand returns the cleaned path for u.
func (l pathTemplate) expand(u userName, home string) (string, error) {
	p, err := l.t.Expand(u.user(), home)
	if err != nil {
		return "", fmt.Errorf("maildir: %w", err)
	}
	return p, nil
}

// split returns the path for u cut at the line between the administrator's
// part and the user's (location.Template.Split; see the package doc,
// "Symbolic links").
func (l pathTemplate) split(u userName, home string) (top string, below []string, err error) {
	top, below, err = l.t.Split(u.user(), home)
	if err != nil {
		return "", nil, fmt.Errorf("maildir: %w", err)
	}
	return top, below, nil
}
