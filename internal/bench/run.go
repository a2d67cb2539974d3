package bench

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"hash/fnv"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Scenario is what each session does.
type Scenario string

// The scenarios the performance targets are measured with
// (docs/performance.md).
const (
	Login    Scenario = "login"    // connect, USER/PASS, QUIT
	Download Scenario = "download" // + STAT, UIDL, RETR every message
	Drain    Scenario = "drain"    // download, DELE every message, QUIT: empties the maildrop
	Top      Scenario = "top"      // STAT, TOP n 0 for every message
	Bigbox   Scenario = "bigbox"   // STAT, UIDL of one huge maildrop; latency to the end of UIDL
	Idle     Scenario = "idle"     // hold N logged-in sessions, measure the server's memory
	// Resume is login over TLS where every session resumes the TLS
	// session of its worker's previous one with a session ticket (RFC 8446
	// §2.2; RFC 5077 for TLS 1.2): the cost of a returning client's
	// handshake, where login over TLS measures full handshakes. A session
	// that does not resume is an error of kind tls.
	Resume Scenario = "resume"
)

// Scenarios lists the valid scenarios.
var Scenarios = []Scenario{Login, Download, Drain, Top, Bigbox, Idle, Resume}

// Credential is one user and password.
type Credential struct{ User, Password string }

// Options configure Run. Addr and at least one credential are required;
// at least one of Sessions and Duration bounds the run.
type Options struct {
	Addr     string
	TLS      TLSMode
	TLSConf  *tls.Config // for starttls and implicit; nil: verify against system roots
	Users    []Credential
	Scenario Scenario
	// Concurrency is the number of sessions in flight (for idle: how many
	// are being set up at once). Default 1.
	Concurrency int
	// Sessions bounds the number of sessions started; 0 means no bound
	// (Duration must be set). For idle it is the number of sessions held.
	Sessions int
	// Duration bounds the time sessions are started in; 0 means no bound
	// (Sessions must be set).
	Duration time.Duration
	// Timeout bounds every network read and write. Default 30s.
	Timeout time.Duration
	// Hold is how long idle keeps its sessions after they are all logged
	// in, before reading the server's memory. Default 2s.
	Hold time.Duration
	// ServerPID, if set, is the server process: its CPU time (with its
	// descendants') is reported, and for idle its memory.
	ServerPID int
	// Probe checks the maildrops before the run (one untimed session per
	// user: STAT, LIST, UIDL) so that each timed session can be verified
	// against it. Download, drain and top need it and turn it on.
	Probe bool
}

// Result is what Run measured. Only verified sessions count in Sessions,
// Bytes and the latencies.
type Result struct {
	Scenario     Scenario       `json:"scenario"`
	Addr         string         `json:"addr"`
	TLS          TLSMode        `json:"tls"`
	Concurrency  int            `json:"concurrency"`
	Sessions     int            `json:"sessions"`
	Errors       int            `json:"errors"`
	ErrorKinds   map[string]int `json:"error_kinds,omitempty"`
	ErrorSamples []string       `json:"error_samples,omitempty"`
	Elapsed      float64        `json:"elapsed_s"`
	SessionsPerS float64        `json:"sessions_per_s"`
	Messages     int64          `json:"messages"`
	Bytes        int64          `json:"bytes"` // message octets, CRLF form, un-stuffed
	MBPerS       float64        `json:"mb_per_s"`
	LatencyMs    Percentiles    `json:"latency_ms"`
	// GeneratorCPU is the generator's CPU time over the wall time, in
	// cores (1.0 = one core busy).
	GeneratorCPU float64 `json:"generator_cpu"`
	// ServerCPUms is the server's CPU time per verified session, when
	// ServerPID was given.
	ServerCPUms float64 `json:"server_cpu_ms_per_session,omitempty"`
	// Idle only: the server's memory before and with the sessions held, and
	// the difference per session.
	Memory *MemoryResult `json:"memory,omitempty"`
}

// Percentiles of session latency in milliseconds.
type Percentiles struct {
	P50 float64 `json:"p50"`
	P90 float64 `json:"p90"`
	P99 float64 `json:"p99"`
	Max float64 `json:"max"`
}

