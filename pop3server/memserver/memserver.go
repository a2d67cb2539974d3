// Package memserver is an in-memory pop3server.Backend: users with plaintext
// passwords and maildrops held in memory. It is the reference backend for
// the engine's tests, examples and fuzzing, and follows the same rules as
// the real stores: an exclusive lock per maildrop, a snapshot per session,
// sizes in CRLF form, stable UIDLs that are never reused.
//
// APOP (RFC 1939 §7) and SASL PLAIN (RFC 4616) are off until EnableAPOP and
// EnableSASL turn them on, so tests that do not ask for them see a plain
// USER/PASS server with a timestamp-free greeting.
package memserver

import (
	"bytes"
	"context"
	"crypto/md5"
	"crypto/subtle"
	"encoding/hex"
	"io"
	"strconv"
	"sync"

	"github.com/postoffice-mail/postoffice/internal/wire"
	"github.com/postoffice-mail/postoffice/pop3proto"
	"github.com/postoffice-mail/postoffice/pop3server"
)

// Backend holds users and their messages. The zero value is not usable;
// call New.
type Backend struct {
	mu    sync.Mutex
	users map[string]*user
	apop  bool
	sasl  bool
}

type user struct {
	password string
	locked   bool
	nextUID  int
	msgs     []message
}

type message struct {
	uid  string
	size int64
	body []byte
}

// New returns an empty Backend.
func New() *Backend { return &Backend{users: make(map[string]*user)} }

// AddUser creates or replaces a user's password.
func (b *Backend) AddUser(name, password string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if u, ok := b.users[name]; ok {
		u.password = password
		return
	}
	b.users[name] = &user{password: password, nextUID: 1}
}

// Deliver appends a message to a user's maildrop. It reports false for an
// unknown user.
func (b *Backend) Deliver(name string, body []byte) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	u, ok := b.users[name]
	if !ok {
		return false
	}
	size, _ := wire.CRLFSize(bytes.NewReader(body))
	u.msgs = append(u.msgs, message{
		uid:  "mem-" + strconv.Itoa(u.nextUID),
		size: size,
		body: bytes.Clone(body),
	})
	u.nextUID++
	return true
}

// Count returns the number of messages a user has.
func (b *Backend) Count(name string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	if u, ok := b.users[name]; ok {
		return len(u.msgs)
	}
	return 0
}

// EnableAPOP makes new sessions offer APOP, with each user's password as
// the shared secret.
func (b *Backend) EnableAPOP() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.apop = true
}

// EnableSASL makes new sessions offer SASL PLAIN.
func (b *Backend) EnableSASL() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.sasl = true
}

// NewSession implements pop3server.Backend.
func (b *Backend) NewSession(ctx context.Context, c *pop3server.Conn) (pop3server.Session, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := &session{b: b, sasl: b.sasl}
	if b.apop {
		return apopSession{s}, nil
	}
	return s, nil
}

// session implements pop3server.Session and SASLSession; its mechanism
// list is empty, which means no SASL, unless EnableSASL was called.
type session struct {
	b    *Backend
	sasl bool
}

// apopSession adds APOP, which the engine detects by type.
type apopSession struct{ *session }

// errMalformed is a SASL message that does not parse: an *Error without
// code, which the engine sends at once and counts as a bad command.
var errMalformed = &pop3server.Error{Text: "Invalid SASL message: start again with AUTH"}

func (s *session) Login(ctx context.Context, name, password string) (pop3server.Mailbox, error) {
	s.b.mu.Lock()
	defer s.b.mu.Unlock()
	u, ok := s.b.users[name]
	if !ok || subtle.ConstantTimeCompare([]byte(u.password), []byte(password)) != 1 {
		return nil, pop3server.ErrAuthFailed
	}
	return s.b.open(u)
}

// APOP implements pop3server.APOPSession.
func (s apopSession) APOP(ctx context.Context, name, timestamp, digest string) (pop3server.Mailbox, error) {
	s.b.mu.Lock()
	defer s.b.mu.Unlock()
	u, ok := s.b.users[name]
	if !ok {
		return nil, pop3server.ErrAuthFailed
	}
	sum := md5.Sum([]byte(timestamp + u.password))
	if subtle.ConstantTimeCompare([]byte(hex.EncodeToString(sum[:])), []byte(digest)) != 1 {
		return nil, pop3server.ErrAuthFailed
	}
	return s.b.open(u)
}

