package e2e

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// faultMessage is message id of the fault tests: its X-Fault-Id names it,
// its size depends on id only (70 octets to about 16 KiB, so some deliveries take
// long enough to be cut by a kill), and its last line checksums the rest.
func faultMessage(id int) string {
	head := fmt.Sprintf("Subject: fault %d\r\nX-Fault-Id: %d\r\n\r\n", id, id)
	line := fmt.Sprintf("message %d, a line of padding to give the message some length\r\n", id)
	body := strings.Repeat(line, 1+(id*7919)%250)
	sum := sha256.Sum256([]byte(head + body))
	return head + body + "X-Checksum: " + hex.EncodeToString(sum[:]) + "\r\n"
}

// faultRE matches a fault message as RETR returns it; LMTP deliveries have
// Return-Path and Delivered-To in front.
var faultRE = regexp.MustCompile(`(?s)^(Return-Path: <[^>]*>\r\nDelivered-To: <[^>]+>\r\n)?(Subject: fault (\d+)\r\n.*)X-Checksum: ([0-9a-f]{64})\r\n$`)

// listing is what one POP3 session sees: the UIDL and LIST size of each
// message, in order.
type listing struct {
	uidls []string
	sizes []int64
}

// list reads UIDL and LIST.
func (c *conn) list() listing {
	c.t.Helper()
	var l listing
	l.uidls = c.uidls()
	c.cmd("LIST", "+OK")
	for {
		line := c.expect("")
		if line == "." {
			break
		}
		var n int
		var size int64
		if _, err := fmt.Sscanf(line, "%d %d", &n, &size); err != nil || n != len(l.sizes)+1 {
			c.t.Fatalf("LIST line %q", line)
		}
		l.sizes = append(l.sizes, size)
	}
	if len(l.sizes) != len(l.uidls) {
		c.t.Fatalf("UIDL lists %d messages, LIST %d", len(l.uidls), len(l.sizes))
	}
	return l
}

// The fate of a fault message in the model the test checks against.
const (
	mustExist  = iota // never deleted, or delivered with a 250
	mayExist          // marked and QUIT unanswered, or delivered without a 250
	mustBeGone        // deleted by a QUIT answered +OK, or seen gone once
)

type faultMsg struct {
	fate int
	why  string // for mayExist: "dele" or "lmtp"
	uidl string // "" until a session has listed it
	lmtp bool   // delivered over LMTP (Return-Path in front)
}

// faultStats counts where the kills landed and what came of them.
type faultStats struct {
	delays                     []time.Duration
	quitBefore, quitMid        int // no reply; no / some marked files removed
	quitUnlinked, quitOK       int // no reply but all removed; +OK received
	quitERR                    int // an -ERR reply (should not happen)
	lmtpNone, lmtpSome         int // kill before the first 250 / between 250s
	lmtpAll                    int // every planned delivery answered 250
	acked, unacked             int // LMTP deliveries with and without 250
	unackedKept, unackedGone   int // the unacknowledged after restart
	maybeDeleKept, maybeDeleGo int // marked, QUIT unanswered: kept / gone
	confirmed                  int // deletions confirmed by QUIT +OK
	tmpLeft                    int // most files seen in tmp/ after a restart
}

// faultModel is what the test knows about alice's maildrop.
type faultModel struct {
	t    *testing.T
	s    *site
	msgs map[int]*faultMsg
	next int // next message id
}

