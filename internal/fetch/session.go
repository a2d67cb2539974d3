package fetch

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/postoffice-mail/postoffice/pop3"
)

// session is one run of one account: the POP3 connection, the target, the
// UIDL state, and what the run has done so far. Its methods are the steps
// of a run, in their order: connect (and log in), list, then for each
// batch of messages pick, fetchBatch (deliver each) and commit (record
// and dele), and last quit.
//
// The order is what makes a kill at any instant lose nothing: a message is
// delivered durably before its UIDL is recorded durably, and recorded
// before its DELE, which the server carries out only at QUIT (RFC 1939 §6).
// A run killed between delivery and record left a copy in the target, which
// the next run finds (target.Copies) instead of delivering it again.
type session struct {
	a    *Account
	opts Options
	tgt  target
	st   *State
	c    *pop3.Client
	res  Result

	// Set by list.
	noUIDL   bool              // the server has no UIDL: nothing is recorded
	uids     []pop3.UIDListing // the listing; without UIDL, numbers only
	sizes    map[int]int64     // LIST sizes by message number
	onServer map[string]bool   // the UIDLs listed

	seen    map[string]bool // UIDLs handled in this run
	deleted map[string]bool // UIDLs DELEd in this run
	maxAge  time.Duration   // delete_after_days; 0: never
}

// serverMessage is one message on the server, as the run handles it.
type serverMessage struct {
	pop3.UIDListing
	size     int64  // from LIST
	top      bool   // fetched in part (TOP n 0): never DELEd
	digest   string // header digest (headerHash), once known
	held     bool   // the target holds it already (see held)
	done     bool   // delivered (or held) in this run, to be recorded
	recorded bool   // recorded already (a target that cannot group)
}

// rec is the state record of m, delivered at t.
func (m *serverMessage) rec(t time.Time) Rec {
	return Rec{Time: t, Size: m.size, Digest: m.digest, Partial: m.top}
}

// record records message m, delivered, durably in the state; without
// UIDLs there is nothing to record it by.
func (s *session) record(m *serverMessage) error {
	if s.noUIDL {
		return nil
	}
	if err := s.st.Record(m.UID, m.rec(s.opts.Now())); err != nil {
		return err
	}
	m.recorded = true
	return nil
}

func run(ctx context.Context, a *Account, opts Options) (Result, error) {
	s := &session{
		a:       a,
		opts:    opts,
		deleted: make(map[string]bool),
		maxAge:  time.Duration(a.DeleteAfterDays) * 24 * time.Hour,
	}
	defer s.close()
	if err := s.connect(ctx); err != nil {
		return s.res, err
	}
	if err := s.list(ctx); err != nil {
		s.quitUnchanged(ctx)
		return s.res, err
	}
	if opts.ResetState {
		return s.res, s.reset(ctx)
	}
	err := s.fetchAll(ctx)
	s.res.Syncs = s.st.syncs
	if m, ok := s.tgt.(*maildirTarget); ok {
		s.res.Syncs += m.syncs
	}
	return s.res, s.quit(ctx, err)
}

// quitUnchanged ends a session stopped before any DELE (a refused listing,
// a server whose UIDLs changed) with QUIT, which then removes nothing (RFC
// 1939 §6) and makes the server free the maildrop before its reply: after
// a bare close it stays locked until the server sees the connection end,
// and a run started at once would find it in use. Errors are ignored: the
// session is being given up anyway.
func (s *session) quitUnchanged(ctx context.Context) {
	if s.c == nil || len(s.deleted) > 0 {
		return
	}
	qctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	s.c.Quit(qctx)
}

// connect opens the target and the state, gets the secret, connects and
// logs in. close closes what it opened, whatever step failed.
func (s *session) connect(ctx context.Context) error {
	tgt, err := newTarget(s.a, s.opts.Timeout)
	if err != nil {
		return err
	}
	s.tgt = tgt
	st, err := OpenState(s.a.StateDir, s.a.Name)
	if err != nil {
		return err
	}
	s.st = st
	secret, err := password(ctx, s.a)
	if err != nil {
		return err
	}
	c, err := dial(ctx, s.a, s.opts)
	if err != nil {
		return err
	}
	s.c = c
	return authenticate(ctx, c, s.a, secret)
}

