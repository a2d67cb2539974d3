package pgstore

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/postoffice-mail/postoffice/internal/store"
	"github.com/postoffice-mail/postoffice/internal/wire"
)

// A body is stored as rows of RowSize octets (the last one of a message
// shorter): small enough that a row, with its key and a maildrop name of
// the longest (255 octets), stays under the table's toast_tuple_target
// (8160, schema version 3) and so in the heap page, whole and
// uncompressed. A 256 KiB value used to be cut by TOAST into about 130
// out-of-line rows of 2 KB, each found through the TOAST index, copied
// three times and, for text, pglz-compressed; an inline row is read where
// it lies.
//
// A delivery reads ChunkSize octets at a time (RowSize times 33, about
// 256 KiB) and stores their rows with one COPY; a reader fetches about
// ChunkSize octets of rows per query. Either holds at most bufSize per
// message, on the server and in PostgreSQL's backend. Rows of other sizes
// (the 256 KiB rows of schema versions 1 and 2, or rows written by hand)
// are read as well: the reader accepts any row size.
const (
	RowSize   = 7800
	ChunkSize = bufSize / RowSize * RowSize
	bufSize   = 256 << 10 // holds a row of the earlier layout whole
)

// recvBufSize is the read buffer each pooled connection reads its socket
// through, under pgx's own 8 KiB one: a read(2) takes up to 64 KiB of
// the rows PostgreSQL has written, where pgx alone asks for at most 8 KiB
// at a time (and meets an empty socket, EAGAIN and a wait in the poller,
// more often). It stays with the connection for its life: MaxConns times
// 64 KiB in all (see the package doc).
const recvBufSize = 64 << 10

// Defaults for the zero values of Options.
const (
	DefaultLockTTL        = 30 * time.Second
	DefaultConnectTimeout = 10 * time.Second
)

// maxUserLen bounds a maildrop name (a user name as the user database
// gives it), in octets.
const maxUserLen = 255

// Options configures Open.
type Options struct {
	// DSN is the PostgreSQL connection string, as a URL
	// ("postgres://user@host/db?sslmode=verify-full") or key=value
	// ("host=/run/postgresql dbname=mail"), with libpq's environment
	// variables (PGHOST, PGPASSWORD, ...) and ~/.pgpass filling in what it
	// leaves out. Required.
	DSN string
	// MaxConns bounds the connection pool. Zero means pgxpool's default, the
	// larger of 4 and the number of CPUs. Each open POP3 session holds no
	// connection between commands; a delivery holds one while it streams.
	MaxConns int32
	// ConnectTimeout bounds one connection attempt. Zero means 10 s.
	ConnectTimeout time.Duration
	// LockTTL is the lifetime of a maildrop lease: a server that dies while
	// it holds a maildrop frees it at most this long after its last renewal.
	// An open maildrop renews its lease every LockTTL/3. Zero means 30 s;
	// it must otherwise be at least 100 ms.
	LockTTL time.Duration
	// Logger receives lease renewal failures and schema migrations. Nil
	// means no logging.
	Logger *slog.Logger

	// tracer, when set (by this package's tests), sees every statement and
	// batch the pool's connections send.
	tracer pgx.QueryTracer
	// journalDelay, when set (by this package's tests), replaces
	// journalDelay, the longest an open session keeps appended state
	// lines unwritten.
	journalDelay time.Duration
}

// Store is the PostgreSQL store. It is safe for concurrent use; several
// Stores, in one process or many, may share a database.
type Store struct {
	pool   *pgxpool.Pool
	ttl    time.Duration
	log    *slog.Logger
	holder string // written into lease rows, for operators

	journalDelay time.Duration // see journal.go

	bufs   sync.Pool // *[]byte of bufSize: a delivery's or a reader's buffer
	inBufs sync.Pool // *[]byte of inBufSize: a delivery's input buffer

	// pipes bounds the message readers holding a connection between
	// reads to look ahead (see pipe.go): half the pool, at least one.
	pipes chan struct{}

	ctx    context.Context // canceled by Close: stops the heartbeats
	cancel context.CancelFunc
	mu     sync.Mutex // guards closed and wg.Add against Close
	closed bool
	wg     sync.WaitGroup // heartbeats
}

