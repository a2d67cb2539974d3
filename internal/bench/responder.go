package bench

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"time"
)

// Responder is a minimal POP3 server that keeps its messages in memory,
// already in wire form (CRLF, dot-stuffed, terminated), and accepts any
// login. It measures the load generator's ceiling on this machine: the
// fastest a POP3 server could answer. Every session sees the same
// messages, and DELE deletes nothing beyond the session.
type Responder struct {
	msgs    []wireMessage
	tlsConf *tls.Config // implicit TLS when set

	// root, if set, holds <user>/Maildir: a user with one gets its own
	// messages, loaded at its first login and kept.
	root   string
	userMu sync.Mutex
	users  map[string][]wireMessage

	mu    sync.Mutex
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

// wireMessage is one message as RETR and TOP n 0 send it.
type wireMessage struct {
	size int64  // CRLF octets before stuffing (LIST)
	uidl string //
	retr []byte // "+OK <size> octets\r\n", the stuffed body, ".\r\n"
	top  []byte // "+OK\r\n", the stuffed header and blank line, ".\r\n"
}

// NewResponder returns a Responder serving msgs (stored form: LF or CRLF).
// tlsConf, if not nil, makes Serve speak implicit TLS.
func NewResponder(msgs [][]byte, tlsConf *tls.Config) *Responder {
	r := &Responder{tlsConf: tlsConf, conns: make(map[net.Conn]struct{}), users: make(map[string][]wireMessage)}
	r.msgs = encodeAll(msgs)
	return r
}

// ServeUsers makes each user that has root/<user>/Maildir see its own
// messages, as a real server would; others see the default ones. It must
// be called before Serve.
func (r *Responder) ServeUsers(root string) { r.root = root }

func encodeAll(msgs [][]byte) []wireMessage {
	w := make([]wireMessage, len(msgs))
	for i, m := range msgs {
		w[i] = encodeMessage(m)
	}
	return w
}

// messagesOf returns what user sees.
func (r *Responder) messagesOf(user string) []wireMessage {
	if r.root == "" || user == "" || user[0] == '.' || bytes.ContainsAny([]byte(user), "/\\") {
		return r.msgs
	}
	r.userMu.Lock()
	defer r.userMu.Unlock()
	if m, ok := r.users[user]; ok {
		return m
	}
	m := r.msgs
	if raw, err := LoadMaildir(filepath.Join(r.root, user, "Maildir")); err == nil {
		m = encodeAll(raw)
	}
	r.users[user] = m
	return m
}

// GenerateMessages makes n messages of the realistic distribution (or
// sizeDist), as Seed would write them.
func GenerateMessages(n int, sizeDist string, seed uint64) ([][]byte, error) {
	sizer, err := parseSizeDist(sizeDist)
	if err != nil {
		return nil, err
	}
	r := rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15))
	g := &generator{r: r}
	msgs := make([][]byte, n)
	for i := range msgs {
		msgs[i] = bytes.Clone(g.message(i, sizer(r), false))
	}
	return msgs, nil
}

// LoadMaildir reads the messages of one Maildir (new/ and cur/), in name
// order.
func LoadMaildir(dir string) ([][]byte, error) {
	var names []string
	for _, sub := range []string{"new", "cur"} {
		ents, err := os.ReadDir(filepath.Join(dir, sub))
		if err != nil {
			return nil, fmt.Errorf("bench: %w", err)
		}
		for _, e := range ents {
			if e.Type().IsRegular() && e.Name()[0] != '.' {
				names = append(names, filepath.Join(dir, sub, e.Name()))
			}
		}
	}
	slices.Sort(names)
	msgs := make([][]byte, 0, len(names))
	for _, n := range names {
		b, err := os.ReadFile(n)
		if err != nil {
			return nil, fmt.Errorf("bench: %w", err)
		}
		msgs = append(msgs, b)
	}
	return msgs, nil
}

// encodeMessage converts a stored message to its RETR and TOP n 0 replies.
func encodeMessage(m []byte) wireMessage {
	var body bytes.Buffer
	var top []byte
	size := int64(0)
	inHeader := true
	for len(m) > 0 {
		i := bytes.IndexByte(m, '\n')
		var line []byte
		if i < 0 {
			line, m = m, nil
		} else {
			line, m = m[:i], m[i+1:]
		}
		line = bytes.TrimSuffix(line, []byte{'\r'})
		size += int64(len(line)) + 2
		if len(line) > 0 && line[0] == '.' {
			body.WriteByte('.')
		}
		body.Write(line)
		body.WriteString("\r\n")
		if inHeader && len(line) == 0 {
			inHeader = false
			top = slices.Clone(body.Bytes())
		}
	}
	if inHeader {
		top = slices.Clone(body.Bytes())
	}
	sum := sha256.Sum256(body.Bytes())
	return wireMessage{
		size: size,
		uidl: base64.RawURLEncoding.EncodeToString(sum[:15]),
		retr: slices.Concat([]byte("+OK "+strconv.FormatInt(size, 10)+" octets\r\n"), body.Bytes(), []byte(".\r\n")),
		top:  slices.Concat([]byte("+OK\r\n"), top, []byte(".\r\n")),
	}
}

