package e2e

import (
	"encoding/base64"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"
)

// waitLog waits until the running server's log holds want.
func (srv *server) waitLog(t *testing.T, want string) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(srv.log.String(), want); {
		if time.Now().After(deadline) {
			t.Fatalf("the server did not log %q:\n%s", want, srv.log.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// SIGHUP re-reads the config file: a new max_connections_per_ip and
// trusted_networks apply to the next connections, log.level changes; a
// change that needs a restart is named and not applied; a broken file
// changes nothing.
func TestSIGHUPReloadsConfig(t *testing.T) {
	t.Parallel()
	s := newSite(t)
	maddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	s.appendConfig(fmt.Sprintf("[metrics]\nlisten = %q\n\n[limits]\nmax_connections_per_ip = 2\n", maddr))
	srv := s.start()

	var open []*conn
	hold := func(src string, n int) {
		for range n {
			c := srv.connFrom(src)
			c.expect("+OK")
			open = append(open, c)
		}
	}
	hold("127.0.0.1", 2)
	srv.connFrom("127.0.0.1").expect(connRefusal)
	badAuth := func(src string) {
		c := srv.connFrom(src)
		c.expect("+OK")
		c.cmd("AUTH PLAIN "+base64.StdEncoding.EncodeToString([]byte("\x00alice\x00wrong")), "-ERR [AUTH]")
		c.cmd("QUIT", "+OK")
	}
	badAuth("127.0.0.5") // at level info: no debug line

	// 1. More per address, 127.0.0.3 trusted, debug logging, and a new
	// mail location, which needs a restart.
	s.editConfig(func(c string) string {
		c = strings.Replace(c, "max_connections_per_ip = 2", "max_connections_per_ip = 3\ntrusted_networks = [\"127.0.0.3\"]\n\n[log]\nlevel = \"debug\"", 1)
		return strings.Replace(c, "/vmail/", "/vmail2/", 1)
	})
	srv.cmd.Process.Signal(syscall.SIGHUP)
	srv.waitLog(t, `msg="config reloaded"`)
	if !strings.Contains(srv.log.String(), `msg="config changes that need a restart were not applied" tables=mail`) {
		t.Errorf("no restart warning naming [mail]:\n%s", srv.log.String())
	}
	hold("127.0.0.1", 1) // the third
	srv.connFrom("127.0.0.1").expect(connRefusal)
	hold("127.0.0.3", 5) // trusted: no per-address cap
	// The mail location did not change: alice's mail is where it was.
	s.deliver("alice", "Subject: x\n\nbody\n")
	c := srv.connFrom("127.0.0.4")
	c.expect("+OK")
	c.login("alice")
	c.cmd("STAT", "+OK 1 ")
	c.cmd("QUIT", "+OK")
	if strings.Contains(srv.log.String(), "level=DEBUG") {
		t.Fatalf("debug lines before log.level = debug:\n%s", srv.log.String())
	}
	badAuth("127.0.0.6")
	srv.waitLog(t, `level=DEBUG msg="sasl exchange failed"`)

	// 2. The login penalty: no delays, a ban after two failures (the
	// default is ten).
	s.setAuth("penalty_base = \"0s\"\nban_after = 2")
	srv.cmd.Process.Signal(syscall.SIGHUP)
	for deadline := time.Now().Add(10 * time.Second); strings.Count(srv.log.String(), `msg="config reloaded"`) < 2; {
		if time.Now().After(deadline) {
			t.Fatalf("no second reload:\n%s", srv.log.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	g := srv.connFrom("127.0.0.7")
	g.expect("+OK")
	g.cmd("USER alice", "+OK")
	g.cmd("PASS wrong1", "-ERR [AUTH]")
	g.cmd("USER alice", "+OK")
	g.cmd("PASS wrong2", "-ERR [AUTH]")
	g.cmd("USER alice", "+OK")
	g.cmd("PASS "+testPassword, "-ERR [SYS/TEMP]") // banned: the right password is not even checked

	// 3. A broken file: logged, nothing changes.
	s.editConfig(func(c string) string {
		return strings.Replace(c, "max_connections_per_ip = 3", "max_connections_per_ip = -1", 1)
	})
	srv.cmd.Process.Signal(syscall.SIGHUP)
	srv.waitLog(t, `msg="config reload failed; keeping the running configuration"`)
	srv.connFrom("127.0.0.1").expect(connRefusal)
	if m := scrapeMetrics(t, maddr); !m["postoffice_config_last_reload_successful 0"] {
		t.Error("postoffice_config_last_reload_successful is not 0 after a failed reload")
	}
	srv.stop()
}
