//go:build linux

package e2e

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/postoffice-mail/postoffice/internal/testutil"
	"github.com/postoffice-mail/postoffice/internal/testutil/dovecot"
)

// TestPopa3dTakeover switches a /var/mail mbox from popa3d to postoffice
// with real clients watching: the real popa3d (Debian's package,
// unpacked where it conflicts with dovecot-pop3d: POSTOFFICE_POPA3D)
// serves the mbox of a system user through a loopback listener that runs
// one popa3d per connection on its stdin and stdout, as inetd does. mpop
// ("keep on") and fetchmail ("keep") fetch all 20 messages from it and
// poplib records its UIDL listing; the listener closes and postoffice
// (uidl_format = "popa3d", location mbox:/var/mail/%u) serves the same
// file on the same address: the listing is popa3d's byte for byte, each
// client fetches nothing, then exactly the one message delivered over
// LMTP. popa3d reads /var/mail/<user> (compiled in) and authenticates
// through PAM and the shadow file, so the test needs root: it creates the
// system user and removes it, and its mbox, at the end.
func TestPopa3dTakeover(t *testing.T) {
	t.Parallel()
	bin := os.Getenv("POSTOFFICE_POPA3D")
	if bin == "" {
		bin = "/usr/sbin/popa3d"
	}
	if _, err := os.Stat(bin); err != nil {
		testutil.Missing(t, "popa3d (set POSTOFFICE_POPA3D to an unpacked usr/sbin/popa3d)", "popa3d")
	}
	py := need(t, "python3", "python3")
	if os.Geteuid() != 0 {
		t.Skip("needs root: popa3d authenticates system users and reads /var/mail")
	}
	for _, p := range []string{"useradd", "userdel", "chpasswd"} {
		need(t, p, "passwd")
	}
	// popa3d drops privileges to the user "popa3d" and chroots to
	// /var/lib/popa3d before it authenticates.
	if _, err := user.Lookup("popa3d"); err != nil {
		runCmd(t, "", "useradd", "-r", "-M", "-d", "/var/lib/popa3d", "-s", "/usr/sbin/nologin", "popa3d")
		t.Cleanup(func() { exec.Command("userdel", "popa3d").Run() })
	}
	if err := os.MkdirAll("/var/lib/popa3d", 0o755); err != nil {
		t.Fatal(err)
	}
	name := fmt.Sprintf("pa3e%d", os.Getpid()%100000)
	exec.Command("userdel", name).Run() // a leftover of a killed run
	runCmd(t, "", "useradd", "-M", "-d", "/nonexistent", "-s", "/usr/sbin/nologin", name)
	mboxPath := filepath.Join("/var/mail", name)
	t.Cleanup(func() {
		os.Remove(mboxPath)
		os.Remove(mboxPath + ".lock")
		for _, f := range []string{"index", "lock", "journal"} {
			os.Remove(filepath.Join("/var/mail", "."+name+".postoffice-"+f))
		}
		exec.Command("userdel", name).Run()
	})
	runCmd(t, name+":"+dovecot.Password+"\n", "chpasswd")
	u, err := user.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	var uid, gid int
	fmt.Sscan(u.Uid, &uid)
	fmt.Sscan(u.Gid, &gid)
	if err := os.WriteFile(mboxPath, []byte(mboxMessages("popa3d", 20)), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(mboxPath, uid, gid); err != nil {
		t.Fatal(err)
	}

	addr, stop := servePopa3d(t, bin)
	host, port := hostPort(t, addr)
	dir := t.TempDir()
	// popa3d has no CAPA and answers LAST (RFC 1460) with "+OK 0", which
	// fetchmail then trusts instead of UIDL: with "keep" alone it would
	// download everything from popa3d at every poll. A site that kept
	// mail on popa3d with fetchmail had "uidl" in its rc file.
	clients := keepClientsWith(t, dir, host, port, name, "uidl")
	for _, c := range clients {
		if got := c.run(t, "popa3d"); len(got) != 20 {
			t.Fatalf("%s fetched %d messages from popa3d, want 20", c.name, len(got))
		}
	}
	fromPopa3d := poplibUIDL(t, py, host, port, name)
	stop()

	passwd := filepath.Join(dir, "passwd")
	if err := os.WriteFile(passwd, []byte(name+":{PLAIN}"+dovecot.Password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	srv, lmtpAddr := postofficeOn(t, dir, addr, passwd, "mbox:/var/mail/%u", "popa3d")
	checkTakeover(t, py, clients, host, port, name, name+"@example.org", fromPopa3d, srv, lmtpAddr)
	var st syscall.Stat_t
	if err := syscall.Stat(mboxPath, &st); err != nil || int(st.Uid) != uid {
		t.Errorf("mbox owner after the takeover: uid %d (%v), want the user's %d", st.Uid, err, uid)
	}
}

// servePopa3d listens on a loopback port and runs popa3d for each
// connection with the socket as its stdin and stdout (inetd's "nowait"
// service), each bounded to 60 s. stop closes the listener and waits for
// every popa3d to exit; the test's cleanup calls it too.
func servePopa3d(t *testing.T, bin string) (addr string, stop func()) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			nc, err := l.Accept()
			if err != nil {
				return
			}
			f, err := nc.(*net.TCPConn).File()
			nc.Close()
			if err != nil {
				continue
			}
			cctx, ccancel := context.WithTimeout(ctx, 60*time.Second)
			cmd := exec.CommandContext(cctx, bin)
			cmd.Stdin, cmd.Stdout = f, f
			err = cmd.Start()
			f.Close() // popa3d has its own copy
			if err != nil {
				ccancel()
				t.Errorf("popa3d: %v", err)
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer ccancel()
				if err := cmd.Wait(); err != nil && !errors.Is(cctx.Err(), context.Canceled) {
					t.Logf("popa3d exited: %v", err)
				}
			}()
		}
	}()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			l.Close()
			wg.Wait()
			cancel()
		})
	}
	t.Cleanup(stop)
	return l.Addr().String(), stop
}

// runCmd runs a command with stdin and fails the test if it fails.
func runCmd(t *testing.T, stdin, name string, args ...string) {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Stdin = strings.NewReader(stdin)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
}
