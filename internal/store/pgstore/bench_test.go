package pgstore

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/postoffice-mail/postoffice/internal/wire"
)

// BenchmarkOpen100k opens (snapshot: one query on messages, no body read)
// and closes a maildrop of 100,000 messages. The rows are made by SQL, not
// by Deliver, to keep the setup short; Open reads only them.
func BenchmarkOpen100k(b *testing.B) {
	const n = 100_000
	s, dsn := migrated(b, Options{})
	ctx := context.Background()
	mustOpen(b, s, "big").Close()
	conn := admin(b, dsn)
	if _, err := conn.Exec(ctx, `
INSERT INTO messages (maildrop, uid, uidl, size, octets, chunks, body_id, arrived)
SELECT 'big', i, lpad(to_hex(i), 8, '0') || '6553f100', 4000 + i % 5000, 3900 + i % 5000, 1, i, now()
FROM generate_series(1, $1) AS i`, n); err != nil {
		b.Fatal(err)
	}
	if _, err := conn.Exec(ctx, `UPDATE maildrops SET next_uid = $1 + 1 WHERE maildrop = 'big'`, n); err != nil {
		b.Fatal(err)
	}
	if _, err := conn.Exec(ctx, `VACUUM ANALYZE messages`); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		m, err := s.Open(ctx, "big")
		if err != nil {
			b.Fatal(err)
		}
		if got := len(m.Messages()); got != n {
			b.Fatalf("%d messages, want %d", got, n)
		}
		m.Close()
	}
}