// Open connects to the database (it pings it once, so a wrong DSN or
// password fails here) and returns the Store. It does not check or create
// the schema: call CheckSchema (serving) or Migrate (installing).
func Open(ctx context.Context, opts Options) (*Store, error) {
	if opts.DSN == "" {
		return nil, errors.New("pgstore: no DSN")
	}
	cfg, err := pgxpool.ParseConfig(opts.DSN)
	if err != nil {
		// pgconn's parse errors do not repeat the password.
		return nil, fmt.Errorf("pgstore: DSN: %w", err)
	}
	if opts.MaxConns < 0 {
		return nil, fmt.Errorf("pgstore: MaxConns %d is negative", opts.MaxConns)
	}
	if opts.MaxConns > 0 {
		cfg.MaxConns = opts.MaxConns
	}
	switch {
	case opts.ConnectTimeout < 0:
		return nil, fmt.Errorf("pgstore: ConnectTimeout %s is negative", opts.ConnectTimeout)
	case opts.ConnectTimeout == 0:
		opts.ConnectTimeout = DefaultConnectTimeout
	}
	cfg.ConnConfig.ConnectTimeout = opts.ConnectTimeout
	switch {
	case opts.LockTTL == 0:
		opts.LockTTL = DefaultLockTTL
	case opts.LockTTL < 100*time.Millisecond:
		return nil, fmt.Errorf("pgstore: LockTTL %s is below 100ms", opts.LockTTL)
	}
	if cfg.ConnConfig.RuntimeParams == nil {
		cfg.ConnConfig.RuntimeParams = map[string]string{}
	}
	cfg.ConnConfig.RuntimeParams["application_name"] = "postoffice"
	if opts.tracer != nil {
		cfg.ConnConfig.Tracer = opts.tracer
	}
	cfg.ConnConfig.BuildFrontend = func(r io.Reader, w io.Writer) *pgproto3.Frontend {
		return pgproto3.NewFrontend(bufio.NewReaderSize(r, recvBufSize), w)
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("pgstore: %w", err)
	}
	pctx, cancel := context.WithTimeout(ctx, opts.ConnectTimeout)
	err = pool.Ping(pctx)
	cancel()
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("pgstore: connecting: %w", err)
	}
	host, _ := os.Hostname()
	s := &Store{
		pool:   pool,
		ttl:    opts.LockTTL,
		log:    log,
		holder: host + ":" + strconv.Itoa(os.Getpid()),

		journalDelay: journalDelay,
		pipes:        make(chan struct{}, max(cfg.MaxConns/2, 1)),
	}
	if opts.journalDelay > 0 {
		s.journalDelay = opts.journalDelay
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	return s, nil
}

// Close stops the lease renewals of maildrops still open and closes the
// pool. Close the maildrops first: the leases of those left open are not
// released but expire after LockTTL, as if this server had died.
func (s *Store) Close() {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.cancel()
	s.wg.Wait()
	s.pool.Close()
}

// checkUser validates a maildrop name: 1-255 octets of UTF-8 without
// control characters. Names are compared exactly (the user database
// decides their case).
func checkUser(user string) error {
	if user == "" || len(user) > maxUserLen || !utf8.ValidString(user) {
		return fmt.Errorf("pgstore: invalid user name (empty, longer than %d octets, or not UTF-8): %w", maxUserLen, store.ErrNoUser)
	}
	for _, r := range user {
		if r < 0x20 || r == 0x7f {
			return fmt.Errorf("pgstore: invalid user name %q (control character): %w", user, store.ErrNoUser)
		}
	}
	return nil
}

// Deliver stores one message for user, creating the maildrop if needed. It
// returns nil only after the transaction that holds the message committed;
// on any error, a read error or a canceled ctx, the transaction is rolled
// back and nothing of the message is visible. The sender and recipient are
// stored as unknown (NULL); see DeliverEnvelope. The body is stored in
// its CRLF form (see the package doc: Bodies).
func (s *Store) Deliver(ctx context.Context, user string, r io.Reader) error {
	return s.deliver(ctx, user, nil, nil, r, nil)
}