// Mechanisms implements pop3server.SASLSession.
func (s *session) Mechanisms() []string {
	if !s.sasl {
		return nil
	}
	return []string{"PLAIN"}
}

// StartSASL implements pop3server.SASLSession.
func (s *session) StartSASL(ctx context.Context, mech string) (pop3server.SASLExchange, error) {
	if !s.sasl || mech != "PLAIN" {
		return nil, &pop3server.Error{Text: "Unsupported authentication mechanism: send CAPA, its SASL line lists the mechanisms offered"}
	}
	return &plain{b: s.b}, nil
}

// plain is a PLAIN exchange (RFC 4616): one message,
// [authzid] NUL authcid NUL passwd; authzid, if given, must be authcid.
type plain struct {
	b    *Backend
	user string
}

func (p *plain) Next(ctx context.Context, resp []byte) ([]byte, bool, error) {
	if resp == nil {
		return nil, false, nil // no initial response: ask with an empty challenge
	}
	f := bytes.Split(resp, []byte{0})
	if p.user != "" || len(f) != 3 || len(f[1]) == 0 {
		return nil, false, errMalformed
	}
	authz, authc, pass := string(f[0]), string(f[1]), f[2]
	if authz != "" && authz != authc {
		return nil, false, pop3server.ErrAuthFailed
	}
	p.b.mu.Lock()
	u, ok := p.b.users[authc]
	good := ok && subtle.ConstantTimeCompare([]byte(u.password), pass) == 1
	p.b.mu.Unlock()
	if !good {
		return nil, false, pop3server.ErrAuthFailed
	}
	p.user = authc
	return nil, true, nil
}

func (p *plain) Login(ctx context.Context) (pop3server.Mailbox, error) {
	p.b.mu.Lock()
	defer p.b.mu.Unlock()
	u, ok := p.b.users[p.user]
	if p.user == "" || !ok {
		return nil, pop3server.ErrAuthFailed
	}
	return p.b.open(u)
}

func (p *plain) User() string { return p.user }

// open locks u's maildrop and takes the snapshot; b.mu is held.
func (b *Backend) open(u *user) (pop3server.Mailbox, error) {
	if u.locked {
		return nil, &pop3server.Error{Code: pop3proto.CodeInUse, Text: "Maildrop locked by another session; it ends when that client quits or after the idle timeout"}
	}
	u.locked = true
	snap := make([]message, len(u.msgs))
	copy(snap, u.msgs)
	info := make([]pop3proto.MessageInfo, len(snap))
	for i, m := range snap {
		info[i] = pop3proto.MessageInfo{Size: m.size, UID: m.uid}
	}
	return &mailbox{b: b, u: u, snap: snap, info: info}, nil
}

func (s *session) Close() error { return nil }

type mailbox struct {
	b     *Backend
	u     *user
	snap  []message
	info  []pop3proto.MessageInfo
	spare *msgReader // a closed reader for the next Open, so RETR allocates nothing
}

func (m *mailbox) Messages() []pop3proto.MessageInfo { return m.info }

func (m *mailbox) Open(ctx context.Context, i int) (io.ReadCloser, error) {
	r := m.spare
	if r == nil {
		r = &msgReader{m: m}
	}
	m.spare = nil
	r.Reset(m.snap[i].body)
	return r, nil
}

// msgReader reads one message; Close hands it back to its mailbox.
type msgReader struct {
	bytes.Reader
	m *mailbox
}

func (r *msgReader) Close() error {
	r.Reset(nil)
	r.m.spare = r
	return nil
}

func (m *mailbox) Commit(ctx context.Context, deleted []int) error {
	m.b.mu.Lock()
	defer m.b.mu.Unlock()
	gone := make(map[string]bool, len(deleted))
	for _, i := range deleted {
		gone[m.snap[i].uid] = true
	}
	kept := m.u.msgs[:0]
	for _, msg := range m.u.msgs {
		if !gone[msg.uid] {
			kept = append(kept, msg)
		}
	}
	clear(m.u.msgs[len(kept):])
	m.u.msgs = kept
	return nil
}

func (m *mailbox) Close() error {
	m.b.mu.Lock()
	defer m.b.mu.Unlock()
	m.u.locked = false
	return nil
}
