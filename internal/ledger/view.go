package ledger

import (
	"context"
	"errors"
	"io"
	"sync"
	"time"

	"github.com/postoffice-mail/postoffice/internal/store"
)

// Session is who opens a view: what the history records of it.
type Session struct {
	User   string
	Device string // "" for the default device
	Remote string // client address without port
	TLS    string // TLS version ("TLS 1.3"), "" for plaintext
	// Mech is the login method: USER, APOP, the SASL mechanism, RPOP or
	// KPOP.
	//
	// Nothing names the client program: POP3 has no command in which a
	// client names itself (IMAP's ID, RFC 2971, has no POP3 counterpart;
	// RFC 2449's IMPLEMENTATION capability is the server's), and guessing
	// it from the order of its first commands would be a guess written
	// down as a fact. The device, the address, the TLS version and the
	// method are what the server knows.
	Mech   string
	Policy Policy
}

// View is one session's view of a maildrop: a store.Maildrop that shows
// the device's messages, records retrievals and deletions, and applies
// the device rules at Commit.
type View struct {
	l    *Ledger
	md   store.Maildrop
	sf   store.StateFiles // nil when the store keeps no state
	sess Session

	mu      sync.Mutex
	st      *state
	dev     *device
	vis     []int // view index -> maildrop index
	msgs    []store.Message
	dirty   bool
	redl    int             // messages retrieved again in this session
	retr    map[string]bool // retrieved in this session; nil until the first
	evs     []Event         // journal lines not yet appended (append failed)
	written bool            // journal lines appended in this session
	// appended counts them. The line count in the state only decides when
	// the journal is compacted, so it alone makes the state worth writing
	// only once it has grown by a tenth of history.max_entries: a
	// retrieving session that changes nothing else then costs no state
	// rewrite (a temporary file, two fsyncs and a rename).
	appended int
	closed   bool
}

var _ store.Maildrop = (*View)(nil)

// Open makes the view of md for sess. Without store.StateFiles, md is
// served as it is (no history, no expiry record), unless devices are on,
// which is ErrNoState.
func (l *Ledger) Open(md store.Maildrop, sess Session) (*View, error) {
	v := &View{l: l, md: md, sess: sess}
	all := md.Messages()
	sf, ok := md.(store.StateFiles)
	if !ok {
		if l.opts.Devices && sess.Device != "" {
			return nil, ErrNoState
		}
		v.msgs = all
		return v, nil
	}
	v.sf = sf
	st, err := loadState(sf)
	if err != nil {
		return nil, err
	}
	v.st = st
	now := l.opts.Now()
	name := sess.Device
	if !l.opts.Devices {
		name = ""
	}
	dev, made := st.device(name, now)
	v.dev = dev
	if made || now.Unix()-dev.LastUsed >= 3600 {
		// Kept to the hour: a write per login would cost an fsync each.
		dev.LastUsed = now.Unix()
		v.dirty = true
	}
	if !l.opts.Devices || len(dev.deleted) == 0 {
		v.msgs = all
		return v, nil
	}
	for i, m := range all {
		if !dev.deleted[m.UID] {
			v.vis = append(v.vis, i)
			v.msgs = append(v.msgs, m)
		}
	}
	return v, nil
}

// index maps a view index to the maildrop's.
func (v *View) index(i int) int {
	if v.vis == nil {
		return i
	}
	return v.vis[i]
}

// Messages implements store.Maildrop: the device's messages.
func (v *View) Messages() []store.Message { return v.msgs }

// Open implements store.Maildrop.
func (v *View) Open(ctx context.Context, i int) (io.ReadCloser, error) {
	if i < 0 || i >= len(v.msgs) {
		return nil, errors.New("ledger: no such message")
	}
	return v.md.Open(ctx, v.index(i))
}

// Expire is the CAPA EXPIRE value for this session's user.
func (v *View) Expire() string { return v.sess.Policy.Capa() }