// DeliverEnvelope is Deliver that also records the SMTP envelope: the
// reverse-path (sender, "" for the null sender <>) and the recipient the
// message was accepted for (RFC 5321 §4.1.1.2-3, RFC 2033 §4.2). They are
// kept in the message's metadata row for later use (a Return-Path or
// Delivered-To on export, per-recipient accounting) and are never added to
// the stored bytes, which are the delivered message in its CRLF form
// (see the package doc: Bodies).
//
// It is an optional method outside store.Store, so the interface is
// unchanged: a deliverer that has an envelope finds it by type assertion
// against an interface it declares itself, e.g.
//
//	interface {
//		DeliverEnvelope(ctx context.Context, user, sender, recipient string, r io.Reader) error
//	}
//
// and falls back to Deliver on stores without it (Maildir keeps no
// envelope).
func (s *Store) DeliverEnvelope(ctx context.Context, user, sender, recipient string, r io.Reader) error {
	return s.deliver(ctx, user, &sender, &recipient, r, nil)
}

// deliver stores one message. imp, when not nil, is an imported message's
// UIDL and arrival time (see Import); otherwise the UIDL is made from the
// UID and the arrival time is the transaction's.
func (s *Store) deliver(ctx context.Context, user string, sender, recipient *string, r io.Reader, imp *imported) (err error) {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("pgstore: deliver: %w", err)
	}
	if err := checkUser(user); err != nil {
		return err
	}
	defer func() {
		// pgx reports a canceled statement in its own words; make the cause
		// errors.Is-able, as callers (and the store contract) expect.
		if err != nil && ctx.Err() != nil && !errors.Is(err, ctx.Err()) {
			err = fmt.Errorf("%w (%w)", err, ctx.Err())
		}
	}()
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("pgstore: deliver: %w", err)
	}
	defer rollback(tx) // a no-op after Commit
	bodyID, err := randomID()
	if err != nil {
		return err
	}
	// The body first, chunk by chunk: only one chunk is ever in memory. It
	// is stored in its CRLF form (wire.go), read through a CRLFReader of
	// its own buffer: the CRLF octets are the message's size.
	var (
		stuff  = wire.DotLines{Max: maxStuff}
		octets int64
		seq    int32
		bufp   = s.buffer()
		buf    = (*bufp)[:ChunkSize]
		inp    = s.inBuffer()
		crlf   = wire.NewCRLFReader(r, *inp)
		rows   = make([][]any, 0, ChunkSize/RowSize)
	)
	defer s.bufs.Put(bufp)
	defer s.inBufs.Put(inp)
	for {
		n, rerr := io.ReadFull(crlf, buf)
		if n > 0 {
			stuff.Write(buf[:n])
			octets += int64(n)
			rows = rows[:0]
			for off := 0; off < n; off += RowSize {
				rows = append(rows, []any{user, bodyID, seq + int32(len(rows)), buf[off:min(off+RowSize, n)]})
			}
			// One row (most messages): a plain INSERT, one round trip.
			// More: COPY, which costs two more round trips but stores the
			// rows for less than an INSERT of an array of them (PostgreSQL
			// decodes and copies the whole array first), and less than one
			// TOASTed 256 KiB value.
			var err error
			if len(rows) == 1 {
				_, err = tx.Exec(ctx, `INSERT INTO message_chunks (maildrop, body_id, seq, data) VALUES ($1, $2, $3, $4)`, rows[0]...)
			} else {
				_, err = tx.CopyFrom(ctx, pgx.Identifier{"message_chunks"}, chunkColumns, pgx.CopyFromRows(rows))
			}
			if err != nil {
				return fmt.Errorf("pgstore: deliver: storing the body: %w", err)
			}
			seq += int32(len(rows))
		}
		if rerr == io.EOF || rerr == io.ErrUnexpectedEOF {
			break
		}
		if rerr != nil {
			return fmt.Errorf("pgstore: deliver: reading the message: %w", rerr)
		}
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("pgstore: deliver: %w", err)
		}
	}
	// Then the UID, last, so that the maildrop row is locked (deliveries to
	// one maildrop serialise) only from here to COMMIT, and UIDs ascend in
	// commit order: a later session never sees a message appear before one
	// it already listed. The UIDL is Dovecot's default pop3_uidl_format,
	// %08Xu%08Xv in lowercase hex (UID, then the maildrop's UIDVALIDITY, its
	// creation time), so UIDLs are never reused even if a maildrop is
	// dropped and made again, and a maildrop moved here from Dovecot keeps
	// the form its clients know.
	var uid, validity int64
	if err := tx.QueryRow(ctx, `
INSERT INTO maildrops AS m (maildrop, uidvalidity, next_uid)
VALUES ($1, extract(epoch FROM clock_timestamp())::bigint, 2)
ON CONFLICT (maildrop) DO UPDATE SET next_uid = m.next_uid + 1
RETURNING next_uid - 1, uidvalidity`, user).Scan(&uid, &validity); err != nil {
		return fmt.Errorf("pgstore: deliver: allocating a UID: %w", err)
	}
	uidl := fmt.Sprintf("%08x%08x", uid, validity)
	var arrived *time.Time
	if imp != nil {
		uidl = imp.uidl
		if !imp.arrived.IsZero() {
			arrived = &imp.arrived
		}
		if err := keepAbove(ctx, tx, user, uidl, validity); err != nil {
			return err
		}
	}
	if _, err := tx.Exec(ctx, `
INSERT INTO messages (maildrop, uid, uidl, size, octets, chunks, body_id, arrived, sender, recipient, stuff)
VALUES ($1, $2, $3, $4, $5, $6, $7, coalesce($10, clock_timestamp()), $8, $9, $11)`,
		user, uid, uidl, octets, octets, seq, bodyID, sender, recipient, arrived, stuffColumn(&stuff)); err != nil {
		if imp != nil && uniqueViolation(err) {
			return fmt.Errorf("pgstore: import: UIDL %q stored meanwhile by another import: %w", uidl, store.ErrUIDExists)
		}
		return fmt.Errorf("pgstore: deliver: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("pgstore: deliver: commit: %w", err)
	}
	return nil
}

