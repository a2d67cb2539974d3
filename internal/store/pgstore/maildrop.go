package pgstore

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/postoffice-mail/postoffice/internal/store"
)

// ErrLockLost is returned by Commit and by Maildrop.Open when the session's
// lease on the maildrop has expired or been taken over by another session:
// the session must end without deleting anything. The POP3 engine answers
// it with -ERR [SYS/TEMP].
var ErrLockLost = errors.New("pgstore: maildrop lock lost (lease expired or taken over)")

// meta is what a session keeps per message besides store.Message.
type meta struct {
	uid    int64
	bodyID int64
	chunks int32
}

type maildrop struct {
	s     *Store
	user  string
	token int64 // the lease generation this session holds: the fencing token
	msgs  []store.Message
	meta  []meta

	lost    atomic.Bool // the heartbeat found the lease gone
	stop    context.CancelFunc
	stopped chan struct{} // closed when the heartbeat has returned
	once    sync.Once
	arr     arrivals // Delivered's arrival times, read on first use

	// The appended state not yet written (see journal.go), guarded by jmu
	// with unsynced (lines written without waiting for their WAL flush).
	jmu      sync.Mutex
	jrnl     journal
	unsynced bool
	arm      chan struct{} // cap 1: asks the heartbeat to write jrnl soon

	// Reading ahead (see ahead.go), by the session's goroutine only.
	next  int       // the message an in-order client opens next
	ahead *aheadBuf // small messages read ahead, nil when none
}

// Open takes the user's maildrop lease and returns its snapshot, creating
// the maildrop if needed. It returns store.ErrInUse while another session,
// on this server or any other sharing the database, holds an unexpired
// lease, or is renewing or committing under it at this instant.
func (s *Store) Open(ctx context.Context, user string) (store.Maildrop, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("pgstore: open: %w", err)
	}
	if err := checkUser(user); err != nil {
		return nil, err
	}
	token, err := s.acquire(ctx, user)
	if err != nil {
		return nil, err
	}
	m := &maildrop{s: s, user: user, token: token, arm: make(chan struct{}, 1)}
	if err := m.snapshot(ctx); err != nil {
		m.release()
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		m.release()
		return nil, errors.New("pgstore: open: store closed")
	}
	hctx, cancel := context.WithCancel(s.ctx)
	m.stop, m.stopped = cancel, make(chan struct{})
	s.wg.Add(1)
	go m.heartbeat(hctx)
	return m, nil
}

// acquire takes the lease and returns its token. A lease row is created once
// per maildrop and never deleted, so tokens only grow: a token, once
// superseded, never matches again.
//
// The three statements go as one pgx batch: one round trip, run by
// PostgreSQL as one implicit transaction (the extended protocol's messages
// up to Sync), which commits at the Sync, or rolls back whole when a
// statement fails, leaving the connection idle for the pool. That
// transaction commits durably (synchronous_commit as configured): a lease
// take lost in a database crash would let a later take hand out the same
// token again, and two sessions with one token defeat fencing.
func (s *Store) acquire(ctx context.Context, user string) (token int64, err error) {
	b := &pgx.Batch{}
	b.Queue(`
INSERT INTO maildrops (maildrop, uidvalidity, next_uid)
VALUES ($1, extract(epoch FROM clock_timestamp())::bigint, 1)
ON CONFLICT (maildrop) DO NOTHING`, user)
	b.Queue(`
INSERT INTO maildrop_leases (maildrop, token, holder, acquired_at, expires_at)
VALUES ($1, 0, '', '-infinity', '-infinity')
ON CONFLICT (maildrop) DO NOTHING`, user)
	// NOWAIT: a row lock held by someone else means its holder is renewing
	// or committing (so alive), or another Open is taking it: in use either
	// way, and an Open must not queue behind a session. The CTE locks the
	// row (or fails at once) before the UPDATE touches it, and the UPDATE
	// changes it only if the lease had expired: no row back means in use.
	b.Queue(`
WITH cur AS (
	SELECT expires_at <= clock_timestamp() AS free FROM maildrop_leases
	WHERE maildrop = $1 FOR UPDATE NOWAIT
)
UPDATE maildrop_leases
SET token = token + 1, holder = $2, acquired_at = clock_timestamp(),
	expires_at = clock_timestamp() + $3 * interval '1 microsecond'
FROM cur
WHERE maildrop = $1 AND cur.free
RETURNING token`, user, s.holder, s.ttl.Microseconds())
	br := s.pool.SendBatch(ctx, b)
	defer func() {
		if cerr := br.Close(); cerr != nil && err == nil {
			token, err = 0, fmt.Errorf("pgstore: open: %w", cerr)
		}
	}()
	if _, err := br.Exec(); err != nil {
		return 0, fmt.Errorf("pgstore: open: creating the maildrop: %w", err)
	}
	if _, err := br.Exec(); err != nil {
		return 0, fmt.Errorf("pgstore: open: %w", err)
	}
	err = br.QueryRow().Scan(&token)
	var pgErr *pgconn.PgError
	switch {
	case errors.As(err, &pgErr) && pgErr.Code == "55P03": // lock_not_available
		return 0, store.ErrInUse
	case errNoRows(err):
		return 0, store.ErrInUse
	case err != nil:
		return 0, fmt.Errorf("pgstore: open: %w", err)
	}
	return token, nil
}

