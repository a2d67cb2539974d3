package pgstore

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/postoffice-mail/postoffice/internal/store"
	"github.com/postoffice-mail/postoffice/internal/wire"
)

var (
	_ store.Importer     = (*Store)(nil)
	_ store.ArrivalTimer = (*maildrop)(nil)
)

// imported is what an imported message brings besides its body.
type imported struct {
	uidl    string
	arrived time.Time
}

// Import implements store.Importer. Each message is its own transaction,
// as a delivery is (chunks, UID, messages row), with the given UIDL stored
// as it is and the given arrival time; it gets the next UID of the
// maildrop's counter, so imported messages follow what the maildrop holds,
// in the order given. Import takes no lease: a session open meanwhile does
// not see the imported messages (its snapshot was taken before), and the
// unique (maildrop, uidl) key refuses the same UIDL twice whoever stores it.
//
// A UIDL already present is checked against the stored message: equal
// bytes (the SHA-256 of their CRLF form, which is what this store keeps
// since schema version 4, so a message given with LF line ends matches
// its stored copy) make the message a no-op, anything else is
// store.ErrUIDExists and nothing of the batch is stored.
//
// An imported UIDL may have the form this store gives its own messages,
// "%08x%08x" of a UID and this maildrop's UIDVALIDITY (a maildrop moved
// back, or one that happens to share the creation second): the counter is
// then raised above that UID in the same transaction, so that no later
// delivery is given the same UIDL.
func (s *Store) Import(ctx context.Context, user string, msgs []store.ImportMessage) error {
	if err := checkUser(user); err != nil {
		return err
	}
	seen := make(map[string]bool, len(msgs))
	for _, m := range msgs {
		if !validUIDL(m.UID) {
			return fmt.Errorf("pgstore: import: invalid UIDL %q (want 1-70 characters of 0x21-0x7E)", m.UID)
		}
		if seen[m.UID] {
			return fmt.Errorf("pgstore: import: UIDL %q twice in one batch", m.UID)
		}
		seen[m.UID] = true
		if m.Open == nil {
			return fmt.Errorf("pgstore: import: message %q has no Open", m.UID)
		}
	}
	// First every UIDL already present, so that a conflict stores nothing.
	skip := make([]bool, len(msgs))
	for i, m := range msgs {
		same, present, err := s.sameMessage(ctx, user, m)
		if err != nil {
			return err
		}
		if present && !same {
			return fmt.Errorf("pgstore: import: UIDL %q: %w", m.UID, store.ErrUIDExists)
		}
		skip[i] = present
	}
	for i, m := range msgs {
		if skip[i] {
			continue
		}
		if err := s.importOne(ctx, user, m); err != nil {
			if errors.Is(err, store.ErrUIDExists) {
				// Stored meanwhile by a concurrent import: fine if the same.
				if same, _, serr := s.sameMessage(ctx, user, m); serr == nil && same {
					continue
				}
			}
			return err
		}
	}
	return nil
}

func (s *Store) importOne(ctx context.Context, user string, m store.ImportMessage) error {
	rc, err := m.Open(ctx)
	if err != nil {
		return fmt.Errorf("pgstore: import: opening message %q: %w", m.UID, err)
	}
	defer rc.Close()
	return s.deliver(ctx, user, nil, nil, rc, &imported{uidl: m.UID, arrived: m.ArrivalTime})
}

// sameMessage reports whether the maildrop has m's UIDL (present) and, if
// so, whether its stored bytes are m's (same), both in CRLF form: a body
// stored before schema version 4 may have kept LF line ends.
func (s *Store) sameMessage(ctx context.Context, user string, m store.ImportMessage) (same, present bool, err error) {
	var (
		mt   meta
		size int64
	)
	err = s.pool.QueryRow(ctx, `SELECT uid, body_id, chunks, size FROM messages WHERE maildrop = $1 AND uidl = $2`,
		user, m.UID).Scan(&mt.uid, &mt.bodyID, &mt.chunks, &size)
	if errNoRows(err) {
		return false, false, nil
	}
	if err != nil {
		return false, false, fmt.Errorf("pgstore: import: %w", err)
	}
	br := &bodyReader{ctx: ctx, s: s, user: user, meta: mt, per: rowsPerQuery(size, mt.chunks)}
	defer br.Close()
	have, err := hashReader(br)
	if err != nil {
		return false, true, fmt.Errorf("pgstore: import: reading stored message %q: %w", m.UID, err)
	}
	rc, err := m.Open(ctx)
	if err != nil {
		return false, true, fmt.Errorf("pgstore: import: opening message %q: %w", m.UID, err)
	}
	defer rc.Close()
	want, err := hashReader(rc)
	if err != nil {
		return false, true, fmt.Errorf("pgstore: import: reading message %q: %w", m.UID, err)
	}
	return have == want, true, nil
}

// hashReader returns the SHA-256 of r's CRLF form (wire.CRLFReader).
func hashReader(r io.Reader) ([sha256.Size]byte, error) {
	h := sha256.New()
	if _, err := io.CopyBuffer(h, wire.NewCRLFReader(r, make([]byte, 32<<10)), make([]byte, 32<<10)); err != nil {
		return [sha256.Size]byte{}, err
	}
	return [sha256.Size]byte(h.Sum(nil)), nil
}

// keepAbove raises the maildrop's UID counter above the UID of an imported
// UIDL that has this store's own form with this maildrop's UIDVALIDITY,
// inside the importing transaction.
func keepAbove(ctx context.Context, tx pgx.Tx, user, uidl string, validity int64) error {
	if len(uidl) != 16 {
		return nil
	}
	for i := 0; i < len(uidl); i++ {
		if c := uidl[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return nil
		}
	}
	u, err1 := strconv.ParseInt(uidl[:8], 16, 64)
	v, err2 := strconv.ParseInt(uidl[8:], 16, 64)
	if err1 != nil || err2 != nil || v != validity {
		return nil
	}
	if _, err := tx.Exec(ctx, `UPDATE maildrops SET next_uid = greatest(next_uid, $2::bigint + 1) WHERE maildrop = $1`, user, u); err != nil {
		return fmt.Errorf("pgstore: import: %w", err)
	}
	return nil
}

// validUIDL reports whether s is 1-70 octets of 0x21-0x7E (RFC 1939 §7).
func validUIDL(s string) bool {
	if len(s) < 1 || len(s) > 70 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// uniqueViolation reports whether err is PostgreSQL's unique_violation.
func uniqueViolation(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "23505"
}

// ArrivalTime implements store.ArrivalTimer: the time the message's
// delivery (or import) recorded.
func (m *maildrop) ArrivalTime(ctx context.Context, i int) (time.Time, error) {
	if i < 0 || i >= len(m.msgs) {
		return time.Time{}, fmt.Errorf("pgstore: message index %d out of range [0, %d)", i, len(m.msgs))
	}
	var t time.Time
	err := m.s.pool.QueryRow(ctx, `SELECT arrived FROM messages WHERE maildrop = $1 AND uid = $2`, m.user, m.meta[i].uid).Scan(&t)
	if errNoRows(err) {
		return time.Time{}, store.ErrNoMessage
	}
	if err != nil {
		return time.Time{}, fmt.Errorf("pgstore: arrival time: %w", ctxErr(ctx, err))
	}
	return t, nil
}
