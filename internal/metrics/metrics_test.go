package metrics

import (
	"crypto/tls"
	"io"
	"net"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/postoffice-mail/postoffice/pop3proto"
	"github.com/postoffice-mail/postoffice/pop3server"
)

// scrape returns the exposition text of m.
func scrape(t *testing.T, m *Metrics) string {
	t.Helper()
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if rec.Code != 200 {
		t.Fatalf("GET /metrics: %d", rec.Code)
	}
	b, _ := io.ReadAll(rec.Body)
	return string(b)
}

// wantLines checks that each line appears in the exposition text.
func wantLines(t *testing.T, text string, lines ...string) {
	t.Helper()
	have := make(map[string]bool)
	for _, l := range strings.Split(text, "\n") {
		have[l] = true
	}
	for _, l := range lines {
		if !have[l] {
			t.Errorf("metrics lack %q", l)
		}
	}
}

type fakeLimiter struct {
	delay  time.Duration
	refuse bool
	banned bool
}

func (f *fakeLimiter) BeforeLogin(net.Addr, string) (time.Duration, bool, time.Time) {
	return f.delay, f.refuse, time.Time{}
}

func (f *fakeLimiter) LoginFailed(net.Addr, string, []byte) (bool, time.Time) {
	return f.banned, time.Time{}
}

func (f *fakeLimiter) LoginSucceeded(net.Addr, string) {}

func TestHooks(t *testing.T) {
	m := New()
	f := &fakeLimiter{}
	l := m.LoginLimiter(f)
	l.BeforeLogin(nil, "a") // neither delayed nor refused
	f.delay = time.Second
	l.BeforeLogin(nil, "a")
	f.refuse = true
	if _, refuse, _ := l.BeforeLogin(nil, "a"); !refuse {
		t.Error("the wrapper lost the refusal")
	}
	l.LoginFailed(nil, "a", nil)
	f.banned = true
	if banned, _ := l.LoginFailed(nil, "a", nil); !banned {
		t.Error("the wrapper lost the ban")
	}

	m.ConnRefused("max_connections_per_ip")
	m.ConnRefused("max_connections_per_ip")
	m.Delivery("delivered", 1000, 2*time.Millisecond)
	m.Delivery("delivered", 500, 2*time.Millisecond)
	m.Delivery("full", 700, 0)

	m.ConfigReloaded(false)

	text := scrape(t, m)
	wantLines(t, text,
		"postoffice_config_last_reload_successful 0",
		"postoffice_auth_delayed_total 1",
		"postoffice_auth_refused_total 1",
		"postoffice_auth_bans_total 1",
		`postoffice_connections_refused_total{reason="max_connections"} 0`,
		`postoffice_connections_refused_total{reason="max_connections_per_ip"} 2`,
		`postoffice_lmtp_deliveries_total{result="delivered"} 2`,
		`postoffice_lmtp_deliveries_total{result="full"} 1`,
		"postoffice_lmtp_delivered_bytes_total 1500",
		"postoffice_lmtp_delivery_duration_seconds_count 2",
	)
	for _, prefix := range []string{"postoffice_build_info{", "go_goroutines ", "process_open_fds "} {
		if !strings.Contains(text, "\n"+prefix) {
			t.Errorf("metrics lack %s", prefix)
		}
	}
}

func TestObserver(t *testing.T) {
	m := New()
	c := &pop3server.Conn{}
	m.SessionStarted(c)
	m.SessionStarted(c)
	m.Login(c, pop3server.LoginEvent{Method: "USER", Code: pop3proto.CodeAuth, Duration: time.Millisecond})
	m.Login(c, pop3server.LoginEvent{Method: "SCRAM-SHA-256", Duration: 2 * time.Millisecond})
	m.Login(c, pop3server.LoginEvent{Method: "USER", Code: pop3proto.CodeSysTemp, Refused: true})
	m.Login(c, pop3server.LoginEvent{Method: "APOP", Code: pop3proto.CodeInUse, Duration: time.Millisecond})
	m.SessionEnded(c, pop3server.SessionStats{Duration: time.Second, LoggedIn: true,
		Retr: 3, RetrBytes: 3000, Top: 1, TopBytes: 100, Deleted: 2, DeletedBytes: 2000})
	c.TLS = &tls.ConnectionState{}
	m.SessionStarted(c)
	m.SessionEnded(c, pop3server.SessionStats{Duration: time.Second})

	wantLines(t, scrape(t, m),
		"postoffice_pop3_sessions_active 1",
		`postoffice_pop3_sessions_total{tls="false"} 1`,
		`postoffice_pop3_sessions_total{tls="true"} 1`,
		`postoffice_pop3_logins_total{method="USER",result="auth"} 1`,
		`postoffice_pop3_logins_total{method="USER",result="refused"} 1`,
		`postoffice_pop3_logins_total{method="USER",result="ok"} 0`,
		`postoffice_pop3_logins_total{method="SCRAM-SHA-256",result="ok"} 1`,
		`postoffice_pop3_logins_total{method="APOP",result="in_use"} 1`,
		`postoffice_pop3_login_duration_seconds_count{result="ok"} 1`,
		`postoffice_pop3_login_duration_seconds_count{result="failed"} 2`,
		"postoffice_pop3_retrieved_messages_total 3",
		"postoffice_pop3_retrieved_bytes_total 3000",
		"postoffice_pop3_top_total 1",
		"postoffice_pop3_deleted_messages_total 2",
		"postoffice_pop3_deleted_bytes_total 2000",
		"postoffice_pop3_session_duration_seconds_count 2",
	)
}
