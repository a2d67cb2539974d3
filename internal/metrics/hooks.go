package metrics

import (
	"net"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/postoffice-mail/postoffice/internal/tlsconf"
	"github.com/postoffice-mail/postoffice/pop3server"
)

// LoginLimiter returns l counting its delays, refusals and bans.
func (m *Metrics) LoginLimiter(l pop3server.LoginLimiter) pop3server.LoginLimiter {
	return &countingLimiter{l: l, m: m}
}

type countingLimiter struct {
	l pop3server.LoginLimiter
	m *Metrics
}

func (c *countingLimiter) BeforeLogin(remote net.Addr, user string) (time.Duration, bool, time.Time) {
	delay, refuse, until := c.l.BeforeLogin(remote, user)
	switch {
	case refuse:
		c.m.authRefused.Inc()
	case delay > 0:
		c.m.authDelayed.Inc()
	}
	return delay, refuse, until
}

func (c *countingLimiter) LoginFailed(remote net.Addr, user string, password []byte) (bool, time.Time) {
	banned, until := c.l.LoginFailed(remote, user, password)
	if banned {
		c.m.authBans.Inc()
	}
	return banned, until
}

func (c *countingLimiter) LoginSucceeded(remote net.Addr, user string) {
	c.l.LoginSucceeded(remote, user)
}

// Delivery counts one LMTP delivery to one recipient, for
// lmtp.Options.OnDelivery.
func (m *Metrics) Delivery(result string, size int64, d time.Duration) {
	m.lmtpResults.WithLabelValues(result).Inc()
	if result == "delivered" {
		m.lmtpBytes.Add(float64(size))
		m.lmtpDuration.Observe(d.Seconds())
	}
}

// WatchCertificates exports the expiry of tlsm's certificates, read at
// each scrape so that it follows SIGHUP reloads:
// postoffice_tls_certificate_expiry_timestamp_seconds{file}.
func (m *Metrics) WatchCertificates(tlsm *tlsconf.Manager) {
	m.reg.MustRegister(certCollector{tlsm})
}

var certDesc = prometheus.NewDesc(namespace+"_tls_certificate_expiry_timestamp_seconds",
	"When each loaded certificate expires (its NotAfter), as a Unix time; alert on it minus time().",
	[]string{"file"}, nil)

type certCollector struct{ m *tlsconf.Manager }

func (c certCollector) Describe(ch chan<- *prometheus.Desc) { ch <- certDesc }

func (c certCollector) Collect(ch chan<- prometheus.Metric) {
	for _, e := range c.m.Expiry() {
		ch <- prometheus.MustNewConstMetric(certDesc, prometheus.GaugeValue,
			float64(e.NotAfter.Unix()), e.CertFile)
	}
}

// Removed counts messages removed by the ledger (expiry or devices);
// reason is one of the label values listed at ledgerRemoved.
func (m *Metrics) Removed(reason string, n int) {
	m.ledgerRemoved.WithLabelValues(reason).Add(float64(n))
}

// Storm counts a re-download storm.
func (m *Metrics) Storm() { m.storms.Inc() }
