// Package pgstore is postoffice's PostgreSQL store: maildrops, their
// messages and a cluster-wide maildrop lock in one database, so that many
// stateless POP3 and LMTP servers can serve the same users (RFC 1939 §4:
// one session per maildrop, whichever server it reaches). It implements
// store.Store through pgx (pgxpool, plain SQL), and keeps the invariants of
// the store package doc, which storetest checks.
//
// # Tables
//
// Every table is keyed by maildrop (the user name) first, and every
// statement names exactly one maildrop, so no transaction ever spans two:
// the tables can be sharded by maildrop (see Sharding).
//
//	maildrops        (maildrop) PK; uidvalidity, next_uid, created_at
//	maildrop_leases  (maildrop) PK; token, holder, acquired_at, expires_at
//	messages         (maildrop, uid) PK, (maildrop, uidl) UNIQUE;
//	                 size (CRLF octets), octets (stored), chunks, body_id,
//	                 arrived, sender, recipient, stuff (schema version 4:
//	                 offsets of the lines to dot-stuff of a body in wire
//	                 form, NULL if not)
//	message_chunks   (maildrop, body_id, seq) PK; data bytea (RowSize,
//	                 7,800 octets, since schema version 3; 256 KiB before)
//	maildrop_state   (maildrop, name, seq) PK; data bytea: store.StateFiles
//	postoffice_schema (component) PK; version: Migrate and CheckSchema
//
// A maildrop row is made by the first Open or Deliver for its user; user
// names are 1-255 octets of UTF-8 without control characters, compared
// exactly.
//
// # UIDs and UIDLs
//
// UIDs come from the maildrop's own counter (maildrops.next_uid), not from a
// global sequence, so allocating one touches only that maildrop's shard.
// The counter only grows and is never reset, so a UID is never reused, and a
// delivery takes its UID last, just before COMMIT, so UID order is commit
// order. The UIDL shown to clients is Dovecot's default pop3_uidl_format,
// %08Xu%08Xv, in lowercase hex: the UID, then the maildrop's UIDVALIDITY
// (the second it was created). It is stored (messages.uidl, unique per
// maildrop), so a migration can bring the UIDLs another server showed.
//
// # Bodies
//
// A body is stored in rows of message_chunks of RowSize (7,800) octets,
// written about 256 KiB of rows per COPY as the delivery reads its
// input, and read back about 256 KiB of rows per query, so a 50 MB message
// never sits whole in the memory of the server or of a PostgreSQL backend
// (TestLargeMessageBoundedHeap measures it). A message of one part holds
// no connection while a client reads it; a reader of a message of several
// parts sends the query of its next part before handing over the current
// one, on a connection it holds until its last part or its Close (see
// pipe.go): so a slow client can hold one connection for as long as it
// takes to read one part, and all such readers together hold at most half
// the pool. Chunked rows were chosen over large objects
// because they live in an ordinary table: keyed by maildrop, they shard
// with it (pg_largeobject cannot be distributed), go with their message in
// one DELETE inside the Commit transaction (a large object needs its own
// lo_unlink and leaks when one is missed), and back up, replicate and
// vacuum like the rest.
//
// A row of RowSize octets, with its key and the longest maildrop name,
// stays under the table's toast_tuple_target (raised to 8160 by schema
// version 3), so it stays whole and uncompressed in its heap page: a read
// finds it where it lies. Until version 2 a body was 256 KiB rows, each
// cut by TOAST into about 130 rows of 2 KB out of line (an index lookup
// each) and pglz-compressed when that paid; BenchmarkDownload spent about
// a sixth less CPU in PostgreSQL with the inline rows (docs/scale-out.md
// has the figures). The price is storage: text bodies are no longer
// compressed (as in a Maildir). The migration to version 3 rewrites
// nothing: rows stored before it keep their size, and the reader takes
// rows of any size (it estimates their size from the message's, asks for
// about 256 KiB of them per query, and stops early at a row that would
// not fit its buffer or is out of sequence, so a missing row is an error,
// never a gap).
//
// A session that opens small messages in order (a POP3 download: RETR 1,
// RETR 2, ...) reads the next ones ahead: one query brings the following
// messages under 64 KiB, up to 256 KiB in all, into one pooled buffer that
// answers the next Opens without a query (ahead.go has the rules). That
// took a sixth of the CPU of a BenchmarkDownload session, on both sides,
// and leaves a session's memory bound where it was: one 256 KiB buffer.
//
// Each pooled connection reads its socket through a buffer of its own of
// 64 KiB (recvBufSize), under pgx's 8 KiB one, so that a body's rows
// come in reads of up to 64 KiB: in BenchmarkDownloadSocket that took a
// third of the read(2) calls of the process and about 4% of its CPU. It
// costs MaxConns times 64 KiB for as long as the connections live (1 MiB
// for a pool of 16).
//
// Bodies are not deduplicated: each delivery stores its own copy. A copy
// shared between maildrops would need a cross-maildrop reference count,
// which breaks sharding by maildrop and turns every POP3 delete into a
// cross-shard update; within one maildrop, identical messages are rare.
//
// Since schema version 4 a body is stored in its CRLF form, whatever
// line ends it was delivered with (LMTP brings CRLF, a Maildir file
// copied by postoffice migrate copy or a deliver command's input often
// LF): bare LF made CRLF, a last line without one completed (RFC 1939
// §3, RFC 5321 §2.3.8), exactly what RETR sends before dot-stuffing, with
// where its lines that start with "." start (messages.stuff, at most
// maxStuff of them): RETR then sends it as it is stored, a "." added
// there, without the converter (wire.go has the rules). messages.size
// keeps its meaning, the CRLF octets, and is now also the stored octets
// of such a body. Bodies stored before version 4 keep their octets as
// delivered and a NULL stuff, and go through the converter as before;
// so does a body with more lines to stuff than maxStuff. STAT, LIST and
// UIDL read the messages table only.
//
// # Delivery
//
// Deliver runs in one transaction: the chunks, then the UID from the
// maildrop's counter (which locks the maildrop row until COMMIT, so
// deliveries to one maildrop serialise only on that short tail), then the
// messages row. It returns nil only after COMMIT; a read error, a canceled
// context or a lost connection rolls everything back, so a failed
// delivery leaves nothing visible. DeliverEnvelope also records the SMTP
// envelope (sender, recipient) in the messages row.
//
// # The maildrop lock: leases and fencing
//
// Open takes a lease, a row in maildrop_leases with an expiry and a token
// (a generation number that grows by one with each taking). It succeeds
// only if the lease has expired, the expiry compared with the database's
// clock_timestamp(): servers' clocks never decide who holds a maildrop.
// Otherwise it returns store.ErrInUse, which the engine answers with
// -ERR [IN-USE]. Taking the lease is one round trip (a batch run as one
// transaction) and commits durably. An open maildrop renews its lease
// every LockTTL/3 from a heartbeat goroutine; Close releases it by setting
// its expiry in the past, in a transaction that does not wait for its WAL
// flush (synchronous_commit off): a release lost in a crash or failover
// only leaves the lease to expire by itself, as if the server had died.
// A server that dies stops renewing, and its leases expire at most LockTTL
// (default 30 s, Options.LockTTL) after their last renewal, with no
// cleanup by anyone.
//
// A server that was paused or cut off past its lease's expiry may come back
// believing it still holds the maildrop, while another session has taken it
// over. So Commit is fenced: its transaction first updates the lease row
// where token = the session's token and expires_at > clock_timestamp(),
// and deletes only if that matched a row, which it then holds locked until
// COMMIT (a takeover waits for it). A stale session's Commit matches nothing
// and returns ErrLockLost, having deleted nothing; the new holder's view is
// untouched. The lease row is never deleted, so a superseded token never
// becomes valid again. idle_in_transaction_session_timeout, set to LockTTL
// inside Commit, bounds how long a stalled server can keep the row locked.
//
// PostgreSQL advisory locks were not used for maildrops: they belong to a
// connection, so a pool would have to pin one connection per open session
// (thousands), a lock silently vanishes when its connection drops while the
// session goes on, nothing tells a session's later statements that it lost
// its lock (there is no token to check, so no fencing), and Citus does not
// make them cluster-wide. A lease row is an ordinary row: it survives
// reconnects, shards with its maildrop, and carries the fencing token.
//
// # Maildrop state
//
// The maildrop's own small state (store.StateFiles: the per-device views,
// first-retrieval times and retrieval journal of internal/ledger) is kept
// in maildrop_state, schema version 2. A named state is its rows in seq
// order, concatenated. WriteState replaces them with one row in a
// transaction fenced by the lease as Commit is. AppendState (the
// retrieval journal, a line per RETR) buffers its data in the maildrop,
// and the lines are written as rows after the last, only while the
// session's lease holds, so a stale session never writes over the state
// of the one that took the maildrop over (ErrLockLost): with Commit's
// transaction, WriteState's, or Close's release, before the session's own
// ReadState, at SyncState, or by the heartbeat one second after the first
// line waited. A download session's journal so costs no round trip of its
// own, where a committed transaction per line cost as much CPU as the mail
// sent. The durability chosen, for a record that is not mail: a kill -9 of
// the server loses at most the last second of lines, and a crash of
// PostgreSQL may lose a fraction of a second more (the timed and Close
// writes do not wait for their WAL flush); SyncState makes every line
// appended durable. A lock-free read (Store.ReadState) sees an open
// session's lines up to a second late. ReadState, as Store.ReadState
// (store.StateReader), needs no lease: one SELECT sees one snapshot.
// store.Arrivals reads messages.arrived on first use, so only the expiry
// sweep pays for it, never a login.
//
// # Failures
//
// Any database error (a lost connection, a failover, a timeout) is returned
// as a plain error, which the POP3 engine answers with -ERR [SYS/TEMP]; the
// pool drops the broken connection and opens new ones by itself. A Commit
// whose transaction did not COMMIT deleted nothing.
//
// # Sharding
//
// The layout is ready for Citus: create_distributed_table on maildrop for
// maildrops, maildrop_leases, messages, message_chunks and maildrop_state,
// co-located; postoffice_schema stays a local table on the coordinator.
// Every query filters on one maildrop, so Citus routes it to a single
// shard, and every transaction touches one shard.
package pgstore