// BenchmarkDeliver delivers messages of a few sizes to one maildrop, one
// at a time (the serial latency of a delivery, COMMIT included), and
// reports messages per second.
//
// The bodies are a repetitive text, which TOAST compresses a hundredfold
// (schema versions 1 and 2); the "attachment" ones do not compress, as
// base64 attachments, which carry most of the octets of real mail.
func BenchmarkDeliver(b *testing.B) {
	for _, size := range []int{4 << 10, 64 << 10, 1 << 20, -1 << 20} {
		name := fmt.Sprintf("%dKiB", size>>10)
		if size < 0 {
			size = -size
			name = fmt.Sprintf("%dKiB-attachment", size>>10)
		}
		b.Run(name, func(b *testing.B) {
			s, _ := migrated(b, Options{})
			body := patternBytes(size)
			if strings.HasSuffix(name, "attachment") {
				body, _ = io.ReadAll(&attachmentReader{n: int64(size), x: 1})
			}
			b.SetBytes(int64(size))
			for b.Loop() {
				if err := s.Deliver(context.Background(), "rcpt", bytes.NewReader(body)); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
		})
	}
}

// BenchmarkDeliverParallel delivers 4 KiB messages from GOMAXPROCS*4
// goroutines to as many maildrops, as an LMTP server under load does.
func BenchmarkDeliverParallel(b *testing.B) {
	s, _ := migrated(b, Options{MaxConns: 16})
	body := patternBytes(4096)
	b.SetBytes(int64(len(body)))
	b.SetParallelism(4)
	var next int64
	var mu = make(chan struct{}, 1)
	b.RunParallel(func(pb *testing.PB) {
		mu <- struct{}{}
		next++
		user := fmt.Sprintf("rcpt%d", next)
		<-mu
		for pb.Next() {
			if err := s.Deliver(context.Background(), user, bytes.NewReader(body)); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}

// BenchmarkRead reads a 10 MB message back (RETR's body stream); MB/s is
// the body read throughput of one session.
func BenchmarkRead(b *testing.B) {
	const size = 10 << 20
	s, _ := migrated(b, Options{})
	if err := s.Deliver(context.Background(), "reader", &patternReader{n: size}); err != nil {
		b.Fatal(err)
	}
	m := mustOpen(b, s, "reader")
	defer m.Close()
	b.SetBytes(size)
	for b.Loop() {
		rc, err := m.Open(context.Background(), 0)
		if err != nil {
			b.Fatal(err)
		}
		n, err := io.Copy(io.Discard, rc)
		rc.Close()
		if err != nil || n != size {
			b.Fatalf("read %d octets, %v; want %d", n, err, size)
		}
	}
}

func patternBytes(n int) []byte {
	b, _ := io.ReadAll(&patternReader{n: int64(n)})
	return b
}

// downloadMix is the message mix of a BenchmarkDownload maildrop, shaped
// like the realistic distribution of the load generator's seed: mostly
// text messages of a few KiB and one multi-megabyte attachment, which
// carries most of the octets.
var downloadMix = func() []int {
	sizes := make([]int, 0, 50)
	for i := range 49 {
		sizes = append(sizes, 1000+(i*7919)%20000)
	}
	return append(sizes, 3_000_000)
}()

// attachmentReader yields n octets of base64-like text in 76-octet lines
// that does not compress (as a real attachment), from a fixed seed.
type attachmentReader struct {
	n, off int64
	x      uint64
}

func (r *attachmentReader) Read(p []byte) (int, error) {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
	if r.off >= r.n {
		return 0, io.EOF
	}
	p = p[:min(int64(len(p)), r.n-r.off)]
	for i := range p {
		if (r.off+int64(i))%77 == 76 {
			p[i] = '\n'
			continue
		}
		r.x ^= r.x << 13
		r.x ^= r.x >> 7
		r.x ^= r.x << 17
		p[i] = alphabet[r.x&63]
	}
	r.off += int64(len(p))
	return len(p), nil
}

// BenchmarkDownload is the POP3 download scenario at the store: a session
// opens a maildrop (lease and snapshot), reads every message whole and
// frames it as RETR does (sendRetr: the converter unless the store gives
// the wire form), and closes it (no deletion). MB/s is body octets read; run it with the test
// binary pinned to one CPU (taskset) to see the store's and PostgreSQL's
// cost together, as the server sees them on a shared core.
func BenchmarkDownload(b *testing.B) {
	benchmarkDownload(b, func(b *testing.B) io.Writer { return io.Discard })
}

// BenchmarkDownloadSocket is BenchmarkDownload writing the messages to a
// loopback TCP connection drained by another goroutine, as a POP3 server
// writes them to its client: the time the writes take is time in which
// PostgreSQL can write its next rows.
func BenchmarkDownloadSocket(b *testing.B) {
	benchmarkDownload(b, func(b *testing.B) io.Writer {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		defer ln.Close()
		done := make(chan struct{})
		go func() {
			defer close(done)
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
			io.Copy(io.Discard, c)
		}()
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { c.Close(); <-done })
		// Write through a plain Writer: TCPConn.ReadFrom would try splice.
		return struct{ io.Writer }{c}
	})
}

func benchmarkDownload(b *testing.B, sink func(*testing.B) io.Writer) {
	s, dsn := migrated(b, Options{})
	ctx := context.Background()
	const users = 4
	var total int64
	for u := range users {
		user := fmt.Sprintf("dl%d", u)
		for i, size := range downloadMix {
			var r io.Reader = &patternReader{n: int64(size)}
			if size > 1<<20 {
				r = &attachmentReader{n: int64(size), x: uint64(u*100 + i + 1)}
			}
			if err := s.Deliver(ctx, user, r); err != nil {
				b.Fatal(err)
			}
			if u == 0 {
				total += int64(size)
			}
		}
	}
	b.SetBytes(total)
	b.ReportAllocs()
	w := sink(b)
	cpu := startCPU(b, dsn)
	// As the POP3 server's RETR sends a message: a 64 KiB read buffer, a
	// 128 KiB write buffer, and the converter unless the reader gives the
	// wire form (pop3server's sendMessage).
	buf := make([]byte, 64<<10)
	bw := bufio.NewWriterSize(w, 128<<10)
	var dw wire.DotWriter
	n := 0
	for b.Loop() {
		md, err := s.Open(ctx, fmt.Sprintf("dl%d", n%users))
		if err != nil {
			b.Fatal(err)
		}
		n++
		for i := range md.Messages() {
			rc, err := md.Open(ctx, i)
			if err != nil {
				b.Fatal(err)
			}
			if err := sendRetr(bw, &dw, rc, buf); err != nil {
				b.Fatal(err)
			}
			rc.Close()
		}
		if err := md.Close(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "sessions/s")
	cpu.report(b)
}

// sendRetr writes the message r reads to bw as RETR does, with its status
// line and terminating line, and flushes it: as it is when r says it is in
// wire form (pop3server.WireReader, by its method set, so that this
// benchmark builds against stores without it), else through dw.
func sendRetr(bw *bufio.Writer, dw *wire.DotWriter, r io.Reader, buf []byte) error {
	bw.WriteString("+OK 0 octets\r\n")
	wireForm := false
	if wr, ok := r.(interface{ Wire() (int64, bool) }); ok {
		_, wireForm = wr.Wire()
	}
	var dst io.Writer = bw
	if !wireForm {
		dw.Reset(bw)
		dst = dw
	}
	for {
		n, err := r.Read(buf)
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return werr
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
	}
	if dst == dw {
		if err := dw.Close(); err != nil {
			return err
		}
	} else {
		bw.WriteString(".\r\n")
	}
	return bw.Flush()
}

// cpuMeter measures the CPU time a benchmark spends in this process and in
// the PostgreSQL backends serving its database (read from /proc: the
// test cluster runs on this machine), so that a change is judged by CPU
// per operation, which other load on a shared machine does not change,
// rather than by wall time, which it does.
//
// It also counts the voluntary context switches of both sides (a thread
// that blocks, waiting for the other side's next write or read), from
// /proc: go-cs/op sums this process's threads, pg-cs/op the backends.
type cpuMeter struct {
	dsn     string
	self    time.Duration
	selfCS  int64
	start   map[int]time.Duration // backend pid: CPU time at the start
	startCS map[int]int64         // backend pid: switches at the start
}

func startCPU(b *testing.B, dsn string) *cpuMeter {
	m := &cpuMeter{dsn: dsn, self: selfCPU(), selfCS: selfSwitches(), start: map[int]time.Duration{}, startCS: map[int]int64{}}
	for _, pid := range backends(b, dsn) {
		m.start[pid] = procCPU(pid)
		m.startCS[pid] = procSwitches(strconv.Itoa(pid))
	}
	return m
}

// selfSwitches sums the voluntary context switches of this process's
// threads (Linux; zero elsewhere).
func selfSwitches() int64 {
	tasks, _ := os.ReadDir("/proc/self/task")
	var n int64
	for _, t := range tasks {
		n += procSwitches("self/task/" + t.Name())
	}
	return n
}

// procSwitches is voluntary_ctxt_switches from /proc/<pid>/status.
func procSwitches(pid string) int64 {
	b, err := os.ReadFile("/proc/" + pid + "/status")
	if err != nil {
		return 0
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "voluntary_ctxt_switches:"); ok {
			n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			return n
		}
	}
	return 0
}

// report adds go-cpu-ms/op and pg-cpu-ms/op. Backends that started during
// the benchmark count from zero.
func (m *cpuMeter) report(b *testing.B) {
	self, selfCS := selfCPU()-m.self, selfSwitches()-m.selfCS
	var pg time.Duration
	var pgCS int64
	for _, pid := range backends(b, m.dsn) {
		pg += procCPU(pid) - m.start[pid]
		pgCS += procSwitches(strconv.Itoa(pid)) - m.startCS[pid]
	}
	b.ReportMetric(self.Seconds()*1000/float64(b.N), "go-cpu-ms/op")
	b.ReportMetric(pg.Seconds()*1000/float64(b.N), "pg-cpu-ms/op")
	b.ReportMetric(float64(selfCS)/float64(b.N), "go-cs/op")
	b.ReportMetric(float64(pgCS)/float64(b.N), "pg-cs/op")
}

func backends(b *testing.B, dsn string) []int {
	c := admin(b, dsn)
	rows, err := c.Query(context.Background(), `SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()`)
	if err != nil {
		b.Fatal(err)
	}
	var pids []int
	for rows.Next() {
		var pid int
		if err := rows.Scan(&pid); err != nil {
			b.Fatal(err)
		}
		pids = append(pids, pid)
	}
	if err := rows.Err(); err != nil {
		b.Fatal(err)
	}
	return pids
}

func selfCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// procCPU is a process's user and system time from /proc (Linux; zero
// elsewhere), in clock ticks of 10 ms.
func procCPU(pid int) time.Duration {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	// The fields after the parenthesised command name, which may hold
	// spaces: state is field 3, utime 14, stime 15.
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseInt(f[11], 10, 64)
	s, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(u+s) * 10 * time.Millisecond
}
