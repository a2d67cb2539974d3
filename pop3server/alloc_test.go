package pop3server_test

import (
	"bytes"
	"net"
	"strings"
	"testing"

	"github.com/postoffice-mail/postoffice/pop3server"
	"github.com/postoffice-mail/postoffice/pop3server/memserver"
)

// readUntil reads from nc into buf until what it read ends with suffix,
// without allocating, and returns the length read.
func readUntil(t *testing.T, nc net.Conn, buf []byte, suffix string) int {
	n := 0
	for !bytes.HasSuffix(buf[:n], []byte(suffix)) {
		if n == len(buf) {
			t.Fatalf("no %q in %d octets", suffix, n)
		}
		m, err := nc.Read(buf[n:])
		if err != nil {
			t.Fatalf("read after %d octets: %v", n, err)
		}
		n += m
	}
	return n
}

// The commands of a download allocate nothing in the engine (one of the
// performance targets, docs/performance.md):
// a pipelined batch of STAT, LIST n, UIDL n, RETR n, TOP, DELE n, NOOP,
// RSET and whole listings against memserver, whose Open reuses its reader.
// Over TCP: net.Pipe's deadlines allocate a timer each. Not parallel:
// AllocsPerRun counts the allocations of every goroutine.
func TestCommandsDoNotAllocate(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts differ under the race detector")
	}
	b := memserver.New()
	b.AddUser("u", "p")
	b.Deliver("u", []byte(strings.Repeat("a text line, LF ended\n.stuffed\n", 4000))) // 132 KB: large-buffer flushes
	b.Deliver("u", []byte("Subject: x\r\n\r\nbody\r\n"))
	b.Deliver("u", []byte("no final newline"))
	srv, err := pop3server.New(pop3server.Options{Backend: b, AuthFailDelay: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(l)
	c := dial(t, l.Addr().String())
	c.login("u", "p")
	if c.br.Buffered() != 0 {
		t.Fatal("unexpected input after login")
	}

	cmds := []string{"STAT", "LIST 1", "UIDL 2", "RETR 1", "RETR 3", "TOP 2 1", "DELE 1", "STAT",
		"LIST", "UIDL", "DELE 3", "NOOP", "RSET", "LIST 3", "UIDL 3", "NOOP"}
	batch := []byte(strings.Join(cmds, "\r\n") + "\r\n")
	const end = "\r\n+OK 3 mem-3\r\n+OK\r\n" // the replies to the last three
	buf := make([]byte, 1<<20)
	c.nc.Write(batch)
	want := readUntil(t, c.nc, buf, end) // one round to learn the length
	allocs := testing.AllocsPerRun(50, func() {
		if _, err := c.nc.Write(batch); err != nil {
			t.Fatal(err)
		}
		if n := readUntil(t, c.nc, buf, end); n != want {
			t.Fatalf("replies of %d octets, want %d", n, want)
		}
	})
	t.Logf("%.1f allocations per batch of %d commands", allocs, len(cmds))
	// Measured: 0. The bound leaves room for a stray runtime allocation.
	if perCmd := allocs / float64(len(cmds)); perCmd > 0.1 {
		t.Errorf("%.0f allocations per batch of %d commands (%.2f per command), want none", allocs, len(cmds), perCmd)
	}
	c.cmd("QUIT", "+OK")
}
