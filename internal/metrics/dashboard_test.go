package metrics

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/postoffice-mail/postoffice/internal/certutil"
	"github.com/postoffice-mail/postoffice/internal/tlsconf"
	"github.com/postoffice-mail/postoffice/pop3server"
)

// dashboard is the Grafana dashboard shipped for these metrics.
const dashboard = "../../contrib/grafana/postoffice.json"

// registeredFamilies returns the type of every metric family a server's
// registry exposes, with every labelled metric given a series (a vector
// without one is not gathered) and a certificate being watched.
func registeredFamilies(t *testing.T) map[string]string {
	t.Helper()
	m := New()
	m.SessionStarted(&pop3server.Conn{})
	m.SessionEnded(&pop3server.Conn{}, pop3server.SessionStats{Duration: time.Second, Retr: 1, RetrBytes: 10, Top: 1, TopBytes: 5, Deleted: 1, DeletedBytes: 10})
	m.Login(&pop3server.Conn{}, pop3server.LoginEvent{Method: "USER", Duration: time.Millisecond})
	m.ConnRefused("max_connections")
	m.Delivery("delivered", 100, time.Millisecond)
	l := m.LoginLimiter(&fakeLimiter{delay: time.Second})
	l.BeforeLogin(nil, "u")

	pair, err := certutil.SelfSigned(time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cert, key := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := pair.WriteFiles(cert, key); err != nil {
		t.Fatal(err)
	}
	tlsm, err := tlsconf.New(tlsconf.Options{Pairs: []tlsconf.Pair{{CertFile: cert, KeyFile: key}}})
	if err != nil {
		t.Fatal(err)
	}
	m.WatchCertificates(tlsm)

	mfs, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	types := make(map[string]string)
	for _, mf := range mfs {
		types[mf.GetName()] = mf.GetType().String() // HISTOGRAM, SUMMARY, COUNTER, ...
	}
	return types
}

// dashboardQueries returns every PromQL expression in the dashboard: the
// panels' targets and the template variables' label_values() queries.
func dashboardQueries(t *testing.T) []string {
	t.Helper()
	data, err := os.ReadFile(dashboard)
	if err != nil {
		t.Fatal(err)
	}
	var doc any
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatalf("%s: %v", dashboard, err)
	}
	var exprs []string
	var walk func(key string, v any)
	walk = func(key string, v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, e := range v {
				walk(k, e)
			}
		case []any:
			for _, e := range v {
				walk(key, e)
			}
		case string:
			switch {
			case key == "expr":
				exprs = append(exprs, v)
			case (key == "query" || key == "definition") && strings.HasPrefix(v, "label_values("):
				// label_values(EXPR, label): the label is no metric.
				inner := strings.TrimSuffix(strings.TrimPrefix(v, "label_values("), ")")
				if i := strings.LastIndexByte(inner, ','); i >= 0 {
					inner = inner[:i]
				}
				exprs = append(exprs, inner)
			}
		}
	}
	walk("", doc)
	return exprs
}

// TestDashboardMetricsExist checks that every metric the dashboard queries
// is one the server registers, so a renamed or removed metric cannot leave
// an empty panel behind. A histogram is queried by its _bucket, _sum or
// _count series.
func TestDashboardMetricsExist(t *testing.T) {
	types := registeredFamilies(t)
	exprs := dashboardQueries(t)
	if len(exprs) < 10 {
		t.Fatalf("%s: found only %d queries", dashboard, len(exprs))
	}
	var used []string
	for _, e := range exprs {
		names, err := metricNames(e)
		if err != nil {
			t.Errorf("%s: %q: %v", dashboard, e, err)
			continue
		}
		if len(names) == 0 {
			t.Errorf("%s: %q queries no metric", dashboard, e)
		}
		for _, n := range names {
			if !registered(types, n) {
				t.Errorf("%s: %q queries %s, which internal/metrics does not register", dashboard, e, n)
			}
			used = append(used, n)
		}
	}
	// The areas the dashboard is for: each must have a panel.
	for _, n := range []string{
		"postoffice_pop3_sessions_active", "postoffice_pop3_logins_total", "postoffice_pop3_retrieved_bytes_total",
		"postoffice_pop3_deleted_messages_total", "postoffice_auth_delayed_total", "postoffice_auth_bans_total",
		"postoffice_lmtp_deliveries_total", "postoffice_tls_certificate_expiry_timestamp_seconds",
	} {
		if !slices.Contains(used, n) {
			t.Errorf("%s has no panel querying %s", dashboard, n)
		}
	}
}

// registered reports whether the series name belongs to a registered
// family: the family itself, or a histogram's (or summary's) suffixed
// series.
func registered(types map[string]string, name string) bool {
	if _, ok := types[name]; ok {
		return true
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		base, ok := strings.CutSuffix(name, suffix)
		if !ok {
			continue
		}
		switch types[base] {
		case "HISTOGRAM":
			return true
		case "SUMMARY":
			return suffix != "_bucket"
		}
	}
	return false
}

