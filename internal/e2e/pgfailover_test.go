//go:build unix

package e2e

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/postoffice-mail/postoffice/internal/testutil/pgtest"
)

// popClient is a POP3 client for load goroutines: it returns errors
// instead of failing the test.
type popClient struct {
	nc net.Conn
	br *bufio.Reader
}

func dialPOP(addr string) (*popClient, error) {
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	nc.SetDeadline(time.Now().Add(30 * time.Second))
	c := &popClient{nc: nc, br: bufio.NewReader(nc)}
	if _, err := c.line(); err != nil {
		nc.Close()
		return nil, err
	}
	return c, nil
}

func (c *popClient) line() (string, error) {
	l, err := c.br.ReadString('\n')
	return strings.TrimSuffix(l, "\r\n"), err
}

// cmd sends line and returns the reply, an error for a reply that is
// not +OK.
func (c *popClient) cmd(line string) (string, error) {
	if _, err := io.WriteString(c.nc, line+"\r\n"); err != nil {
		return "", err
	}
	r, err := c.line()
	if err == nil && !strings.HasPrefix(r, "+OK") {
		err = fmt.Errorf("%s: %s", strings.Fields(line)[0], r)
	}
	return r, err
}

// multi reads a multi-line body up to its "." line.
func (c *popClient) multi() ([]string, error) {
	var ls []string
	for n := 0; n < 100000; n++ {
		l, err := c.line()
		if err != nil {
			return ls, err
		}
		if l == "." {
			return ls, nil
		}
		ls = append(ls, l)
	}
	return ls, fmt.Errorf("body too long")
}

var failoverID = regexp.MustCompile(`^Subject: failover (\d+)$`)

// drain logs in as user, reads the id of every message (TOP n 0), marks
// them all deleted and QUITs. It returns the ids, and whether QUIT
// answered +OK (they are then gone for sure) or was sent without an
// answer (their fate is unknown: the commit may have happened).
func drain(addr, user string) (ids []int, quitSent, quitOK bool, err error) {
	c, err := dialPOP(addr)
	if err != nil {
		return nil, false, false, err
	}
	defer c.nc.Close()
	if _, err := c.cmd("USER " + user); err != nil {
		return nil, false, false, err
	}
	if _, err := c.cmd("PASS " + testPassword); err != nil {
		return nil, false, false, err
	}
	r, err := c.cmd("STAT")
	if err != nil {
		return nil, false, false, err
	}
	f := strings.Fields(r)
	n, _ := strconv.Atoi(f[1])
	for i := 1; i <= n; i++ {
		if _, err := c.cmd(fmt.Sprintf("TOP %d 0", i)); err != nil {
			return nil, false, false, err
		}
		ls, err := c.multi()
		if err != nil {
			return nil, false, false, err
		}
		for _, l := range ls {
			if m := failoverID.FindStringSubmatch(l); m != nil {
				id, _ := strconv.Atoi(m[1])
				ids = append(ids, id)
			}
		}
		if _, err := c.cmd(fmt.Sprintf("DELE %d", i)); err != nil {
			return nil, false, false, err
		}
	}
	_, err = c.cmd("QUIT")
	return ids, true, err == nil, err
}