// close closes the connection, the state and the target, in that order.
func (s *session) close() {
	if s.c != nil {
		s.c.Close()
	}
	if s.st != nil {
		s.st.Close()
	}
	if c, ok := s.tgt.(io.Closer); ok {
		c.Close()
	}
}

// list reads the UIDL and LIST listings. A server without UIDL (it is
// optional, RFC 1939 §7) serves only an account with keep = false, whose
// messages are deleted once fetched: with keep, each run would fetch them
// all again.
func (s *session) list(ctx context.Context) error {
	uids, err := s.c.UIDL(ctx)
	if err != nil {
		var pe *pop3.Error
		if !errors.As(err, &pe) {
			return err
		}
		if s.a.KeepOnServer() {
			return &Error{Code: ExitDataErr, Err: fmt.Errorf("fetch: account %s: server has no UIDL (%v): it works only with keep = false", s.a.Name, pe)}
		}
		s.noUIDL = true
	}
	list, err := s.c.List(ctx)
	if err != nil {
		return err
	}
	s.sizes = make(map[int]int64, len(list))
	for _, m := range list {
		s.sizes[m.Num] = m.Size
	}
	if s.noUIDL {
		uids = make([]pop3.UIDListing, len(list))
		for i, m := range list {
			uids[i] = pop3.UIDListing{Num: m.Num}
		}
	}
	s.uids = uids
	s.onServer = make(map[string]bool, len(uids))
	for _, u := range uids {
		s.onServer[u.UID] = true
	}
	return s.checkMigration()
}

// checkMigration stops the run when the server shows none of the UIDLs
// the state knows: a server whose UIDLs changed (a migration) would
// otherwise have all its mail fetched again.
func (s *session) checkMigration() error {
	if s.noUIDL || !s.a.KeepOnServer() || s.opts.ResetState || s.st.Len() <= MinMigrationState || len(s.uids) == 0 {
		return nil
	}
	for _, u := range s.uids {
		if s.st.Known(u.UID) {
			return nil
		}
	}
	return &Error{Code: ExitDataErr, Err: fmt.Errorf("fetch: account %s: server UIDLs changed: none of the %d messages on the server is among the %d recorded; run with --account %s --reset-state to accept them without downloading", s.a.Name, len(s.uids), s.st.Len(), s.a.Name)}
}

// reset carries out Options.ResetState and ends the session: the state is
// forgotten and, with keep, every message on the server is recorded as
// retrieved without being downloaded.
func (s *session) reset(ctx context.Context) error {
	s.st.Reset()
	if s.a.KeepOnServer() {
		// Accepted as retrieved without download: whole, the size from
		// LIST, no header digest.
		now := s.opts.Now()
		for _, u := range s.uids {
			s.st.entries[u.UID] = entry{t: now.Unix(), size: s.sizes[u.Num]}
		}
	}
	if err := s.st.Compact(nil); err != nil {
		return err
	}
	return s.c.Quit(ctx)
}

// A batch is at most maxBatch messages (the pipeline window of package
// pop3) or, past maxBatchBytes of LIST sizes, fewer: what a kill can make
// the next run fetch again, and what a Maildir target holds written but not
// yet synced.
const (
	maxBatch      = 64
	maxBatchBytes = 32 << 20
)

