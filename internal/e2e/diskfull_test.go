//go:build linux

package e2e

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// mountSmall mounts a small filesystem on dir (which it creates): a 2 MiB
// tmpfs, or failing that a 4 MiB ext4 image, loop-mounted. Both need root (CAP_SYS_ADMIN);
// without it, or when neither mount works, the test is skipped with the
// reason. The filesystem is unmounted in t.Cleanup.
func mountSmall(t *testing.T, dir string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("full-disk test needs root to mount a 2 MiB tmpfs or loop filesystem (CI runs as root: .ci/run)")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	unmount := func() {
		if err := syscall.Unmount(dir, 0); err != nil {
			// Still busy (a process not yet reaped): detach it lazily.
			if err := syscall.Unmount(dir, syscall.MNT_DETACH); err != nil {
				t.Errorf("unmount %s: %v", dir, err)
			}
		}
	}
	tmpfsErr := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size=2m,mode=0700")
	if tmpfsErr == nil {
		t.Cleanup(unmount)
		t.Log("full disk: a 2 MiB tmpfs")
		return
	}
	mkfs, err := exec.LookPath("mkfs.ext4")
	if err != nil {
		t.Skipf("cannot make a small filesystem: mount tmpfs: %v; no mkfs.ext4 for a loop image", tmpfsErr)
	}
	img := filepath.Join(t.TempDir(), "small.img")
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, 4<<20); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(mkfs, "-q", "-F", "-m", "0", img).CombinedOutput(); err != nil {
		t.Skipf("cannot make a small filesystem: mount tmpfs: %v; mkfs.ext4: %v %s", tmpfsErr, err, out)
	}
	if out, err := exec.Command("mount", "-o", "loop", img, dir).CombinedOutput(); err != nil {
		t.Skipf("cannot make a small filesystem: mount tmpfs: %v; mount -o loop: %v %s", tmpfsErr, err, out)
	}
	t.Cleanup(unmount)
	t.Logf("full disk: a 4 MiB ext4 image, loop-mounted (mount tmpfs: %v)", tmpfsErr)
}

// fill writes path until the filesystem under it is full, and checks that
// not one more octet fits in a new file.
func fill(t *testing.T, path string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, chunk := range []int{64 << 10, 4 << 10, 512, 1} {
		buf := make([]byte, chunk)
		for i := 0; ; i++ {
			if i > 10000 {
				t.Fatalf("fill: %d writes of %d octets and the filesystem is not full", i, chunk)
			}
			if _, err := f.Write(buf); err != nil {
				if !errors.Is(err, syscall.ENOSPC) {
					t.Fatalf("fill: %v", err)
				}
				break
			}
		}
	}
	probe := filepath.Join(filepath.Dir(path), "probe")
	err = os.WriteFile(probe, []byte("x"), 0o600)
	os.Remove(probe)
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("filesystem not full after fill: writing one octet gave %v", err)
	}
}

// pin hard-links every message file of user into dir, so that unlinking
// them from the Maildir frees no space.
func (s *site) pin(user, dir string) {
	s.t.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		s.t.Fatal(err)
	}
	for i, f := range s.files(user) {
		if err := os.Link(filepath.Join(s.maildir(user), f), filepath.Join(dir, fmt.Sprint(i))); err != nil {
			s.t.Fatal(err)
		}
	}
}

