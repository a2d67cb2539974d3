// Package metrics owns the server's Prometheus registry: the metrics of the
// POP3 engine, the LMTP server, the connection and login limiters and the
// TLS certificates, and the HTTP handler that exposes them. It is the only
// importer of client_golang; the components report through small
// interfaces and hooks of their own (pop3server.Observer,
// lmtp.Options.OnDelivery, a wrapped pop3server.LoginLimiter, the
// connection limiter's refusal callback), so none of them knows Prometheus.
//
// Every label takes values from a fixed set: a client can never create a
// series (an unknown SASL mechanism is never a login attempt; results are
// the engine's RFC 3206 codes).
package metrics

import (
	"net/http"
	"runtime/debug"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

const namespace = "postoffice"

// Metrics is the registry and its metrics. Its methods are safe for
// concurrent use.
type Metrics struct {
	reg *prometheus.Registry

	pop3Active      prometheus.Gauge
	pop3Sessions    *prometheus.CounterVec // tls
	pop3Duration    prometheus.Histogram
	pop3Logins      *prometheus.CounterVec // method, result
	pop3LoginTime   *prometheus.HistogramVec
	pop3Retr        prometheus.Counter
	pop3RetrBytes   prometheus.Counter
	pop3Top         prometheus.Counter
	pop3TopBytes    prometheus.Counter
	pop3Deleted     prometheus.Counter
	pop3DeleteBytes prometheus.Counter

	connRefused  *prometheus.CounterVec // reason
	authDelayed  prometheus.Counter
	authRefused  prometheus.Counter
	authBans     prometheus.Counter
	lmtpResults  *prometheus.CounterVec // result
	lmtpBytes    prometheus.Counter
	lmtpDuration prometheus.Histogram

	// ledgerRemoved's reason is one of expire_retrieval, expire_arrival,
	// devices (ledger.Options.OnRemoved).
	ledgerRemoved *prometheus.CounterVec // reason
	storms        prometheus.Counter

	reloadOK   prometheus.Gauge
	reloadTime prometheus.Gauge
}

// New returns Metrics registered on a new registry, with the Go runtime
// and process collectors and postoffice_build_info.
func New() *Metrics {
	reg := prometheus.NewRegistry()
	m := &Metrics{reg: reg}
	f := factory{reg}

	m.pop3Active = f.gauge("pop3_sessions_active", "POP3 connections open now (before and after login).")
	m.pop3Sessions = f.counterVec("pop3_sessions_total", "POP3 sessions ended, by whether TLS was in use at the end (implicit or STLS).", "tls")
	m.pop3Duration = f.histogram("pop3_session_duration_seconds", "Length of POP3 sessions, from accept to close.",
		[]float64{.01, .05, .1, .5, 1, 5, 10, 30, 60, 300, 600, 1800})
	m.pop3Logins = f.counterVec("pop3_logins_total",
		"POP3 login attempts by method (USER, APOP or the SASL mechanism) and result: ok, auth (bad credentials), in_use (maildrop locked), login_delay, refused (too many failures from the client), error (temporary failure).",
		"method", "result")
	m.pop3LoginTime = f.histogramVec("pop3_login_duration_seconds",
		"Time the backend took to check credentials and open the maildrop, by result (ok or not), excluding deliberate delays.",
		[]float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5}, "result")
	m.pop3Retr = f.counter("pop3_retrieved_messages_total", "Messages sent in full by RETR.")
	m.pop3RetrBytes = f.counter("pop3_retrieved_bytes_total", "Octets of the messages sent by RETR (LIST sizes).")
	m.pop3Top = f.counter("pop3_top_total", "TOP commands answered.")
	m.pop3TopBytes = f.counter("pop3_top_bytes_total", "Octets sent in answer to TOP.")
	m.pop3Deleted = f.counter("pop3_deleted_messages_total", "Messages removed in the UPDATE state (after QUIT).")
	m.pop3DeleteBytes = f.counter("pop3_deleted_bytes_total", "Octets of the messages removed in the UPDATE state.")

	m.ledgerRemoved = f.counterVec("messages_removed_total",
		"Messages removed by the expiry sweep or once every active device deleted them, by reason: expire_retrieval, expire_arrival, devices.",
		"reason")
	m.storms = f.counter("pop3_redownload_storms_total", "Sessions in which one device retrieved again many messages it had already retrieved (history.storm_threshold).")

	m.connRefused = f.counterVec("connections_refused_total",
		"POP3 connections refused or dropped before the session started, by reason: max_connections, max_connections_per_ip, proxy_header, untrusted_proxy.",
		"reason")
	m.authDelayed = f.counter("auth_delayed_total", "Credential checks delayed by the login penalty.")
	m.authRefused = f.counter("auth_refused_total", "Credential checks refused outright because the client is banned or throttled.")
	m.authBans = f.counter("auth_bans_total", "Bans of a client address group for too many failed logins.")

	m.lmtpResults = f.counterVec("lmtp_deliveries_total",
		"LMTP deliveries by result per recipient: delivered, over_quota, full (452 4.3.1), failed (temporary store failure).",
		"result")
	m.lmtpBytes = f.counter("lmtp_delivered_bytes_total", "Octets of the messages delivered over LMTP, as received.")
	m.lmtpDuration = f.histogram("lmtp_delivery_duration_seconds", "Time to write one message durably into a maildrop.",
		[]float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 5})

	m.reloadOK = f.gauge("config_last_reload_successful", "1 if the last SIGHUP reload of the config file succeeded (or none was tried), 0 if the file did not load and the running configuration was kept.")
	m.reloadTime = f.gauge("config_last_reload_success_timestamp_seconds", "When the configuration in force was loaded: the start, or the last successful reload.")
	m.ConfigReloaded(true)

	for _, r := range []string{ResultOK, ResultAuth, ResultInUse, ResultRefused, ResultError} {
		m.pop3Logins.WithLabelValues("USER", r)
	}
	for _, r := range []string{"max_connections", "max_connections_per_ip"} {
		m.connRefused.WithLabelValues(r)
	}

	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	version, goVersion := "(devel)", ""
	if bi, ok := debug.ReadBuildInfo(); ok {
		version, goVersion = bi.Main.Version, bi.GoVersion
	}
	info := f.gaugeVec("build_info", "Always 1; the labels say which build is running.", "version", "goversion")
	info.WithLabelValues(version, goVersion).Set(1)
	return m
}

