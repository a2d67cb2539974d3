package pgstore

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Appended state (store.StateFiles.AppendState: the retrieval journal of
// internal/ledger, one line per RETR) is buffered in the maildrop and
// written with a round trip the session makes anyway, rather than one
// committed transaction per line: a download session of 50 messages
// spent about as much CPU on its 50 journal commits, on the server and
// in PostgreSQL together, as on the 3.3 MB it sent (docs/scale-out.md has
// the figures). The buffered lines are written
//
//   - with Commit's transaction (so the "dele" lines commit with the
//     deletions they record), WriteState's, and Close's release;
//   - before ReadState and at SyncState, so the session reads what it
//     appended, and SyncState makes it durable;
//   - by the heartbeat goroutine journalDelay (1 s) after the first line
//     was buffered, so a session that stays open does not hold lines
//     back longer than that;
//   - at once when journalFlushAt octets are waiting (a bound on memory).
//
// Durability, decided as for a journal (a record for the administrator,
// never mail): a kill -9 of the server loses the lines of at most the last
// journalDelay; the timed and the Close writes commit without waiting for
// their WAL flush (synchronous_commit off, that transaction only), so a
// crash of PostgreSQL may lose the last fraction of a second more
// (wal_writer_delay). Lines are written only while the session's lease
// holds: those of a session that lost it are dropped, never written over
// the new holder's state.
const (
	journalDelay   = time.Second
	journalFlushAt = 64 << 10
)

// appendSQL appends one row to each named state, all or none: only while
// the session's lease holds (an unexpired lease with its token). $2 and $3
// are parallel arrays of names (each once) and data.
const appendSQL = `
INSERT INTO maildrop_state (maildrop, name, seq, data)
SELECT $1, j.name, coalesce((SELECT max(s.seq) FROM maildrop_state s WHERE s.maildrop = $1 AND s.name = j.name), -1) + 1, j.data
FROM unnest($2::text[], $3::bytea[]) AS j(name, data)
WHERE EXISTS (SELECT 1 FROM maildrop_leases
	WHERE maildrop = $1 AND token = $4 AND expires_at > clock_timestamp())`

// journal is a maildrop's appended state not yet written. Its mutex is
// held while a write of it is in flight, so lines reach the table in the
// order they were appended.
type journal struct {
	names []string
	data  [][]byte
	size  int
}

// add buffers data for name.
func (j *journal) add(name string, data []byte) {
	j.size += len(data)
	for i, n := range j.names {
		if n == name {
			j.data[i] = append(j.data[i], data...)
			return
		}
	}
	j.names = append(j.names, name)
	j.data = append(j.data, append([]byte(nil), data...))
}

func (j *journal) empty() bool { return len(j.names) == 0 }

func (j *journal) reset() { j.names, j.data, j.size = nil, nil, 0 }

// args are appendSQL's arguments for m's lines.
func (m *maildrop) journalArgs() []any {
	return []any{m.user, m.jrnl.names, m.jrnl.data, m.token}
}

// flushJournal writes the buffered lines in a transaction of their own,
// waiting for its WAL flush only when durable. It returns ErrLockLost,
// dropping the lines, when the lease is gone; on any other error the lines
// stay buffered for the next write.
func (m *maildrop) flushJournal(ctx context.Context, durable bool) error {
	m.jmu.Lock()
	defer m.jmu.Unlock()
	return m.flushJournalLocked(ctx, durable)
}

func (m *maildrop) flushJournalLocked(ctx context.Context, durable bool) error {
	if m.jrnl.empty() {
		if durable && m.unsynced {
			// Lines written earlier without waiting for their WAL flush:
			// a durable commit flushes the WAL up to its own record, and
			// so theirs. txid_current() gives the transaction an ID, so its
			// COMMIT is a durable one.
			if _, err := m.s.pool.Exec(ctx, `SELECT txid_current()`); err != nil {
				return fmt.Errorf("pgstore: syncing state: %w", err)
			}
			m.unsynced = false
		}
		return nil
	}
	if m.lost.Load() {
		m.dropJournal()
		return ErrLockLost
	}
	b := &pgx.Batch{}
	b.Queue(`BEGIN`)
	if !durable {
		b.Queue(`SET LOCAL synchronous_commit = off`)
	}
	ins := b.Queue(appendSQL, m.journalArgs()...)
	b.Queue(`COMMIT`)
	var affected int64 = -1
	ins.Exec(func(tag pgconn.CommandTag) error {
		affected = tag.RowsAffected()
		return nil
	})
	if err := m.s.pool.SendBatch(ctx, b).Close(); err != nil {
		return fmt.Errorf("pgstore: appending to state: %w", ctxErr(ctx, err))
	}
	if affected != int64(len(m.jrnl.names)) {
		m.lost.Store(true)
		m.dropJournal()
		return ErrLockLost
	}
	m.jrnl.reset()
	m.unsynced = !durable
	return nil
}

// dropJournal forgets the buffered lines of a session that lost its
// lease, with a log line: they must not reach the new holder's state.
func (m *maildrop) dropJournal() {
	if !m.jrnl.empty() {
		m.s.log.Warn("maildrop state lines dropped: the maildrop lock was lost", "user", m.user, "octets", m.jrnl.size)
	}
	m.jrnl.reset()
}

// flushJournalIn writes the buffered lines inside tx, whose caller has
// already checked the lease (and holds its row locked). The caller holds
// m.jmu and resets the journal once tx has committed.
func (m *maildrop) flushJournalIn(ctx context.Context, tx pgx.Tx) error {
	if m.jrnl.empty() {
		return nil
	}
	tag, err := tx.Exec(ctx, appendSQL, m.journalArgs()...)
	if err != nil {
		return err
	}
	if tag.RowsAffected() != int64(len(m.jrnl.names)) {
		return ErrLockLost
	}
	return nil
}

// timedFlush is the heartbeat's write of lines buffered for journalDelay.
func (m *maildrop) timedFlush(ctx context.Context) {
	fctx, cancel := context.WithTimeout(ctx, stateTimeout)
	defer cancel()
	if err := m.flushJournal(fctx, false); err != nil && ctx.Err() == nil {
		m.s.log.Warn("maildrop state lines not written yet", "user", m.user, "err", err)
		if err != ErrLockLost {
			m.armJournal() // try again later; Close tries last
		}
	}
}

// armJournal asks the heartbeat to write the buffered lines within
// journalDelay (a no-op when it has been asked already).
func (m *maildrop) armJournal() {
	select {
	case m.arm <- struct{}{}:
	default:
	}
}
