package fetch

import (
	"bufio"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestGroupCommit: 300 new messages into a Maildir cost a few fsyncs per
// batch (message files, the new/ directory, the state journal), not three
// per message, and every message arrives.
func TestGroupCommit(t *testing.T) {
	t.Parallel()
	const n = 300
	srv := startServer(t, nil)
	srv.deliver(t, n, "Subject: %d\r\n\r\nhello\r\n")
	a := account(t, srv, "")
	res := run1(t, a, Options{})
	if res.Fetched != n {
		t.Fatalf("run = %+v, want %d fetched", res, n)
	}
	if got := len(maildirFiles(t, strings.TrimPrefix(a.Target, "maildir:"))); got != n {
		t.Fatalf("maildir has %d messages, want %d", got, n)
	}
	// Per batch of up to maxBatch messages: the files (counted as one
	// group), the directory and the journal; generously bounded.
	batches := (n + maxBatch - 1) / maxBatch
	if limit := 4 * batches; res.Syncs > limit {
		t.Errorf("%d messages took %d fsyncs, want at most %d (%d batches)", n, res.Syncs, limit, batches)
	}
}

// TestPipelinedRetr: against a server that lists PIPELINING the fetcher
// sends the next RETR before it has read the reply to the one before
// (RFC 2449 §6.6), so the server finds it already waiting when it starts
// a reply; and the DELEs of keep = false come after the batch is
// recorded, all of them.
func TestPipelinedRetr(t *testing.T) {
	t.Parallel()
	const n = 100
	addr, retrs, waiting, deles := pipeliningServer(t, n)
	a := account(t, &testServer{addr: addr}, "keep = false")
	res := run1(t, a, Options{})
	if res.Fetched != n || res.Deleted != n {
		t.Fatalf("run = %+v, want %d fetched and deleted", res, n)
	}
	if retrs.Load() != n || deles.Load() != n {
		t.Fatalf("server saw %d RETR and %d DELE, want %d each", retrs.Load(), deles.Load(), n)
	}
	if w := waiting.Load(); w < n/2 {
		t.Errorf("the next command was already there for %d of %d RETR replies, want at least %d (pipelined)", w, n, n/2)
	}
}

// pipeliningServer is a minimal POP3 server with n messages that counts
// RETRs, DELEs, and the RETR replies begun with a further command already
// received.
func pipeliningServer(t *testing.T, n int) (addr string, retrs, waiting, deles *atomic.Int32) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	retrs, waiting, deles = new(atomic.Int32), new(atomic.Int32), new(atomic.Int32)
	msg := func(i int) string { return fmt.Sprintf("Subject: %d\r\n\r\nbody %d\r\n", i, i) }
	go func() {
		nc, err := l.Accept()
		if err != nil {
			return
		}
		defer nc.Close()
		nc.SetDeadline(time.Now().Add(30 * time.Second))
		br, bw := bufio.NewReader(nc), bufio.NewWriter(nc)
		bw.WriteString("+OK ready\r\n")
		bw.Flush()
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				return
			}
			f := strings.Fields(line)
			if len(f) == 0 {
				continue
			}
			arg := 0
			if len(f) > 1 {
				arg, _ = strconv.Atoi(f[1])
			}
			switch strings.ToUpper(f[0]) {
			case "CAPA":
				bw.WriteString("+OK\r\nUSER\r\nUIDL\r\nPIPELINING\r\n.\r\n")
			case "USER", "PASS", "NOOP":
				bw.WriteString("+OK\r\n")
			case "UIDL", "LIST":
				bw.WriteString("+OK\r\n")
				for i := 1; i <= n; i++ {
					if f[0] == "UIDL" {
						fmt.Fprintf(bw, "%d u%d\r\n", i, i)
					} else {
						fmt.Fprintf(bw, "%d %d\r\n", i, len(msg(i)))
					}
				}
				bw.WriteString(".\r\n")
			case "RETR":
				retrs.Add(1)
				if br.Buffered() > 0 {
					waiting.Add(1)
				}
				bw.WriteString("+OK\r\n" + msg(arg) + ".\r\n")
			case "DELE":
				deles.Add(1)
				bw.WriteString("+OK\r\n")
			case "QUIT":
				bw.WriteString("+OK bye\r\n")
				bw.Flush()
				return
			default:
				bw.WriteString("-ERR unknown\r\n")
			}
			if br.Buffered() == 0 {
				if bw.Flush() != nil {
					return
				}
			}
		}
	}()
	return l.Addr().String(), retrs, waiting, deles
}
