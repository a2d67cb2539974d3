package pgstore

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/postoffice-mail/postoffice/internal/store"
)

// A message of more than one part (more than ChunkSize octets of rows)
// is read with its next part's query sent ahead: when the reader has a
// part in its buffer and more are left, it sends the query for the next
// one on a connection it holds, in the extended protocol's pipeline mode
// (Parse, Bind, Describe, Execute, Sync; no transaction stays open), and
// reads that result only when the caller has consumed the current part.
// Meanwhile PostgreSQL writes the rows into the socket, with no reader
// blocked on it to wake at each of its 8 KiB writes, and the reader takes
// them in reads that do not block.
//
// What that holds, and its bounds:
//   - A connection, from the first part's end to the message's last part
//     (or the reader's Close), while the caller writes a part to the POP3
//     client: a slow client holds it for as long as it takes to read at
//     most one part (ChunkSize octets), and never longer than the reader
//     lives. At most one query is in flight per reader.
//   - At most half the pool's connections (at least one) are held so at
//     once, by all readers of the Store: a reader that finds them taken
//     reads its parts one query each, holding no connection between
//     reads, so logins, heartbeats and deliveries always have the other
//     half.
//   - Memory: the reader's one buffer, as before; the next part waits in
//     the socket's buffers and PostgreSQL's, which bound how much it
//     writes ahead.
//
// A reader closed with a query in flight closes the pipeline, which reads
// and discards the rest of that result up to its Sync; if that fails (a
// lost connection, a canceled context) pgconn closes the connection. A
// reader whose pipelined read or send failed closes its connection. And
// pgxpool destroys a closed or busy connection on release rather than
// reuse it: a pooled connection is never returned mid-result.
type pipe struct {
	conn   *pgxpool.Conn
	sd     *pgconn.StatementDescription // rangeSQL prepared on conn, or nil
	p      *pgconn.Pipeline
	from   int32 // the first row of the query in flight
	broken bool  // a read or a send failed: close the connection
}

// startPipe sends the query of the reader's next part ahead, if a slot and
// a connection are free. Without one the reader fetches its parts one
// query at a time, as a reader of a one-part message does.
func (r *bodyReader) startPipe() {
	select {
	case r.s.pipes <- struct{}{}:
	default:
		return
	}
	conn, err := r.s.pool.Acquire(r.ctx)
	if err != nil {
		<-r.s.pipes
		return // fetch gets the error, if it lasts
	}
	// The DSN's default_query_exec_mode is kept: where pgx caches
	// statements (its default), a named statement prepared once per
	// connection (pgx remembers it), since an unnamed one is parsed and
	// planned for every part; in the modes that cache none (chosen for a
	// pooler in transaction mode, which may not keep named statements),
	// an unnamed one.
	var sd *pgconn.StatementDescription
	if conn.Conn().Config().DefaultQueryExecMode == pgx.QueryExecModeCacheStatement {
		if sd, err = conn.Conn().Prepare(r.ctx, "pgstore_range", rangeSQL); err != nil {
			conn.Release()
			<-r.s.pipes
			return
		}
	}
	r.pipe = &pipe{conn: conn, sd: sd, p: conn.Conn().PgConn().StartPipeline(r.ctx)}
	if err := r.sendPipe(); err != nil {
		r.pipe.broken = true
		r.endPipe()
	}
}

// sendPipe sends the query for the rows from r.seq on, with a Sync, and
// flushes it. The parameters go in text format.
func (r *bodyReader) sendPipe() error {
	from, per := r.seq, max(r.per, 1)
	params := [][]byte{
		[]byte(r.user),
		strconv.AppendInt(nil, r.meta.bodyID, 10),
		strconv.AppendInt(nil, int64(from), 10),
		strconv.AppendInt(nil, int64(from+per), 10),
	}
	r.pipe.from = from
	if r.pipe.sd == nil {
		r.pipe.p.SendQueryParams(rangeSQL, params, nil, nil, []int16(binaryResult))
	} else {
		r.pipe.p.SendQueryStatement(r.pipe.sd, params, nil, []int16(binaryResult))
	}
	return r.pipe.p.Sync()
}

// fetchPipe reads the result of the query sent ahead into the buffer and,
// when rows are left after it, sends the next one before the caller gets
// this part.
func (r *bodyReader) fetchPipe() error {
	if err := r.readPipe(); err != nil {
		r.pipe.broken = true
		return err
	}
	if r.seq >= r.meta.chunks {
		r.endPipe()
		return nil
	}
	if err := r.sendPipe(); err != nil {
		r.pipe.broken = true
		return fmt.Errorf("pgstore: reading message: %w", ctxErr(r.ctx, err))
	}
	return nil
}

// readPipe reads the result of the query in flight and its Sync.
func (r *bodyReader) readPipe() error {
	from := r.pipe.from
	res, err := r.pipe.p.GetResults()
	if err != nil {
		return fmt.Errorf("pgstore: reading message: %w", ctxErr(r.ctx, err))
	}
	rr, ok := res.(*pgconn.ResultReader)
	if !ok {
		return fmt.Errorf("pgstore: reading message: unexpected pipeline result %T", res)
	}
	if _, err := r.fill(&resultRows{rr: rr}); err != nil {
		return fmt.Errorf("pgstore: reading message: %w", ctxErr(r.ctx, err))
	}
	res, err = r.pipe.p.GetResults()
	if err != nil {
		return fmt.Errorf("pgstore: reading message: %w", ctxErr(r.ctx, err))
	}
	if _, ok := res.(*pgconn.PipelineSync); !ok {
		return fmt.Errorf("pgstore: reading message: unexpected pipeline result %T", res)
	}
	if r.seq == from {
		// Deleted by another agent while being read: the connection is
		// clean (the result and its Sync were read).
		return fmt.Errorf("pgstore: reading message: body row %d missing: %w", from, store.ErrNoMessage)
	}
	return nil
}

// endPipe ends pipeline mode (discarding a result still in flight, or
// closing the connection when that fails) and gives the connection back.
// A connection on which a pipelined read failed is closed rather than
// given back, whatever the failure: the pool destroys it and opens a new
// one, so no connection returns in a state nobody checked (a result half
// read, a prepared statement the server refused).
func (r *bodyReader) endPipe() {
	if r.pipe == nil {
		return
	}
	r.pipe.p.Close()
	if r.pipe.broken {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		r.pipe.conn.Conn().Close(ctx)
		cancel()
	}
	r.pipe.conn.Release()
	r.pipe = nil
	<-r.s.pipes
}

// resultRows reads a pipelined result as fill's rowSource.
type resultRows struct {
	rr     *pgconn.ResultReader
	closed bool
	err    error
}

func (q *resultRows) Next() bool          { return q.rr.NextRow() }
func (q *resultRows) RawValues() [][]byte { return q.rr.Values() }
func (q *resultRows) Err() error          { return q.err }

func (q *resultRows) Close() {
	if q.closed {
		return
	}
	q.closed = true
	_, q.err = q.rr.Close()
	if q.err == nil && len(q.rr.FieldDescriptions()) != 2 {
		q.err = errors.New("pgstore: unexpected row shape in a message body")
	}
}
