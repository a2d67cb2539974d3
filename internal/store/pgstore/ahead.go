package pgstore

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync/atomic"
)

// Reading small messages ahead. Most messages are a few KiB, and a POP3
// download asks for them in order (RETR 1, RETR 2, ...): each used to cost
// a query of its own, a round trip and an executor start on either side,
// about a sixth of a download session's CPU. When a session opens message
// i just after i-1 (or opens the first), and i is under aheadMax octets,
// one query fetches it and the messages after it that are under aheadMax
// too, in snapshot order, up to bufSize octets in all (it stops at the
// first larger message), into one buffer from the Store's pool; the next
// Opens are answered from it without a query.
//
// Decisions:
//   - Memory: a session holds at most one such buffer, bufSize (256 KiB),
//     the size of one message reader's; it goes back to the pool when its
//     last message has been read and closed, at the next Open that is not
//     in it, or at Close.
//   - A message is served from the buffer only if all its rows came, in
//     sequence; any other message goes the usual way, which reports a
//     message that has vanished.
//   - The rows read ahead are those of the lease's holder: under the lease
//     only this session deletes (at Commit, after the last RETR), so a
//     message read ahead is the one a later query would read. One removed
//     by hand meanwhile is served as read, as one removed while it is
//     being sent would be.
//   - An Open out of order (a client picking messages, TOP on a few)
//     reads only what it asks for.
const aheadMax = 64 << 10

// aheadBuf is a buffer of messages read ahead. Its references are the
// session's own and one per open reader of a message in it; the last
// gives the buffer back to the pool.
type aheadBuf struct {
	s     *Store
	bufp  *[]byte
	first int         // index of its first message in the session's snapshot
	msgs  []aheadSpan // per message from first on
	refs  atomic.Int32
}

// aheadSpan is a message in the buffer.
type aheadSpan struct {
	start, end int     // its octets in *bufp
	ok         bool    // all its rows came, in sequence
	wire       bool    // in wire form (wire.go), with dots valid
	dots       []int64 // where its stuffing dots go
}

func (a *aheadBuf) release() {
	if a.refs.Add(-1) == 0 {
		a.s.bufs.Put(a.bufp)
		a.bufp = nil
	}
}

// reader returns a reader of message i from the buffer, taking a
// reference for it, or nil when i is not in it.
func (a *aheadBuf) reader(i int) *aheadReader {
	k := i - a.first
	if k < 0 || k >= len(a.msgs) || !a.msgs[k].ok {
		return nil
	}
	sp := a.msgs[k]
	a.refs.Add(1)
	return &aheadReader{a: a, data: (*a.bufp)[sp.start:sp.end], st: stuffer{ready: sp.wire, dots: sp.dots}}
}

// dropAhead lets go of the session's read-ahead buffer.
func (m *maildrop) dropAhead() {
	if m.ahead != nil {
		m.ahead.release()
		m.ahead = nil
	}
}

// openAhead returns a reader of message i from the read-ahead buffer,
// reading ahead first when i is small and opened in order; nil when i is
// to be read the usual way.
func (m *maildrop) openAhead(ctx context.Context, i int) (io.ReadCloser, error) {
	sequential := i == m.next
	m.next = i + 1
	if m.ahead != nil {
		if r := m.ahead.reader(i); r != nil {
			if i == m.ahead.first+len(m.ahead.msgs)-1 {
				m.dropAhead() // its last message: the reader keeps it
			}
			return r, nil
		}
		m.dropAhead()
	}
	if !sequential || m.msgs[i].Size >= aheadMax {
		return nil, nil
	}
	var (
		uids  []int64
		total int64
	)
	for j := i; j < len(m.msgs) && m.msgs[j].Size < aheadMax && total+m.msgs[j].Size <= bufSize; j++ {
		uids = append(uids, m.meta[j].uid)
		total += m.msgs[j].Size
	}
	if len(uids) < 2 {
		return nil, nil // nothing ahead: the usual query is as cheap
	}
	a, err := m.readAhead(ctx, i, uids)
	if err != nil {
		return nil, err
	}
	m.ahead = a
	if r := a.reader(i); r != nil {
		return r, nil
	}
	return nil, nil // i incomplete or gone: the usual way says which
}