// fetchAll handles the messages of the listing in batches and stops at
// the first error. For each message, pick decides whether it is fetched
// and held whether the target has it already (both may need a command of
// their own, TOP or DELE, so they run before the batch's RETRs go out);
// then fetchBatch retrieves the batch pipelined and commits it.
func (s *session) fetchAll(ctx context.Context) error {
	if s.opts.Progress != nil && len(s.uids) > 0 {
		defer fmt.Fprintln(s.opts.Progress)
	}
	s.seen = make(map[string]bool, len(s.uids))
	var batch []*serverMessage
	var size int64
	for i, u := range s.uids {
		if s.opts.Progress != nil {
			fmt.Fprintf(s.opts.Progress, "\r%s: %d/%d messages", s.a.Name, i+1, len(s.uids))
		}
		m := &serverMessage{UIDListing: u, size: s.sizes[u.Num]}
		ok, err := s.pick(ctx, m)
		if err == nil && ok {
			m.held, err = s.held(ctx, m)
		}
		if err != nil {
			// Nothing of the batch was asked for yet: nothing is lost.
			return err
		}
		if !ok {
			continue
		}
		batch = append(batch, m)
		size += m.size
		if len(batch) >= maxBatch || size >= maxBatchBytes {
			if err := s.fetchBatch(ctx, batch); err != nil {
				return err
			}
			batch, size = batch[:0], 0
		}
	}
	return s.fetchBatch(ctx, batch)
}

// fetchBatch retrieves the messages of batch the target does not hold
// (RETR, or TOP n 0 when m.top) with pipelined commands, delivers each to
// the target, then commits the batch (see commit), also the part
// delivered before an error stopped it.
func (s *session) fetchBatch(ctx context.Context, batch []*serverMessage) error {
	if len(batch) == 0 {
		return nil
	}
	var reqs []pop3.BodyRequest
	var idx []int
	for i, m := range batch {
		m.done = m.held
		if m.held {
			continue
		}
		lines := -1
		if m.top {
			lines = 0
		}
		reqs = append(reqs, pop3.BodyRequest{Num: m.Num, Lines: lines})
		idx = append(idx, i)
	}
	_, grouped := s.tgt.(groupTarget)
	var err error
	if len(reqs) > 0 {
		err = s.c.RetrMany(ctx, reqs, func(k int, body io.Reader, rerr error) error {
			if rerr != nil {
				return rerr
			}
			m := batch[idx[k]]
			ok, err := s.deliver(ctx, m, body)
			m.done = ok
			if ok && err == nil && !grouped {
				// Delivered durably to a target that cannot tell a
				// repeated delivery (MDA, LMTP, SMTP, mbox): recorded
				// at once, so a kill repeats at most this message.
				err = s.record(m)
			}
			return err
		})
	}
	if cerr := s.commit(ctx, batch); err == nil {
		err = cerr
	}
	return err
}

// commit makes the messages of batch delivered in this run durable in the
// target (a group commit: one sync for the batch where the target can,
// see groupTarget), then records them all in the state with one fsync,
// then DELEs those the policy deletes: a message is durable before it is
// recorded and recorded before its DELE, as for one message at a time. A
// message delivered in part (TOP) is never DELEd, as its copy on the
// server is the only whole one.
func (s *session) commit(ctx context.Context, batch []*serverMessage) error {
	if g, ok := s.tgt.(groupTarget); ok {
		if err := g.Commit(); err != nil {
			return err
		}
	}
	var recs []stateRecord
	var dele []pop3.UIDListing
	for _, m := range batch {
		if !m.done {
			continue
		}
		if !s.noUIDL && !m.recorded {
			recs = append(recs, stateRecord{uidl: m.UID, rec: m.rec(s.opts.Now())})
		}
		if !s.a.KeepOnServer() && !m.top {
			dele = append(dele, m.UIDListing)
		}
	}
	if err := s.st.RecordMany(recs); err != nil {
		return err
	}
	return s.deleMany(ctx, dele)
}

