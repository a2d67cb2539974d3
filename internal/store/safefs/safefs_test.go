//go:build linux

package safefs

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// TestDoSwitchesAndRestores (root only): a file made inside Do belongs to
// the owner, a root-only file cannot be read inside Do, and the thread is
// root again afterwards.
func TestDoSwitchesAndRestores(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: switches file-system ids")
	}
	dir := t.TempDir()
	if err := os.Chmod(filepath.Dir(dir), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	secret := filepath.Join(dir, "secret")
	if err := os.WriteFile(secret, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	o := Owner{UID: 54351, GID: 54352}
	err := Do(o, func() error {
		if _, err := os.ReadFile(secret); !errors.Is(err, os.ErrPermission) {
			t.Errorf("reading a root-only file as uid %d: %v, want permission denied", o.UID, err)
		}
		return os.WriteFile(filepath.Join(dir, "mine"), nil, 0o600)
	})
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(dir, "mine"))
	if err != nil {
		t.Fatal(err)
	}
	if st := fi.Sys().(*syscall.Stat_t); int(st.Uid) != o.UID || int(st.Gid) != o.GID {
		t.Errorf("file made in Do owned by %d:%d, want %d:%d", st.Uid, st.Gid, o.UID, o.GID)
	}
	// Every thread is root again: many files made after Do are root's.
	for i := range 20 {
		p := filepath.Join(dir, "after", "f")
		os.MkdirAll(filepath.Dir(p), 0o700)
		if err := os.WriteFile(p, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		fi, _ := os.Stat(p)
		if st := fi.Sys().(*syscall.Stat_t); st.Uid != 0 {
			t.Fatalf("file %d made after Do owned by uid %d, want 0", i, st.Uid)
		}
		os.Remove(p)
	}
	if err := Do(Owner{UID: 54351, GID: 0}, func() error { return nil }); err == nil {
		t.Errorf("Do with group 0 succeeded, want it refused")
	}
}

// TestOpenFDRefusesLinksAndSpecialFiles: a symbolic link is ErrSymlink and
// a FIFO ErrNotRegular, and O_TRUNC never truncates a link's target.
func TestOpenFDRefusesLinksAndSpecialFiles(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	target := filepath.Join(t.TempDir(), "target")
	if err := os.WriteFile(target, []byte("keep"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(filepath.Join(dir, "fifo"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(t.TempDir(), filepath.Join(dir, "dirlink")); err != nil {
		t.Fatal(err)
	}
	d, err := OpenTop(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if _, _, err := d.OpenFD("link", os.O_RDWR|os.O_TRUNC, 0); !errors.Is(err, ErrSymlink) {
		t.Errorf("OpenFD(link) = %v, want ErrSymlink", err)
	}
	if _, _, err := d.OpenFD("fifo", os.O_RDONLY|syscall.O_NONBLOCK, 0); !errors.Is(err, ErrNotRegular) {
		t.Errorf("OpenFD(fifo) = %v, want ErrNotRegular", err)
	}
	if _, err := d.OpenDir("dirlink"); !errors.Is(err, ErrSymlink) {
		t.Errorf("OpenDir(dirlink) = %v, want ErrSymlink", err)
	}
	if _, err := d.OpenDir(".."); err == nil {
		t.Errorf("OpenDir(..) succeeded, want an error")
	}
	if got, _ := os.ReadFile(target); string(got) != "keep" {
		t.Errorf("target = %q, want it untouched", got)
	}
}
