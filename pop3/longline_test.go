package pop3

import (
	"bufio"
	"context"
	"errors"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// endlessServer accepts one connection, sends the greeting (unless it is
// the endless part), answers each scripted client line with its reply, and
// then sends octets of 'A' without a line end: up to 64 MiB or until the
// client closes the connection, whichever comes first.
func endlessServer(t *testing.T, greeting string, replies ...string) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		nc, err := l.Accept()
		l.Close()
		if err != nil {
			return
		}
		defer nc.Close()
		nc.SetDeadline(time.Now().Add(20 * time.Second))
		br := bufio.NewReader(nc)
		if _, err := nc.Write([]byte(greeting)); err != nil {
			return
		}
		for _, r := range replies {
			if _, err := br.ReadString('\n'); err != nil {
				return
			}
			if _, err := nc.Write([]byte(r)); err != nil {
				return
			}
		}
		chunk := []byte(strings.Repeat("A", 32<<10))
		for sent := 0; sent < 64<<20; sent += len(chunk) {
			if _, err := nc.Write(chunk); err != nil {
				return
			}
		}
	}()
	t.Cleanup(func() {
		l.Close()
		<-done
	})
	return l.Addr().String()
}

// readCountDialer counts the octets the client reads from the network.
type readCountDialer struct{ n *atomic.Int64 }

type readCountConn struct {
	net.Conn
	n *atomic.Int64
}

func (c readCountConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.n.Add(int64(n))
	return n, err
}

func (d readCountDialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	nc, err := (&net.Dialer{}).DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	return readCountConn{nc, d.n}, nil
}

// A reply line (greeting, status, or a line of LIST, UIDL or CAPA) that
// passes MaxReplyLine without a line end fails the command with
// ErrProtocol as soon as the limit is passed: the client reads a bounded
// amount past the limit, not the rest of the line, and closes the
// connection.
func TestEndlessReplyLine(t *testing.T) {
	t.Parallel()
	const slack = 64 << 10 // buffers: far less than the 64 MiB the server would send
	for _, tc := range []struct {
		name     string
		greeting string
		replies  []string
		cmd      func(context.Context, *Client) error
	}{
		{"greeting", "+OK ", nil, nil},
		{"status", "+OK ready\r\n", nil, func(ctx context.Context, c *Client) error {
			_, _, err := c.Stat(ctx)
			return err
		}},
		{"uidl line", "+OK ready\r\n", []string{"+OK\r\n1 "}, func(ctx context.Context, c *Client) error {
			_, err := c.UIDL(ctx)
			return err
		}},
		{"capa line", "+OK ready\r\n", []string{"+OK\r\nUSER\r\n"}, func(ctx context.Context, c *Client) error {
			_, err := c.Capabilities(ctx)
			return err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := testCtx(t)
			var n atomic.Int64
			addr := endlessServer(t, tc.greeting, tc.replies...)
			c, err := Dial(ctx, addr, &Options{Dialer: readCountDialer{&n}})
			if err == nil {
				defer c.Close()
				if tc.cmd == nil {
					t.Fatal("Dial succeeded on an endless greeting")
				}
				err = tc.cmd(ctx, c)
				if nerr := c.Noop(ctx); nerr == nil {
					t.Error("client usable after an over-long reply line")
				}
			}
			if !errors.Is(err, ErrProtocol) || !strings.Contains(err.Error(), "longer than") {
				t.Errorf("err = %v, want ErrProtocol for a line longer than %d octets", err, MaxReplyLine)
			}
			if got := n.Load(); got > MaxReplyLine+slack {
				t.Errorf("client read %d octets of an endless line, want at most %d", got, MaxReplyLine+slack)
			}
		})
	}
}