// verify checks the maildrop through a fresh session of srv against the
// model after a kill: a login without [IN-USE], every message that must be
// there present, complete and with its old UIDL, none that was deleted back,
// nothing unknown; messages that may exist are settled either way. It
// returns the listing it saw, and the ids in its order.
func (m *faultModel) verify(srv *server, round int, st *faultStats) []int {
	t := m.t
	t.Helper()
	c := srv.dial()
	c.cmd("USER alice", "+OK")
	if l := c.cmd("PASS "+testPassword, ""); !strings.HasPrefix(l, "+OK") {
		t.Fatalf("round %d: login after restart: %q (a lock left behind?)", round, l)
	}
	ls := c.list()
	ids := make([]int, len(ls.uidls))
	seen := map[int]bool{}
	// Pipelined (RFC 2449 PIPELINING): all RETRs go out at once.
	var retrs strings.Builder
	for k := range ls.uidls {
		fmt.Fprintf(&retrs, "RETR %d\r\n", k+1)
	}
	io.WriteString(c.nc, retrs.String())
	for k := range ls.uidls {
		got := c.retrReply(k + 1)
		mm := faultRE.FindStringSubmatch(got)
		if mm == nil {
			t.Fatalf("round %d: message %d (UIDL %s) is malformed or partial: %.200q", round, k+1, ls.uidls[k], got)
		}
		sum := sha256.Sum256([]byte(mm[2]))
		if hex.EncodeToString(sum[:]) != mm[4] {
			t.Fatalf("round %d: message %d (UIDL %s) fails its checksum: partial", round, k+1, ls.uidls[k])
		}
		var id int
		fmt.Sscan(mm[3], &id)
		fm := m.msgs[id]
		switch {
		case fm == nil:
			t.Fatalf("round %d: message %d has unknown id %d", round, k+1, id)
		case seen[id]:
			t.Fatalf("round %d: message id %d listed twice", round, id)
		case mm[2]+"X-Checksum: "+mm[4]+"\r\n" != faultMessage(id):
			t.Fatalf("round %d: message id %d differs from what was sent", round, id)
		case (mm[1] != "") != fm.lmtp:
			t.Fatalf("round %d: message id %d: LMTP header fields %q, want LMTP=%v", round, id, mm[1], fm.lmtp)
		case int64(len(got)) != ls.sizes[k]:
			t.Fatalf("round %d: message id %d: LIST size %d, RETR gave %d octets", round, id, ls.sizes[k], len(got))
		case fm.fate == mustBeGone:
			t.Fatalf("round %d: message id %d (UIDL %s) was deleted and came back", round, id, ls.uidls[k])
		case fm.uidl != "" && fm.uidl != ls.uidls[k]:
			t.Fatalf("round %d: message id %d: UIDL changed from %s to %s across the kill", round, id, fm.uidl, ls.uidls[k])
		}
		seen[id] = true
		ids[k] = id
		fm.uidl = ls.uidls[k]
	}
	c.cmd("QUIT", "+OK")
	for id, fm := range m.msgs {
		switch {
		case fm.fate == mustExist && !seen[id]:
			t.Fatalf("round %d: message id %d (UIDL %q) lost", round, id, fm.uidl)
		case fm.fate == mayExist:
			switch {
			case fm.why == "dele" && seen[id]:
				st.maybeDeleKept++
			case fm.why == "dele":
				st.maybeDeleGo++
			case seen[id]:
				st.unackedKept++
			default:
				st.unackedGone++
			}
		}
		// Settled: from now on what was seen must stay so.
		if seen[id] {
			fm.fate = mustExist
		} else {
			fm.fate = mustBeGone
		}
		fm.why = ""
	}
	if n := len(m.s.files("alice")); n != len(ids) {
		t.Fatalf("round %d: %d files in new/ and cur/, POP3 lists %d", round, n, len(ids))
	}
	if es, _ := os.ReadDir(filepath.Join(m.s.maildir("alice"), "tmp")); len(es) > st.tmpLeft {
		st.tmpLeft = len(es)
	}
	return ids
}

