//go:build linux

package mbox

import (
	"context"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
)

// TestNewMboxBelongsToSystemUser: run as root with no owner from the user
// database, a POP3 login to a user whose mbox does not exist yet made it
// as the owner of the spool directory (root), mode 0600; Postfix's
// local(8), which delivers to /var/mail/<login> as that login, then
// bounced every message ("cannot open file: Permission denied"). The new
// mbox belongs to the system user of its name, as local(8) makes it.
func TestNewMboxBelongsToSystemUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: the spool is root's and the mbox another user's")
	}
	t.Parallel()
	u, err := user.Lookup("nobody")
	if err != nil {
		t.Skip("no system user nobody")
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	for _, mode := range []os.FileMode{0o1777, 0o755} { // a sticky spool; one only root may write
		spool, err := os.MkdirTemp("", "spool-")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(spool) })
		if err := os.Chmod(spool, mode); err != nil {
			t.Fatal(err)
		}
		s, err := New(Options{Location: "mbox:" + spool + "/%u", NoSync: true})
		if err != nil {
			t.Fatal(err)
		}
		m, err := s.Open(context.Background(), "nobody")
		if err != nil {
			t.Fatalf("spool %o: Open: %v", mode, err)
		}
		m.Close()
		var st syscall.Stat_t
		if err := syscall.Stat(filepath.Join(spool, "nobody"), &st); err != nil {
			t.Fatal(err)
		}
		if int(st.Uid) != uid || int(st.Gid) != gid {
			t.Errorf("spool %o: new mbox owned by %d:%d, want nobody's %d:%d", mode, st.Uid, st.Gid, uid, gid)
		}
	}
}