// Registry returns the registry, for collectors added by the caller.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the metrics in the Prometheus text (or OpenMetrics)
// format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		ErrorHandling:       promhttp.ContinueOnError,
		MaxRequestsInFlight: 4,
		Timeout:             10 * time.Second,
	})
}

// Login results, the values of pop3_logins_total's result label.
const (
	ResultOK         = "ok"
	ResultAuth       = "auth"
	ResultInUse      = "in_use"
	ResultLoginDelay = "login_delay"
	ResultRefused    = "refused"
	ResultError      = "error"
)

// ConfigReloaded records the outcome of a configuration load or reload.
func (m *Metrics) ConfigReloaded(ok bool) {
	if ok {
		m.reloadOK.Set(1)
		m.reloadTime.SetToCurrentTime()
	} else {
		m.reloadOK.Set(0)
	}
}

// ConnRefused counts a connection refused before its session, for
// netlimit.Options.OnRefuse.
func (m *Metrics) ConnRefused(reason string) { m.connRefused.WithLabelValues(reason).Inc() }

// factory makes metrics in the postoffice namespace, registered on reg.
type factory struct{ reg *prometheus.Registry }

func (f factory) counter(name, help string) prometheus.Counter {
	c := prometheus.NewCounter(prometheus.CounterOpts{Namespace: namespace, Name: name, Help: help})
	f.reg.MustRegister(c)
	return c
}

func (f factory) counterVec(name, help string, labels ...string) *prometheus.CounterVec {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: name, Help: help}, labels)
	f.reg.MustRegister(c)
	return c
}

func (f factory) gauge(name, help string) prometheus.Gauge {
	g := prometheus.NewGauge(prometheus.GaugeOpts{Namespace: namespace, Name: name, Help: help})
	f.reg.MustRegister(g)
	return g
}

func (f factory) gaugeVec(name, help string, labels ...string) *prometheus.GaugeVec {
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: namespace, Name: name, Help: help}, labels)
	f.reg.MustRegister(g)
	return g
}

func (f factory) histogram(name, help string, buckets []float64) prometheus.Histogram {
	h := prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: namespace, Name: name, Help: help, Buckets: buckets})
	f.reg.MustRegister(h)
	return h
}

func (f factory) histogramVec(name, help string, buckets []float64, labels ...string) *prometheus.HistogramVec {
	h := prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: namespace, Name: name, Help: help, Buckets: buckets}, labels)
	f.reg.MustRegister(h)
	return h
}