// promqlKeywords are the PromQL words that are neither functions (those
// are followed by a parenthesis) nor metric names.
var promqlKeywords = []string{"and", "or", "unless", "bool", "offset", "inf", "nan", "atan2"}

// aggregators are PromQL's aggregation operators, which may be followed
// by "by (...)" or "without (...)" before their parenthesis.
var aggregators = []string{"sum", "min", "max", "avg", "group", "stddev", "stdvar", "count",
	"count_values", "bottomk", "topk", "quantile", "limitk", "limit_ratio"}

// labelLists are the PromQL words followed by a parenthesised list of
// label names.
var labelLists = []string{"by", "without", "on", "ignoring", "group_left", "group_right"}

// metricNames returns the metric names a PromQL expression selects: each
// identifier outside label matchers ({...}), range selectors ([...]),
// strings and label lists (by (...)) that is not a function call or a
// keyword. It is a tokenizer, not a parser: enough for the dashboard's
// expressions, and it refuses what it does not understand.
func metricNames(expr string) ([]string, error) {
	var names []string
	isStart := func(c byte) bool { return c == '_' || c == ':' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }
	isPart := func(c byte) bool { return isStart(c) || c >= '0' && c <= '9' }
	// skipTo returns the index just past the close matching the open at i,
	// stepping over strings.
	skipTo := func(i int, open, close byte) (int, error) {
		depth := 0
		for ; i < len(expr); i++ {
			switch c := expr[i]; c {
			case '"', '\'', '`':
				j := strings.IndexByte(expr[i+1:], c)
				if j < 0 {
					return 0, errUnterminated
				}
				i += j + 1
			case open:
				depth++
			case close:
				depth--
				if depth == 0 {
					return i + 1, nil
				}
			}
		}
		return 0, errUnterminated
	}
	for i := 0; i < len(expr); {
		c := expr[i]
		switch {
		case c == '{':
			j, err := skipTo(i, '{', '}')
			if err != nil {
				return nil, err
			}
			i = j
		case c == '[':
			j, err := skipTo(i, '[', ']')
			if err != nil {
				return nil, err
			}
			i = j
		case c == '"' || c == '\'' || c == '`':
			j := strings.IndexByte(expr[i+1:], c)
			if j < 0 {
				return nil, errUnterminated
			}
			i += j + 2
		case c == '$':
			// A Grafana variable where a value belongs.
			i++
			for i < len(expr) && isPart(expr[i]) {
				i++
			}
		case c >= '0' && c <= '9' || c == '.':
			for i < len(expr) && (isPart(expr[i]) || expr[i] == '.') {
				i++
			}
		case isStart(c):
			j := i
			for j < len(expr) && isPart(expr[j]) {
				j++
			}
			word := expr[i:j]
			k := j
			for k < len(expr) && expr[k] == ' ' {
				k++
			}
			paren := k < len(expr) && expr[k] == '('
			if slices.Contains(aggregators, word) {
				rest := expr[k:]
				paren = paren || strings.HasPrefix(rest, "by ") || strings.HasPrefix(rest, "by(") ||
					strings.HasPrefix(rest, "without ") || strings.HasPrefix(rest, "without(")
			}
			switch {
			case slices.Contains(labelLists, word) && paren:
				next, err := skipTo(k, '(', ')')
				if err != nil {
					return nil, err
				}
				j = next
			case slices.Contains(labelLists, word):
				// "on" or "group_left" without a list: fine.
			case paren, slices.Contains(promqlKeywords, strings.ToLower(word)):
			default:
				names = append(names, word)
			}
			i = j
		default:
			i++
		}
	}
	return names, nil
}

var errUnterminated = errorString("unterminated string, {, [ or (")

type errorString string

func (e errorString) Error() string { return string(e) }

func TestMetricNames(t *testing.T) {
	for _, tc := range []struct {
		expr string
		want []string
	}{
		{`sum by (result) (rate(postoffice_pop3_logins_total{instance=~"$instance",result="ok"}[$__rate_interval]))`, []string{"postoffice_pop3_logins_total"}},
		{`histogram_quantile(0.95, sum by (le) (rate(a_bucket{x="}"}[5m])))`, []string{"a_bucket"}},
		{`max(process_open_fds / process_max_fds) > bool 0.8`, []string{"process_open_fds", "process_max_fds"}},
		{`sum(a) without (instance) / on (job) group_left b`, []string{"a", "b"}},
		{`(x - time()) / 86400`, []string{"x"}},
	} {
		got, err := metricNames(tc.expr)
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("metricNames(%q) = %q, %v; want %q", tc.expr, got, err, tc.want)
		}
	}
	if _, err := metricNames(`rate(a{b="c}[5m])`); err == nil {
		t.Errorf("metricNames accepted an unterminated matcher")
	}
}
