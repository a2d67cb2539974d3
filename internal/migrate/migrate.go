// Package migrate copies maildrops from one store to another (Maildir to
// PostgreSQL, PostgreSQL to Maildir, or any store.Store to a
// store.Importer) keeping what POP3 clients rely on: each message's UIDL
// (RFC 1939 §7: clients that leave mail on the server remember UIDLs, and a
// new UIDL makes them download the message again), its size and its
// arrival time. Verify compares the two sides afterwards.
//
// Implementation notes:
//   - Nothing is ever deleted from the source, and the source is only read.
//   - The destination is the state: each user's run starts by listing the
//     UIDLs the destination already has and copies only the others, and
//     Import is idempotent by UIDL, so a migration killed at any instant is
//     resumed by running it again, with no state file to keep consistent
//     with the stores.
//   - The source maildrop's POP3 lock is held only while one batch
//     (Options.BatchSize messages) is copied: the maildrop is opened, the
//     batch copied, the maildrop closed, and opened again for the next
//     batch, so a user who logs in during a long migration waits at most
//     one batch. A source maildrop in use is retried a bounded number of
//     times (Options.InUseRetries) before the user is reported as failed.
//     Mail delivered to the source meanwhile is copied by a later batch or
//     a later run; mail deleted meanwhile is not copied.
//   - Messages are streamed: a body goes from the source's reader into the
//     destination's Import, never whole into memory.
package migrate

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/postoffice-mail/postoffice/internal/store"
	"github.com/postoffice-mail/postoffice/internal/wire"
)

// Defaults for the zero values of Options.
const (
	DefaultBatchSize    = 100
	DefaultInUseRetries = 30
	DefaultInUseWait    = time.Second
)

// Options configures Run.
type Options struct {
	// From is the store read; To the store written, which must implement
	// store.Importer. Required.
	From store.Store
	To   store.Store
	// Users lists the maildrops to copy, by user name as both stores name
	// them. Required.
	Users []string
	// BatchSize is the number of messages copied under one holding of the
	// source maildrop's lock, and imported in one Import call. Zero means
	// DefaultBatchSize.
	BatchSize int
	// InUseRetries bounds how often a source or destination maildrop found
	// in use (store.ErrInUse) is tried again, InUseWait apart, before the
	// user fails. Zero means DefaultInUseRetries; negative means none.
	InUseRetries int
	InUseWait    time.Duration
	// Logger receives a line per user. Nil means no logging.
	Logger *slog.Logger
	// Progress, when not nil, is called after each batch, from Run's
	// goroutine.
	Progress func(Progress)
}

// Progress is what Run has done so far.
type Progress struct {
	User      string // the user being copied
	Users     int    // users finished
	Copied    int    // messages copied in this run, all users
	Skipped   int    // messages the destination already had
	UserTotal int    // messages of this user's source snapshot
}

// Result is what Run did.
type Result struct {
	Copied  int               // messages copied
	Skipped int               // messages the destination already had
	Failed  map[string]string // user -> why, for users not (completely) copied
}