// snapshot reads the message list from messages alone (no body is touched),
// in UID order, which is commit order (see deliver).
//
// It decodes the binary rows itself rather than through Scan, and keeps
// every UIDL in one string (each Message.UID is a slice of it): for 100,000
// messages this takes the client side from 400,000 allocations to about a
// hundred (docs/scale-out.md has the figures).
func (m *maildrop) snapshot(ctx context.Context) error {
	bin := pgx.QueryResultFormats{pgx.BinaryFormatCode, pgx.TextFormatCode, pgx.BinaryFormatCode, pgx.BinaryFormatCode, pgx.BinaryFormatCode}
	rows, err := m.s.pool.Query(ctx, `
SELECT uid, uidl, size, body_id, chunks FROM messages
WHERE maildrop = $1 ORDER BY uid`, bin, m.user)
	if err != nil {
		return fmt.Errorf("pgstore: open: reading the message list: %w", err)
	}
	defer rows.Close()
	var (
		uidls []byte
		ends  []int
	)
	for rows.Next() {
		v := rows.RawValues()
		if len(v) != 5 || len(v[0]) != 8 || len(v[2]) != 8 || len(v[3]) != 8 || len(v[4]) != 4 {
			return errors.New("pgstore: open: unexpected row shape in the message list")
		}
		if len(m.msgs) == cap(m.msgs) {
			// Double, where append grows large slices by a quarter: for
			// 100,000 messages a third of the garbage and of the copying.
			n := max(len(m.msgs), 256)
			m.msgs = slices.Grow(m.msgs, n)
			m.meta = slices.Grow(m.meta, n)
			ends = slices.Grow(ends, n)
			uidls = slices.Grow(uidls, n*16)
		}
		uidls = append(uidls, v[1]...)
		ends = append(ends, len(uidls))
		m.msgs = append(m.msgs, store.Message{Size: int64(binary.BigEndian.Uint64(v[2]))})
		m.meta = append(m.meta, meta{
			uid:    int64(binary.BigEndian.Uint64(v[0])),
			bodyID: int64(binary.BigEndian.Uint64(v[3])),
			chunks: int32(binary.BigEndian.Uint32(v[4])),
		})
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("pgstore: open: reading the message list: %w", err)
	}
	all := string(uidls)
	start := 0
	for i, end := range ends {
		m.msgs[i].UID = all[start:end]
		start = end
	}
	m.msgs = slices.Clip(m.msgs)
	return nil
}