// kill -9 of the server, 50 times, at random instants around a QUIT that
// commits deletions while LMTP deliveries to the same maildrop run. After
// every restart: a login succeeds (no lock left), no message whose deletion
// a QUIT confirmed came back, every unmarked message and every delivery
// answered 250 is there, complete (checksum) and with its old UIDL, and no
// message is partial. A marked message whose QUIT was not answered, and a
// delivery not answered, may be there or not; they are counted.
func TestKillFaults(t *testing.T) {
	t.Parallel()
	const (
		rounds   = 50
		minDrop  = 20 // messages in the maildrop at the start of a round
		maxDrop  = 40 // above this, most messages are marked
		lmtpPlan = 6  // LMTP deliveries tried per round
	)
	s := newSite(t)
	sock := s.enableLMTPSocket()
	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(6, seed))
	t.Logf("seed %d", seed)
	m := &faultModel{t: t, s: s, msgs: map[int]*faultMsg{}, next: 1}
	var st faultStats
	start := time.Now()

	present := func() int {
		n := 0
		for _, fm := range m.msgs {
			if fm.fate == mustExist {
				n++
			}
		}
		return n
	}
	var srv *server
	var ids []int
	for round := 0; round <= rounds; round++ {
		if d := time.Since(start); d > 5*time.Minute {
			t.Fatalf("round %d after %v: far slower than expected (about 20s, 60s with -race)", round, d)
		}
		// Top up through the store while no server runs.
		for n := present(); n < minDrop; n++ {
			s.deliver("alice", faultMessage(m.next))
			m.msgs[m.next] = &faultMsg{fate: mustExist}
			m.next++
		}
		srv = s.start()
		ids = m.verify(srv, round, &st)
		if round == rounds {
			break
		}

		c := srv.dial()
		c.login("alice")
		if ls := c.list(); !slices.Equal(ls.uidls, uidlsOf(m, ids)) {
			t.Fatalf("round %d: second session lists %v, first %v", round, ls.uidls, uidlsOf(m, ids))
		}
		p := 0.5
		if len(ids) > maxDrop {
			p = 0.8
		}
		var marked []int // ids
		var cmds strings.Builder
		for k, id := range ids {
			if rng.Float64() < p || (k == len(ids)-1 && len(marked) == 0) {
				marked = append(marked, id)
				fmt.Fprintf(&cmds, "DELE %d\r\n", k+1)
			}
		}
		io.WriteString(c.nc, cmds.String())
		for range marked {
			c.expect("+OK")
		}

		// LMTP deliveries start with QUIT: connected and greeted before.
		lc, err := dialLMTPSocket(sock)
		if err != nil {
			t.Fatalf("round %d: lmtp: %v", round, err)
		}
		go1 := make(chan struct{})
		var (
			wg    sync.WaitGroup
			mu    sync.Mutex
			acked []int
			tried []int
		)
		first := m.next
		m.next += lmtpPlan
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer lc.nc.Close()
			<-go1
			for i := range lmtpPlan {
				id := first + i
				mu.Lock()
				tried = append(tried, id)
				mu.Unlock()
				if _, err := lc.send("fault@example.net", "alice@example.org", faultMessage(id)); err != nil {
					return // the server died: not acknowledged
				}
				mu.Lock()
				acked = append(acked, id)
				mu.Unlock()
			}
		}()

		// The delay is log-uniform from 20µs to 300ms, so kills land
		// before the QUIT is read, amid the unlinks and index write, after
		// the reply, and before, among and after the deliveries.
		delay := time.Duration(20e3 * math.Exp(rng.Float64()*math.Log(300e6/20e3)))
		close(go1)
		quitAt := time.Now()
		io.WriteString(c.nc, "QUIT\r\n")
		time.Sleep(time.Until(quitAt.Add(delay)))
		st.delays = append(st.delays, time.Since(quitAt))
		srv.kill()
		reply, _ := c.br.ReadString('\n')
		wg.Wait()

		// What the kill left: the model's new expectations.
		quitOK := strings.HasPrefix(reply, "+OK")
		if reply != "" && !quitOK {
			st.quitERR++
			t.Logf("round %d: QUIT answered %q", round, strings.TrimSpace(reply))
		}
		for _, id := range marked {
			fm := m.msgs[id]
			if quitOK {
				fm.fate = mustBeGone
				st.confirmed++
			} else {
				fm.fate, fm.why = mayExist, "dele"
			}
		}
		removed := len(marked) - countMarkedOnDisk(t, s, marked)
		switch {
		case quitOK:
			st.quitOK++
		case reply != "":
		case removed == 0:
			st.quitBefore++
		case removed < len(marked):
			st.quitMid++
		default:
			st.quitUnlinked++
		}
		ackedSet := map[int]bool{}
		for _, id := range acked {
			ackedSet[id] = true
		}
		for _, id := range tried {
			fm := &faultMsg{lmtp: true, fate: mustExist}
			if !ackedSet[id] {
				fm.fate, fm.why = mayExist, "lmtp"
				st.unacked++
			} else {
				st.acked++
			}
			m.msgs[id] = fm
		}
		switch len(acked) {
		case 0:
			st.lmtpNone++
		case lmtpPlan:
			st.lmtpAll++
		default:
			st.lmtpSome++
		}
	}
	srv.kill()
	took := time.Since(start)

	slices.Sort(st.delays)
	q := func(f float64) time.Duration {
		return st.delays[int(f*float64(len(st.delays)-1))].Round(time.Microsecond)
	}
	t.Logf("%d rounds, %d SIGKILLs in %v; SIGKILL sent after QUIT: min %v, median %v, p90 %v, max %v",
		rounds, len(st.delays), took.Round(time.Millisecond), q(0), q(0.5), q(0.9), q(1))
	t.Logf("QUIT: killed before the commit removed anything %d, amid the unlinks %d, after the unlinks but before the reply %d, after +OK %d, -ERR %d",
		st.quitBefore, st.quitMid, st.quitUnlinked, st.quitOK, st.quitERR)
	t.Logf("LMTP: killed before the first 250 %d, between 250s %d, after all %d deliveries %d; %d answered 250 (all present), %d unanswered (%d present, %d absent)",
		st.lmtpNone, st.lmtpSome, lmtpPlan, st.lmtpAll, st.acked, st.unacked, st.unackedKept, st.unackedGone)
	t.Logf("deletions: %d confirmed by +OK (none came back); marked with QUIT unanswered: %d still there, %d gone; at most %d interrupted deliveries in tmp/",
		st.confirmed, st.maybeDeleKept, st.maybeDeleGo, st.tmpLeft)
	if st.quitBefore == 0 || st.quitOK == 0 {
		t.Logf("warning: the kills did not land on both sides of the commit (before %d, after +OK %d)", st.quitBefore, st.quitOK)
	}
}

