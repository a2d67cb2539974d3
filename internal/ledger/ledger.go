// Package ledger keeps, beside each maildrop, what POP3 itself has no
// place for: per-device views of one maildrop, the time each message was
// first retrieved (for expiry after retrieval, RFC 2449 §6.7), and a
// bounded journal of who retrieved or deleted which message, from which
// detects re-download storms. Plain POP3 clients see nothing new on the
// wire (RFC 1939 is unchanged); a device is named in the login name.
//
// It works on any store whose Maildrop implements store.StateFiles (the
// Maildir store keeps postoffice-devices and postoffice-history in the
// Maildir, the PostgreSQL store rows of maildrop_state; mbox has none);
// every read and write happens under the maildrop's lock, except the
// administrator's read of the journal (store.StateReader).
//
// Implementation notes (invariants):
//   - A device's DELE hides the message from that device only. A message
//     leaves the store when every active device has deleted it, where a
//     device is active when it was used (or added) within
//     Options.DeviceIdle. The device's deletions are written durably
//     before the store removes anything, so a crash in between never
//     shows a deleted message to that device again; the removal happens
//     at the next commit or sweep.
//   - Without devices there is one view, the default device "", and DELE
//     removes the message at QUIT as RFC 1939 §6 says.
//   - Expiry removes a message when its user's Policy says so, whatever
//     the devices; only a sweep (Sweep) removes for expiry, and it takes
//     the maildrop's lock, so a maildrop held by a session is skipped.
//   - A message's first complete RETR time is recorded at the end of the
//     session (Close or QUIT); a session killed before that leaves the
//     message unrecorded, so it expires later, never earlier.
//   - Journal lines are appended as they happen. On a Maildir each is one
//     write(2) to the journal, kept open for the session, so a kill -9
//     keeps them (they are in the kernel's page cache); they are not
//     fsynced: the journal is a record for the administrator, not mail,
//     and an fsync (plus one of the directory) per session would cost
//     every retrieving session two disk flushes, so a power loss may cost
//     its last seconds. On PostgreSQL they wait in the session for its
//     next write or its release, at most a second, and then go in one
//     transaction (one per line cost as much as the mail), so a kill -9
//     of the server may lose the last second of them. Readers skip a torn
//     last line.
package ledger

import (
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"
)

// Options configure a Ledger. The zero value keeps history and detects
// storms, with devices off.
type Options struct {
	// Devices enables per-device views ([devices] enabled).
	Devices bool
	// DeviceIdle is how long a device may go unused before it stops
	// holding messages back; default 30 days.
	DeviceIdle time.Duration
	// HistoryMax bounds the journal of one maildrop (entries kept);
	// default 10000. Negative keeps no journal.
	HistoryMax int
	// HistoryRetention drops journal entries older than this; default 90
	// days.
	HistoryRetention time.Duration
	// StormThreshold is how many messages one session must retrieve again
	// (completely retrieved by the same device in an earlier session) to
	// count as a re-download storm; default 20.
	StormThreshold int
	// Now is the clock; default time.Now.
	Now func() time.Time
	// Logger; default discard.
	Logger *slog.Logger
	// OnStorm, if set, is called for each storm detected (metrics).
	OnStorm func()
	// OnRemoved, if set, is called with the number of messages removed
	// and why: "expire_retrieval", "expire_arrival" or "devices" (every
	// active device deleted it).
	OnRemoved func(reason string, n int)
}

// Ledger opens views of maildrops. It has no mutable state of its own.
type Ledger struct{ opts Options }

// New returns a Ledger.
func New(opts Options) *Ledger {
	if opts.DeviceIdle <= 0 {
		opts.DeviceIdle = 30 * 24 * time.Hour
	}
	if opts.HistoryMax == 0 {
		opts.HistoryMax = 10000
	}
	if opts.HistoryRetention <= 0 {
		opts.HistoryRetention = 90 * 24 * time.Hour
	}
	if opts.StormThreshold <= 0 {
		opts.StormThreshold = 20
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return &Ledger{opts: opts}
}

// Devices reports whether per-device views are on.
func (l *Ledger) Devices() bool { return l.opts.Devices }

// Policy is an expiry policy: a message is removed Retrieval after its
// first complete RETR, and/or Arrival after it arrived. An unset limit
// (Has... false) never removes.
type Policy struct {
	Retrieval, Arrival       time.Duration
	HasRetrieval, HasArrival bool
}

// Capa is the CAPA EXPIRE value (RFC 2449 §6.7) of the policy: the
// minimum number of whole days a retrieved message stays, or "NEVER".
// Both limits count: a message retrieved on arrival is gone Arrival after
// it, so the value is the smaller of the two, rounded down, so that what
// the client reads is never longer than what happens.
func (p Policy) Capa() string {
	if !p.HasRetrieval && !p.HasArrival {
		return "NEVER"
	}
	d := time.Duration(1<<63 - 1)
	if p.HasRetrieval {
		d = p.Retrieval
	}
	if p.HasArrival && p.Arrival < d {
		d = p.Arrival
	}
	return strconv.FormatInt(int64(d/(24*time.Hour)), 10)
}

// ParseAge reads an age as configured: whole days ("30d"), weeks ("2w"),
// a Go duration ("36h"), or "never" (ok false, no error).
func ParseAge(s string) (d time.Duration, ok bool, err error) {
	s = strings.TrimSpace(s)
	if strings.EqualFold(s, "never") {
		return 0, false, nil
	}
	bad := fmt.Errorf("%q is not an age: write 30d, 2w, 36h or never", s)
	if s == "" {
		return 0, false, bad
	}
	switch unit := s[len(s)-1]; unit {
	case 'd', 'w':
		n, err := strconv.Atoi(s[:len(s)-1])
		if err != nil || n < 0 || n > 100*365 {
			return 0, false, bad
		}
		d = time.Duration(n) * 24 * time.Hour
		if unit == 'w' {
			d *= 7
		}
	default:
		if d, err = time.ParseDuration(s); err != nil || d < 0 {
			return 0, false, bad
		}
	}
	return d, true, nil
}

// maxDeviceName bounds a device name.
const maxDeviceName = 32

// ValidDevice reports whether name can name a device: 1-32 letters,
// digits, '.', '_' or '-'.
func ValidDevice(name string) bool {
	if name == "" || len(name) > maxDeviceName {
		return false
	}
	for _, c := range name {
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '.', c == '_', c == '-':
		default:
			return false
		}
	}
	return true
}

// SplitDevice splits a login name "alice@example.org#phone" into the user
// and the device (lower-cased). ok is false when the name has no '#'
// followed by a valid device name; a '#' inside a local part
// ("a#b@example.org") is left alone, since the device comes after the
// whole address.
func SplitDevice(login string) (user, device string, ok bool) {
	i := strings.LastIndexByte(login, '#')
	if i <= 0 || !ValidDevice(login[i+1:]) {
		return login, "", false
	}
	return login[:i], strings.ToLower(login[i+1:]), true
}

// ErrNoState is returned when devices are on and the store cannot keep
// the views.
var ErrNoState = errors.New("ledger: the store cannot keep per-device state")