// Run copies every message of each user from opts.From to opts.To. It
// returns an error only for unusable options or a canceled ctx; a user that
// fails (a maildrop in use for too long, a UIDL conflict, a store error) is
// recorded in Result.Failed and the others are copied.
func Run(ctx context.Context, opts Options) (Result, error) {
	res := Result{Failed: map[string]string{}}
	if opts.From == nil || opts.To == nil {
		return res, errors.New("migrate: From and To are required")
	}
	imp, ok := opts.To.(store.Importer)
	if !ok {
		return res, fmt.Errorf("migrate: the destination store (%T) cannot import messages with their UIDLs", opts.To)
	}
	if opts.BatchSize <= 0 {
		opts.BatchSize = DefaultBatchSize
	}
	if opts.InUseRetries == 0 {
		opts.InUseRetries = DefaultInUseRetries
	}
	if opts.InUseWait <= 0 {
		opts.InUseWait = DefaultInUseWait
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	p := Progress{}
	for _, user := range opts.Users {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		p.User = user
		copied, skipped, err := runUser(ctx, opts, imp, user, &p)
		res.Copied += copied
		res.Skipped += skipped
		if err != nil {
			if ctx.Err() != nil {
				return res, ctx.Err()
			}
			res.Failed[user] = err.Error()
			log.Error("migrate: user failed", "user", user, "copied", copied, "err", err)
			continue
		}
		p.Users++
		log.Info("migrate: user done", "user", user, "copied", copied, "skipped", skipped)
	}
	return res, nil
}

// runUser copies one user's maildrop, batch by batch.
func runUser(ctx context.Context, opts Options, imp store.Importer, user string, p *Progress) (copied, skipped int, err error) {
	have, err := listUIDLs(ctx, opts, opts.To, user)
	if err != nil {
		return 0, 0, fmt.Errorf("listing the destination: %w", err)
	}
	counted := make(map[string]bool)
	// Each round holds the source lock for one batch. The number of rounds
	// is bounded by the source's size, which a round reads again: a source
	// that grows faster than it is copied stops at the bound, and the next
	// run goes on.
	for round, rounds := 0, 1; round < rounds; round++ {
		md, err := openRetry(ctx, opts, opts.From, user)
		if err != nil {
			return copied, skipped, fmt.Errorf("opening the source: %w", err)
		}
		msgs := md.Messages()
		if round == 0 {
			rounds = len(msgs)/opts.BatchSize + 2
		}
		p.UserTotal = len(msgs)
		var batch []store.ImportMessage
		for i, m := range msgs {
			if have[m.UID] {
				if !counted[m.UID] {
					counted[m.UID] = true
					skipped++
					p.Skipped++
				}
				continue
			}
			at := time.Time{}
			if t, ok := md.(store.ArrivalTimer); ok {
				if at, err = t.ArrivalTime(ctx, i); err != nil {
					if errors.Is(err, store.ErrNoMessage) {
						continue // deleted by another agent since the snapshot
					}
					md.Close()
					return copied, skipped, fmt.Errorf("arrival time of %q: %w", m.UID, err)
				}
			}
			batch = append(batch, store.ImportMessage{
				UID:         m.UID,
				ArrivalTime: at,
				Open:        func(ctx context.Context) (io.ReadCloser, error) { return md.Open(ctx, i) },
			})
			if len(batch) == opts.BatchSize {
				break
			}
		}
		if len(batch) > 0 {
			err = importRetry(ctx, opts, imp, user, batch)
		}
		md.Close()
		if err != nil {
			return copied, skipped, fmt.Errorf("importing: %w", err)
		}
		for _, m := range batch {
			have[m.UID] = true
			counted[m.UID] = true
		}
		copied += len(batch)
		p.Copied += len(batch)
		if opts.Progress != nil {
			opts.Progress(*p)
		}
		if len(batch) < opts.BatchSize {
			return copied, skipped, nil
		}
	}
	return copied, skipped, errors.New("the source kept growing; run the migration again")
}

// listUIDLs opens user's maildrop in s just long enough to list its UIDLs.
func listUIDLs(ctx context.Context, opts Options, s store.Store, user string) (map[string]bool, error) {
	md, err := openRetry(ctx, opts, s, user)
	if err != nil {
		return nil, err
	}
	defer md.Close()
	have := make(map[string]bool, len(md.Messages()))
	for _, m := range md.Messages() {
		have[m.UID] = true
	}
	return have, nil
}

// openRetry opens user's maildrop, trying again while it is in use.
func openRetry(ctx context.Context, opts Options, s store.Store, user string) (store.Maildrop, error) {
	for n := 0; ; n++ {
		md, err := s.Open(ctx, user)
		if !errors.Is(err, store.ErrInUse) || n >= opts.InUseRetries {
			return md, err
		}
		if err := sleep(ctx, opts.InUseWait); err != nil {
			return nil, err
		}
	}
}

// importRetry imports a batch, trying again while the destination
// maildrop is in use.
func importRetry(ctx context.Context, opts Options, imp store.Importer, user string, batch []store.ImportMessage) error {
	for n := 0; ; n++ {
		err := imp.Import(ctx, user, batch)
		if !errors.Is(err, store.ErrInUse) || n >= opts.InUseRetries {
			return err
		}
		if err := sleep(ctx, opts.InUseWait); err != nil {
			return err
		}
	}
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// Difference is one way a destination maildrop differs from its source.
type Difference struct {
	User string
	UID  string // empty for a difference of the whole maildrop
	What string // "missing in destination", "only in destination", "size 120 != 118", "checksum", "order", or an error
}

// Report is what Verify found.
type Report struct {
	Users    int          // users compared
	Messages int          // messages of the sources compared
	Diffs    []Difference // every difference; empty when the copies are exact
}

// Verify compares each user's maildrop in from and to: the same UIDLs in
// the same order, and for each the same size and the same SHA-256 of the
// stored bytes in their CRLF form (wire.CRLFReader: bare LF made CRLF, a
// last line completed), which is what RETR sends before dot-stuffing.
// Line ends are so not compared: a store may keep them as delivered
// (Maildir: the LF of a file written by an MTA) or in CRLF form
// (PostgreSQL, since its schema version 4), and a message copied from one
// to the other and back is the same message to a POP3 client, as its
// unchanged size says. It reports every difference it finds; its error is
// for a canceled ctx only (a maildrop that cannot be read is a
// Difference).
//
// Each maildrop is opened (its POP3 lock taken) while its messages are
// read and hashed: run Verify after the cut-over, or expect [IN-USE] for
// that user meanwhile.
func Verify(ctx context.Context, from, to store.Store, users []string) (Report, error) {
	var rep Report
	for _, user := range users {
		if err := ctx.Err(); err != nil {
			return rep, err
		}
		rep.Users++
		src, err := digest(ctx, from, user)
		if err != nil {
			rep.Diffs = append(rep.Diffs, Difference{User: user, What: "reading the source: " + err.Error()})
			continue
		}
		rep.Messages += len(src)
		dst, err := digest(ctx, to, user)
		if err != nil {
			rep.Diffs = append(rep.Diffs, Difference{User: user, What: "reading the destination: " + err.Error()})
			continue
		}
		rep.Diffs = append(rep.Diffs, compare(user, src, dst)...)
	}
	return rep, nil
}

// sum is one message as Verify sees it.
type sum struct {
	uid  string
	size int64
	hash [sha256.Size]byte
}

func digest(ctx context.Context, s store.Store, user string) ([]sum, error) {
	md, err := s.Open(ctx, user)
	if err != nil {
		return nil, err
	}
	defer md.Close()
	msgs := md.Messages()
	out := make([]sum, len(msgs))
	in, buf := make([]byte, 32<<10), make([]byte, 32<<10)
	for i, m := range msgs {
		rc, err := md.Open(ctx, i)
		if err != nil {
			return nil, fmt.Errorf("message %q: %w", m.UID, err)
		}
		h := sha256.New()
		_, err = io.CopyBuffer(h, wire.NewCRLFReader(rc, in), buf)
		rc.Close()
		if err != nil {
			return nil, fmt.Errorf("message %q: %w", m.UID, err)
		}
		out[i] = sum{uid: m.UID, size: m.Size, hash: [sha256.Size]byte(h.Sum(nil))}
	}
	return out, nil
}

func compare(user string, src, dst []sum) []Difference {
	var diffs []Difference
	at := make(map[string]int, len(dst))
	for i, d := range dst {
		at[d.uid] = i
	}
	last := -1
	inOrder := true
	for _, s := range src {
		i, ok := at[s.uid]
		if !ok {
			diffs = append(diffs, Difference{User: user, UID: s.uid, What: "missing in destination"})
			continue
		}
		delete(at, s.uid)
		d := dst[i]
		if d.size != s.size {
			diffs = append(diffs, Difference{User: user, UID: s.uid, What: fmt.Sprintf("size %d in source, %d in destination", s.size, d.size)})
		}
		if d.hash != s.hash {
			diffs = append(diffs, Difference{User: user, UID: s.uid, What: "checksum (SHA-256) differs"})
		}
		if i < last {
			inOrder = false
		}
		last = i
	}
	for _, d := range dst {
		if _, ok := at[d.uid]; ok {
			diffs = append(diffs, Difference{User: user, UID: d.uid, What: "only in destination"})
		}
	}
	if !inOrder {
		diffs = append(diffs, Difference{User: user, What: "messages in another order"})
	}
	return diffs
}