// readAhead fetches the bodies of the messages uids (those of the
// snapshot from index first on) in one query, with their stuff (wire.go),
// which is decoded from the first row of each.
func (m *maildrop) readAhead(ctx context.Context, first int, uids []int64) (*aheadBuf, error) {
	rows, err := m.s.pool.Query(ctx, `
SELECT m.uid, c.seq, c.data, m.stuff FROM messages m
JOIN message_chunks c ON c.maildrop = m.maildrop AND c.body_id = m.body_id
WHERE m.maildrop = $1 AND m.uid = ANY($2)
ORDER BY m.uid, c.seq`, binaryResult, m.user, uids)
	if err != nil {
		return nil, fmt.Errorf("pgstore: open message: %w", ctxErr(ctx, err))
	}
	defer rows.Close()
	a := &aheadBuf{s: m.s, bufp: m.s.buffer(), first: first, msgs: make([]aheadSpan, len(uids))}
	a.refs.Store(1)
	b := (*a.bufp)[:0]
	k, seq, start := 0, int32(0), 0 // the message being read, its next row, its start in b
	broken := false                 // a row of message k out of sequence or not fitting
	end := func() {                 // message k is read
		if !broken && seq == m.meta[first+k].chunks {
			sp := &a.msgs[k]
			sp.start, sp.end, sp.ok = start, len(b), true
			// A body in wire form is its size in octets.
			sp.wire = sp.wire && int64(sp.end-sp.start) == m.msgs[first+k].Size
		}
	}
	for rows.Next() {
		v := rows.RawValues()
		if len(v) != 4 || len(v[0]) != 8 || len(v[1]) != 4 || v[2] == nil {
			a.release()
			return nil, errors.New("pgstore: open message: unexpected row shape")
		}
		uid := int64(binary.BigEndian.Uint64(v[0]))
		for k < len(uids) && uids[k] != uid {
			end()
			k++
			seq, start, broken = 0, len(b), false
		}
		if k == len(uids) {
			break
		}
		if int32(binary.BigEndian.Uint32(v[1])) != seq || len(v[2]) > cap(b)-len(b) {
			broken = true
			continue
		}
		if seq == 0 {
			sp := &a.msgs[k]
			sp.dots, sp.wire = decodeStuff(v[3], m.msgs[first+k].Size)
		}
		b = append(b, v[2]...)
		seq++
	}
	if k < len(uids) {
		end()
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		a.release()
		return nil, fmt.Errorf("pgstore: open message: %w", ctxErr(ctx, err))
	}
	return a, nil
}

// aheadReader reads one message from a read-ahead buffer.
type aheadReader struct {
	a    *aheadBuf
	data []byte
	st   stuffer // wire form (wire.go)
	err  error
}

func (r *aheadReader) Read(p []byte) (int, error) {
	if r.err != nil {
		return 0, r.err
	}
	if len(r.data) == 0 {
		r.done(io.EOF)
		return 0, io.EOF
	}
	n, used := r.st.copy(p, r.data)
	r.data = r.data[used:]
	return n, nil
}

// Wire implements pop3server.WireReader for a body stored in wire form
// (wire.go): from now on Read adds the stuffing dots.
func (r *aheadReader) Wire() (int64, bool) {
	if r.err != nil || !r.st.wire() {
		return 0, false
	}
	return int64(len(r.data)), true
}

// done ends the reader with err, letting go of its reference.
func (r *aheadReader) done(err error) {
	if r.a != nil {
		r.a.release()
		r.a = nil
	}
	r.data = nil
	r.err = err
}

func (r *aheadReader) Close() error {
	r.done(errors.New("pgstore: read after Close"))
	return nil
}