// heartbeat renews the lease every LockTTL/3 until stopped. It stops on its
// own when the lease is gone (expired and taken over, or expired while the
// database was out of reach): the session then fails on its next Open or
// Commit. A failed renewal (the database unreachable) is logged and retried
// at the next tick; the lease stays valid until its expiry meanwhile.
//
// It also writes appended state lines journalDelay after the first was
// buffered (see journal.go), so an open session never holds them longer.
func (m *maildrop) heartbeat(ctx context.Context) {
	defer m.s.wg.Done()
	defer close(m.stopped)
	every := m.s.ttl / 3
	t := time.NewTicker(every)
	defer t.Stop()
	var flush *time.Timer
	var flushC <-chan time.Time
	defer func() {
		if flush != nil {
			flush.Stop()
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return
		case <-m.arm:
			if flushC == nil {
				flush = time.NewTimer(m.s.journalDelay)
				flushC = flush.C
			}
			continue
		case <-flushC:
			flushC = nil
			m.timedFlush(ctx)
			continue
		case <-t.C:
		}
		rctx, cancel := context.WithTimeout(ctx, every)
		ok, err := m.renew(rctx)
		cancel()
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			m.s.log.Warn("maildrop lease renewal failed", "user", m.user, "err", err)
		case !ok:
			m.lost.Store(true)
			m.s.log.Warn("maildrop lease lost", "user", m.user)
			return
		}
	}
}

// renew extends the lease if this session still holds it, by the database's
// clock: servers' clocks never decide who holds a maildrop.
func (m *maildrop) renew(ctx context.Context) (bool, error) {
	tag, err := m.s.pool.Exec(ctx, `
UPDATE maildrop_leases SET expires_at = clock_timestamp() + $3 * interval '1 microsecond'
WHERE maildrop = $1 AND token = $2 AND expires_at > clock_timestamp()`, m.user, m.token, m.s.ttl.Microseconds())
	if err != nil {
		return false, err
	}
	return tag.RowsAffected() == 1, nil
}

// stopHeartbeat stops the renewals and waits for the goroutine. Tests call
// it to play a server that paused or died while holding the lease.
func (m *maildrop) stopHeartbeat() {
	if m.stop != nil {
		m.stop()
		<-m.stopped
	}
}

func (m *maildrop) Messages() []store.Message { return m.msgs }

// Open returns a reader of message i that fetches its body about
// ChunkSize octets of rows per query (a part), so neither side holds more
// than that. A single query streaming the whole message would hold a pool
// connection for as long as the client takes to read it; instead a
// message of one part holds none between reads, and a reader of several
// parts holds one only to have its next part's query in flight while the
// caller writes the current one (pipe.go has the bounds). It checks first
// that the message still exists (store.ErrNoMessage otherwise).
//
// The rows are copied from pgx's receive buffer (their raw binary values,
// bytea's octets as they are) into one bufSize buffer that the reader
// borrows from the Store's pool and gives back at EOF or Close: no
// allocation per row. Scanning into a []byte would allocate a fresh slice
// per row, which the profile of a download showed as a third of the
// store's CPU time (allocation, zeroing and collection).
func (m *maildrop) Open(ctx context.Context, i int) (io.ReadCloser, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("pgstore: open message: %w", err)
	}
	if i < 0 || i >= len(m.msgs) {
		return nil, fmt.Errorf("pgstore: message index %d out of range [0, %d)", i, len(m.msgs))
	}
	if m.lost.Load() {
		return nil, ErrLockLost
	}
	if r, err := m.openAhead(ctx, i); r != nil || err != nil {
		return r, err
	}
	mt := m.meta[i]
	r := &bodyReader{ctx: ctx, s: m.s, user: m.user, meta: mt, size: m.msgs[i].Size, per: rowsPerQuery(m.msgs[i].Size, mt.chunks)}
	// The existence check brings the first rows along: one round trip
	// instead of two for every message of up to ChunkSize octets, which is
	// most of them, and what download throughput is made of. A message row
	// without its first body row (removed by hand, in part) is gone as well.
	// The message's stuff (wire.go) comes along on the first row.
	rows, err := m.s.pool.Query(ctx, `
SELECT c.seq, c.data, m.stuff FROM messages m
LEFT JOIN message_chunks c ON c.maildrop = m.maildrop AND c.body_id = m.body_id AND c.seq < $3
WHERE m.maildrop = $1 AND m.uid = $2
ORDER BY c.seq`, binaryResult, m.user, mt.uid, r.per)
	if err != nil {
		return nil, fmt.Errorf("pgstore: open message: %w", ctxErr(ctx, err))
	}
	found, err := r.fill(rows)
	if err != nil {
		r.Close()
		return nil, fmt.Errorf("pgstore: open message: %w", ctxErr(ctx, err))
	}
	switch {
	case !found:
		r.Close()
		return nil, store.ErrNoMessage
	case mt.chunks > 0 && r.seq == 0:
		r.Close()
		return nil, fmt.Errorf("pgstore: open message: body row 0 missing: %w", store.ErrNoMessage)
	}
	if r.seq < mt.chunks {
		r.startPipe()
	}
	return r, nil
}

