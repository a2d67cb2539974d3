package e2e

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// Messages stored in their wire form (CRLF line ends and a final CRLF) are
// sent as they are, a "." added before each line that starts with one
// (up to 16 such lines): with sendfile(2) over a plain connection, read
// and encrypted over TLS. The others go through the converter. Pipelined RETRs of a mix of both, over both, must give every
// message exactly as RFC 1939 §3 frames it, in order, and the index must
// mark exactly the wire-form files (a "+" after their location), so that
// the fast path is what served them.
func TestWireFormRetr(t *testing.T) {
	t.Parallel()
	s := newSite(t)
	tlsAddr, certPath := s.enableTLS()
	md := s.maildir("alice")
	for _, sub := range []string{"tmp", "new", "cur"} {
		if err := os.MkdirAll(filepath.Join(md, sub), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	big := "Subject: big\r\n\r\n" + strings.Repeat(strings.Repeat("w", 76)+"\r\n", 4000) // 312 KB: several sendfile chunks
	msgs := []struct {
		body string
		wire bool
	}{
		{"Subject: a\r\n\r\nwire form\r\nline two\r\n", true},
		{"Subject: b\r\n\r\n.dot line\r\nmore\r\n", true},
		{".starts with a dot\r\n\r\n..\r\n.\r\n", true},
		{"Subject: many\r\n\r\n" + strings.Repeat(".\r\n", 17), false}, // more lines to stuff than the index keeps
		{"Subject: big dots\r\n\r\n" + strings.Repeat(strings.Repeat("w", 76)+"\r\n.x\r\n", 10) + strings.Repeat(strings.Repeat("z", 76)+"\r\n", 4000), true},
		{"Subject: c\n\nLF only\n", false},
		{big, true},
		{"Subject: d\r\n\r\nno final newline", false},
		{"Subject: e\r\n\r\nends in a dot\r\n.", false},
		{"", true},
		{"Subject: f\r\n\r\nbare\rCR and\r\na.middle dot\r\n", true},
	}
	for i, m := range msgs {
		// Names without S= or W=: the store reads each file to size it,
		// which is when it finds the wire form.
		name := fmt.Sprintf("17000000%02d.M%dP1.wire.example", i, i)
		if err := os.WriteFile(filepath.Join(md, "new", name), []byte(m.body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// Delivered through the store, as LMTP does: CRLF as on the wire,
	// named with S= and W= (equal), read at the first snapshot to find
	// the wire form.
	delivered := []struct {
		body string
		wire bool
	}{
		{"Subject: lmtp\r\n\r\nfrom LMTP\r\n", true},
		{"Subject: lmtp dots\r\n\r\n..\r\n", true},
		{"Subject: lmtp LF\n\nbare LF\n", false},
	}
	for _, m := range delivered {
		s.deliver("alice", m.body)
	}
	msgs = append(msgs, delivered...)
	srv := s.start()
	defer srv.stop()

	want := func(body string) string {
		w := crlf(body)
		lines := strings.SplitAfter(w, "\r\n")
		for i, l := range lines {
			if strings.HasPrefix(l, ".") {
				lines[i] = "." + l
			}
		}
		return fmt.Sprintf("+OK %d octets\r\n", len(w)) + strings.Join(lines, "") + ".\r\n"
	}
	wants := make([]string, len(msgs))
	order := make([]int, len(msgs))
	for i, m := range msgs {
		wants[i], order[i] = want(m.body), i
	}
	retrAll := func(name string, nc net.Conn) { retrPipelined(t, name, nc, order, wants) }

	nc, err := net.Dial("tcp", srv.addr)
	if err != nil {
		t.Fatal(err)
	}
	retrAll("plain", nc)
	nc.Close()

	pem, err := os.ReadFile(certPath)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	tc, err := tls.Dial("tcp", tlsAddr, &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	retrAll("TLS", tc)
	tc.Close()

	index, err := os.ReadFile(filepath.Join(md, "postoffice-index"))
	if err != nil {
		t.Fatal(err)
	}
	mark := regexp.MustCompile(` (new|cur|-)\+[0-9,]* `)
	marked, wantMarked := len(mark.FindAllString(string(index), -1)), 0
	for _, m := range msgs {
		if m.wire {
			wantMarked++
		}
	}
	if marked != wantMarked {
		t.Errorf("%d index lines marked as wire form, want %d:\n%s", marked, wantMarked, index)
	}
	for i, m := range msgs[:len(msgs)-len(delivered)] {
		name := fmt.Sprintf("17000000%02d.M%dP1.wire.example", i, i)
		var line string
		for l := range strings.SplitSeq(string(index), "\n") {
			if strings.HasSuffix(l, " "+name) {
				line = l
			}
		}
		if got := mark.MatchString(line); got != m.wire {
			t.Errorf("index line of message %d = %q; wire form marked %v, want %v", i+1, line, got, m.wire)
		}
	}
}

// retrPipelined logs in as alice on nc and sends the RETRs of order (0-based
// message indexes) and a NOOP in one write, as a pipelining client does
// (RFC 2449 §6.6), then checks that each reply is exactly wants[i], octet
// for octet, and that the NOOP's reply follows the last one; it ends with
// QUIT.
func retrPipelined(t *testing.T, name string, nc net.Conn, order []int, wants []string) {
	t.Helper()
	nc.SetDeadline(time.Now().Add(30 * time.Second))
	br := bufio.NewReader(nc)
	line := func() string {
		l, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("%s: read: %v", name, err)
		}
		return l
	}
	if l := line(); !strings.HasPrefix(l, "+OK") {
		t.Fatalf("%s: greeting %q", name, l)
	}
	var cmds strings.Builder
	cmds.WriteString("USER alice\r\nPASS " + testPassword + "\r\n")
	for _, i := range order {
		fmt.Fprintf(&cmds, "RETR %d\r\n", i+1)
	}
	cmds.WriteString("NOOP\r\n")
	io.WriteString(nc, cmds.String())
	for range 2 {
		if l := line(); !strings.HasPrefix(l, "+OK") {
			t.Fatalf("%s: login: %q", name, l)
		}
	}
	for _, i := range order {
		w := wants[i]
		got := make([]byte, len(w))
		if _, err := io.ReadFull(br, got); err != nil {
			t.Fatalf("%s: RETR %d: %v", name, i+1, err)
		}
		if string(got) != w {
			t.Fatalf("%s: RETR %d:\n got %.300q\nwant %.300q", name, i+1, got, w)
		}
	}
	if l := line(); l != "+OK\r\n" {
		t.Fatalf("%s: NOOP after the RETRs: %q", name, l)
	}
	io.WriteString(nc, "QUIT\r\n")
	line()
}