// pick reports whether message m is to be fetched, and sets m.top when it
// is to be fetched in part (headers_only, or oversize = "truncate"). A
// message the state records is not fetched again, and is DELEd here when
// the policy says it is due (see recorded), unless the server gave its
// UIDL to another message. A message over max_size is skipped with
// oversize = "skip", and always on a server without UIDLs.
func (s *session) pick(ctx context.Context, m *serverMessage) (bool, error) {
	if !s.noUIDL {
		if s.seen[m.UID] {
			// RFC 1939 §7 says UIDLs are unique; a server that repeats
			// one in a listing gets only the first message fetched, and
			// the others are never deleted.
			s.opts.Logger.Warn("duplicate uidl on server", "account", s.a.Name, "msg", m.Num)
			return false, nil
		}
		s.seen[m.UID] = true
		if rec, ok := s.st.Get(m.UID); ok {
			same, due, err := s.recorded(ctx, m, rec)
			if err != nil {
				return false, err
			}
			if same && due {
				if err := s.dele(ctx, m.UIDListing); err != nil {
					return false, err
				}
			}
			if same {
				return false, nil
			}
			// The server gave a new message the UIDL of one recorded
			// in an earlier session: fetch it as new.
			s.opts.Logger.Warn("uidl reused by the server for another message", "account", s.a.Name, "msg", m.Num, "uidl", m.UID)
		}
	}
	m.top = s.a.HeadersOnly
	if s.a.MaxSize > 0 && m.size > s.a.MaxSize {
		if s.a.Oversize == "skip" || s.noUIDL {
			// Without UIDLs a truncated copy could not be remembered:
			// it would come again each run, and the message could never
			// be deleted. Left on the server.
			s.res.Skipped++
			return false, nil
		}
		m.top = true
	}
	return true, nil
}

// recorded handles message m, which the state records (rec) from an
// earlier session. It reports whether the message on the server is the
// recorded one (then the caller is done with it, after a DELE if due says
// the policy wants one) or another one the server gave the same UIDL,
// which the caller fetches as new; m.digest is the message's header digest
// when TOP n 0 was asked for it.
//
// RFC 1939 §7 says a server should not reuse a UIDL, but some do (a
// mailbox recreated, UIDLs made of message numbers). Telling the two apart
// costs a TOP n 0, so it is asked only where a mistake would cost mail:
// before a DELE, and when LIST gives another size than the recorded one.
// A leave-on-server account with thousands of messages thus costs no
// command per message and run. Where the record has no digest (an older
// version's record, or one accepted by --reset-state), the size is all
// there is to compare: a different size is another message (a duplicate
// at worst), the same size is taken as the same message, as older versions
// took any record.
//
// A message recorded as delivered in part (TOP) is never DELEd: the copy
// on the server is its only whole one. An older version's record does not
// say; it is taken as partial when the account's policy fetches a message
// of this size in part, as the older version would have.
func (s *session) recorded(ctx context.Context, m *serverMessage, rec Rec) (same, due bool, err error) {
	a, size, now := s.a, m.size, s.opts.Now()
	partial := rec.Partial || (rec.Legacy && a.partialFetch(size))
	due = !rec.Rejected && !partial && (!a.KeepOnServer() || (s.maxAge > 0 && now.Sub(rec.Time) >= s.maxAge))
	sizeDiffers := rec.Size >= 0 && rec.Size != size
	same = true
	switch {
	case !due && !sizeDiffers:
	case rec.Digest != "" && !rec.Rejected:
		if m.digest, err = topDigest(ctx, s.c, m.Num); err != nil {
			return false, false, err
		}
		same = m.digest == rec.Digest
		if same && sizeDiffers {
			// The same message (a server whose sizes drift): keep the
			// size LIST gives now, so the next run need not ask again.
			rec.Size = size
			if err := s.st.Record(m.UID, rec); err != nil {
				return false, false, err
			}
		}
	default:
		same = !sizeDiffers
	}
	return same, due, nil
}

