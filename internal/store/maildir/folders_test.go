//go:build unix

package maildir

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/postoffice-mail/postoffice/internal/store"
)

func TestFolderDir(t *testing.T) {
	t.Parallel()
	good := map[string]string{"Sent": ".Sent", "Lists/go": ".Lists.go", "Sent Items": ".Sent Items", "a&b-": ".a&b-"}
	for name, want := range good {
		got, err := folderDir(name)
		if err != nil || got != want {
			t.Errorf("folderDir(%q) = %q, %v, want %q", name, got, err, want)
		}
		back, ok := folderName(got)
		if !ok || back != name {
			t.Errorf("folderName(%q) = %q, %v, want %q", got, back, ok, name)
		}
	}
	for _, name := range []string{"", "INBOX", "inbox", "INBOX/x", "a.b", "../x", "a//b", "/a", "a/", "a\\b", "a%2e", "x\x00", "é", " a", "a "} {
		if got, err := folderDir(name); !errors.Is(err, store.ErrBadFolderName) {
			t.Errorf("folderDir(%q) = %q, %v, want ErrBadFolderName", name, got, err)
		}
	}
	for _, dir := range []string{".", "..", "...", ".a..b", "cur", ".INBOX", ".a%2eb"} {
		if got, ok := folderName(dir); ok {
			t.Errorf("folderName(%q) = %q, true, want false", dir, got)
		}
	}
}

