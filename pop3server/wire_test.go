package pop3server_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/postoffice-mail/postoffice/pop3server"
	"github.com/postoffice-mail/postoffice/pop3server/memserver"
)

// wireBackend serves memserver's maildrops with readers that say their
// messages are in wire form (pop3server.WireReader), and that send them
// to the socket themselves (SocketSender) unless the sender refuses.
type wireBackend struct {
	pop3server.Backend
	refuse bool // SendTo answers errors.ErrUnsupported
	sends  chan int64
}

type wireSession struct {
	pop3server.Session
	b *wireBackend
}

type wireMailbox struct {
	pop3server.Mailbox
	b *wireBackend
}

type wireReader struct {
	io.ReadCloser
	size int64
	b    *wireBackend
}

func (b *wireBackend) NewSession(ctx context.Context, c *pop3server.Conn) (pop3server.Session, error) {
	s, err := b.Backend.NewSession(ctx, c)
	return wireSession{s, b}, err
}

func (s wireSession) Login(ctx context.Context, u, p string) (pop3server.Mailbox, error) {
	m, err := s.Session.Login(ctx, u, p)
	if err != nil {
		return nil, err
	}
	return wireMailbox{m, s.b}, nil
}

func (m wireMailbox) Open(ctx context.Context, i int) (io.ReadCloser, error) {
	r, err := m.Mailbox.Open(ctx, i)
	if err != nil {
		return nil, err
	}
	return &wireReader{r, m.Messages()[i].Size, m.b}, nil
}

func (r *wireReader) Wire() (int64, bool) { return r.size, true }

// SendTo writes to the socket with write(2), a chunk at most.
func (r *wireReader) SendTo(rc syscall.RawConn, max int64) (int64, error) {
	if r.b.refuse {
		return 0, errors.ErrUnsupported
	}
	buf := make([]byte, min(max, 4096))
	n, err := io.ReadFull(r.ReadCloser, buf)
	if n == 0 {
		return 0, err
	}
	var sent int
	var werr error
	cerr := rc.Write(func(fd uintptr) bool {
		m, err := syscall.Write(int(fd), buf[sent:n])
		if m > 0 {
			sent += m
		}
		if errors.Is(err, syscall.EAGAIN) {
			return false
		}
		werr = err
		return err != nil || sent == n
	})
	r.b.sends <- int64(sent)
	return int64(sent), errors.Join(cerr, werr)
}

// A message in wire form goes out as it is, through the SocketSender on a
// plain TCP connection, between the replies before and after it in their
// order; when the sender refuses (a file system without sendfile), the
// engine reads the message instead, and the client sees no difference;
// with Options.NoSendfile the engine never asks the sender.
func TestWireFormSend(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name               string
		refuse, noSendfile bool
	}{
		{"sender", false, false},
		{"refused", true, false},
		{"NoSendfile", false, true},
	} {
		refuse := tc.refuse
		t.Run(tc.name, func(t *testing.T) {
			mb := memserver.New()
			mb.AddUser("u", "p")
			msgs := []string{
				"Subject: one\r\n\r\nbody\r\n",
				"Subject: two\r\n\r\n" + strings.Repeat("0123456789abcdef\r\n", 1000),
			}
			for _, m := range msgs {
				mb.Deliver("u", []byte(m))
			}
			b := &wireBackend{Backend: mb, refuse: refuse, sends: make(chan int64, 1000)}
			srv, err := pop3server.New(pop3server.Options{Backend: b, AuthFailDelay: -1, NoSendfile: tc.noSendfile})
			if err != nil {
				t.Fatal(err)
			}
			defer srv.Close()
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			go srv.Serve(l)
			nc, err := net.Dial("tcp", l.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer nc.Close()
			nc.SetDeadline(time.Now().Add(20 * time.Second))
			br := bufio.NewReader(nc)
			io.WriteString(nc, "USER u\r\nPASS p\r\nRETR 1\r\nRETR 2\r\nNOOP\r\nQUIT\r\n")
			var want strings.Builder
			for _, m := range msgs {
				fmt.Fprintf(&want, "+OK %d octets\r\n%s.\r\n", len(m), m)
			}
			want.WriteString("+OK\r\n")
			for range 3 { // greeting, USER, PASS
				if l, err := br.ReadString('\n'); err != nil || !strings.HasPrefix(l, "+OK") {
					t.Fatalf("login: %q, %v", l, err)
				}
			}
			got := make([]byte, want.Len())
			if _, err := io.ReadFull(br, got); err != nil {
				t.Fatalf("read: %v (got %.300q)", err, got)
			}
			if string(got) != want.String() {
				t.Fatalf("got\n%.300q\nwant\n%.300q", got, want.String())
			}
			var sent int64
			for len(b.sends) > 0 {
				sent += <-b.sends
			}
			if wantSent := int64(len(msgs[0]) + len(msgs[1])); !refuse && !tc.noSendfile && sent != wantSent {
				t.Errorf("the SocketSender sent %d octets, want %d (all of both messages)", sent, wantSent)
			}
			if (refuse || tc.noSendfile) && sent != 0 {
				t.Errorf("the SocketSender sent %d octets, want none", sent)
			}
		})
	}
}
