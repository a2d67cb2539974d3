//go:build linux

package privdrop

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// These tests place descriptors at fixed numbers and change process
// credentials in child processes, so none of them is parallel.

// helper runs this test binary as a child process running the helper
// named name, with extra files and environment.
func helper(t *testing.T, name string, files []*os.File, env ...string) string {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$")
	cmd.Env = append(os.Environ(), append(env, "PRIVDROP_HELPER="+name)...)
	cmd.ExtraFiles = files
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("helper %s: %v\n%s", name, err, out)
	}
	return string(out)
}

// TestHelperProcess is not a test: it is the child of helper.
func TestHelperProcess(t *testing.T) {
	switch os.Getenv("PRIVDROP_HELPER") {
	case "":
		t.Skip("helper process only")
	case "activation":
		// systemd would set LISTEN_PID to the pid it started.
		os.Setenv("LISTEN_PID", fmt.Sprint(os.Getpid()))
		socks, err := Activated()
		if err != nil {
			fmt.Println("error:", err)
			os.Exit(1)
		}
		for _, s := range socks {
			fmt.Printf("%s=%s\n", s.Name, s.Listener.Addr())
		}
		fmt.Printf("env=%q%q%q\n", os.Getenv("LISTEN_PID"), os.Getenv("LISTEN_FDS"), os.Getenv("LISTEN_FDNAMES"))
	case "drop":
		if err := DropTo("nobody", "nogroup"); err != nil {
			fmt.Println("error:", err)
			os.Exit(1)
		}
		fmt.Printf("uid=%d euid=%d gid=%d egid=%d\n", os.Getuid(), os.Geteuid(), os.Getgid(), os.Getegid())
		groups, _ := os.Getgroups()
		fmt.Printf("groups=%v\n", groups)
		if _, err := os.ReadFile(os.Getenv("PRIVDROP_SECRET")); err == nil {
			fmt.Println("read the root-only file")
		}
		if err := syscall.Setuid(0); err == nil {
			fmt.Println("regained root")
		}
		// Already the target: nothing to do. Another user: refused.
		fmt.Println("again:", DropTo("nobody", "nogroup"))
		fmt.Println("other:", DropTo("daemon", "") != nil)
	}
	os.Exit(0)
}

func TestActivatedChild(t *testing.T) {
	var files []*os.File
	var want []string
	for _, name := range []string{"pop3", "pop3s"} {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		f, err := l.(*net.TCPListener).File()
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		files = append(files, f)
		want = append(want, name+"="+l.Addr().String())
	}
	out := helper(t, "activation", files, "LISTEN_FDS=2", "LISTEN_FDNAMES=pop3:pop3s")
	want = append(want, `env=""""""`)
	if got := strings.Fields(out); strings.Join(got[:min(len(got), 3)], " ") != strings.Join(want, " ") {
		t.Errorf("child saw:\n%s\nwant:\n%s", out, strings.Join(want, "\n"))
	}
}

// fakeEnv is an environment for activated.
type fakeEnv map[string]string

func (e fakeEnv) get(k string) string { return e[k] }
func (e fakeEnv) unset(k string) error {
	delete(e, k)
	return nil
}

// placeListeners puts dups of new loopback listeners at descriptors
// start, start+1, ...
func placeListeners(t *testing.T, start, n int) []net.Addr {
	t.Helper()
	var addrs []net.Addr
	for i := range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		f, err := l.(*net.TCPListener).File()
		if err != nil {
			t.Fatal(err)
		}
		if err := syscall.Dup3(int(f.Fd()), start+i, 0); err != nil {
			t.Fatal(err)
		}
		f.Close()
		addrs = append(addrs, l.Addr())
		l.Close() // the dup at start+i keeps the socket listening
	}
	return addrs
}