// event is an Event of this session.
func (v *View) event(action, uidl string, t time.Time) Event {
	s := v.sess
	return Event{Time: t.UTC().Truncate(time.Second), Action: action, UIDL: uidl, User: s.User, Device: s.Device,
		Remote: s.Remote, TLS: s.TLS, Mech: s.Mech}
}

// record appends events to the journal now; on failure they wait for the
// next try (at most a session's worth).
func (v *View) record(evs ...Event) {
	if v.sf == nil || v.l.opts.HistoryMax < 0 {
		return
	}
	v.evs = append(v.evs, evs...)
	if err := appendEvents(v.sf, v.evs); err != nil {
		v.l.opts.Logger.Warn("ledger: history not written", "user", v.sess.User, "err", err)
		return
	}
	v.st.HistoryLines += len(v.evs)
	v.appended += len(v.evs)
	v.evs = v.evs[:0]
	v.written = true
}

// Idle implements store.Idler when the maildrop under the view does.
func (v *View) Idle() {
	if i, ok := v.md.(store.Idler); ok {
		i.Idle()
	}
}

// Retrieved records that message i was sent whole by RETR (the engine
// calls it; pop3server.RetrievalObserver).
func (v *View) Retrieved(i int) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.st == nil || v.closed || i < 0 || i >= len(v.msgs) {
		return
	}
	now := v.l.opts.Now()
	u := v.msgs[i].UID
	if _, ok := v.st.Retrieved[u]; !ok {
		v.st.Retrieved[u] = now.Unix()
		v.dirty = true
	}
	switch {
	case v.retr[u]:
		// A second RETR in one session is not a re-download storm.
	case v.dev.seen[u]:
		v.redl++
	default:
		v.dev.seen[u] = true
		v.dirty = true
	}
	if v.retr == nil {
		// Made at the first RETR: a session that retrieves nothing (a
		// login, an idle session) holds none.
		v.retr = map[string]bool{}
	}
	v.retr[u] = true
	v.record(v.event("retr", u, now))
}

// Commit implements store.Maildrop: the RFC 1939 §6 UPDATE state. With
// devices on, the messages are hidden from this device, and removed from
// the store only when every active device has deleted them; the
// device's deletions are made durable first.
func (v *View) Commit(ctx context.Context, deleted []int) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.st == nil {
		idx := make([]int, len(deleted))
		for k, i := range deleted {
			idx[k] = v.index(i)
		}
		return v.md.Commit(ctx, idx)
	}
	now := v.l.opts.Now()
	all := v.md.Messages()
	var evs []Event
	remove := map[int]string{} // maildrop index -> reason
	for _, i := range deleted {
		if i < 0 || i >= len(v.msgs) {
			return errors.New("ledger: commit: no such message")
		}
		u := v.msgs[i].UID
		evs = append(evs, v.event("dele", u, now))
		if v.l.opts.Devices {
			v.dev.deleted[u] = true
		} else {
			remove[v.index(i)] = "dele"
		}
	}
	if v.l.opts.Devices {
		for i, n := range v.l.devicesDone(v.st, all, now) {
			remove[i] = n
		}
		v.dirty = true
		// The device's deletions first: a crash after this and before the
		// removal below still hides the messages from this device.
		if err := v.st.save(v.sf); err != nil {
			return err
		}
		v.dirty = false
	}
	v.record(evs...)
	if err := v.l.removeIndexes(ctx, v.md, v.sf, v.st, remove, v.sess, now); err != nil {
		return err
	}
	return nil
}

// devicesDone returns the messages of all that every active device of st
// has deleted.
func (l *Ledger) devicesDone(st *state, all []store.Message, now time.Time) map[int]string {
	var active []*device
	for _, d := range st.Devices {
		if d.active(now, l.opts.DeviceIdle) {
			active = append(active, d)
		}
	}
	out := map[int]string{}
	if len(active) == 0 {
		return out
	}
	for i, m := range all {
		done := true
		for _, d := range active {
			if !d.deleted[m.UID] {
				done = false
				break
			}
		}
		if done {
			out[i] = "devices"
		}
	}
	return out
}

