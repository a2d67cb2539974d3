package metrics

import (
	"github.com/postoffice-mail/postoffice/pop3proto"
	"github.com/postoffice-mail/postoffice/pop3server"
)

// Metrics is the engine's observer.
var _ pop3server.Observer = (*Metrics)(nil)

// SessionStarted implements pop3server.Observer.
func (m *Metrics) SessionStarted(*pop3server.Conn) { m.pop3Active.Inc() }

// SessionEnded implements pop3server.Observer.
func (m *Metrics) SessionEnded(c *pop3server.Conn, s pop3server.SessionStats) {
	m.pop3Active.Dec()
	tls := "false"
	if c.TLS != nil {
		tls = "true"
	}
	m.pop3Sessions.WithLabelValues(tls).Inc()
	m.pop3Duration.Observe(s.Duration.Seconds())
	if s.Retr > 0 {
		m.pop3Retr.Add(float64(s.Retr))
		m.pop3RetrBytes.Add(float64(s.RetrBytes))
	}
	if s.Top > 0 {
		m.pop3Top.Add(float64(s.Top))
		m.pop3TopBytes.Add(float64(s.TopBytes))
	}
	if s.Deleted > 0 {
		m.pop3Deleted.Add(float64(s.Deleted))
		m.pop3DeleteBytes.Add(float64(s.DeletedBytes))
	}
}

// Login implements pop3server.Observer.
func (m *Metrics) Login(_ *pop3server.Conn, e pop3server.LoginEvent) {
	r := loginResult(e)
	m.pop3Logins.WithLabelValues(e.Method, r).Inc()
	if !e.Refused && e.Duration > 0 {
		t := "ok"
		if r != ResultOK {
			t = "failed"
		}
		m.pop3LoginTime.WithLabelValues(t).Observe(e.Duration.Seconds())
	}
}

// loginResult maps a login's outcome to the result label.
func loginResult(e pop3server.LoginEvent) string {
	switch {
	case e.Refused:
		return ResultRefused
	case e.Code == "":
		return ResultOK
	case e.Code == pop3proto.CodeAuth:
		return ResultAuth
	case e.Code == pop3proto.CodeInUse:
		return ResultInUse
	case e.Code == pop3proto.CodeLoginDelay:
		return ResultLoginDelay
	}
	return ResultError
}
