package fetch

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestMaildirTargetSymlinkedTmp: a fetch into a Maildir whose tmp/ is a
// symbolic link is refused and writes nothing where the link points.
func TestMaildirTargetSymlinkedTmp(t *testing.T) {
	t.Parallel()
	for _, sub := range []string{"tmp", "new"} {
		t.Run(sub, func(t *testing.T) {
			t.Parallel()
			dir := filepath.Join(t.TempDir(), "Maildir")
			elsewhere := t.TempDir()
			if err := os.MkdirAll(dir, 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(elsewhere, filepath.Join(dir, sub)); err != nil {
				t.Fatal(err)
			}
			m := &maildirTarget{dir: dir, account: "a"}
			if err := m.Deliver(context.Background(), "u1", strings.NewReader("Subject: x\r\n\r\nbody\r\n")); err == nil {
				t.Errorf("Deliver with %s/ a symbolic link succeeded, want an error", sub)
			}
			if ents, _ := os.ReadDir(elsewhere); len(ents) != 0 {
				t.Errorf("the directory %s/ links to holds %d files, want none", sub, len(ents))
			}
		})
	}
}

// TestMboxTargetSymlink: an mbox target that is a symbolic link to another
// file is refused; that file is not appended to.
func TestMboxTargetSymlink(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	victim := filepath.Join(t.TempDir(), "victim")
	if err := os.WriteFile(victim, []byte("untouched\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	mbox := filepath.Join(dir, "mbox")
	if err := os.Symlink(victim, mbox); err != nil {
		t.Fatal(err)
	}
	m := &mboxTarget{path: mbox}
	if err := m.Deliver(context.Background(), "u1", strings.NewReader("Subject: x\r\n\r\nbody\r\n")); err == nil {
		t.Errorf("Deliver to a symlinked mbox succeeded, want an error")
	}
	if got, _ := os.ReadFile(victim); string(got) != "untouched\n" {
		t.Errorf("the link's target is now %q, want it untouched", got)
	}
}

// TestLocalTargetsOwner (root only): a root fetcher delivering into a
// user's Maildir or mbox makes files owned by that user.
func TestLocalTargetsOwner(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: checks that files a root fetcher makes belong to the mail's owner")
	}
	t.Parallel()
	const uid, gid = 54341, 54342
	home := t.TempDir()
	if err := os.Chmod(home, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(home, uid, gid); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(home, "Maildir")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(dir, uid, gid); err != nil {
		t.Fatal(err)
	}
	m := &maildirTarget{dir: dir, account: "a"}
	if err := m.Deliver(context.Background(), "u1", strings.NewReader("Subject: x\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	mb := &mboxTarget{path: filepath.Join(home, "mbox")}
	if err := mb.Deliver(context.Background(), "u1", strings.NewReader("Subject: x\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	filepath.Walk(home, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			t.Error(err)
			return nil
		}
		if st := fi.Sys().(*syscall.Stat_t); st.Uid != uid || st.Gid != gid {
			t.Errorf("%s owned by %d:%d, want %d:%d", p, st.Uid, st.Gid, uid, gid)
		}
		return nil
	})
}
