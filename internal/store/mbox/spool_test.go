//go:build linux

package mbox

import (
	"fmt"
	"io"
	"strings"

	"crypto/md5"
	"encoding/hex"
	"github.com/postoffice-mail/postoffice/internal/store"

	"context"
	"github.com/postoffice-mail/postoffice/internal/uidlfmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// TestRootSpoolIndexBeside: in a spool the mail owner cannot write
// (Debian's /var/mail is root:mail 2775), a root process makes the index
// beside the mbox as root and hands it to the owner. Writing the index
// through its temporary file (opened with O_CREAT|O_EXCL) failed with
// "permission denied" because the open as the owner was not retried as
// root.
func TestRootSpoolIndexBeside(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: the spool is root's and the mbox another user's")
	}
	t.Parallel()
	spool, err := os.MkdirTemp("", "spool-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(spool) })
	if err := os.Chmod(spool, 0o755); err != nil {
		t.Fatal(err)
	}
	const nobody = 65534
	p := filepath.Join(spool, "nob")
	if err := os.WriteFile(p, []byte("From a@b  Mon Dec  7 10:00:00 2026\nSubject: x\n\nbody\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(p, nobody, nobody); err != nil {
		t.Fatal(err)
	}
	s, err := New(Options{Location: "mbox:" + spool + "/%u", NoSync: true,
		Owner: func(string) (int, int, error) { return nobody, nobody, nil }})
	if err != nil {
		t.Fatal(err)
	}
	m, err := s.Open(context.Background(), "nob")
	if err != nil {
		t.Fatalf("Open in a spool only root may write: %v", err)
	}
	defer m.Close()
	if n := len(m.Messages()); n != 1 {
		t.Errorf("%d messages, want 1", n)
	}
	st, err := os.Stat(filepath.Join(spool, ".nob.postoffice-index"))
	if err != nil {
		t.Fatal(err)
	}
	if uid := statUID(st); uid != nobody {
		t.Errorf("index owned by uid %d, want %d", uid, nobody)
	}
}

func statUID(st os.FileInfo) int {
	if s, ok := st.Sys().(*syscall.Stat_t); ok {
		return int(s.Uid)
	}
	return -1
}

// TestHeaderMD5 pins Dovecot's %m for mbox (mbox_md5 = apop3d): the
// values of the first Received header (all its lines, without line ends,
// one space after the colon dropped, a continuation line whole), every
// Delivered-To and X-Delivery-ID, Date and Message-ID only before the
// first Received.
func TestHeaderMD5(t *testing.T) {
	t.Parallel()
	hdr := "From a@b  Mon Dec  7 10:00:00 2026\n" +
		"Message-ID: <m@b>\n" +
		"Received: from a\n" +
		"\tby b\n" +
		"Received: second\n" +
		"Date: late\n" +
		"delivered-to :  u@b\n" +
		"X-Delivery-ID: 7\n" +
		"Subject: s\n"
	sum := md5.Sum([]byte("<m@b>" + "from a" + "\tby b" + " u@b" + "7"))
	if got, want := headerMD5([]byte(hdr)), hex.EncodeToString(sum[:]); got != want {
		t.Errorf("headerMD5 = %s, want %s", got, want)
	}
	s := newTestStore(t, Options{UIDLFormat: uidlfmt.MustParse("%m"), NoSync: true})
	p, err := s.Path("md5")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(hdr+"\nbody\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	m, err := s.Open(context.Background(), "md5")
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if got := m.Messages()[0].UID; got != hex.EncodeToString(sum[:]) {
		t.Errorf("UIDL %q, want the header MD5", got)
	}
	if _, err := New(Options{Location: "mbox:/x/%u", UIDLFormat: uidlfmt.MustParse("%u")}); err == nil {
		t.Error("New with %u on mbox succeeded")
	}
}

// TestSetUIDLs: UIDLs set by a migration are served from then on, across
// a rescan after another program rewrote the file; an invalid or
// duplicate one changes nothing.
func TestSetUIDLs(t *testing.T) {
	t.Parallel()
	s := newTestStore(t, Options{NoSync: true})
	ctx := context.Background()
	for i := range 3 {
		if err := s.Deliver(ctx, "mig", strings.NewReader(fmt.Sprintf("Subject: %d\n\nbody %d\n", i, i))); err != nil {
			t.Fatal(err)
		}
	}
	set := func(m map[int]string) (int, error) {
		return s.SetUIDLs(ctx, "mig", func(i int, _ store.Message, open func() (io.ReadCloser, error)) (string, bool, error) {
			rc, err := open()
			if err != nil {
				return "", false, err
			}
			rc.Close()
			u, ok := m[i]
			return u, ok, nil
		})
	}
	if n, err := set(map[int]string{0: "old-1", 2: "old-3"}); err != nil || n != 2 {
		t.Fatalf("SetUIDLs = %d, %v", n, err)
	}
	if _, err := set(map[int]string{1: "old-1"}); err == nil {
		t.Error("SetUIDLs with a duplicate UIDL succeeded")
	}
	if _, err := set(map[int]string{1: "has space"}); err == nil {
		t.Error("SetUIDLs with an invalid UIDL succeeded")
	}
	// Rewrite the file in place (another program): a full rescan.
	p, _ := s.Path("mig")
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, append(b, []byte("\n")...), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	m, err := s.Open(ctx, "mig")
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	msgs := m.Messages()
	if len(msgs) != 3 || msgs[0].UID != "old-1" || msgs[2].UID != "old-3" || msgs[1].UID == "old-1" {
		t.Errorf("UIDLs after SetUIDLs and a rescan: %v", msgs)
	}
}