// lmtpReply delivers msg to rcpt over a fresh LMTP connection to the unix
// socket sock and returns
// the reply line to DATA (or to the first command refused).
func lmtpReply(t *testing.T, sock, rcpt, msg string) string {
	t.Helper()
	c, err := dialLMTPSocket(sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.nc.Close()
	reply, err := c.send("full@example.net", rcpt, msg)
	if err != nil && !strings.HasPrefix(reply, "4") && !strings.HasPrefix(reply, "5") {
		t.Fatalf("LMTP to %s: %v (%q)", rcpt, err, reply)
	}
	// The connection is still usable after a refused delivery.
	if _, err := c.cmd("RSET", "250"); err != nil {
		t.Fatalf("LMTP RSET after %q: %v", reply, err)
	}
	c.cmd("QUIT", "221")
	return reply
}

// tmpFiles lists user's tmp/.
func (s *site) tmpFiles(user string) []string {
	s.t.Helper()
	es, err := os.ReadDir(filepath.Join(s.maildir(user), "tmp"))
	if err != nil && !os.IsNotExist(err) {
		s.t.Fatal(err)
	}
	var names []string
	for _, e := range es {
		names = append(names, e.Name())
	}
	return names
}

// faultUIDLs returns the UIDL of each message of a fresh session, by its
// X-Fault-Id, checking each message against faultMessage.
func (c *conn) faultUIDLs(what string) map[int]string {
	c.t.Helper()
	ls := c.list()
	out := map[int]string{}
	for k, u := range ls.uidls {
		got := c.retr(k + 1)
		m := faultRE.FindStringSubmatch(got)
		if m == nil {
			c.t.Fatalf("%s: message %d malformed or partial: %.200q", what, k+1, got)
		}
		var id int
		fmt.Sscan(m[3], &id)
		if m[2]+"X-Checksum: "+m[4]+"\r\n" != faultMessage(id) {
			c.t.Fatalf("%s: message %d (id %d) is not what was delivered: partial", what, k+1, id)
		}
		out[id] = u
	}
	return out
}

// A full disk (a 2 MiB tmpfs under the Maildirs): an LMTP delivery gets
// 452 4.3.1 and leaves nothing in new/, cur/ or tmp/; a login that needs no
// index write works; a QUIT whose index write fails still answers +OK (the
// unlinks are durable, the index is a cache); a login whose index cannot be
// written is served from the directories; once space is free again the maildrop is
// consistent: nothing lost, nothing deleted by a +OK back, UIDLs unchanged.
// The LMTP spool on a full disk gives 452 4.3.1 too.
func TestDiskFull(t *testing.T) {
	t.Parallel()
	s := newSite(t)
	sock := s.enableLMTPSocket()
	vmail := filepath.Join(s.dir, "vmail") // the Maildirs' root in newSite
	mountSmall(t, vmail)
	filler := filepath.Join(vmail, "filler")
	pins := filepath.Join(vmail, "pins")

	for id := 1; id <= 6; id++ {
		s.deliver("alice", faultMessage(id))
	}
	// Let new/ settle (the store's dirSettle, 2s), so the logins below
	// record directory stamps and a later Open may take its snapshot from
	// the index alone: a stale index must not pass for a current one.
	time.Sleep(2100 * time.Millisecond)
	srv := s.start()
	c := srv.dial()
	c.login("alice")
	uidls := c.faultUIDLs("before")
	c.cmd("QUIT", "+OK")

	// 1. Deliveries to a full disk: 4xx, nothing partial anywhere.
	s.pin("alice", pins)
	fill(t, filler)
	before := s.files("alice")
	for _, id := range []int{100, 101} { // 300 octets, about 16 KiB
		for _, rcpt := range []string{"alice@example.org", "bob@example.org"} {
			reply := lmtpReply(t, sock, rcpt, faultMessage(id))
			if !strings.HasPrefix(reply, "452 4.3.1 ") {
				t.Errorf("delivery of %d octets to %s on a full disk: %q, want 452 4.3.1 (RFC 3463: mail system full)", len(faultMessage(id)), rcpt, reply)
			}
			t.Logf("full disk, LMTP to %s: %s", rcpt, reply)
		}
	}
	if after := s.files("alice"); !slices.Equal(before, after) {
		t.Errorf("failed deliveries changed new/ and cur/: %v -> %v", before, after)
	}
	for _, u := range []string{"alice", "bob@example.org"} {
		if tmp := s.tmpFiles(u); len(tmp) > 0 {
			t.Errorf("%s: failed deliveries left %v in tmp/", u, tmp)
		}
		if u != "alice" && len(s.files(u)) > 0 {
			t.Errorf("%s: failed deliveries left %v", u, s.files(u))
		}
	}

	// 2. A login that writes nothing works on a full disk.
	c = srv.dial()
	c.login("alice")
	if got := c.faultUIDLs("full disk"); !maps.Equal(got, uidls) {
		t.Fatalf("UIDLs on a full disk %v, want %v", got, uidls)
	}

	// 3. QUIT on a full disk, the deleted files pinned so their unlinks
	// free nothing: the index cannot be rewritten, the removals stand.
	c.cmd("DELE 1", "+OK")
	c.cmd("DELE 2", "+OK")
	quit := c.cmd("QUIT", "")
	t.Logf("full disk, QUIT with two deletions: %s", quit)
	// The unlinks are durable; only the index (a cache) could not be
	// rewritten, so the client is told its messages are gone.
	quitOK := strings.HasPrefix(quit, "+OK")
	if !quitOK {
		t.Fatalf("QUIT on a full disk: %q, want +OK: the deletions are durable, only the index cache failed", quit)
	}

	// 4. A login that needs an index write it cannot do is served from
	// the directories (the index is a cache, the UIDLs come from the file
	// names): +OK with a consistent listing, twice, so the second open
	// does not take the stale index for a current one either.
	for range 2 {
		c = srv.dial()
		c.cmd("USER alice", "+OK")
		login := c.cmd("PASS "+testPassword, "")
		t.Logf("full disk, login with a stale index: %s", login)
		if !strings.HasPrefix(login, "+OK") {
			t.Fatalf("login on a full disk with a stale index: %q, want +OK", login)
		}
		checkSurvivors(t, c.faultUIDLs("full disk, stale index"), uidls, []int{1, 2}, quitOK)
		c.cmd("QUIT", "+OK")
	}
	if _, err := os.Stat(filepath.Join(s.maildir("alice"), "postoffice-index.tmp")); err == nil {
		t.Error("a failed index write left postoffice-index.tmp")
	}

	// 5. Space again: the maildrop is consistent, and stays so.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(pins); err != nil {
		t.Fatal(err)
	}
	c = srv.dial()
	c.login("alice")
	got := c.faultUIDLs("space freed")
	c.cmd("QUIT", "+OK")
	checkSurvivors(t, got, uidls, []int{1, 2}, quitOK)
	if reply := lmtpReply(t, sock, "alice@example.org", faultMessage(102)); !strings.HasPrefix(reply, "250 ") {
		t.Fatalf("delivery after space was freed: %q", reply)
	}

	// 6. The disk fills during a session; the deletions free the space
	// the index needs (nothing pinned): +OK or [SYS/TEMP], and what +OK
	// deleted stays deleted.
	c = srv.dial()
	c.login("alice")
	uidls = c.faultUIDLs("before the second fill")
	fill(t, filler)
	var dele []int
	ls := c.list()
	for k, u := range ls.uidls {
		if k%2 == 0 {
			c.cmd(fmt.Sprintf("DELE %d", k+1), "+OK")
			for id, v := range uidls {
				if v == u {
					dele = append(dele, id)
				}
			}
		}
	}
	quit = c.cmd("QUIT", "")
	t.Logf("full disk, QUIT freeing space: %s", quit)
	quitOK = strings.HasPrefix(quit, "+OK")
	if !quitOK && !strings.HasPrefix(quit, "-ERR [SYS/TEMP] ") {
		t.Fatalf("QUIT on a full disk: %q, want +OK or -ERR [SYS/TEMP]", quit)
	}
	os.Remove(filler)
	srv.kill() // and a restart on top
	first := srv
	srv = s.start()
	c = srv.dial()
	c.login("alice")
	checkSurvivors(t, c.faultUIDLs("after the second fill"), uidls, dele, quitOK)
	c.cmd("QUIT", "+OK")
	srv.stop()
	for _, sv := range []*server{first, srv} {
		if log := sv.log.String(); strings.Contains(log, "corrupt") || strings.Contains(log, "panic") {
			t.Errorf("server log shows a corrupt index or a panic:\n%s", log)
		}
	}
	if !strings.Contains(first.log.String(), "index not written, no space left") {
		t.Error("step 4 did not meet a failed index write at login (nothing tested the fallback)")
	}

	// 7. The LMTP spool on the full disk: 451 before any Maildir is
	// touched, and the server goes on.
	cfg, err := os.ReadFile(s.config)
	if err != nil {
		t.Fatal(err)
	}
	spool := filepath.Join(vmail, "spool")
	if err := os.Mkdir(spool, 0o700); err != nil {
		t.Fatal(err)
	}
	old := fmt.Sprintf("spool_dir = %q", s.dir)
	if !strings.Contains(string(cfg), old) {
		t.Fatalf("config has no %s", old)
	}
	cfg = []byte(strings.Replace(string(cfg), old, fmt.Sprintf("spool_dir = %q", spool), 1))
	if err := os.WriteFile(s.config, cfg, 0o600); err != nil {
		t.Fatal(err)
	}
	srv = s.start()
	before = s.files("alice")
	fill(t, filler)
	// Bigger than the spool's 64 KiB buffer, so the write fails in DATA.
	big := faultMessage(103) + strings.Repeat("X-Pad: "+strings.Repeat("p", 70)+"\r\n", 1500)
	if reply := lmtpReply(t, sock, "alice@example.org", big); !strings.HasPrefix(reply, "452 4.3.1 ") {
		t.Errorf("delivery with the spool on a full disk: %q, want 452 4.3.1", reply)
	}
	if after := s.files("alice"); !slices.Equal(before, after) {
		t.Errorf("a failed spool changed new/ and cur/: %v -> %v", before, after)
	}
	os.Remove(filler)
	if reply := lmtpReply(t, sock, "alice@example.org", faultMessage(104)); !strings.HasPrefix(reply, "250 ") {
		t.Errorf("delivery after the spool's disk was freed: %q", reply)
	}
	srv.stop()
}

// checkSurvivors checks a listing (id -> UIDL) against the one before a
// session that deleted dele: every other message is there with its UIDL,
// and if the QUIT said +OK the deleted ones are gone.
func checkSurvivors(t *testing.T, got, before map[int]string, dele []int, quitOK bool) {
	t.Helper()
	for id, u := range before {
		g, ok := got[id]
		switch {
		case slices.Contains(dele, id) && ok && quitOK:
			t.Errorf("message %d deleted by a QUIT answered +OK is back", id)
		case slices.Contains(dele, id):
			t.Logf("message %d marked for deletion: present=%v (QUIT +OK=%v)", id, ok, quitOK)
		case !ok:
			t.Errorf("message %d (UIDL %s) lost", id, u)
		}
		if ok && g != u {
			t.Errorf("message %d: UIDL %s, was %s", id, g, u)
		}
	}
	for id := range got {
		if _, ok := before[id]; !ok && id < 100 {
			t.Errorf("unknown message %d", id)
		}
	}
}