// TestPostgresFailover runs two servers configured with both hosts of a
// primary and its synchronous replica (target_session_attrs=read-write),
// under LMTP deliveries and POP3 retrieve-and-delete sessions through both;
// kills the primary (SIGKILL) in the middle and promotes the replica. The
// same server processes serve again without a restart, every message
// acknowledged with 250 is retrievable afterwards unless a session deleted
// it, and no message deleted by a QUIT that answered +OK comes back.
func TestPostgresFailover(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("starts a replicated pair; skipped in -short mode")
	}
	r := pgtest.NewReplicated(t)
	s := newPGSite(t, r.DSN(), "[postgres]\nlock_ttl = \"2s\"\nconnect_timeout = \"2s\"\n")
	var lmtpAddr, popAddr [2]string
	for i := range 2 {
		lmtpAddr[i] = fmt.Sprintf("127.0.0.1:%d", freePort(t))
		srv := s.startWith(fmt.Sprintf("srv%d", i), fmt.Sprintf("[lmtp]\nlisten = [%q]\nhostname = \"s%d.test\"\nspool_dir = %q\n", lmtpAddr[i], i, s.dir))
		popAddr[i] = srv.addr
	}
	users := []string{"alice", "bob@example.org"}

	var (
		mu        sync.Mutex
		acked     = map[int]bool{} // 250 to its DATA
		deleted   = map[int]bool{} // by a QUIT that answered +OK
		uncertain = map[int]bool{} // by a QUIT sent but not answered +OK
		phase     atomic.Int32     // 0 before the kill, 1 killed, 2 promoted
		okAfter   [2]struct{ deliver, quit atomic.Bool }
		nextID    atomic.Int64
	)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() { // deliveries, alternating servers and users
			defer wg.Done()
			for k := 0; ; k++ {
				select {
				case <-stop:
					return
				default:
				}
				si := (g + k) % 2
				id := int(nextID.Add(1))
				rcpt := "alice@example.org"
				if id%2 == 0 {
					rcpt = "bob@example.org"
				}
				lc, err := dialLMTP(lmtpAddr[si])
				if err != nil {
					time.Sleep(50 * time.Millisecond)
					continue
				}
				lc.nc.SetDeadline(time.Now().Add(20 * time.Second))
				reply, err := lc.send("load@example.net", rcpt, fmt.Sprintf("Subject: failover %d\r\n\r\nbody %d\r\n", id, id))
				lc.nc.Close()
				if err == nil && strings.HasPrefix(reply, "250") {
					mu.Lock()
					acked[id] = true
					mu.Unlock()
					if phase.Load() == 2 {
						okAfter[si].deliver.Store(true)
					}
				} else {
					time.Sleep(50 * time.Millisecond)
				}
			}
		}()
	}
	for g := range 2 {
		wg.Add(1)
		go func() { // retrieve and delete, alternating servers
			defer wg.Done()
			for k := 0; ; k++ {
				select {
				case <-stop:
					return
				default:
				}
				si := (g + k) % 2
				ids, sent, ok, _ := drain(popAddr[si], users[g])
				mu.Lock()
				for _, id := range ids {
					switch {
					case ok:
						deleted[id] = true
					case sent:
						uncertain[id] = true
					}
				}
				mu.Unlock()
				if ok && phase.Load() == 2 {
					okAfter[si].quit.Store(true)
				}
				time.Sleep(100 * time.Millisecond)
			}
		}()
	}
	time.Sleep(2 * time.Second)
	if err := r.KillPrimary(); err != nil {
		t.Fatal(err)
	}
	phase.Store(1)
	killed := time.Now()
	time.Sleep(500 * time.Millisecond)
	if err := r.Promote(); err != nil {
		t.Fatal(err)
	}
	phase.Store(2)
	promoted := time.Now()
	recovered := func() bool {
		for i := range okAfter {
			if !okAfter[i].deliver.Load() || !okAfter[i].quit.Load() {
				return false
			}
		}
		return true
	}
	for time.Since(promoted) < 60*time.Second && !recovered() {
		time.Sleep(100 * time.Millisecond)
	}
	back := time.Since(promoted)
	time.Sleep(time.Second) // some load after the recovery
	close(stop)
	wg.Wait()
	if !recovered() {
		t.Fatalf("the servers did not both deliver and commit a QUIT within 60s of the promotion")
	}

	// What is left: read through one server, then the other must agree.
	left := map[int]bool{}
	for _, u := range users {
		var ids []int
		var err error
		for try := 0; try < 50; try++ { // a lease of a cut session may linger for lock_ttl
			if ids, _, _, err = drainList(popAddr[try%2], u); err == nil {
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
		if err != nil {
			t.Fatalf("listing %s after the failover: %v", u, err)
		}
		for _, id := range ids {
			if left[id] {
				t.Errorf("message %d is there twice", id)
			}
			left[id] = true
		}
	}
	mu.Lock()
	defer mu.Unlock()
	var lost, back2 []int
	for id := range acked {
		if !left[id] && !deleted[id] && !uncertain[id] {
			lost = append(lost, id)
		}
	}
	for id := range deleted {
		if left[id] {
			back2 = append(back2, id)
		}
	}
	if len(lost) > 0 {
		t.Errorf("%d messages acknowledged with 250 are gone: %v", len(lost), lost)
	}
	if len(back2) > 0 {
		t.Errorf("%d messages deleted by a QUIT that answered +OK came back: %v", len(back2), back2)
	}
	t.Logf("%d delivered (250), %d deleted (+OK QUIT), %d of uncertain fate, %d left; primary killed, replica promoted %v later, both servers delivering and committing again %v after the promotion",
		len(acked), len(deleted), len(uncertain), len(left), promoted.Sub(killed).Round(time.Millisecond), back.Round(time.Millisecond))
}

// drainList lists the ids of user's messages without deleting any.
func drainList(addr, user string) (ids []int, _, _ bool, err error) {
	c, err := dialPOP(addr)
	if err != nil {
		return nil, false, false, err
	}
	defer c.nc.Close()
	if _, err := c.cmd("USER " + user); err != nil {
		return nil, false, false, err
	}
	if _, err := c.cmd("PASS " + testPassword); err != nil {
		return nil, false, false, err
	}
	r, err := c.cmd("STAT")
	if err != nil {
		return nil, false, false, err
	}
	n, _ := strconv.Atoi(strings.Fields(r)[1])
	for i := 1; i <= n; i++ {
		if _, err := c.cmd(fmt.Sprintf("TOP %d 0", i)); err != nil {
			return nil, false, false, err
		}
		ls, err := c.multi()
		if err != nil {
			return nil, false, false, err
		}
		for _, l := range ls {
			if m := failoverID.FindStringSubmatch(l); m != nil {
				id, _ := strconv.Atoi(m[1])
				ids = append(ids, id)
			}
		}
	}
	_, err = c.cmd("QUIT")
	return ids, false, false, err
}