// removeIndexes commits the removal of remove (maildrop index -> reason)
// and forgets them in st; reasons other than "dele" are journaled and
// counted.
func (l *Ledger) removeIndexes(ctx context.Context, md store.Maildrop, sf store.StateFiles, st *state, remove map[int]string, sess Session, now time.Time) error {
	all := md.Messages()
	idx := make([]int, 0, len(remove))
	for i := range all {
		if _, ok := remove[i]; ok {
			idx = append(idx, i)
		}
	}
	err := md.Commit(ctx, idx)
	if err != nil {
		return err
	}
	live := make(map[string]bool, len(all))
	for i, m := range all {
		if _, ok := remove[i]; !ok {
			live[m.UID] = true
		}
	}
	st.prune(live)
	var evs []Event
	counts := map[string]int{}
	for _, i := range idx {
		r := remove[i]
		if r == "dele" {
			continue
		}
		counts[r]++
		e := Event{Time: now.UTC().Truncate(time.Second), UIDL: all[i].UID, User: sess.User, Action: "remove", Reason: r}
		if r != "devices" {
			e.Action = "expire"
		}
		evs = append(evs, e)
	}
	if len(evs) > 0 && l.opts.HistoryMax >= 0 {
		if err := appendEvents(sf, evs); err == nil {
			st.HistoryLines += len(evs)
		}
	}
	for r, n := range counts {
		l.opts.Logger.Info("ledger: messages removed", "user", sess.User, "reason", r, "count", n)
		if l.opts.OnRemoved != nil {
			l.opts.OnRemoved(r, n)
		}
	}
	if len(idx) > 0 {
		// The removals are durable; the state only forgets their UIDLs,
		// which the next open prunes anyway. Failing here (a full disk)
		// would tell the client its deletions did not happen.
		if err := st.save(sf); err != nil {
			l.opts.Logger.Warn("ledger: device state not updated after removal", "user", sess.User, "err", err)
		}
	}
	return nil
}

// Close implements store.Maildrop: it writes what the session changed,
// reports a re-download storm, and releases the maildrop.
func (v *View) Close() error {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.closed {
		return nil
	}
	v.closed = true
	if v.st != nil {
		now := v.l.opts.Now()
		if v.redl >= v.l.opts.StormThreshold {
			v.storm(now)
		}
		if v.l.opts.HistoryMax > 0 && v.st.HistoryLines > 2*v.l.opts.HistoryMax {
			if err := v.l.compact(v.sf, now); err != nil {
				v.l.opts.Logger.Warn("ledger: history not compacted", "user", v.sess.User, "err", err)
			} else {
				v.st.HistoryLines = 0
				v.dirty = true
			}
		}
		if hm := v.l.opts.HistoryMax; hm > 0 && v.appended >= max(1, hm/10) {
			v.dirty = true
		}
		if v.dirty {
			if err := v.st.save(v.sf); err != nil {
				v.l.opts.Logger.Warn("ledger: device state not written", "user", v.sess.User, "err", err)
			}
		}
	}
	return v.md.Close()
}

// storm reports a re-download storm: a device retrieved again, in one
// session, many messages it had retrieved whole before. The usual causes
// are in docs/devices.md.
func (v *View) storm(now time.Time) {
	s := v.sess
	v.l.opts.Logger.Warn("ledger: re-download storm: a client retrieved again messages it already had",
		"user", s.User, "device", s.Device, "remote", s.Remote, "tls", s.TLS, "mech", s.Mech, "count", v.redl)
	e := v.event("storm", "", now)
	e.Count = v.redl
	v.record(e)
	if v.l.opts.OnStorm != nil {
		v.l.opts.OnStorm()
	}
}
