//go:build unix

package maildir

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/postoffice-mail/postoffice/internal/store"
)

// The tests below plant what a local user who can write their own Maildir
// could plant, and check that the store, possibly running as root, never
// follows it out of the Maildir.

// secret writes a file outside every Maildir, as a root-only file would be,
// and returns its path.
func secret(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// readAll returns every message of the maildrop.
func readAll(t *testing.T, m store.Maildrop) []string {
	t.Helper()
	var out []string
	for i := range m.Messages() {
		rc, err := m.Open(context.Background(), i)
		if err != nil {
			continue
		}
		b, _ := io.ReadAll(rc)
		rc.Close()
		out = append(out, string(b))
	}
	return out
}

// TestSymlinkedMessageNotListed: a message file in cur/ or new/ that is a
// symbolic link is not a message: it is neither listed nor read, with or
// without a W= that is otherwise trusted without opening the file.
func TestSymlinkedMessageNotListed(t *testing.T) {
	t.Parallel()
	for _, name := range []string{
		"cur/1700000000.M1P1.host:2,S",
		"new/1700000001.M1P1.host",
		"cur/1700000002.M1P1.host,S=12,W=12:2,S",
		"new/1700000003.M1P1.host,S=12,W=12",
	} {
		t.Run(strings.ReplaceAll(name, "/", "_"), func(t *testing.T) {
			t.Parallel()
			s, _ := newTestStore(t, true)
			const user = "mallory"
			if err := s.Deliver(context.Background(), user, strings.NewReader("Subject: own\n\n")); err != nil {
				t.Fatal(err)
			}
			target := secret(t, "root secret\n")
			if err := os.Symlink(target, filepath.Join(mustPath(t, s, user), name)); err != nil {
				t.Fatal(err)
			}
			m := openMD(t, s, user)
			defer m.Close()
			if n := len(m.Messages()); n != 1 {
				t.Errorf("%d messages listed, want 1 (the link is not a message)", n)
			}
			for _, msg := range readAll(t, m) {
				if strings.Contains(msg, "root secret") {
					t.Errorf("a message shows the link's target: %q", msg)
				}
			}
		})
	}
}

// TestSymlinkedLockFileRefused: postoffice-pop3.lock as a symbolic link to
// another file refuses the login with an error and leaves that file as it
// was: the lock state is written in place and the file truncated, so
// following the link would overwrite its target.
func TestSymlinkedLockFileRefused(t *testing.T) {
	t.Parallel()
	s, _ := newTestStore(t, true)
	const user = "mallory"
	if err := s.Deliver(context.Background(), user, strings.NewReader("Subject: own\n\n")); err != nil {
		t.Fatal(err)
	}
	const content = "root:x:0:0:root:/root:/bin/sh\nimportant line two\n"
	target := secret(t, content)
	if err := os.Symlink(target, filepath.Join(mustPath(t, s, user), lockName)); err != nil {
		t.Fatal(err)
	}
	m, err := s.Open(context.Background(), user)
	if err == nil {
		m.Close()
		t.Errorf("Open with a symlinked lock file succeeded, want an error")
	} else if errors.Is(err, store.ErrInUse) {
		t.Errorf("Open = %v, want an error other than ErrInUse", err)
	}
	if got, _ := os.ReadFile(target); string(got) != content {
		t.Errorf("the link's target is now %q, want it untouched %q", got, content)
	}
}

// TestSymlinkedIndexTempNotTruncated: a link planted as the index's
// temporary name is removed, not followed: its target keeps its content
// and the index is written.
func TestSymlinkedIndexTempNotTruncated(t *testing.T) {
	t.Parallel()
	s, _ := newTestStore(t, true)
	const user = "mallory"
	if err := s.Deliver(context.Background(), user, strings.NewReader("Subject: own\n\n")); err != nil {
		t.Fatal(err)
	}
	target := secret(t, "keep me\n")
	if err := os.Symlink(target, filepath.Join(mustPath(t, s, user), indexName+".tmp")); err != nil {
		t.Fatal(err)
	}
	m := openMD(t, s, user)
	m.Close()
	if got, _ := os.ReadFile(target); string(got) != "keep me\n" {
		t.Errorf("the link's target is now %q, want it untouched", got)
	}
	if fi, err := os.Lstat(filepath.Join(mustPath(t, s, user), indexName)); err != nil || !fi.Mode().IsRegular() {
		t.Errorf("index after Open: %v, %v; want a regular file", fi, err)
	}
}

// TestSymlinkedTmpNotSwept: a tmp/ that is a symbolic link to another
// directory is not swept: the files there older than 36 hours stay.
func TestSymlinkedTmpNotSwept(t *testing.T) {
	t.Parallel()
	s, _ := newTestStore(t, true)
	const user = "mallory"
	if err := s.Deliver(context.Background(), user, strings.NewReader("Subject: own\n\n")); err != nil {
		t.Fatal(err)
	}
	elsewhere := t.TempDir()
	victim := filepath.Join(elsewhere, "old-file")
	if err := os.WriteFile(victim, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-72 * time.Hour)
	if err := os.Chtimes(victim, old, old); err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(mustPath(t, s, user), "tmp")
	if err := os.RemoveAll(tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(elsewhere, tmp); err != nil {
		t.Fatal(err)
	}
	if m, err := s.Open(context.Background(), user); err == nil {
		m.Close()
	}
	if _, err := os.Stat(victim); err != nil {
		t.Errorf("a file in the directory tmp/ links to was removed by the sweep: %v", err)
	}
}

// TestDeliverSymlinkedTmpRefused: a delivery into a Maildir whose tmp/ is
// a symbolic link fails and writes nothing where the link points, nor
// into new/.
func TestDeliverSymlinkedTmpRefused(t *testing.T) {
	t.Parallel()
	for _, sub := range []string{"tmp", "new"} {
		t.Run(sub, func(t *testing.T) {
			t.Parallel()
			s, _ := newTestStore(t, true)
			const user = "mallory"
			m := openMD(t, s, user) // creates the Maildir
			m.Close()
			elsewhere := t.TempDir()
			link := filepath.Join(mustPath(t, s, user), sub)
			if err := os.Remove(link); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(elsewhere, link); err != nil {
				t.Fatal(err)
			}
			if err := s.Deliver(context.Background(), user, strings.NewReader("Subject: x\n\n")); err == nil {
				t.Errorf("Deliver with %s/ a symbolic link succeeded, want an error", sub)
			}
			if got := listDir(t, elsewhere); len(got) != 0 {
				t.Errorf("the directory %s/ links to holds %q, want nothing", sub, got)
			}
			if sub == "tmp" {
				if got := listDir(t, filepath.Join(mustPath(t, s, user), "new")); len(got) != 0 {
					t.Errorf("new/ holds %q, want nothing", got)
				}
			}
		})
	}
}

// TestSymlinkedCurRefused: a cur/ that is a symbolic link to another
// Maildir's cur/ refuses the login; nothing there is listed.
func TestSymlinkedCurRefused(t *testing.T) {
	t.Parallel()
	s, _ := newTestStore(t, true)
	if err := s.Deliver(context.Background(), "victim", strings.NewReader("Subject: theirs\n\n")); err != nil {
		t.Fatal(err)
	}
	mv := openMD(t, s, "victim") // moves nothing, but makes the index
	mv.Close()
	vdir := mustPath(t, s, "victim")
	for _, n := range listDir(t, filepath.Join(vdir, "new")) {
		if err := os.Rename(filepath.Join(vdir, "new", n), filepath.Join(vdir, "cur", n+":2,S")); err != nil {
			t.Fatal(err)
		}
	}
	const user = "mallory"
	m := openMD(t, s, user)
	m.Close()
	cur := filepath.Join(mustPath(t, s, user), "cur")
	if err := os.Remove(cur); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(vdir, "cur"), cur); err != nil {
		t.Fatal(err)
	}
	m, err := s.Open(context.Background(), user)
	if err != nil {
		return
	}
	defer m.Close()
	if n := len(m.Messages()); n != 0 {
		t.Errorf("Open listed %d messages through a symlinked cur/, want an error or none", n)
	}
}

// TestSymlinkedMaildirRefused: below the location's line (here from the
// user name's component down) nothing is followed, the Maildir itself
// included; the location's fixed prefix may be a link (an administrator's
// /var/vmail -> /srv/vmail).
func TestSymlinkedMaildirRefused(t *testing.T) {
	t.Parallel()
	real := t.TempDir()
	root := filepath.Join(t.TempDir(), "vmail")
	if err := os.Symlink(real, root); err != nil {
		t.Fatal(err)
	}
	s, err := New(Options{Location: root + "/%n/Maildir", Hostname: "test.example.org", NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Deliver(context.Background(), "alice", strings.NewReader("Subject: via the admin's link\n\n")); err != nil {
		t.Fatalf("Deliver through a link in the location's prefix: %v", err)
	}
	if got := listDir(t, filepath.Join(real, "alice", "Maildir", "new")); len(got) != 1 {
		t.Errorf("new/ through the prefix link holds %q, want 1 message", got)
	}
	if err := os.MkdirAll(filepath.Join(real, "mallory"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(real, "alice", "Maildir"), filepath.Join(real, "mallory", "Maildir")); err != nil {
		t.Fatal(err)
	}
	if m, err := s.Open(context.Background(), "mallory"); err == nil {
		n := len(m.Messages())
		m.Close()
		t.Errorf("Open through a symlinked Maildir succeeded with %d messages, want an error", n)
	}
	if err := s.Deliver(context.Background(), "mallory", strings.NewReader("x\n")); err == nil {
		t.Errorf("Deliver through a symlinked Maildir succeeded, want an error")
	}
	if got := listDir(t, filepath.Join(real, "alice", "Maildir", "new")); len(got) != 1 {
		t.Errorf("alice's new/ holds %q after mallory's delivery, want her 1 message", got)
	}
}

// TestLocationSplit: where the line between the administrator's part of a
// location and the user's falls.
func TestLocationSplit(t *testing.T) {
	t.Parallel()
	u := userName{full: "bob@example.org", local: "bob", domain: "example.org"}
	for _, c := range []struct {
		tmpl, top, below string
	}{
		{"/var/vmail/%d/%n/Maildir", "/var/vmail", "example.org/bob/Maildir"},
		{"/var/vmail/%d/%n", "/var/vmail", "example.org/bob"},
		{"/var/vmail/x%n/Maildir", "/var/vmail", "xbob/Maildir"},
		{"~/Maildir", "/home/bob", "Maildir"},
		{"%h/Maildir", "/home/bob", "Maildir"},
		{"%h", "/home/bob", ""},
		{"/var/mail/shared", "/var/mail/shared", ""},
		{"/srv/%u/mail/%h", "/srv", "bob@example.org/mail/home/bob"},
	} {
		l, err := parseLocation(c.tmpl)
		if err != nil {
			t.Fatalf("parseLocation(%q): %v", c.tmpl, err)
		}
		top, below, err := l.split(u, "/home/bob")
		if err != nil {
			t.Errorf("split(%q): %v", c.tmpl, err)
			continue
		}
		if got := strings.Join(below, "/"); top != c.top || got != c.below {
			t.Errorf("split(%q) = %q, %q; want %q, %q", c.tmpl, top, got, c.top, c.below)
		}
	}
}

// TestOwnerFiles (root only): a login and a delivery into a Maildir that
// a user owns make files owned by that user, not by root; a Maildir made
// for a user of the user database gets its uid and gid.
func TestOwnerFiles(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: checks that files made as root end up owned by the mail user")
	}
	t.Parallel()
	const uid, gid = 54321, 54322
	root := t.TempDir()
	s, err := New(Options{Location: root + "/%n/Maildir", Hostname: "test.example.org", NoSync: true,
		Owner: func(user string) (int, int, error) {
			if user == "fromdb" {
				return uid + 1, gid + 1, nil
			}
			return -1, -1, nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	// A home owned by the user, Maildir not made yet: made as the owner of
	// the home.
	if err := os.Mkdir(filepath.Join(root, "alice"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(filepath.Join(root, "alice"), uid, gid); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(root, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := s.Deliver(context.Background(), "alice", strings.NewReader("Subject: x\n\n")); err != nil {
		t.Fatal(err)
	}
	m := openMD(t, s, "alice")
	if n := len(m.Messages()); n != 1 {
		t.Errorf("%d messages, want 1", n)
	}
	m.Close()
	// A directory owned by root that the user may write: the user
	// database's ids win over the directory's owner.
	if err := os.Mkdir(filepath.Join(root, "fromdb"), 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(root, "fromdb"), 0o777); err != nil {
		t.Fatal(err)
	}
	if err := s.Deliver(context.Background(), "fromdb", strings.NewReader("Subject: x\n\n")); err != nil {
		t.Fatal(err)
	}
	check := func(user string, uid, gid int) {
		t.Helper()
		dir := mustPath(t, s, user)
		filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
			if err != nil {
				t.Error(err)
				return nil
			}
			st := fi.Sys().(*syscall.Stat_t)
			if int(st.Uid) != uid || int(st.Gid) != gid {
				t.Errorf("%s owned by %d:%d, want %d:%d", p, st.Uid, st.Gid, uid, gid)
			}
			return nil
		})
	}
	check("alice", uid, gid)
	check("fromdb", uid+1, gid+1)
	if got := listDir(t, filepath.Join(mustPath(t, s, "alice"))); len(got) < 5 {
		t.Errorf("alice's Maildir holds %q, want cur new tmp, the lock and the index", got)
	}
}

// TestOwnerCannotReadRootFiles (root only): a hard link in a user's cur/
// to a file only root may read is not served to the user: the store opens
// it as the Maildir's owner, and the kernel refuses.
func TestOwnerCannotReadRootFiles(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: checks that a root server reads a user's Maildir as that user")
	}
	t.Parallel()
	const uid, gid = 54331, 54332
	root := t.TempDir()
	if err := os.Chmod(root, 0o755); err != nil {
		t.Fatal(err)
	}
	s, err := New(Options{Location: root + "/%n/Maildir", Hostname: "test.example.org", NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(root, "mallory"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(filepath.Join(root, "mallory"), uid, gid); err != nil {
		t.Fatal(err)
	}
	if err := s.Deliver(context.Background(), "mallory", strings.NewReader("Subject: own\n\n")); err != nil {
		t.Fatal(err)
	}
	target := filepath.Join(root, "shadow")
	if err := os.WriteFile(target, []byte("root secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// Root plants it here: the kernel's protected_hardlinks would stop the
	// user, but not every system sets it.
	if err := os.Link(target, filepath.Join(mustPath(t, s, "mallory"), "cur", "1700000000.M1P1.host,S=12,W=12:2,S")); err != nil {
		t.Fatal(err)
	}
	m, err := s.Open(context.Background(), "mallory")
	if err != nil {
		return // refused altogether: nothing shown
	}
	defer m.Close()
	for _, msg := range readAll(t, m) {
		if strings.Contains(msg, "root secret") {
			t.Errorf("a root-only file linked into the Maildir was served: %q", msg)
		}
	}
}