// MemoryResult is what idle measured.
type MemoryResult struct {
	Held             int     `json:"held"`
	Processes        int     `json:"processes"` // server processes counted, with sessions held
	RSSBeforeKiB     int64   `json:"rss_before_kib"`
	RSSWithKiB       int64   `json:"rss_with_kib"`
	PSSBeforeKiB     int64   `json:"pss_before_kib"`
	PSSWithKiB       int64   `json:"pss_with_kib"`
	RSSPerSessionKiB float64 `json:"rss_per_session_kib"`
	PSSPerSessionKiB float64 `json:"pss_per_session_kib"`
}

// probe is what one untimed session found in a maildrop.
type probe struct {
	count int
	size  int64
	sizes []int64 // LIST, by message number - 1
	uidls uint64  // hash of the UIDL listing
}

// Run runs a scenario and returns what it measured. It returns an error
// only when the run itself could not happen (bad options, a probe that
// failed); failed sessions are counted in the Result.
func Run(ctx context.Context, o Options) (*Result, error) {
	if err := o.check(); err != nil {
		return nil, err
	}
	dopts := &dialOptions{addr: o.Addr, tls: o.TLS, tlsConf: o.TLSConf, timeout: o.Timeout}
	if o.Scenario == Idle {
		return runIdle(ctx, o, dopts)
	}
	var probes []*probe
	if o.Probe {
		var err error
		if probes, err = probeAll(ctx, o, dopts); err != nil {
			return nil, err
		}
	}
	res := &Result{Scenario: o.Scenario, Addr: o.Addr, TLS: o.TLS, Concurrency: o.Concurrency, ErrorKinds: map[string]int{}}
	// Each worker dials with its own options: for resume, its own session
	// cache, primed with one untimed session (a full handshake).
	wopts := make([]*dialOptions, o.Concurrency)
	for w := range wopts {
		wopts[w] = dopts
		if o.Scenario == Resume {
			var err error
			if wopts[w], err = primeResume(ctx, o, dopts, o.Users[w]); err != nil {
				return nil, err
			}
		}
	}
	var (
		started  atomic.Int64
		nextUser atomic.Int64 // drain: each maildrop once
		mu       sync.Mutex
		lats     []time.Duration
		wg       sync.WaitGroup
	)
	var deadline time.Time
	if o.Duration > 0 {
		deadline = time.Now().Add(o.Duration)
	}
	// A hard stop for everything, so that no loop can outlive its bounds.
	limit := o.Duration + 2*o.Timeout
	if o.Duration == 0 {
		limit = time.Duration(o.Sessions) * 2 * o.Timeout
	}
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	cpu0, srv0 := cpuTime(), serverCPU(o.ServerPID)
	start := time.Now()
	for w := range o.Concurrency {
		wg.Go(func() {
			var my []time.Duration
			var bytes, msgs int64
			var ok int
			errs := map[errKind]int{}
			var samples []string
			for k := 0; ; k++ {
				if ctx.Err() != nil || (!deadline.IsZero() && time.Now().After(deadline)) {
					break
				}
				if o.Sessions > 0 && started.Add(1) > int64(o.Sessions) {
					break
				}
				// Worker w uses users w, w+C, w+2C...: no two sessions in
				// flight share a maildrop (it is locked per session).
				var u int
				if o.Scenario == Drain {
					u = int(nextUser.Add(1) - 1)
					if u >= len(o.Users) {
						break
					}
				} else {
					per := (len(o.Users) - w + o.Concurrency - 1) / o.Concurrency
					u = w + (k%per)*o.Concurrency
				}
				var p *probe
				if probes != nil {
					p = probes[u]
				}
				t0 := time.Now()
				lat, n, b, err := session(ctx, o, wopts[w], o.Users[u], p)
				if err != nil {
					var se *sessionError
					kind := kindIO
					if errors.As(err, &se) {
						kind = se.kind
					}
					errs[kind]++
					if len(samples) < 3 {
						samples = append(samples, fmt.Sprintf("%s: %v", o.Users[u].User, err))
					}
					continue
				}
				if lat == 0 {
					lat = time.Since(t0)
				}
				ok++
				my = append(my, lat)
				bytes += b
				msgs += n
			}
			mu.Lock()
			defer mu.Unlock()
			lats = append(lats, my...)
			res.Sessions += ok
			res.Bytes += bytes
			res.Messages += msgs
			for k, n := range errs {
				res.ErrorKinds[string(k)] += n
				res.Errors += n
			}
			for _, s := range samples {
				if len(res.ErrorSamples) < 5 {
					res.ErrorSamples = append(res.ErrorSamples, s)
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	res.finish(elapsed, lats, cpuTime()-cpu0)
	if o.ServerPID > 0 && res.Sessions > 0 {
		res.ServerCPUms = float64((serverCPU(o.ServerPID) - srv0).Microseconds()) / 1000 / float64(res.Sessions)
	}
	return res, nil
}

func (o *Options) check() error {
	if o.Addr == "" {
		return errors.New("bench: no server address")
	}
	if len(o.Users) == 0 {
		return errors.New("bench: no users")
	}
	if !slices.Contains(Scenarios, o.Scenario) {
		return fmt.Errorf("bench: unknown scenario %q", o.Scenario)
	}
	if o.TLS == "" {
		o.TLS = TLSNone
	}
	if o.Scenario == Resume && o.TLS == TLSNone {
		return errors.New("bench: resume needs --tls implicit or starttls")
	}
	if o.Concurrency <= 0 {
		o.Concurrency = 1
	}
	if o.Timeout <= 0 {
		o.Timeout = 30 * time.Second
	}
	if o.Hold <= 0 {
		o.Hold = 2 * time.Second
	}
	if o.Sessions < 0 || o.Duration < 0 {
		return errors.New("bench: negative --sessions or --duration")
	}
	switch o.Scenario {
	case Idle:
		if o.Sessions == 0 {
			return errors.New("bench: idle needs --sessions N, the number of sessions to hold")
		}
		if o.Sessions > len(o.Users) {
			return fmt.Errorf("bench: idle holds %d sessions but has %d users; each maildrop takes one session", o.Sessions, len(o.Users))
		}
		return nil
	case Drain:
		if o.Sessions == 0 || o.Sessions > len(o.Users) {
			o.Sessions = len(o.Users) // each maildrop drains once
		}
		o.Probe = true
	case Download, Top:
		o.Probe = true
	}
	if o.Sessions == 0 && o.Duration == 0 {
		return errors.New("bench: need --sessions or --duration (or both) to bound the run")
	}
	if o.Concurrency > len(o.Users) {
		return fmt.Errorf("bench: concurrency %d needs at least as many users (%d given): a maildrop is locked per session", o.Concurrency, len(o.Users))
	}
	return nil
}

// finish computes the rates and percentiles.
func (r *Result) finish(elapsed time.Duration, lats []time.Duration, cpu time.Duration) {
	r.Elapsed = elapsed.Seconds()
	if r.Elapsed > 0 {
		r.SessionsPerS = float64(r.Sessions) / r.Elapsed
		r.MBPerS = float64(r.Bytes) / 1e6 / r.Elapsed
		r.GeneratorCPU = cpu.Seconds() / r.Elapsed
	}
	slices.Sort(lats)
	pct := func(p float64) float64 {
		if len(lats) == 0 {
			return 0
		}
		i := int(p * float64(len(lats)-1))
		return float64(lats[i].Microseconds()) / 1000
	}
	r.LatencyMs = Percentiles{P50: pct(0.50), P90: pct(0.90), P99: pct(0.99), Max: pct(1)}
	if len(r.ErrorKinds) == 0 {
		r.ErrorKinds = nil
	}
}

// session runs one timed session. It returns the latency when the
// scenario measures less than the whole session (bigbox: to the end of
// UIDL), else 0; the messages and octets received and verified; and the
// first error.
func session(ctx context.Context, o Options, d *dialOptions, cred Credential, p *probe) (time.Duration, int64, int64, error) {
	t0 := time.Now()
	c, err := dial(ctx, d)
	if err != nil {
		return 0, 0, 0, err
	}
	defer c.close()
	if o.Scenario == Resume && !c.resumed {
		return 0, 0, 0, fail(kindTLS, "TLS session not resumed: full handshake")
	}
	if err := c.login(cred.User, cred.Password); err != nil {
		return 0, 0, 0, err
	}
	var lat time.Duration
	var msgs, octets int64
	switch o.Scenario {
	case Login, Resume:
	case Bigbox:
		n, _, err := c.stat()
		if err != nil {
			return 0, 0, 0, err
		}
		if _, err := c.uidl(n); err != nil {
			return 0, 0, 0, err
		}
		lat = time.Since(t0)
	case Download, Drain, Top:
		n, size, err := c.stat()
		if err != nil {
			return 0, 0, 0, err
		}
		if n != p.count || size != p.size {
			return 0, 0, 0, fail(kindVerify, "STAT %d %d, probe found %d %d", n, size, p.count, p.size)
		}
		if o.Scenario != Top {
			h, err := c.uidl(n)
			if err != nil {
				return 0, 0, 0, err
			}
			if h != p.uidls {
				return 0, 0, 0, fail(kindVerify, "UIDL listing differs from the probe's")
			}
		}
		for i := 1; i <= n; i++ {
			if o.Scenario == Top {
				if err := c.sendNum("TOP", i, 0); err != nil {
					return 0, 0, 0, err
				}
			} else if err := c.sendNum("RETR", i, -1); err != nil {
				return 0, 0, 0, err
			}
			if _, err := c.status(); err != nil {
				return 0, 0, 0, err
			}
			got, _, last, err := c.body()
			if err != nil {
				return 0, 0, 0, err
			}
			want := p.sizes[i-1]
			if o.Scenario == Top {
				// RFC 1939 §7: TOP n 0 is the header and the blank line
				// after it; the seeded messages all have a body.
				if got > want || last != 0 {
					return 0, 0, 0, fail(kindVerify, "TOP %d 0: %d octets (message %d), last line %d octets, want the header and a blank line", i, got, want, last)
				}
			} else if got != want {
				return 0, 0, 0, fail(kindVerify, "RETR %d: %d octets after un-stuffing, LIST said %d", i, got, want)
			}
			msgs++
			octets += got
		}
		if o.Scenario == Drain {
			for i := 1; i <= n; i++ {
				if err := c.sendNum("DELE", i, -1); err != nil {
					return 0, 0, 0, err
				}
				if _, err := c.status(); err != nil {
					return 0, 0, 0, err
				}
			}
		}
	}
	if err := c.quit(); err != nil {
		return 0, 0, 0, err
	}
	return lat, msgs, octets, nil
}

// uidl runs UIDL and checks that it lists n messages numbered 1..n, each
// with a UIDL of 1-70 characters of 0x21-0x7E (RFC 1939 §7). It returns a
// hash of the listing.
func (c *client) uidl(n int) (uint64, error) {
	if err := c.cmdOK("UIDL"); err != nil {
		return 0, err
	}
	h := fnv.New64a()
	k := 0
	err := c.listing(func(l []byte) error {
		k++
		sp := indexByte(l, ' ')
		if sp <= 0 || atoiBytes(l[:sp]) != k {
			return fail(kindVerify, "UIDL line %d is %.80q", k, l)
		}
		u := l[sp+1:]
		if len(u) < 1 || len(u) > 70 {
			return fail(kindVerify, "UIDL line %d has a UIDL of %d characters", k, len(u))
		}
		for _, b := range u {
			if b < 0x21 || b > 0x7e {
				return fail(kindVerify, "UIDL line %d has octet %#x", k, b)
			}
		}
		h.Write(l)
		h.Write([]byte{'\n'})
		return nil
	})
	if err != nil {
		return 0, err
	}
	if k != n {
		return 0, fail(kindVerify, "UIDL listed %d messages, STAT said %d", k, n)
	}
	return h.Sum64(), nil
}

func indexByte(b []byte, c byte) int {
	for i, x := range b {
		if x == c {
			return i
		}
	}
	return -1
}

// atoiBytes parses a positive decimal; -1 if it is not one.
func atoiBytes(b []byte) int {
	if len(b) == 0 || len(b) > 9 {
		return -1
	}
	n := 0
	for _, c := range b {
		if c < '0' || c > '9' {
			return -1
		}
		n = n*10 + int(c-'0')
	}
	return n
}

// probeAll takes one untimed session per user that the run will use.
func probeAll(ctx context.Context, o Options, d *dialOptions) ([]*probe, error) {
	probes := make([]*probe, len(o.Users))
	var (
		wg    sync.WaitGroup
		next  atomic.Int64
		errMu sync.Mutex
		first error
	)
	for range min(o.Concurrency, 8) {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= len(o.Users) || ctx.Err() != nil {
					return
				}
				p, err := probeOne(ctx, d, o.Users[i])
				if err != nil {
					errMu.Lock()
					if first == nil {
						first = fmt.Errorf("bench: probing %s: %w", o.Users[i].User, err)
					}
					errMu.Unlock()
					return
				}
				probes[i] = p
			}
		})
	}
	wg.Wait()
	if first != nil {
		return nil, first
	}
	return probes, ctx.Err()
}

func probeOne(ctx context.Context, d *dialOptions, cred Credential) (*probe, error) {
	c, err := dial(ctx, d)
	if err != nil {
		return nil, err
	}
	defer c.close()
	if err := c.login(cred.User, cred.Password); err != nil {
		return nil, err
	}
	p := &probe{}
	if p.count, p.size, err = c.stat(); err != nil {
		return nil, err
	}
	if err := c.cmdOK("LIST"); err != nil {
		return nil, err
	}
	var sum int64
	err = c.listing(func(l []byte) error {
		f := strings.Fields(string(l))
		if len(f) != 2 || atoiBytes([]byte(f[0])) != len(p.sizes)+1 {
			return fail(kindVerify, "LIST line %q", l)
		}
		n, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil {
			return fail(kindVerify, "LIST line %q", l)
		}
		p.sizes = append(p.sizes, n)
		sum += n
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(p.sizes) != p.count || sum != p.size {
		return nil, fail(kindVerify, "LIST lists %d messages of %d octets, STAT says %d of %d", len(p.sizes), sum, p.count, p.size)
	}
	if p.uidls, err = c.uidl(p.count); err != nil {
		return nil, err
	}
	return p, c.quit()
}

// ReadUsers reads a users file: "user:password" lines; blank lines and
// lines starting with '#' are skipped.
func ReadUsers(path string) ([]Credential, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	defer f.Close()
	var users []Credential
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		l := strings.TrimSpace(sc.Text())
		if l == "" || l[0] == '#' {
			continue
		}
		u, p, ok := strings.Cut(l, ":")
		if !ok || u == "" {
			return nil, fmt.Errorf("bench: %s:%d: want user:password", path, n)
		}
		users = append(users, Credential{User: u, Password: p})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	return users, nil
}

// primeResume returns dial options with a TLS session cache of their own,
// holding the ticket of one full session run now (untimed, not counted),
// so that the worker's timed sessions all resume.
func primeResume(ctx context.Context, o Options, d *dialOptions, cred Credential) (*dialOptions, error) {
	w := *d
	if d.tlsConf != nil {
		w.tlsConf = d.tlsConf.Clone()
	} else {
		w.tlsConf = &tls.Config{}
	}
	w.tlsConf.ClientSessionCache = tls.NewLRUClientSessionCache(1)
	c, err := dial(ctx, &w)
	if err != nil {
		return nil, fmt.Errorf("bench: priming the TLS session cache: %w", err)
	}
	defer c.close()
	if err := c.login(cred.User, cred.Password); err != nil {
		return nil, fmt.Errorf("bench: priming the TLS session cache: %w", err)
	}
	// QUIT reads the reply, after the server's NewSessionTicket (TLS 1.3
	// sends it after the handshake), so the cache holds a ticket.
	if err := c.quit(); err != nil {
		return nil, fmt.Errorf("bench: priming the TLS session cache: %w", err)
	}
	return &w, nil
}