// rowsPerQuery is how many body rows of a message of size octets (CRLF
// octets, never fewer than those stored) in chunks rows a reader asks for
// at once: about ChunkSize octets, at least one row. The rows' size is
// estimated from the message's, so rows of any size are read: the
// earlier layout's 256 KiB rows one per query, RowSize rows 33 per query.
func rowsPerQuery(size int64, chunks int32) int32 {
	if chunks <= 1 {
		return 1
	}
	row := max((size+int64(chunks)-1)/int64(chunks), 1)
	return int32(min(max(int64(ChunkSize)/row, 1), int64(chunks)))
}

// binaryResult asks for every result column in binary format, so that a
// bytea's raw value is its octets (the text format would be hex).
var binaryResult = pgx.QueryResultFormats{pgx.BinaryFormatCode}

// ctxErr makes ctx's error errors.Is-able from err when ctx is done.
func ctxErr(ctx context.Context, err error) error {
	if ctx.Err() != nil && !errors.Is(err, ctx.Err()) {
		return fmt.Errorf("%w (%w)", err, ctx.Err())
	}
	return err
}

// rangeSQL reads a message's body rows seq in [$3, $4).
const rangeSQL = `
SELECT seq, data FROM message_chunks WHERE maildrop = $1 AND body_id = $2 AND seq >= $3 AND seq < $4
ORDER BY seq`

type bodyReader struct {
	ctx  context.Context
	s    *Store
	user string
	meta meta
	size int64   // messages.size: the body's octets when in wire form
	st   stuffer // wire form (wire.go)
	per  int32   // rows asked for per query
	seq  int32   // next row to fetch
	bufp *[]byte // the buffer borrowed from s.bufs, nil when none
	buf  []byte  // unread part of the rows fetched
	err  error   // sticky
	pipe *pipe   // the next rows' query in flight (pipe.go), nil when none
}

// rowSource is what fill reads rows from: pgx.Rows, or a pipelined
// query's result (pipe.go).
type rowSource interface {
	Next() bool
	RawValues() [][]byte
	Close()
	Err() error
}

// fill reads rows of (seq, data), in seq order from r.seq on, into the
// reader's buffer, and makes them the unread part; found reports whether
// the query returned a row at all. A third column, in Open's query, is the
// message's stuff: the first row's says whether the body is in wire form.
// It stops at the first row out of sequence (a missing row is an error at the next fetch, never a silent
// gap) or that does not fit in what is left of the buffer (the next fetch
// starts there). A row larger than the whole buffer (written by hand)
// gets a buffer of its own, not kept.
func (r *bodyReader) fill(rows rowSource) (found bool, err error) {
	defer rows.Close()
	if r.bufp == nil {
		r.bufp = r.s.buffer()
	}
	b := (*r.bufp)[:0]
	for rows.Next() {
		v := rows.RawValues()
		if len(v) == 3 && !found {
			r.st.dots, r.st.ready = decodeStuff(v[2], r.size)
		}
		found = true
		if len(v) < 2 || len(v) > 3 || v[0] == nil {
			break // the message row alone: no body row in range
		}
		if len(v[0]) != 4 || v[1] == nil {
			return found, errors.New("pgstore: unexpected row shape in a message body")
		}
		if int32(binary.BigEndian.Uint32(v[0])) != r.seq {
			break
		}
		if len(v[1]) > cap(b)-len(b) {
			if len(b) > 0 {
				break
			}
			b = make([]byte, 0, len(v[1]))
		}
		b = append(b, v[1]...)
		r.seq++
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return found, err
	}
	r.buf = b
	return found, nil
}

