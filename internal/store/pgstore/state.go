package pgstore

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/postoffice-mail/postoffice/internal/store"
)

// stateMax bounds the size of a state read back, as the Maildir store
// does: the caller bounds what it writes (the history journal is
// compacted long before this).
const stateMax = 64 << 20

// stateTimeout bounds each state statement: the store.StateFiles methods
// take no context (the Maildir store's are local file operations), and a
// database that stopped answering must not hold a session forever.
const stateTimeout = 30 * time.Second

var (
	_ store.StateFiles  = (*maildrop)(nil)
	_ store.StateReader = (*Store)(nil)
	_ store.Arrivals    = (*maildrop)(nil)
)

// checkStateName accepts the names the Maildir store accepts (a plain
// lower-case word of at most 32 octets), so a name that works on one store
// works on the other.
func checkStateName(name string) error {
	if name == "" || len(name) > 32 {
		return fmt.Errorf("pgstore: bad state name %q", name)
	}
	for _, c := range name {
		if (c < 'a' || c > 'z') && c != '-' {
			return fmt.Errorf("pgstore: bad state name %q", name)
		}
	}
	return nil
}

// readState returns the rows of (user, name) concatenated in seq order, or
// nil when there are none. One SELECT reads one snapshot of the table, so
// a reader never sees half of a WriteState, with or without the lease.
func (s *Store) readState(ctx context.Context, user, name string) ([]byte, error) {
	if err := checkStateName(name); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, stateTimeout)
	defer cancel()
	rows, err := s.pool.Query(ctx, `
SELECT data FROM maildrop_state WHERE maildrop = $1 AND name = $2 ORDER BY seq`, user, name)
	if err != nil {
		return nil, fmt.Errorf("pgstore: reading state %s: %w", name, err)
	}
	defer rows.Close()
	var out []byte
	for rows.Next() {
		var chunk []byte
		if err := rows.Scan(&chunk); err != nil {
			return nil, fmt.Errorf("pgstore: reading state %s: %w", name, err)
		}
		if len(out)+len(chunk) > stateMax {
			return nil, fmt.Errorf("pgstore: state %s of %q: larger than %d octets", name, user, stateMax)
		}
		if out == nil {
			out = make([]byte, 0, len(chunk))
		}
		out = append(out, chunk...)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("pgstore: reading state %s: %w", name, err)
	}
	return out, nil
}

// ReadState implements store.StateFiles. Lines this session appended and
// has not written yet are written first, so it reads what it appended.
func (m *maildrop) ReadState(name string) ([]byte, error) {
	if err := checkStateName(name); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), stateTimeout)
	defer cancel()
	if err := m.flushJournal(ctx, false); err != nil {
		return nil, err
	}
	return m.s.readState(ctx, m.user, name)
}

// ReadState implements store.StateReader: the administrator's read of a
// maildrop's state (its history) without the lease, while a session may
// hold it. A user without a maildrop has no state.
func (s *Store) ReadState(ctx context.Context, user, name string) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := checkUser(user); err != nil {
		return nil, err
	}
	return s.readState(ctx, user, name)
}