// chunkColumns are the columns of message_chunks a delivery copies in.
var chunkColumns = []string{"maildrop", "body_id", "seq", "data"}

// buffer returns a chunk buffer from the pool: a 4 KiB delivery would
// otherwise allocate 256 KiB.
func (s *Store) buffer() *[]byte {
	if b, ok := s.bufs.Get().(*[]byte); ok {
		return b
	}
	b := make([]byte, bufSize)
	return &b
}

// inBufSize is the size of the buffer a delivery reads its input through
// (to convert it into its CRLF form): 32 KiB reads a Maildir file being
// imported in few system calls.
const inBufSize = 32 << 10

// inBuffer returns a delivery's input buffer from its pool.
func (s *Store) inBuffer() *[]byte {
	if b, ok := s.inBufs.Get().(*[]byte); ok {
		return b
	}
	b := make([]byte, inBufSize)
	return &b
}

// randomID returns a random positive int64: the key of a body's chunks.
// A body is written before its message has a UID (see deliver); 63 random
// bits make a collision within one maildrop negligible, and the primary
// key would refuse one (the delivery fails and is retried) rather than mix
// two bodies.
func randomID() (int64, error) {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return 0, fmt.Errorf("pgstore: %w", err)
	}
	return int64(binary.BigEndian.Uint64(b[:]) >> 1), nil
}

// errNoRows reports whether err is pgx's "no rows".
func errNoRows(err error) bool { return errors.Is(err, pgx.ErrNoRows) }

// rollback ends tx if it is still open (a no-op after Commit), within a
// bounded time even when the caller's context is done or the connection
// hangs: pgx then closes the connection, which rolls back on the server.
func rollback(tx pgx.Tx) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	tx.Rollback(ctx)
}
