package uidlimport

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"io"

	"github.com/postoffice-mail/postoffice/internal/store"
	"github.com/postoffice-mail/postoffice/pop3"
)

// Maildrop is one side of a verification: a POP3 server (POP3Maildrop) or
// a locked store.Maildrop, which has these methods.
type Maildrop interface {
	// Messages lists UIDL and size (LIST, RFC 1939 §5) of each message.
	Messages() []store.Message
	// Open returns message i (0-based), in CRLF or LF form.
	Open(ctx context.Context, i int) (io.ReadCloser, error)
}

// POP3Maildrop is a logged-in server seen as a Maildrop.
type POP3Maildrop struct {
	c     *pop3.Client
	msgs  []store.Message
	nums  []int
	count int   // STAT
	size  int64 // STAT
}

// NewPOP3Maildrop reads STAT, UIDL and LIST from c.
func NewPOP3Maildrop(ctx context.Context, c *pop3.Client) (*POP3Maildrop, error) {
	count, size, err := c.Stat(ctx)
	if err != nil {
		return nil, fmt.Errorf("STAT: %w", err)
	}
	uids, err := c.UIDL(ctx)
	if err != nil {
		return nil, fmt.Errorf("UIDL: %w", err)
	}
	list, err := c.List(ctx)
	if err != nil {
		return nil, fmt.Errorf("LIST: %w", err)
	}
	sizes := make(map[int]int64, len(list))
	for _, l := range list {
		sizes[l.Num] = l.Size
	}
	m := &POP3Maildrop{c: c, count: count, size: size}
	for _, u := range uids {
		s, ok := sizes[u.Num]
		if !ok {
			return nil, fmt.Errorf("message %d has a UIDL but no LIST line", u.Num)
		}
		m.msgs = append(m.msgs, store.Message{UID: u.UID, Size: s})
		m.nums = append(m.nums, u.Num)
	}
	if len(list) != len(uids) {
		return nil, fmt.Errorf("%d messages with UIDL, %d with LIST", len(uids), len(list))
	}
	return m, nil
}

func (m *POP3Maildrop) Messages() []store.Message { return m.msgs }

// Open retrieves message i with RETR.
func (m *POP3Maildrop) Open(ctx context.Context, i int) (io.ReadCloser, error) {
	return m.c.Retr(ctx, m.nums[i])
}

// Stat returns what STAT said.
func (m *POP3Maildrop) Stat() (int, int64) { return m.count, m.size }

// Difference is one way the new side differs from the old.
type Difference struct {
	// Kind is one of:
	//   "stat"    STAT differs (Old and New are "count size")
	//   "missing" the old UIDL is not on the new side: a client would miss it
	//   "extra"   a UIDL only the new side has: clients download it as new
	//   "size"    the sizes differ (LIST)
	//   "body"    the sampled message's SHA-256 differs (RETR)
	Kind string `json:"kind"`
	UIDL string `json:"uidl,omitempty"`
	Old  string `json:"old,omitempty"`
	New  string `json:"new,omitempty"`
}

// VerifyReport is the result of Verify.
type VerifyReport struct {
	OldCount    int          `json:"old_count"`
	OldSize     int64        `json:"old_size"`
	NewCount    int          `json:"new_count"`
	NewSize     int64        `json:"new_size"`
	Sampled     int          `json:"sampled"` // bodies compared
	Differences []Difference `json:"differences"`
}

// OK reports whether the two sides agree.
func (r VerifyReport) OK() bool { return len(r.Differences) == 0 }

// stat returns a side's STAT: what the server said, or the snapshot's
// count and total size (what postoffice's STAT says).
func stat(m Maildrop) (int, int64) {
	if p, ok := m.(*POP3Maildrop); ok {
		return p.Stat()
	}
	var size int64
	for _, x := range m.Messages() {
		size += x.Size
	}
	return len(m.Messages()), size
}