func TestFolders(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, _ := newTestStore(t, false)
	const u = "ann@example.org"
	list := func() []string {
		t.Helper()
		got, err := s.Folders(ctx, u)
		if err != nil {
			t.Fatalf("Folders: %v", err)
		}
		return got
	}
	if diff := cmp.Diff([]string{"INBOX"}, list()); diff != "" {
		t.Errorf("Folders of a new user (-want +got):\n%s", diff)
	}
	for _, f := range []string{"Sent", "Lists/go", "Lists"} {
		if err := s.CreateFolder(ctx, u, f); err != nil {
			t.Fatalf("CreateFolder(%q): %v", f, err)
		}
	}
	if err := s.CreateFolder(ctx, u, "Sent"); !errors.Is(err, store.ErrFolderExists) {
		t.Errorf("CreateFolder of an existing folder = %v, want ErrFolderExists", err)
	}
	if err := s.CreateFolder(ctx, u, "INBOX"); !errors.Is(err, store.ErrFolderExists) {
		t.Errorf("CreateFolder(INBOX) = %v, want ErrFolderExists", err)
	}
	if err := s.CreateFolder(ctx, u, "a.b"); !errors.Is(err, store.ErrBadFolderName) {
		t.Errorf("CreateFolder(a.b) = %v, want ErrBadFolderName", err)
	}
	dir := mustPath(t, s, u)
	// Junk that is not a folder: a file, a link, an escaped Dovecot name.
	writeFile(t, filepath.Join(dir, ".notadir"), "x")
	if err := os.Symlink("/", filepath.Join(dir, ".link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, ".a%2eb"), 0o700); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"INBOX", "Lists", "Lists/go", "Sent"}, list()); diff != "" {
		t.Errorf("Folders (-want +got):\n%s", diff)
	}
	if _, err := os.Stat(filepath.Join(dir, ".Lists.go", "maildirfolder")); err != nil {
		t.Errorf("no maildirfolder file: %v", err)
	}

	// Deliver into a folder and read it back; INBOX stays empty.
	if err := s.DeliverFolder(ctx, u, "Sent", strings.NewReader("Subject: s\n\nbody\n")); err != nil {
		t.Fatalf("DeliverFolder: %v", err)
	}
	if err := s.DeliverFolder(ctx, u, "Nope", strings.NewReader("x\n")); !errors.Is(err, store.ErrNoFolder) {
		t.Errorf("DeliverFolder into a missing folder = %v, want ErrNoFolder", err)
	}
	md, err := s.OpenFolder(ctx, u, "Sent")
	if err != nil {
		t.Fatalf("OpenFolder: %v", err)
	}
	if n := len(md.Messages()); n != 1 {
		t.Fatalf("Sent has %d messages, want 1", n)
	}
	if got := readMsg(t, md, 0); got != "Subject: s\n\nbody\n" {
		t.Errorf("message = %q", got)
	}
	if _, err := s.OpenFolder(ctx, u, "Sent"); !errors.Is(err, store.ErrInUse) {
		t.Errorf("second OpenFolder = %v, want ErrInUse", err)
	}
	if err := s.DeleteFolder(ctx, u, "Sent"); !errors.Is(err, store.ErrInUse) {
		t.Errorf("DeleteFolder of an open folder = %v, want ErrInUse", err)
	}
	inbox, err := s.OpenFolder(ctx, u, "inbox")
	if err != nil {
		t.Fatalf("OpenFolder(inbox): %v", err)
	}
	if n := len(inbox.Messages()); n != 0 {
		t.Errorf("INBOX has %d messages, want 0", n)
	}
	inbox.Close()
	md.Close()
	if _, err := s.OpenFolder(ctx, u, "Nope"); !errors.Is(err, store.ErrNoFolder) {
		t.Errorf("OpenFolder of a missing folder = %v, want ErrNoFolder", err)
	}
	if _, err := os.Stat(filepath.Join(dir, ".Nope")); !os.IsNotExist(err) {
		t.Errorf("OpenFolder made a missing folder: %v", err)
	}

	// Rename takes the subfolders along; INBOX cannot be renamed.
	if err := s.RenameFolder(ctx, u, "Lists", "Sent"); !errors.Is(err, store.ErrFolderExists) {
		t.Errorf("RenameFolder onto an existing folder = %v, want ErrFolderExists", err)
	}
	if err := s.RenameFolder(ctx, u, "INBOX", "Old"); !errors.Is(err, store.ErrBadFolderName) {
		t.Errorf("RenameFolder(INBOX) = %v, want ErrBadFolderName", err)
	}
	if err := s.RenameFolder(ctx, u, "Nope", "Old"); !errors.Is(err, store.ErrNoFolder) {
		t.Errorf("RenameFolder of a missing folder = %v, want ErrNoFolder", err)
	}
	if err := s.RenameFolder(ctx, u, "Lists", "Archive/Lists"); err != nil {
		t.Fatalf("RenameFolder: %v", err)
	}
	if diff := cmp.Diff([]string{"INBOX", "Archive/Lists", "Archive/Lists/go", "Sent"}, list()); diff != "" {
		t.Errorf("Folders after rename (-want +got):\n%s", diff)
	}

	// Delete removes the folder and its messages, not its subfolders.
	if err := s.DeleteFolder(ctx, u, "Sent"); err != nil {
		t.Fatalf("DeleteFolder: %v", err)
	}
	if err := s.DeleteFolder(ctx, u, "Archive/Lists"); err != nil {
		t.Fatalf("DeleteFolder: %v", err)
	}
	if err := s.DeleteFolder(ctx, u, "INBOX"); !errors.Is(err, store.ErrBadFolderName) {
		t.Errorf("DeleteFolder(INBOX) = %v, want ErrBadFolderName", err)
	}
	if err := s.DeleteFolder(ctx, u, "Sent"); !errors.Is(err, store.ErrNoFolder) {
		t.Errorf("DeleteFolder twice = %v, want ErrNoFolder", err)
	}
	if diff := cmp.Diff([]string{"INBOX", "Archive/Lists/go"}, list()); diff != "" {
		t.Errorf("Folders after delete (-want +got):\n%s", diff)
	}
	for _, e := range listDir(t, dir) {
		if strings.HasPrefix(e, trashPrefix) {
			t.Errorf("deleted folder left behind: %s", e)
		}
	}
}

func TestSetFlags(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, _ := newTestStore(t, false)
	const u = "bob"
	for _, m := range []string{"one\n", "two\n"} {
		if err := s.Deliver(ctx, u, strings.NewReader(m)); err != nil {
			t.Fatal(err)
		}
	}
	dir := mustPath(t, s, u)
	// A file already in cur/ with a Dovecot keyword letter, which must
	// survive.
	writeFile(t, filepath.Join(dir, "cur", "2000000000.M1P1.host:2,Sa"), "three\n")
	md := openMD(t, s, u)
	uidls := uidlsOf(md)
	f := md.(store.Flagged)
	if got, err := f.Flags(2); err != nil || got != "S" {
		t.Errorf("Flags(2) = %q, %v, want S", got, err)
	}
	if err := f.SetFlags(ctx, 0, "SF"); err != nil {
		t.Fatalf("SetFlags: %v", err)
	}
	if err := f.SetFlags(ctx, 2, "R"); err != nil {
		t.Fatalf("SetFlags: %v", err)
	}
	if err := f.SetFlags(ctx, 1, "X"); err == nil {
		t.Errorf("SetFlags(X) succeeded")
	}
	if got, _ := f.Flags(0); got != "FS" {
		t.Errorf("Flags(0) = %q, want FS", got)
	}
	if got := readMsg(t, md, 0); got != "one\n" {
		t.Errorf("message 1 after SetFlags = %q", got)
	}
	if _, err := os.Stat(filepath.Join(dir, "cur", "2000000000.M1P1.host:2,Ra")); err != nil {
		t.Errorf("keyword letter not kept: %v", err)
	}
	// The deletion of a message whose flags changed removes its new name.
	if err := md.Commit(ctx, []int{0}); err != nil {
		t.Fatal(err)
	}
	md.Close()
	md = openMD(t, s, u)
	defer md.Close()
	if diff := cmp.Diff(uidls[1:], uidlsOf(md)); diff != "" {
		t.Errorf("UIDLs after SetFlags and Commit (-want +got):\n%s", diff)
	}
	if got, _ := md.(store.Flagged).Flags(1); got != "R" {
		t.Errorf("flags after reopen = %q, want R", got)
	}
	if n := len(listDir(t, filepath.Join(dir, "cur"))); n != 1 {
		t.Errorf("cur/ holds %d files, want 1", n)
	}
}
