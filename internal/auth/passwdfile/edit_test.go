package passwdfile

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/postoffice-mail/postoffice/internal/auth"
	"github.com/postoffice-mail/postoffice/internal/auth/scheme"
)

const original = "# users of example.org\r\n" +
	"\n" +
	"alice:{PLAIN}a:1000:1000:Alice:/home/alice:/bin/false:userdb_mail=maildir:~/Mail\r\n" +
	"   # indented comment kept as is\n" +
	"bob:{PLAIN}b\n" +
	":weird line kept\n" +
	"carol" // no password and no final newline

func writeOriginal(t *testing.T, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "users")
	if err := os.WriteFile(p, []byte(original), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil { // umask may have cut bits
		t.Fatal(err)
	}
	return p
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestEditsPreserveOtherLines(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		edit func(p string) error
		want string
	}{
		{"add", func(p string) error { return AddUser(p, "dave@example.org", "{PLAIN}d") },
			original + "\ndave@example.org:{PLAIN}d\n"},
		{"set-crlf-with-fields", func(p string) error { return SetPassword(p, "alice", "{PLAIN}new") },
			strings.Replace(original, "alice:{PLAIN}a:", "alice:{PLAIN}new:", 1)},
		{"set-two-fields", func(p string) error { return SetPassword(p, "bob", "{PLAIN}new") },
			strings.Replace(original, "bob:{PLAIN}b\n", "bob:{PLAIN}new\n", 1)},
		{"set-name-only-no-newline", func(p string) error { return SetPassword(p, "carol", "{PLAIN}c") },
			strings.Replace(original, "\ncarol", "\ncarol:{PLAIN}c", 1)},
		{"delete-middle", func(p string) error { return DeleteUser(p, "bob") },
			strings.Replace(original, "bob:{PLAIN}b\n", "", 1)},
		{"delete-crlf", func(p string) error { return DeleteUser(p, "alice") },
			strings.Replace(original, "alice:{PLAIN}a:1000:1000:Alice:/home/alice:/bin/false:userdb_mail=maildir:~/Mail\r\n", "", 1)},
		{"delete-last", func(p string) error { return DeleteUser(p, "carol") },
			strings.TrimSuffix(original, "carol")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p := writeOriginal(t, 0o640)
			if err := tt.edit(p); err != nil {
				t.Fatalf("edit = %v", err)
			}
			if diff := cmp.Diff(tt.want, readFile(t, p)); diff != "" {
				t.Errorf("file after edit (-want +got):\n%s", diff)
			}
			fi, err := os.Stat(p)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Perm() != 0o640 {
				t.Errorf("mode after edit = %v, want 0640", fi.Mode().Perm())
			}
			// No temporary files are left beside it.
			ents, _ := os.ReadDir(filepath.Dir(p))
			for _, e := range ents {
				if e.Name() != "users" && e.Name() != "users.lock" {
					t.Errorf("stray file %q after edit", e.Name())
				}
			}
		})
	}
}

func TestEditErrors(t *testing.T) {
	t.Parallel()
	p := writeOriginal(t, 0o600)
	tests := []struct {
		name string
		err  error
		is   error  // errors.Is target, or nil
		text string // substring of the message
	}{
		{"add existing", AddUser(p, "bob", "{PLAIN}x"), ErrUserExists, "bob"},
		{"add existing without password", AddUser(p, "carol", "{PLAIN}x"), ErrUserExists, "carol"},
		{"set unknown", SetPassword(p, "zed", "{PLAIN}x"), auth.ErrUnknownUser, "zed"},
		{"delete unknown", DeleteUser(p, "zed"), auth.ErrUnknownUser, "zed"},
		{"delete comment", DeleteUser(p, "#"), auth.ErrUnknownUser, ""},
		{"colon", AddUser(p, "a:b", "{PLAIN}x"), nil, "':'"},
		{"space", AddUser(p, "a b", "{PLAIN}x"), nil, "white space"},
		{"tab", AddUser(p, "a\tb", "{PLAIN}x"), nil, "white space"},
		{"newline", AddUser(p, "a\nb", "{PLAIN}x"), nil, "white space"},
		{"control", AddUser(p, "a\x7fb", "{PLAIN}x"), nil, "control"},
		{"slash", AddUser(p, "a/b", "{PLAIN}x"), nil, "'/'"},
		{"dot", AddUser(p, ".a", "{PLAIN}x"), nil, "'.'"},
		{"dotdot", SetPassword(p, "..", "{PLAIN}x"), nil, "'.'"},
		{"empty", DeleteUser(p, ""), nil, "empty"},
		{"bad utf-8", AddUser(p, "a\xffb", "{PLAIN}x"), nil, "UTF-8"},
		{"hash with colon", AddUser(p, "x", "{PLAIN}a:b"), nil, "':'"},
		{"hash with newline", SetPassword(p, "bob", "{PLAIN}a\nb"), nil, "control"},
		{"empty hash", AddUser(p, "x", ""), nil, "empty"},
		{"unknown scheme", AddUser(p, "x", "{NOSUCH}x"), scheme.ErrUnknownScheme, ""},
		{"des hash", AddUser(p, "x", "EFKaDOlPzU7bk"), scheme.ErrUnsupported, ""},
		{"missing file", SetPassword(filepath.Join(t.TempDir(), "none"), "bob", "{PLAIN}x"), os.ErrNotExist, ""},
	}
	for _, tt := range tests {
		if tt.err == nil || (tt.is != nil && !errors.Is(tt.err, tt.is)) || !strings.Contains(tt.err.Error(), tt.text) ||
			!strings.HasPrefix(tt.err.Error(), "passwdfile: ") {
			t.Errorf("%s: error = %v, want one prefixed passwdfile: matching %v and %q", tt.name, tt.err, tt.is, tt.text)
		}
	}
	if got := readFile(t, p); got != original {
		t.Errorf("file changed by failed edits:\n%q", got)
	}
}