// WriteState implements store.StateFiles: the rows of name are replaced by
// one, in a transaction fenced by the lease as Commit is (the lease row is
// renewed only if this session still holds it, and stays locked until
// COMMIT), so a session that lost its lease never overwrites the state of
// the session that took the maildrop over: it gets ErrLockLost. PostgreSQL
// makes the COMMIT durable (synchronous_commit), and a crash before it
// leaves the old rows: old or new content, never a mix. Appended lines not
// yet written go in the same transaction, before the replacement (so
// lines appended to name before it are replaced with the rest, as on a
// file).
func (m *maildrop) WriteState(name string, data []byte) error {
	if err := checkStateName(name); err != nil {
		return err
	}
	if m.lost.Load() {
		return ErrLockLost
	}
	ctx, cancel := context.WithTimeout(context.Background(), stateTimeout)
	defer cancel()
	m.jmu.Lock()
	defer m.jmu.Unlock()
	tx, err := m.s.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("pgstore: writing state %s: %w", name, err)
	}
	defer rollback(tx)
	tag, err := tx.Exec(ctx, `
UPDATE maildrop_leases SET expires_at = clock_timestamp() + $3 * interval '1 microsecond'
WHERE maildrop = $1 AND token = $2 AND expires_at > clock_timestamp()`, m.user, m.token, m.s.ttl.Microseconds())
	if err != nil {
		return fmt.Errorf("pgstore: writing state %s: %w", name, err)
	}
	if tag.RowsAffected() != 1 {
		m.lost.Store(true)
		m.dropJournal()
		return ErrLockLost
	}
	if err := m.flushJournalIn(ctx, tx); err != nil {
		return fmt.Errorf("pgstore: writing state %s: %w", name, err)
	}
	if _, err := tx.Exec(ctx, `DELETE FROM maildrop_state WHERE maildrop = $1 AND name = $2`, m.user, name); err != nil {
		return fmt.Errorf("pgstore: writing state %s: %w", name, err)
	}
	if data == nil {
		data = []byte{}
	}
	if _, err := tx.Exec(ctx, `
INSERT INTO maildrop_state (maildrop, name, seq, data) VALUES ($1, $2, 0, $3)`, m.user, name, data); err != nil {
		return fmt.Errorf("pgstore: writing state %s: %w", name, err)
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("pgstore: writing state %s: %w", name, err)
	}
	m.jrnl.reset()
	return nil
}

// AppendState implements store.StateFiles. The data is buffered in the
// maildrop and written with the session's next write (Commit, WriteState,
// Close), before its next ReadState, at SyncState, or by the heartbeat
// within journalDelay (1 s), whichever comes first; journal.go says why
// and what a crash may lose. It returns ErrLockLost once the session
// knows its lease is gone, and the error of a write it had to make at
// once (journalFlushAt octets waiting), in which case data was not taken.
func (m *maildrop) AppendState(name string, data []byte) error {
	if err := checkStateName(name); err != nil {
		return err
	}
	if m.lost.Load() {
		return ErrLockLost
	}
	if len(data) == 0 {
		return nil
	}
	m.jmu.Lock()
	defer m.jmu.Unlock()
	if m.jrnl.size+len(data) > journalFlushAt && !m.jrnl.empty() {
		ctx, cancel := context.WithTimeout(context.Background(), stateTimeout)
		defer cancel()
		if err := m.flushJournalLocked(ctx, false); err != nil {
			return err
		}
	}
	if m.jrnl.empty() {
		m.armJournal()
	}
	m.jrnl.add(name, data)
	return nil
}

// SyncState implements store.StateFiles: the buffered lines are written,
// and every line this session appended is durable on return (a durable
// commit flushes the WAL of the earlier ones too).
func (m *maildrop) SyncState(name string) error {
	if err := checkStateName(name); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), stateTimeout)
	defer cancel()
	return m.flushJournal(ctx, true)
}

// arrivals is the delivery time of each message of a session's snapshot,
// read on the first Delivered call: only the expiry sweep asks, so the
// snapshot that every login reads stays as small as it is.
type arrivals struct {
	once sync.Once
	at   map[int64]time.Time // by uid
}

// Delivered implements store.Arrivals from messages.arrived, the time of
// the delivery's COMMIT. A message whose arrival cannot be read (the
// database out of reach) has no known arrival, so it is kept: expiry
// removes later, never earlier.
func (m *maildrop) Delivered(i int) (time.Time, bool) {
	if i < 0 || i >= len(m.meta) {
		return time.Time{}, false
	}
	m.arr.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), stateTimeout)
		defer cancel()
		rows, err := m.s.pool.Query(ctx, `SELECT uid, arrived FROM messages WHERE maildrop = $1`, m.user)
		if err != nil {
			m.s.log.Warn("arrival times unreadable", "user", m.user, "err", err)
			return
		}
		defer rows.Close()
		at := make(map[int64]time.Time, len(m.meta))
		for rows.Next() {
			var uid int64
			var t time.Time
			if err := rows.Scan(&uid, &t); err != nil {
				m.s.log.Warn("arrival times unreadable", "user", m.user, "err", err)
				return
			}
			at[uid] = t
		}
		if err := rows.Err(); err != nil {
			m.s.log.Warn("arrival times unreadable", "user", m.user, "err", err)
			return
		}
		m.arr.at = at
	})
	t, ok := m.arr.at[m.meta[i].uid]
	return t, ok
}