// Serve answers connections on l until ctx is done or l fails.
func (r *Responder) Serve(ctx context.Context, l net.Listener) error {
	stop := context.AfterFunc(ctx, func() {
		l.Close()
		r.mu.Lock()
		for c := range r.conns {
			c.Close()
		}
		r.mu.Unlock()
	})
	defer stop()
	for {
		nc, err := l.Accept()
		if err != nil {
			r.wg.Wait()
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		if r.tlsConf != nil {
			nc = tls.Server(nc, r.tlsConf)
		}
		r.mu.Lock()
		r.conns[nc] = struct{}{}
		r.mu.Unlock()
		r.wg.Go(func() {
			r.session(nc)
			r.mu.Lock()
			delete(r.conns, nc)
			r.mu.Unlock()
			nc.Close()
		})
	}
}

const responderIdle = 10 * time.Minute

// session serves one connection: any USER/PASS logs in.
func (r *Responder) session(nc net.Conn) {
	br := bufio.NewReaderSize(nc, 1024)
	bw := bufio.NewWriterSize(nc, 64<<10)
	bw.WriteString("+OK bench responder ready\r\n")
	var msgs []wireMessage
	var deleted []bool
	var user string
	loggedIn := false
	var num [20]byte
	for {
		if br.Buffered() == 0 {
			if bw.Flush() != nil {
				return
			}
		}
		nc.SetDeadline(time.Now().Add(responderIdle))
		line, err := br.ReadSlice('\n')
		if err != nil {
			return
		}
		line = bytes.TrimRight(line, "\r\n")
		cmd, arg, _ := bytes.Cut(line, []byte{' '})
		upper(cmd)
		msg := func() (int, bool) {
			n := atoiBytes(arg)
			if n < 1 || n > len(msgs) || deleted[n-1] {
				bw.WriteString("-ERR No such message: use a number from LIST\r\n")
				return 0, false
			}
			return n - 1, true
		}
		switch string(cmd) {
		case "CAPA":
			bw.WriteString("+OK\r\nTOP\r\nUIDL\r\nUSER\r\nPIPELINING\r\n.\r\n")
		case "USER":
			user = string(arg)
			bw.WriteString("+OK\r\n")
		case "PASS":
			if !loggedIn {
				msgs = r.messagesOf(user)
				deleted = make([]bool, len(msgs))
			}
			loggedIn = true
			bw.WriteString("+OK Logged in\r\n")
		case "QUIT":
			bw.WriteString("+OK Bye\r\n")
			bw.Flush()
			return
		case "NOOP":
			bw.WriteString("+OK\r\n")
		case "RSET":
			clear(deleted)
			bw.WriteString("+OK\r\n")
		default:
			if !loggedIn {
				bw.WriteString("-ERR Not logged in: log in first with USER and PASS\r\n")
				continue
			}
			switch string(cmd) {
			case "STAT":
				n, size := 0, int64(0)
				for i, m := range msgs {
					if !deleted[i] {
						n++
						size += m.size
					}
				}
				fmt.Fprintf(bw, "+OK %d %d\r\n", n, size)
			case "LIST", "UIDL":
				if len(arg) > 0 {
					i, ok := msg()
					if ok {
						bw.WriteString("+OK ")
						bw.Write(strconv.AppendInt(num[:0], int64(i+1), 10))
						bw.WriteByte(' ')
						if string(cmd) == "LIST" {
							bw.Write(strconv.AppendInt(num[:0], msgs[i].size, 10))
						} else {
							bw.WriteString(msgs[i].uidl)
						}
						bw.WriteString("\r\n")
					}
					continue
				}
				bw.WriteString("+OK\r\n")
				for i, m := range msgs {
					if deleted[i] {
						continue
					}
					bw.Write(strconv.AppendInt(num[:0], int64(i+1), 10))
					bw.WriteByte(' ')
					if string(cmd) == "LIST" {
						bw.Write(strconv.AppendInt(num[:0], m.size, 10))
					} else {
						bw.WriteString(m.uidl)
					}
					bw.WriteString("\r\n")
				}
				bw.WriteString(".\r\n")
			case "RETR":
				if i, ok := msg(); ok {
					bw.Write(msgs[i].retr)
				}
			case "TOP":
				n, k, _ := bytes.Cut(arg, []byte{' '})
				arg = n
				if string(k) != "0" {
					bw.WriteString("-ERR This responder does TOP n 0 only: send TOP with 0 lines, or RETR\r\n")
					continue
				}
				if i, ok := msg(); ok {
					bw.Write(msgs[i].top)
				}
			case "DELE":
				if i, ok := msg(); ok {
					deleted[i] = true
					bw.WriteString("+OK\r\n")
				}
			default:
				bw.WriteString("-ERR Unknown command: send CAPA for the commands this responder supports\r\n")
			}
		}
	}
}

func upper(b []byte) {
	for i, c := range b {
		if 'a' <= c && c <= 'z' {
			b[i] = c - 32
		}
	}
}

// ErrNoMessages is returned when a responder would have nothing to serve.
var ErrNoMessages = errors.New("bench: responder has no messages")