// done gives the buffer back to the pool, and the connection held to
// look ahead, if any.
func (r *bodyReader) done() {
	r.endPipe()
	r.buf = nil
	if r.bufp != nil {
		r.s.bufs.Put(r.bufp)
		r.bufp = nil
	}
}

func (r *bodyReader) Read(p []byte) (int, error) {
	for len(r.buf) == 0 {
		if r.err != nil {
			return 0, r.err
		}
		if r.seq >= r.meta.chunks {
			r.err = io.EOF
			r.done()
			return 0, io.EOF
		}
		if err := r.fetch(); err != nil {
			r.err = err
			r.done()
			return 0, err
		}
	}
	n, used := r.st.copy(p, r.buf)
	r.buf = r.buf[used:]
	return n, nil
}

// Wire implements pop3server.WireReader for a body stored in wire form
// (wire.go): from now on Read adds the stuffing dots.
func (r *bodyReader) Wire() (int64, bool) {
	if r.err != nil || !r.st.wire() {
		return 0, false
	}
	return r.size, true
}

// fetch reads the next rows, from r.seq on, into the buffer: the result
// of the query sent ahead when there is one, else a query of its own.
func (r *bodyReader) fetch() error {
	if r.pipe != nil {
		return r.fetchPipe()
	}
	from, per := r.seq, max(r.per, 1)
	rows, err := r.s.pool.Query(r.ctx, rangeSQL, binaryResult, r.user, r.meta.bodyID, from, from+per)
	if err != nil {
		return fmt.Errorf("pgstore: reading message: %w", ctxErr(r.ctx, err))
	}
	if _, err := r.fill(rows); err != nil {
		return fmt.Errorf("pgstore: reading message: %w", ctxErr(r.ctx, err))
	}
	if r.seq == from {
		// Deleted by another agent while being read.
		return fmt.Errorf("pgstore: reading message: body row %d missing: %w", from, store.ErrNoMessage)
	}
	return nil
}

func (r *bodyReader) Close() error {
	r.done()
	r.err = errors.New("pgstore: read after Close")
	return nil
}

