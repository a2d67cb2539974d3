package e2e

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// scrapeMetrics fetches GET /metrics from addr and returns its lines.
func scrapeMetrics(t *testing.T, addr string) map[string]bool {
	t.Helper()
	c := http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET /metrics: %d %v", resp.StatusCode, err)
	}
	lines := make(map[string]bool)
	for _, l := range strings.Split(string(b), "\n") {
		lines[l] = true
	}
	return lines
}

// The binary with [metrics] listen counts what its sessions and LMTP
// deliveries did: logins by method and result, RETR and DELE totals, a
// refused connection, deliveries; and it shows no user name.
func TestMetrics(t *testing.T) {
	t.Parallel()
	s := newSite(t)
	maddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	lmtpAddr := s.enableLMTP()
	s.appendConfig(fmt.Sprintf("[metrics]\nlisten = %q\n\n[limits]\nmax_connections_per_ip = 3\n", maddr))
	srv := s.start()
	srv.waitLMTP(lmtpAddr)

	lc, err := dialLMTP(lmtpAddr)
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if r, err := lc.send("a@example.net", "alice@example.org", "Subject: m\r\n\r\nbody\r\n"); err != nil {
			t.Fatalf("lmtp: %s %v", r, err)
		}
	}
	lc.cmd("QUIT", "221")

	c := srv.dial()
	c.cmd("USER alice", "+OK")
	c.cmd("PASS wrong", "-ERR [AUTH]")
	c.login("alice")
	other := srv.dial() // alice's maildrop is locked
	other.cmd("USER alice", "+OK")
	other.cmd("PASS "+testPassword, "-ERR [IN-USE]")
	other.cmd("QUIT", "+OK")
	c.retr(1)
	c.cmd("DELE 1", "+OK")
	c.cmd("QUIT", "+OK")

	// The per-address cap is 3: a fourth connection is refused. A session
	// gives its connection slot back just after its QUIT reply: wait until
	// none is active, or the earlier sessions may still count against the
	// cap.
	for deadline := time.Now().Add(10 * time.Second); !scrapeMetrics(t, maddr)["postoffice_pop3_sessions_active 0"]; {
		if time.Now().After(deadline) {
			t.Fatal("sessions still active 10 s after QUIT")
		}
		time.Sleep(20 * time.Millisecond)
	}
	var held []*conn
	for range 3 {
		held = append(held, srv.dial())
	}
	refused := srv.connFrom("127.0.0.1")
	refused.expect("-ERR [SYS/TEMP]")
	for _, h := range held {
		h.cmd("QUIT", "+OK")
	}

	// Session counters are added when a session ends: wait for them.
	want := []string{
		`postoffice_pop3_logins_total{method="USER",result="ok"} 1`,
		`postoffice_pop3_logins_total{method="USER",result="auth"} 1`,
		`postoffice_pop3_logins_total{method="USER",result="in_use"} 1`,
		`postoffice_pop3_retrieved_messages_total 1`,
		`postoffice_pop3_deleted_messages_total 1`,
		`postoffice_pop3_sessions_total{tls="false"} 5`,
		`postoffice_pop3_sessions_active 0`,
		`postoffice_connections_refused_total{reason="max_connections_per_ip"} 1`,
		`postoffice_lmtp_deliveries_total{result="delivered"} 2`,
		`postoffice_pop3_login_duration_seconds_count{result="ok"} 1`,
	}
	var lines map[string]bool
	for deadline := time.Now().Add(10 * time.Second); ; {
		lines = scrapeMetrics(t, maddr)
		missing := 0
		for _, w := range want {
			if !lines[w] {
				missing++
			}
		}
		if missing == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, w := range want {
		if !lines[w] {
			t.Errorf("metrics lack %q", w)
		}
	}
	for l := range lines {
		if strings.Contains(l, "alice") {
			t.Errorf("a metric names the user: %q", l)
		}
	}
	srv.stop()
	if log := srv.logText(); !strings.Contains(log, `msg="metrics listening" addr=`+maddr) {
		t.Errorf("no metrics listening line in the log:\n%s", log)
	}
}
