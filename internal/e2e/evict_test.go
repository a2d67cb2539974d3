package e2e

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Tests of eviction at limits.max_connections: the oldest connection that
// has not logged in makes room for a newcomer; logged-in sessions stay.
// They open thousands of connections from many loopback addresses
// (127.1.x.y: all of 127.0.0.0/8 is local on Linux), so that the
// per-address cap (20) does not trigger; they skip under -short.

// srcAddr is the i-th client address, 10 connections per address.
func srcAddr(i int) string {
	a := i / 10
	return fmt.Sprintf("127.1.%d.%d", a/250, a%250+1)
}

// idleConn dials from src and reads the greeting; it returns nil when the
// server answered something else (a refusal) or the dial failed.
func idleConn(src, addr string) net.Conn {
	d := net.Dialer{Timeout: 10 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	nc, err := d.Dial("tcp", addr)
	if err != nil {
		return nil
	}
	nc.SetDeadline(time.Now().Add(20 * time.Second))
	l, err := bufio.NewReader(nc).ReadString('\n')
	if err != nil || !strings.HasPrefix(l, "+OK") {
		nc.Close()
		return nil
	}
	return nc
}

// rss returns the resident memory of process pid in KiB (VmRSS).
func rss(t *testing.T, pid int) int {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Logf("no /proc: %v", err)
		return 0
	}
	for _, l := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(l, "VmRSS:") {
			var kb int
			fmt.Sscanf(strings.TrimPrefix(l, "VmRSS:"), "%d", &kb)
			return kb
		}
	}
	return 0
}

// 5,000 idle connections that never log in fill the cap; a fresh login
// from another address still gets in at once, evicting the oldest.
func TestEvictIdleForLogin(t *testing.T) {
	if testing.Short() {
		t.Skip("opens 5,000 connections")
	}
	const n = 5000
	s := newSite(t)
	s.deliver("alice", "Subject: hi\n\nhello\n")
	s.appendConfig(fmt.Sprintf("[limits]\nmax_connections = %d\npre_login_timeout = \"5m\"\n", n))
	// pre_login_timeout is at most idle_timeout (10m by default).
	srv := s.start()
	before := rss(t, srv.cmd.Process.Pid)

	conns := make([]net.Conn, n)
	var wg sync.WaitGroup
	var failed atomic.Int32
	for w := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += 16 {
				if conns[i] = idleConn(srcAddr(i), srv.addr); conns[i] == nil {
					failed.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	t.Cleanup(func() {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
	})
	if f := failed.Load(); f > 0 {
		t.Fatalf("%d of %d idle connections not served under the cap", f, n)
	}
	full := rss(t, srv.cmd.Process.Pid)

	start := time.Now()
	c := &conn{t: t, nc: dialFrom(t, "127.0.0.99", srv.addr)}
	c.br = bufio.NewReader(c.nc)
	c.expect("+OK")
	c.login("alice")
	took := time.Since(start)
	c.cmd("STAT", "+OK 1 ")
	c.cmd("QUIT", "+OK")
	t.Logf("login with %d idle connections at the cap: %v; server RSS %d KiB before, %d KiB with them (%.1f KiB each)",
		n, took, before, full, float64(full-before)/n)
	if took > 5*time.Second {
		t.Errorf("login at the cap took %v", took)
	}
	// One of the oldest idle connections (the first workers dialled at
	// once) was told why.
	var told []string
	for _, c := range conns[:16] {
		c.SetReadDeadline(time.Now().Add(time.Second))
		if l, err := bufio.NewReader(c).ReadString('\n'); err == nil || l != "" {
			told = append(told, l)
		}
	}
	if len(told) != 1 || !strings.HasPrefix(told[0], "-ERR [SYS/TEMP] ") {
		t.Errorf("the oldest idle connections read %q, want one -ERR [SYS/TEMP]", told)
	}
}

// A flood of 20,000 connections against a cap of 1,000 evicts idle
// connections only: the logged-in sessions opened before it keep working.
// The cap is below the flood so that eviction happens 19,000 times; the
// clients close what they no longer need, so neither process comes near
// the container's 20,000 descriptors.
func TestFloodSparesLoggedIn(t *testing.T) {
	if testing.Short() {
		t.Skip("opens 20,000 connections")
	}
	const capacity, flood, sessions = 1000, 20000, 10
	s := newSite(t)
	for range sessions {
		s.deliver("alice", "Subject: hi\n\nhello\n")
	}
	s.appendConfig(fmt.Sprintf("[limits]\nmax_connections = %d\n", capacity))
	srv := s.start()
	users := []string{"alice", "bob@example.org"}
	var logged []*conn
	for i := range 2 {
		c := &conn{t: t, nc: dialFrom(t, fmt.Sprintf("127.0.0.%d", 50+i), srv.addr)}
		c.br = bufio.NewReader(c.nc)
		c.expect("+OK")
		c.login(users[i])
		logged = append(logged, c)
	}

	deadline := time.Now().Add(3 * time.Minute)
	var wg sync.WaitGroup
	var served atomic.Int32
	const workers, hold = 32, 100
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var open []net.Conn
			defer func() {
				for _, c := range open {
					c.Close()
				}
			}()
			for i := w; i < flood && time.Now().Before(deadline); i += workers {
				if c := idleConn(srcAddr(i), srv.addr); c != nil {
					served.Add(1)
					open = append(open, c)
				}
				if len(open) > hold {
					open[0].Close()
					open = open[1:]
				}
			}
		}()
	}
	wg.Wait()
	t.Logf("flood: %d of %d connections greeted with a cap of %d", served.Load(), flood, capacity)
	if time.Now().After(deadline) {
		t.Fatal("flood did not finish in 3 minutes")
	}
	if got := served.Load(); got < flood*9/10 {
		t.Errorf("only %d of %d flood connections were served: eviction should make room", got, flood)
	}
	logged[0].cmd("STAT", fmt.Sprintf("+OK %d ", sessions))
	logged[1].cmd("STAT", "+OK 0 ")
	for _, c := range logged {
		c.cmd("QUIT", "+OK")
	}
}