func TestAddUserCreatesFile(t *testing.T) {
	t.Parallel()
	p := filepath.Join(t.TempDir(), "users")
	h, err := scheme.Hash(scheme.DefaultNewScheme, "pw")
	if err != nil {
		t.Fatal(err)
	}
	if err := AddUser(p, "u@example.org", h); err != nil {
		t.Fatalf("AddUser = %v", err)
	}
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("new file mode = %v, want 0600", fi.Mode().Perm())
	}
	if got, want := readFile(t, p), "u@example.org:"+h+"\n"; got != want {
		t.Errorf("new file = %q, want %q", got, want)
	}
	db, err := Open(p, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Authenticate(t.Context(), "u+example.org", "pw"); err != nil {
		t.Errorf("Authenticate(u+example.org) = %v, want nil", err)
	}
	if err := SetPassword(p, "u@example.org", "{PLAIN}pw2"); err != nil {
		t.Fatal(err)
	}
	users, err := ListUsers(p)
	if err != nil || !cmp.Equal(users, []string{"u@example.org"}) {
		t.Errorf("ListUsers = %q, %v, want [u@example.org]", users, err)
	}
}

func TestEditFollowsSymlink(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	p := writeOriginal(t, 0o600)
	link := filepath.Join(dir, "link")
	if err := os.Symlink(p, link); err != nil {
		t.Skip("no symlinks:", err)
	}
	if err := DeleteUser(link, "bob"); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Lstat(link); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Errorf("link replaced by a regular file: %v, %v", fi, err)
	}
	if strings.Contains(readFile(t, p), "bob:") {
		t.Errorf("target still has bob")
	}
}

func TestListUsers(t *testing.T) {
	t.Parallel()
	p := writeOriginal(t, 0o600)
	got, err := ListUsers(p)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"alice", "bob", "carol"}; !cmp.Equal(got, want) {
		t.Errorf("ListUsers = %q, want %q", got, want)
	}
	if _, err := ListUsers(filepath.Join(t.TempDir(), "none")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("ListUsers(missing) = %v, want %v", err, os.ErrNotExist)
	}
}

// TestConcurrentEditors checks that editors serialised by the lock lose no
// update: every goroutine adds users and changes its own password.
func TestConcurrentEditors(t *testing.T) {
	t.Parallel()
	p := filepath.Join(t.TempDir(), "users")
	const workers, each = 8, 10
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				u := fmt.Sprintf("w%d-u%d", w, i)
				if err := AddUser(p, u, "{PLAIN}x"); err != nil {
					t.Errorf("AddUser(%q) = %v", u, err)
				}
				if err := SetPassword(p, u, "{PLAIN}y"); err != nil {
					t.Errorf("SetPassword(%q) = %v", u, err)
				}
			}
		})
	}
	wg.Wait()
	users, err := ListUsers(p)
	if err != nil {
		t.Fatal(err)
	}
	if len(users) != workers*each {
		t.Errorf("ListUsers has %d users, want %d", len(users), workers*each)
	}
	if strings.Count(readFile(t, p), ":{PLAIN}y\n") != workers*each {
		t.Errorf("some SetPassword was lost:\n%s", readFile(t, p))
	}
}