func TestActivated(t *testing.T) {
	const start = 900
	addrs := placeListeners(t, start, 3)
	env := fakeEnv{"LISTEN_PID": "4242", "LISTEN_FDS": "3", "LISTEN_FDNAMES": "pop3::pop3s"}
	socks, err := activated(env.get, env.unset, 4242, start)
	if err != nil {
		t.Fatal(err)
	}
	if len(env) != 0 {
		t.Errorf("environment left: %v", env)
	}
	wantNames := []string{"pop3", "unknown", "pop3s"}
	for i, s := range socks {
		if s.Name != wantNames[i] || s.Listener.Addr().String() != addrs[i].String() {
			t.Errorf("socket %d = %s %v, want %s %v", i, s.Name, s.Listener.Addr(), wantNames[i], addrs[i])
		}
		// The passed descriptor is closed; the listener holds a
		// close-on-exec duplicate.
		if _, err := fcntl(start+i, syscall.F_GETFD); err != syscall.EBADF {
			t.Errorf("descriptor %d still open after activation", start+i)
		}
		rc, _ := s.Listener.(*net.TCPListener).SyscallConn()
		rc.Control(func(fd uintptr) {
			if flags, err := fcntl(int(fd), syscall.F_GETFD); err != nil || flags&syscall.FD_CLOEXEC == 0 {
				t.Errorf("socket %d: descriptor %d not close-on-exec: %#x, %v", i, fd, flags, err)
			}
		})
	}
	// The listeners work.
	c, err := net.Dial("tcp", socks[2].Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	if s, err := socks[2].Listener.Accept(); err != nil {
		t.Errorf("Accept on activated socket: %v", err)
	} else {
		s.Close()
	}
	if ls := Named(socks, "pop3s"); len(ls) != 1 || ls[0] != socks[2].Listener {
		t.Errorf("Named(pop3s) = %v", ls)
	}
	for _, s := range socks {
		s.Listener.Close()
	}
}

func fcntl(fd, cmd int) (int, error) {
	r, _, errno := syscall.Syscall(syscall.SYS_FCNTL, uintptr(fd), uintptr(cmd), 0)
	if errno != 0 {
		return 0, errno
	}
	return int(r), nil
}

func TestActivatedNotForUs(t *testing.T) {
	for _, tt := range []struct {
		env     fakeEnv
		wantErr bool
	}{
		{fakeEnv{}, false},
		{fakeEnv{"LISTEN_PID": "1", "LISTEN_FDS": "2"}, false},        // another process's
		{fakeEnv{"LISTEN_PID": "4242", "LISTEN_FDS": "x"}, true},      // malformed
		{fakeEnv{"LISTEN_PID": "4242", "LISTEN_FDS": "1"}, true},      // descriptor not open
		{fakeEnv{"LISTEN_PID": "4242", "LISTEN_FDS": "-1"}, true},     // negative
		{fakeEnv{"LISTEN_PID": "4242", "LISTEN_FDS": "0"}, false},     // none
		{fakeEnv{"LISTEN_PID": "nope", "LISTEN_FDS": "1"}, false},     // not ours
		{fakeEnv{"LISTEN_FDS": "1", "LISTEN_FDNAMES": "pop3"}, false}, // no pid: not ours
	} {
		in := fmt.Sprint(tt.env)
		socks, err := activated(tt.env.get, tt.env.unset, 4242, 990)
		if (err != nil) != tt.wantErr || len(socks) != 0 {
			t.Errorf("activated(%s) = %v, %v; want no sockets, error %v", in, socks, err, tt.wantErr)
		}
		if len(tt.env) != 0 {
			t.Errorf("activated(%s) left %v", in, tt.env)
		}
	}
}

func TestDropToRefusesRoot(t *testing.T) {
	for _, tt := range [][2]string{{"root", ""}, {"0", ""}, {"nobody", "root"}, {"", ""}, {"no-such-user-xyz", ""}} {
		if err := DropTo(tt[0], tt[1]); err == nil {
			t.Errorf("DropTo(%q, %q) = nil, want an error", tt[0], tt[1])
		}
	}
}

func TestDropTo(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("DropTo needs root: run the tests as root to check it (in a container, or with sudo)")
	}
	if _, _, _, err := lookup("nobody", "nogroup"); err != nil {
		t.Skipf("no nobody:nogroup here: %v", err)
	}
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	secret := filepath.Join(dir, "secret")
	if err := os.WriteFile(secret, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	out := helper(t, "drop", nil, "PRIVDROP_SECRET="+secret)
	uid, gid, _, _ := lookup("nobody", "nogroup")
	want := fmt.Sprintf("uid=%d euid=%d gid=%d egid=%d\ngroups=[%d]\nagain: <nil>\nother: true\n", uid, uid, gid, gid, gid)
	if out != want {
		t.Errorf("after DropTo the child says:\n%s\nwant:\n%s", out, want)
	}
}