// retrReply reads the reply to RETR n, sent already, and returns the
// message unstuffed, with CRLF line ends.
func (c *conn) retrReply(n int) string {
	c.t.Helper()
	c.expect("+OK")
	var b strings.Builder
	for {
		l, err := c.br.ReadString('\n')
		if err != nil {
			c.t.Fatalf("RETR %d: %v", n, err)
		}
		if l == ".\r\n" {
			return b.String()
		}
		b.WriteString(strings.TrimPrefix(l, "."))
	}
}

// enableLMTPSocket is enableLMTP with the unix socket only: a server
// restarted many times needs no fixed TCP port that another test's
// connection could take in between. It returns the socket's path.
func (s *site) enableLMTPSocket() string {
	s.t.Helper()
	addr := s.enableLMTP()
	cfg, err := os.ReadFile(s.config)
	if err != nil {
		s.t.Fatal(err)
	}
	tcp := fmt.Sprintf("listen = [%q]", addr)
	if !strings.Contains(string(cfg), tcp) {
		s.t.Fatalf("config has no %s", tcp)
	}
	cfg = []byte(strings.Replace(string(cfg), tcp, "listen = []", 1))
	if err := os.WriteFile(s.config, cfg, 0o600); err != nil {
		s.t.Fatal(err)
	}
	return s.lmtpSocket()
}

// dialLMTPSocket is dialLMTP over the unix socket at path.
func dialLMTPSocket(path string) (*lmtpClient, error) {
	nc, err := net.DialTimeout("unix", path, 10*time.Second)
	if err != nil {
		return nil, err
	}
	nc.SetDeadline(time.Now().Add(60 * time.Second))
	c := &lmtpClient{nc: nc, br: bufio.NewReader(nc)}
	if _, err := c.reply("220"); err != nil {
		nc.Close()
		return nil, err
	}
	if _, err := c.cmd("LHLO test.client", "250"); err != nil {
		nc.Close()
		return nil, err
	}
	return c, nil
}

// uidlsOf returns the known UIDLs of ids.
func uidlsOf(m *faultModel, ids []int) []string {
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = m.msgs[id].uidl
	}
	return out
}

// countMarkedOnDisk counts how many of the marked messages still have a file,
// by reading each message file's X-Fault-Id.
func countMarkedOnDisk(t *testing.T, s *site, marked []int) int {
	t.Helper()
	want := map[int]bool{}
	for _, id := range marked {
		want[id] = true
	}
	n := 0
	for _, f := range s.files("alice") {
		b, err := os.ReadFile(filepath.Join(s.maildir("alice"), f))
		if err != nil {
			continue // removed since listed
		}
		mm := faultIDRE.FindSubmatch(b)
		if mm == nil {
			continue
		}
		var id int
		fmt.Sscan(string(mm[1]), &id)
		if want[id] {
			n++
		}
	}
	return n
}

var faultIDRE = regexp.MustCompile(`\r\nX-Fault-Id: (\d+)\r\n`)