// Verify compares the new side with the old: STAT, the set of UIDLs, the
// size of each message by UIDL, and the SHA-256 of sample messages' bodies
// in CRLF form (sample < 0: every message). The sample is spread evenly
// over the messages both sides have, first and last included, so the
// same maildrops give the same sample.
func Verify(ctx context.Context, old, new Maildrop, sample int) (VerifyReport, error) {
	var r VerifyReport
	r.OldCount, r.OldSize = stat(old)
	r.NewCount, r.NewSize = stat(new)
	if r.OldCount != r.NewCount || r.OldSize != r.NewSize {
		r.Differences = append(r.Differences, Difference{Kind: "stat",
			Old: fmt.Sprintf("%d %d", r.OldCount, r.OldSize), New: fmt.Sprintf("%d %d", r.NewCount, r.NewSize)})
	}
	newAt := make(map[string]int, len(new.Messages()))
	for i, m := range new.Messages() {
		newAt[m.UID] = i
	}
	oldAt := make(map[string]bool, len(old.Messages()))
	type both struct{ o, n int }
	var common []both
	for i, m := range old.Messages() {
		oldAt[m.UID] = true
		j, ok := newAt[m.UID]
		if !ok {
			r.Differences = append(r.Differences, Difference{Kind: "missing", UIDL: m.UID, Old: fmt.Sprint(m.Size)})
			continue
		}
		common = append(common, both{i, j})
		if n := new.Messages()[j].Size; n != m.Size {
			r.Differences = append(r.Differences, Difference{Kind: "size", UIDL: m.UID, Old: fmt.Sprint(m.Size), New: fmt.Sprint(n)})
		}
	}
	for _, m := range new.Messages() {
		if !oldAt[m.UID] {
			r.Differences = append(r.Differences, Difference{Kind: "extra", UIDL: m.UID, New: fmt.Sprint(m.Size)})
		}
	}
	for _, k := range sampleOf(len(common), sample) {
		c := common[k]
		uidl := old.Messages()[c.o].UID
		ho, err := bodyHash(ctx, old, c.o)
		if err != nil {
			return r, fmt.Errorf("old server, message %q: %w", uidl, err)
		}
		hn, err := bodyHash(ctx, new, c.n)
		if err != nil {
			return r, fmt.Errorf("new side, message %q: %w", uidl, err)
		}
		r.Sampled++
		if ho != hn {
			r.Differences = append(r.Differences, Difference{Kind: "body", UIDL: uidl, Old: ho, New: hn})
		}
	}
	return r, nil
}

// sampleOf picks n of 0..total-1 spread evenly, first and last included;
// n < 0 or n >= total picks all.
func sampleOf(total, n int) []int {
	if n < 0 || n >= total {
		n = total
	}
	out := make([]int, 0, n)
	for k := 0; k < n; k++ {
		i := 0
		if n > 1 {
			i = k * (total - 1) / (n - 1)
		}
		out = append(out, i)
	}
	return out
}

// bodyHash returns the SHA-256 of message i in CRLF form with a final
// CRLF: what RETR sends (RFC 1939 §3), whether the side is a server or a
// store that keeps LF line ends.
func bodyHash(ctx context.Context, m Maildrop, i int) (string, error) {
	r, err := m.Open(ctx, i)
	if err != nil {
		return "", err
	}
	defer r.Close()
	w := &crlfHash{h: sha256.New()}
	if _, err := io.Copy(w, r); err != nil {
		return "", err
	}
	return w.sum(), nil
}

// crlfHash hashes what is written with each bare LF made CRLF and a final
// CRLF completed.
type crlfHash struct {
	h    hash.Hash
	prev byte // the last octet written
	n    int64
}

func (c *crlfHash) Write(p []byte) (int, error) {
	start := 0
	for i, b := range p {
		if b == '\n' {
			prev := c.prev
			if i > 0 {
				prev = p[i-1]
			}
			if prev != '\r' {
				c.h.Write(p[start:i])
				c.h.Write([]byte("\r\n"))
				start = i + 1
			}
		}
	}
	c.h.Write(p[start:])
	if len(p) > 0 {
		c.prev = p[len(p)-1]
		c.n += int64(len(p))
	}
	return len(p), nil
}

func (c *crlfHash) sum() string {
	if c.n > 0 && c.prev != '\n' {
		c.h.Write([]byte("\r\n"))
	}
	return hex.EncodeToString(c.h.Sum(nil))
}
