package ledger

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"time"

	"github.com/postoffice-mail/postoffice/internal/store"
)

// Event is one line of a maildrop's retrieval history.
type Event struct {
	Time time.Time `json:"time"`
	// Action is "retr" (a complete RETR), "dele" (a DELE committed at
	// QUIT), "remove" (left the store once every active device deleted
	// it), "expire" (removed by the expiry policy; Reason says which
	// limit), or "storm" (a re-download storm; Count messages).
	Action string `json:"action"`
	UIDL   string `json:"uidl,omitempty"`
	User   string `json:"user,omitempty"`
	Device string `json:"device,omitempty"`
	// Remote is the client's address; TLS the TLS version, or "" for a
	// plaintext connection; Mech the login method (see Session.Mech, and
	// why no entry names the client program).
	Remote string `json:"remote,omitempty"`
	TLS    string `json:"tls,omitempty"`
	Mech   string `json:"mech,omitempty"`
	Reason string `json:"reason,omitempty"`
	Count  int    `json:"count,omitempty"`
}

// appendEvents appends events to the journal, one JSON line each.
func appendEvents(sf store.StateFiles, evs []Event) error {
	if len(evs) == 0 {
		return nil
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	for _, e := range evs {
		if err := enc.Encode(e); err != nil {
			return err
		}
	}
	return sf.AppendState(historyFile, b.Bytes())
}

// parseHistory reads a journal, skipping lines that do not parse (a line
// torn by a crash).
func parseHistory(data []byte) []Event {
	var evs []Event
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 4096), 64<<10)
	for sc.Scan() {
		var e Event
		if json.Unmarshal(sc.Bytes(), &e) == nil && !e.Time.IsZero() && e.Action != "" {
			evs = append(evs, e)
		}
	}
	return evs
}

// compact rewrites the journal with the entries younger than the
// retention, at most HistoryMax of them (the newest).
func (l *Ledger) compact(sf store.StateFiles, now time.Time) error {
	data, err := sf.ReadState(historyFile)
	if err != nil || data == nil {
		return err
	}
	evs := l.keep(parseHistory(data), now)
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	for _, e := range evs {
		enc.Encode(e)
	}
	return sf.WriteState(historyFile, b.Bytes())
}

// keep applies the retention and the bound to evs, oldest first.
func (l *Ledger) keep(evs []Event, now time.Time) []Event {
	cut := now.Add(-l.opts.HistoryRetention)
	i := 0
	for i < len(evs) && evs[i].Time.Before(cut) {
		i++
	}
	evs = evs[i:]
	if l.opts.HistoryMax > 0 && len(evs) > l.opts.HistoryMax {
		evs = evs[len(evs)-l.opts.HistoryMax:]
	}
	return evs
}

// History returns the journal of user's maildrop from since on, oldest
// first, read without the maildrop's lock (st must be a
// store.StateReader; a session may hold the maildrop meanwhile).
func (l *Ledger) History(ctx context.Context, st store.Store, user string, since time.Time) ([]Event, error) {
	r, ok := st.(store.StateReader)
	if !ok {
		return nil, ErrNoState
	}
	data, err := r.ReadState(ctx, user, historyFile)
	if err != nil {
		return nil, err
	}
	evs := l.keep(parseHistory(data), l.opts.Now())
	out := evs[:0]
	for _, e := range evs {
		if !e.Time.Before(since) {
			out = append(out, e)
		}
	}
	return out, nil
}
