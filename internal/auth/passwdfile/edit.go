package passwdfile

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/postoffice-mail/postoffice/internal/auth"
	"github.com/postoffice-mail/postoffice/internal/auth/scheme"
)

// ErrUserExists is returned (wrapped) by AddUser for a user already in the file.
var ErrUserExists = errors.New("passwdfile: user already exists")

// newFileMode is the mode of a passwd-file that AddUser creates.
const newFileMode = 0o600

// AddUser appends "user:hashed" to the passwd-file at path, creating the
// file (mode 0600) if it does not exist. hashed is a "{SCHEME}..." string
// from scheme.Hash. It fails with ErrUserExists if the user has a line.
func AddUser(path, user, hashed string) error {
	if err := ValidateUsername(user); err != nil {
		return err
	}
	if err := checkHashed(hashed); err != nil {
		return err
	}
	return edit(path, true, func(lines []string) ([]string, error) {
		if findLine(lines, user) >= 0 {
			return nil, fmt.Errorf("%w: %q", ErrUserExists, user)
		}
		if n := len(lines); n > 0 && !strings.HasSuffix(lines[n-1], "\n") {
			lines[n-1] += "\n"
		}
		return append(lines, user+":"+hashed+"\n"), nil
	})
}

// SetPassword replaces the password field of user's line, keeping every
// other byte of the file. It fails with auth.ErrUnknownUser (wrapped) if the
// user has no line.
func SetPassword(path, user, hashed string) error {
	if err := ValidateUsername(user); err != nil {
		return err
	}
	if err := checkHashed(hashed); err != nil {
		return err
	}
	return edit(path, false, func(lines []string) ([]string, error) {
		i := findLine(lines, user)
		if i < 0 {
			return nil, fmt.Errorf("passwdfile: %q: %w", user, auth.ErrUnknownUser)
		}
		lines[i] = replacePassword(lines[i], hashed)
		return lines, nil
	})
}

// DeleteUser removes user's line. It fails with auth.ErrUnknownUser
// (wrapped) if the user has no line.
func DeleteUser(path, user string) error {
	if err := ValidateUsername(user); err != nil {
		return err
	}
	return edit(path, false, func(lines []string) ([]string, error) {
		i := findLine(lines, user)
		if i < 0 {
			return nil, fmt.Errorf("passwdfile: %q: %w", user, auth.ErrUnknownUser)
		}
		return append(lines[:i], lines[i+1:]...), nil
	})
}

// ListUsers returns the users of the passwd-file in file order.
func ListUsers(path string) ([]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("passwdfile: %w", err)
	}
	var users []string
	for _, l := range splitLines(string(b)) {
		if name, ok := lineName(strings.TrimSuffix(l, "\n")); ok {
			users = append(users, name)
		}
	}
	return users, nil
}

// checkHashed refuses a password field that would break the line, and one
// Verify could not use.
func checkHashed(hashed string) error {
	if hashed == "" {
		return errors.New("passwdfile: empty password hash")
	}
	if strings.ContainsFunc(hashed, func(r rune) bool { return r == ':' || r < 0x20 || r == 0x7f }) {
		return errors.New("passwdfile: password hash contains ':' or a control character")
	}
	if err := scheme.Check(hashed, scheme.DovecotDefaultScheme); err != nil {
		return fmt.Errorf("passwdfile: password hash: %w", err)
	}
	return nil
}

// splitLines splits s after each '\n', keeping the terminators, so joining
// the result gives s back.
func splitLines(s string) []string {
	var lines []string
	for s != "" {
		i := strings.IndexByte(s, '\n')
		if i < 0 {
			lines = append(lines, s)
			break
		}
		lines = append(lines, s[:i+1])
		s = s[i+1:]
	}
	return lines
}

// findLine returns the index of the line defining user, or -1.
func findLine(lines []string, user string) int {
	for i, l := range lines {
		if name, ok := lineName(strings.TrimSuffix(l, "\n")); ok && name == user {
			return i
		}
	}
	return -1
}

// replacePassword sets the second field of a raw line, keeping its
// terminator and the fields after the password.
func replacePassword(line, hashed string) string {
	body, term := line, ""
	for _, t := range []string{"\r\n", "\n", "\r"} {
		if strings.HasSuffix(line, t) {
			body, term = strings.TrimSuffix(line, t), t
			break
		}
	}
	name, rest, _ := strings.Cut(body, ":")
	_, after, hasMore := strings.Cut(rest, ":")
	if hasMore {
		return name + ":" + hashed + ":" + after + term
	}
	return name + ":" + hashed + term
}

// edit applies change to the lines of the file at path under the sidecar
// flock and replaces the file atomically. A symlink is followed, so the file
// it points to is replaced. If the file does not exist, create says whether
// to start from an empty one.
func edit(path string, create bool, change func(lines []string) ([]string, error)) error {
	target, err := filepath.EvalSymlinks(path)
	if errors.Is(err, fs.ErrNotExist) {
		target, err = path, nil
	}
	if err != nil {
		return fmt.Errorf("passwdfile: %w", err)
	}
	lock, err := os.OpenFile(target+".lock", os.O_RDWR|os.O_CREATE, newFileMode)
	if err != nil {
		return fmt.Errorf("passwdfile: lock: %w", err)
	}
	defer lock.Close() // releases the flock
	if err := lockFile(lock); err != nil {
		return fmt.Errorf("passwdfile: lock %s: %w", lock.Name(), err)
	}

	mode := fs.FileMode(newFileMode)
	uid, gid, owned := -1, -1, false
	old, err := os.ReadFile(target)
	switch {
	case err == nil:
		fi, err := os.Stat(target)
		if err != nil {
			return fmt.Errorf("passwdfile: %w", err)
		}
		mode = fi.Mode().Perm()
		uid, gid, owned = fileOwner(fi)
	case errors.Is(err, fs.ErrNotExist) && create:
	default:
		return fmt.Errorf("passwdfile: %w", err)
	}
	lines, err := change(splitLines(string(old)))
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	for _, l := range lines {
		buf.WriteString(l)
	}
	return replaceFile(target, buf.Bytes(), mode, uid, gid, owned)
}

// replaceFile writes data to a temporary file beside path with the given
// mode (and owner, when owned), fsyncs it, renames it over path and fsyncs
// the directory.
func replaceFile(path string, data []byte, mode fs.FileMode, uid, gid int, owned bool) (err error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	tmp, err := os.CreateTemp(dir, "."+base+".tmp*")
	if err != nil {
		return fmt.Errorf("passwdfile: %w", err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if err := tmp.Chmod(mode); err != nil {
		return fmt.Errorf("passwdfile: %w", err)
	}
	if owned {
		if fi, err := tmp.Stat(); err == nil {
			if tu, tg, ok := fileOwner(fi); ok && (tu != uid || tg != gid) {
				if err := tmp.Chown(uid, gid); err != nil {
					return fmt.Errorf("passwdfile: keeping the owner of %s: %w", path, err)
				}
			}
		}
	}
	if _, err := tmp.Write(data); err != nil {
		return fmt.Errorf("passwdfile: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("passwdfile: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("passwdfile: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("passwdfile: %w", err)
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("passwdfile: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("passwdfile: fsync %s: %w", dir, err)
	}
	return nil
}