// Commit deletes the given messages in one transaction fenced by the lease
// (RFC 1939 §6, the UPDATE state): its first statement renews the lease
// only if this session's token still holds it unexpired, which also locks
// the lease row until COMMIT, so no other session can take the maildrop
// over between the check and the deletes. If the lease is gone, Commit
// deletes nothing and returns ErrLockLost. A Commit interrupted by a lost
// connection rolls back whole: nothing is deleted.
//
// idle_in_transaction_session_timeout (LockTTL) ends the transaction if
// this server stalls inside it, so a paused server cannot keep the lease
// row locked, and so the maildrop busy, beyond a lease's lifetime.
func (m *maildrop) Commit(ctx context.Context, deleted []int) error {
	if len(deleted) == 0 {
		return nil
	}
	uids := make([]int64, 0, len(deleted))
	bodies := make([]int64, 0, len(deleted))
	for _, i := range deleted {
		if i < 0 || i >= len(m.msgs) {
			return fmt.Errorf("pgstore: commit: message index %d out of range [0, %d)", i, len(m.msgs))
		}
		uids = append(uids, m.meta[i].uid)
		bodies = append(bodies, m.meta[i].bodyID)
	}
	m.jmu.Lock()
	defer m.jmu.Unlock()
	tx, err := m.s.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("pgstore: commit: %w", err)
	}
	defer rollback(tx)
	if _, err := tx.Exec(ctx, fmt.Sprintf(`SET LOCAL idle_in_transaction_session_timeout = %d`,
		max(m.s.ttl.Milliseconds(), 1))); err != nil {
		return fmt.Errorf("pgstore: commit: %w", err)
	}
	tag, err := tx.Exec(ctx, `
UPDATE maildrop_leases SET expires_at = clock_timestamp() + $3 * interval '1 microsecond'
WHERE maildrop = $1 AND token = $2 AND expires_at > clock_timestamp()`, m.user, m.token, m.s.ttl.Microseconds())
	if err != nil {
		return fmt.Errorf("pgstore: commit: %w", err)
	}
	if tag.RowsAffected() != 1 {
		m.lost.Store(true)
		m.dropJournal()
		return ErrLockLost
	}
	// The appended state lines waiting (the "dele" lines of the history
	// among them) commit with the deletions.
	if err := m.flushJournalIn(ctx, tx); err != nil {
		return fmt.Errorf("pgstore: commit: %w", err)
	}
	if _, err := tx.Exec(ctx, `DELETE FROM messages WHERE maildrop = $1 AND uid = ANY($2)`, m.user, uids); err != nil {
		return fmt.Errorf("pgstore: commit: %w", err)
	}
	if _, err := tx.Exec(ctx, `DELETE FROM message_chunks WHERE maildrop = $1 AND body_id = ANY($2)`, m.user, bodies); err != nil {
		return fmt.Errorf("pgstore: commit: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("pgstore: commit: %w", err)
	}
	m.jrnl.reset()
	return nil
}

// Close stops the heartbeat and releases the lease (its expiry set in the
// past, the row kept so the token keeps growing). If the database cannot be
// reached the lease expires by itself after LockTTL; the error is returned
// for the log. Close deletes nothing.
func (m *maildrop) Close() error {
	var err error
	m.once.Do(func() {
		m.dropAhead()
		m.stopHeartbeat()
		err = m.release()
	})
	return err
}

// release sets the lease's expiry in the past, in one round trip (a batch
// with its own transaction) that does not wait for the commit's WAL flush
// (synchronous_commit off, for this transaction only). That is safe for a
// release alone: one lost in a database crash or failover leaves the lease
// as it was, so it expires by itself within LockTTL, as when this server
// dies; and any later durable commit (the next lease take among them)
// flushes the WAL, this release included. Taking the lease and Commit stay
// durable.
//
// The appended state lines still buffered (see journal.go) go in the same
// transaction, before the release and only while the lease holds: a
// session's journal costs no round trip of its own.
func (m *maildrop) release() (err error) {
	ctx, cancel := context.WithTimeout(context.Background(), min(m.s.ttl, 10*time.Second))
	defer cancel()
	m.jmu.Lock()
	defer m.jmu.Unlock()
	if m.lost.Load() {
		m.dropJournal()
	}
	lines := len(m.jrnl.names)
	var affected int64 = -1
	b := &pgx.Batch{}
	b.Queue(`BEGIN`)
	b.Queue(`SET LOCAL synchronous_commit = off`)
	if lines > 0 {
		b.Queue(appendSQL, m.journalArgs()...).Exec(func(tag pgconn.CommandTag) error {
			affected = tag.RowsAffected()
			return nil
		})
	}
	b.Queue(`UPDATE maildrop_leases SET expires_at = '-infinity' WHERE maildrop = $1 AND token = $2`, m.user, m.token)
	b.Queue(`COMMIT`)
	if err := m.s.pool.SendBatch(ctx, b).Close(); err != nil {
		if lines > 0 {
			m.s.log.Warn("maildrop state lines lost: the release failed", "user", m.user, "octets", m.jrnl.size)
			m.jrnl.reset()
		}
		return fmt.Errorf("pgstore: releasing the maildrop lock (it expires by itself): %w", err)
	}
	if lines > 0 && affected != int64(lines) {
		m.dropJournal() // the lease was lost: nothing was written
	}
	m.jrnl.reset()
	return nil
}