// held reports whether the target holds message m already: a copy with
// this UIDL is this message delivered by a run killed before it recorded
// it, or another message under a reused UIDL, and only the header tells
// (TOP n 0, asked only when there is such a copy).
func (s *session) held(ctx context.Context, m *serverMessage) (bool, error) {
	copies, err := s.tgt.Copies(m.UID)
	if err != nil || len(copies) == 0 {
		return false, err
	}
	if m.digest == "" {
		if m.digest, err = topDigest(ctx, s.c, m.Num); err != nil {
			return false, err
		}
	}
	return slices.Contains(copies, m.digest), nil
}

// deliver delivers message m, read from body, to the target: staged for
// the batch's commit where the target groups its syncs, durably
// otherwise. It reports false when the target refused the message for
// good: that is recorded as rejected, so it is not sent again each run,
// and the message is never deleted, as the copy on the server is the only
// one.
func (s *session) deliver(ctx context.Context, m *serverMessage, body io.Reader) (bool, error) {
	hh := newHeaderHash()
	tee := io.TeeReader(body, hh)
	var err error
	if g, ok := s.tgt.(groupTarget); ok {
		err = g.Stage(ctx, m.UID, tee)
	} else {
		err = s.tgt.Deliver(ctx, m.UID, tee)
	}
	if err == nil {
		// What the target did not read (an MDA that stops early) still
		// counts for the digest.
		_, err = io.Copy(io.Discard, tee)
	}
	var rej *rejectedError
	if errors.As(err, &rej) {
		s.opts.Logger.Error("message refused by target", "account", s.a.Name, "msg", m.Num, "uidl", m.UID, "err", err)
		s.res.Rejected++
		if !s.noUIDL {
			if err := s.st.Reject(m.UID, s.opts.Now(), m.size); err != nil {
				return false, err
			}
		}
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if m.digest == "" {
		m.digest = hh.Sum()
	}
	s.res.Fetched++
	return true, nil
}

// deleMany marks the messages in us deleted on the server, pipelined
// where the server allows (RFC 2449 §6.6); QUIT commits them. When any
// DELE fails none of them counts as deleted: their records stay in the
// state, so the next run confirms and DELEs them again, and the run stops.
func (s *session) deleMany(ctx context.Context, us []pop3.UIDListing) error {
	if len(us) == 0 {
		return nil
	}
	nums := make([]int, len(us))
	for i, u := range us {
		nums[i] = u.Num
	}
	if err := s.c.DeleMany(ctx, nums); err != nil {
		return err
	}
	for _, u := range us {
		s.deleted[u.UID] = true
	}
	s.res.Deleted += len(us)
	return nil
}

// dele marks message u deleted on the server; QUIT commits it.
func (s *session) dele(ctx context.Context, u pop3.UIDListing) error {
	if err := s.c.Dele(ctx, u.Num); err != nil {
		return err
	}
	s.deleted[u.UID] = true
	s.res.Deleted++
	return nil
}

// quit ends the session with QUIT, which commits the DELEs (RFC 1939 §6),
// also after runErr, the error that stopped fetchAll, if the session still
// works; then it drops from the state what is no longer on the server. It
// returns runErr first, else what failed here, else an error counting the
// messages the target refused.
func (s *session) quit(ctx context.Context, runErr error) error {
	qctx := ctx
	if runErr != nil {
		// Commit the deletions of messages already recorded; briefly.
		var cancel context.CancelFunc
		qctx, cancel = context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
	}
	quitErr := s.c.Quit(qctx)
	if quitErr != nil {
		clear(s.deleted)
	}
	if !s.noUIDL {
		// The UIDL listing was complete: entries of messages no longer on
		// the server (or deleted now) are dropped.
		if err := s.st.Compact(func(u string) bool { return s.onServer[u] && !s.deleted[u] }); err != nil && runErr == nil {
			runErr = err
		}
	}
	if runErr != nil {
		return runErr
	}
	if quitErr != nil {
		return quitErr
	}
	if s.res.Rejected > 0 {
		return &Error{Code: ExitUnavailable, Err: fmt.Errorf("fetch: account %s: %d message(s) refused for good by the target: recorded as rejected and left on the server", s.a.Name, s.res.Rejected)}
	}
	return nil
}
