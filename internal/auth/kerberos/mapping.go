package kerberos

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
)

// Mapping modes: how a client principal becomes a local user name.
const (
	// MapStripRealm maps "user@REALM" of the service's own realm to
	// "user", as Dovecot's auth_gssapi does with its default
	// username_format; principals of other realms and principals with an
	// instance ("user/admin@REALM") map to no user.
	MapStripRealm = "strip-realm"
	// MapKeep uses the whole principal, "user@REALM", as the user name,
	// for databases that store names with their realm; principals with an
	// instance still map to no user.
	MapKeep = "keep"
	// MapFile looks the principal up in a file of "principal user" lines;
	// a principal not listed maps to no user.
	MapFile = "file"
)

// MapperOptions configure NewMapper.
type MapperOptions struct {
	// Mode is MapStripRealm (the default when empty), MapKeep or MapFile.
	Mode string
	// Realm is the service's realm, the only one MapStripRealm strips.
	Realm string
	// File is the map file of MapFile: one "principal user" pair a line,
	// '#' comments and blank lines ignored.
	File string
	// Authorize lists, for a principal ("name@REALM"), the users it may
	// act for besides its own: the authorization identities it may name
	// (RFC 4752 §3.1). Empty lets every principal act only as itself.
	Authorize map[string][]string
}

// Mapper maps principals to user names. It is immutable and safe for
// concurrent use.
type Mapper struct {
	opts  MapperOptions
	table map[string]string
}

// NewMapper checks opts and loads the map file.
func NewMapper(opts MapperOptions) (*Mapper, error) {
	m := &Mapper{opts: opts}
	switch opts.Mode {
	case "":
		m.opts.Mode = MapStripRealm
	case MapStripRealm, MapKeep:
	case MapFile:
		t, err := loadMapFile(opts.File)
		if err != nil {
			return nil, err
		}
		m.table = t
	default:
		return nil, fmt.Errorf("kerberos: mapping %q: want %q, %q or %q", opts.Mode, MapStripRealm, MapKeep, MapFile)
	}
	return m, nil
}

func loadMapFile(path string) (map[string]string, error) {
	if path == "" {
		return nil, errors.New("kerberos: mapping \"file\" needs a map file")
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("kerberos: map file: %w", err)
	}
	defer f.Close()
	t := map[string]string{}
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		fields := strings.Fields(line)
		if len(fields) != 2 || !strings.Contains(fields[0], "@") {
			return nil, fmt.Errorf("kerberos: map file %s line %d: want \"principal@REALM user\"", path, n)
		}
		if _, dup := t[fields[0]]; dup {
			return nil, fmt.Errorf("kerberos: map file %s line %d: %s listed twice", path, n, fields[0])
		}
		t[fields[0]] = fields[1]
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("kerberos: map file %s: %w", path, err)
	}
	return t, nil
}

// User maps a principal to its local user name, or returns an error
// wrapping ErrNoUser.
func (m *Mapper) User(p Principal) (string, error) {
	if len(p.Components) == 0 || slices.Contains(p.Components, "") {
		return "", fmt.Errorf("%w: empty principal", ErrNoUser)
	}
	switch m.opts.Mode {
	case MapFile:
		if u, ok := m.table[p.String()]; ok {
			return u, nil
		}
		return "", fmt.Errorf("%w: %s is not in the map file", ErrNoUser, p)
	case MapKeep:
		if len(p.Components) != 1 {
			return "", fmt.Errorf("%w: %s has an instance", ErrNoUser, p)
		}
		return p.Components[0] + "@" + p.Realm, nil
	}
	if len(p.Components) != 1 {
		return "", fmt.Errorf("%w: %s has an instance", ErrNoUser, p)
	}
	if p.Realm != m.opts.Realm {
		return "", fmt.Errorf("%w: %s is of another realm than %s", ErrNoUser, p, m.opts.Realm)
	}
	return p.Components[0], nil
}

// MayActFor reports whether principal p, mapped to user, may log in as
// authzid: its own user (or an empty authzid) always, another only when
// Authorize lists it for p.
func (m *Mapper) MayActFor(p Principal, user, authzid string) bool {
	if authzid == "" || authzid == user {
		return true
	}
	return slices.Contains(m.opts.Authorize[p.String()], authzid)
}
