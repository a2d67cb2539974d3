package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// The server's CPU time and memory come from /proc (Linux). A server is a
// process and its descendants: postoffice is one process; Dovecot is a
// master with a process per session (pop3) and per connection in the login
// phase (pop3-login, which stays to proxy TLS).

// procStat is what /proc/PID/stat says about one process.
type procStat struct {
	pid, ppid int
	cpu       time.Duration // utime + stime
	childCPU  time.Duration // cutime + cstime: children it has reaped
}

// clockTick is USER_HZ, 100 on every Linux architecture Go supports.
const clockTick = 10 * time.Millisecond

func readProcStat(pid int) (procStat, bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return procStat{}, false
	}
	// The command name is in parentheses and may contain anything.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return procStat{}, false
	}
	f := bytes.Fields(b[i+1:])
	// f[0] is field 3 (state): ppid is field 4, utime 14, stime 15,
	// cutime 16, cstime 17.
	if len(f) < 15 {
		return procStat{}, false
	}
	num := func(k int) int64 { n, _ := strconv.ParseInt(string(f[k-3]), 10, 64); return n }
	return procStat{
		pid:      pid,
		ppid:     int(num(4)),
		cpu:      time.Duration(num(14)+num(15)) * clockTick,
		childCPU: time.Duration(num(16)+num(17)) * clockTick,
	}, true
}

// processTree returns pid and all its living descendants.
func processTree(pid int) []procStat {
	root, ok := readProcStat(pid)
	if !ok {
		return nil
	}
	ents, _ := os.ReadDir("/proc")
	children := map[int][]procStat{}
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil || p == pid {
			continue
		}
		if st, ok := readProcStat(p); ok {
			children[st.ppid] = append(children[st.ppid], st)
		}
	}
	tree := []procStat{root}
	for i := 0; i < len(tree); i++ {
		tree = append(tree, children[tree[i].pid]...)
	}
	return tree
}

// serverCPU returns the CPU time of the server pid: its own, its living
// descendants', and that of the children it has reaped. 0 if pid is 0.
func serverCPU(pid int) time.Duration {
	if pid <= 0 {
		return 0
	}
	var total time.Duration
	for i, p := range processTree(pid) {
		total += p.cpu
		if i == 0 {
			total += p.childCPU
		}
	}
	return total
}

// memory is the resident memory of a process tree in KiB.
type memory struct {
	procs    int
	rss, pss int64
}

// serverMemory sums VmRSS (from /proc/PID/status) and Pss (from
// /proc/PID/smaps_rollup, which shares each page among the processes that
// map it) over pid and its descendants.
func serverMemory(pid int) (memory, error) {
	tree := processTree(pid)
	if len(tree) == 0 {
		return memory{}, fmt.Errorf("bench: server process %d not found", pid)
	}
	var m memory
	for _, p := range tree {
		dir := filepath.Join("/proc", strconv.Itoa(p.pid))
		rss, err1 := kibField(filepath.Join(dir, "status"), "VmRSS:")
		pss, err2 := kibField(filepath.Join(dir, "smaps_rollup"), "Pss:")
		if err1 != nil {
			continue // gone meanwhile
		}
		if err2 != nil {
			pss = rss
		}
		m.procs++
		m.rss += rss
		m.pss += pss
	}
	return m, nil
}

// kibField reads "Name:   1234 kB" from a /proc file.
func kibField(path, name string) (int64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	i := bytes.Index(b, []byte("\n"+name))
	if i < 0 {
		if !bytes.HasPrefix(b, []byte(name)) {
			return 0, fmt.Errorf("no %s in %s", name, path)
		}
	} else {
		b = b[i+1:]
	}
	f := bytes.Fields(b[len(name):])
	if len(f) < 1 {
		return 0, fmt.Errorf("bad %s in %s", name, path)
	}
	return strconv.ParseInt(string(f[0]), 10, 64)
}

// runIdle opens o.Sessions logged-in sessions (o.Concurrency at a time),
// holds them for o.Hold, reads the server's memory, and ends them with
// QUIT. A session that fails to log in is an error and is not held.
func runIdle(ctx context.Context, o Options, d *dialOptions) (*Result, error) {
	if o.ServerPID <= 0 {
		return nil, errors.New("bench: idle needs --server-pid to read the server's memory")
	}
	res := &Result{Scenario: Idle, Addr: o.Addr, TLS: o.TLS, Concurrency: o.Concurrency, ErrorKinds: map[string]int{}}
	before, err := serverMemory(o.ServerPID)
	if err != nil {
		return nil, err
	}
	limit := time.Duration(o.Sessions)*o.Timeout/time.Duration(o.Concurrency) + o.Hold + 2*o.Timeout
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	held := make([]*client, o.Sessions)
	lats := make([]time.Duration, o.Sessions)
	errs := make([]error, o.Sessions)
	var next atomic.Int64
	var wg sync.WaitGroup
	cpu0, srv0 := cpuTime(), serverCPU(o.ServerPID)
	start := time.Now()
	for range o.Concurrency {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= o.Sessions || ctx.Err() != nil {
					return
				}
				t0 := time.Now()
				c, err := dial(ctx, d)
				if err == nil {
					if err = c.login(o.Users[i].User, o.Users[i].Password); err != nil {
						c.close()
					}
				}
				if err != nil {
					errs[i] = err
					continue
				}
				lats[i] = time.Since(t0)
				held[i] = c
			}
		})
	}
	wg.Wait()
	setup := time.Since(start)
	cpu := cpuTime() - cpu0
	srvCPU := serverCPU(o.ServerPID) - srv0
	n := 0
	for _, c := range held {
		if c != nil {
			n++
		}
	}
	select {
	case <-time.After(o.Hold):
	case <-ctx.Done():
	}
	with, err := serverMemory(o.ServerPID)
	if err != nil {
		return nil, err
	}
	// End every session properly; a failed QUIT is an error too.
	var ok []time.Duration
	for i, c := range held {
		if c == nil {
			continue
		}
		if err := c.quit(); err != nil && errs[i] == nil {
			errs[i] = err
			continue
		}
		ok = append(ok, lats[i])
	}
	for i, err := range errs {
		if err == nil {
			continue
		}
		var se *sessionError
		kind := kindIO
		if errors.As(err, &se) {
			kind = se.kind
		}
		res.ErrorKinds[string(kind)]++
		res.Errors++
		if len(res.ErrorSamples) < 5 {
			res.ErrorSamples = append(res.ErrorSamples, fmt.Sprintf("%s: %v", o.Users[i].User, err))
		}
	}
	res.Sessions = len(ok)
	res.finish(setup, ok, cpu)
	if res.Sessions > 0 {
		res.ServerCPUms = float64(srvCPU.Microseconds()) / 1000 / float64(res.Sessions)
	}
	m := &MemoryResult{Held: n, Processes: with.procs,
		RSSBeforeKiB: before.rss, RSSWithKiB: with.rss, PSSBeforeKiB: before.pss, PSSWithKiB: with.pss}
	if n > 0 {
		m.RSSPerSessionKiB = float64(with.rss-before.rss) / float64(n)
		m.PSSPerSessionKiB = float64(with.pss-before.pss) / float64(n)
	}
	res.Memory = m
	return res, nil
}
