// Package memserver is an in-memory pop3server.Backend: users with plaintext
// passwords and maildrops held in memory. It is the reference backend for
// the engine's tests, examples and fuzzing, and follows the same rules as
// the real stores: an exclusive lock per maildrop, a snapshot per session,
// sizes in CRLF form, stable UIDLs that are never reused.
package memserver

import (
	"bytes"
	"context"
	"crypto/subtle"
	"io"
	"strconv"
	"sync"

	"github.com/postoffice-mail/postoffice/internal/wire"
	"github.com/postoffice-mail/postoffice/pop3server"
)

// Backend holds users and their messages. The zero value is not usable;
// call New.
type Backend struct {
	mu    sync.Mutex
	users map[string]*user
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

// NewSession implements pop3server.Backend.
func (b *Backend) NewSession(ctx context.Context, c *pop3server.Conn) (pop3server.Session, error) {
	return &session{b: b}, nil
}

type session struct{ b *Backend }

var errAuth = &pop3server.Error{Code: pop3server.CodeAuth, Text: "Authentication failed"}

func (s *session) Login(ctx context.Context, name, password string) (pop3server.Mailbox, error) {
	s.b.mu.Lock()
	defer s.b.mu.Unlock()
	u, ok := s.b.users[name]
	if !ok || subtle.ConstantTimeCompare([]byte(u.password), []byte(password)) != 1 {
		return nil, errAuth
	}
	if u.locked {
		return nil, &pop3server.Error{Code: pop3server.CodeInUse, Text: "Mailbox is locked by another POP3 session"}
	}
	u.locked = true
	snap := make([]message, len(u.msgs))
	copy(snap, u.msgs)
	info := make([]pop3server.MessageInfo, len(snap))
	for i, m := range snap {
		info[i] = pop3server.MessageInfo{Size: m.size, UID: m.uid}
	}
	return &mailbox{b: s.b, u: u, snap: snap, info: info}, nil
}

func (s *session) Close() error { return nil }

type mailbox struct {
	b    *Backend
	u    *user
	snap []message
	info []pop3server.MessageInfo
}

func (m *mailbox) Messages() []pop3server.MessageInfo { return m.info }

func (m *mailbox) Open(ctx context.Context, i int) (io.ReadCloser, error) {
	return io.NopCloser(bytes.NewReader(m.snap[i].body)), nil
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
