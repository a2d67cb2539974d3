package ledger

import (
	"context"
	"errors"
	"maps"
	"slices"
	"time"

	"github.com/postoffice-mail/postoffice/internal/store"
)

// Removal is one message a sweep removed (or, dry, would remove).
type Removal struct {
	User   string `json:"user"`
	UIDL   string `json:"uidl"`
	Reason string `json:"reason"` // expire_retrieval, expire_arrival or devices
}

// SweepResult is what a sweep did to one maildrop.
type SweepResult struct {
	User     string
	InUse    bool // held by a session: skipped
	Removals []Removal
	Err      error
}

// Sweep applies the expiry policy (and the device rule, for messages every
// active device has deleted) to user's maildrop as if at time at. It takes
// the maildrop's lock like a session: a maildrop held by a session is
// skipped (InUse), never touched. dry reports what would go and removes
// nothing.
func (l *Ledger) Sweep(ctx context.Context, st store.Store, user string, p Policy, at time.Time, dry bool) SweepResult {
	res := SweepResult{User: user}
	md, err := st.Open(ctx, user)
	if errors.Is(err, store.ErrInUse) {
		res.InUse = true
		return res
	}
	if err != nil {
		res.Err = err
		return res
	}
	defer md.Close()
	sf, ok := md.(store.StateFiles)
	if !ok {
		res.Err = ErrNoState
		return res
	}
	s, err := loadState(sf)
	if err != nil {
		res.Err = err
		return res
	}
	all := md.Messages()
	remove := map[int]string{}
	if l.opts.Devices {
		remove = l.devicesDone(s, all, at)
	}
	arr, _ := md.(store.Arrivals)
	for i, m := range all {
		if t, ok := s.Retrieved[m.UID]; ok && p.HasRetrieval && !at.Before(time.Unix(t, 0).Add(p.Retrieval)) {
			remove[i] = "expire_retrieval"
			continue
		}
		if arr != nil && p.HasArrival {
			if t, ok := arr.Delivered(i); ok && !at.Before(t.Add(p.Arrival)) {
				remove[i] = "expire_arrival"
			}
		}
	}
	for _, i := range slices.Sorted(maps.Keys(remove)) {
		res.Removals = append(res.Removals, Removal{User: user, UIDL: all[i].UID, Reason: remove[i]})
	}
	if dry {
		return res
	}
	if err := l.removeIndexes(ctx, md, sf, s, remove, Session{User: user}, at); err != nil {
		res.Err = err
		return res
	}
	// The journal's retention is applied here too, so a maildrop nobody
	// logs in to does not keep old entries.
	if l.opts.HistoryMax > 0 {
		if err := l.compact(sf, at); err != nil {
			l.opts.Logger.Warn("ledger: history not compacted", "user", user, "err", err)
		} else if s.HistoryLines != 0 {
			s.HistoryLines = 0
			s.save(sf)
		}
	}
	return res
}

// AddDevice makes (or renews the password of) a device of user's
// maildrop and returns its password, shown once. It takes the
// maildrop's lock: store.ErrInUse while a session holds it.
func (l *Ledger) AddDevice(ctx context.Context, st store.Store, user, name string) (string, error) {
	if !ValidDevice(name) {
		return "", errors.New("ledger: a device name is 1-32 letters, digits, '.', '_' or '-'")
	}
	var pw string
	err := l.editState(ctx, st, user, func(s *state) error {
		d, _ := s.device(name, l.opts.Now())
		var stored string
		pw, stored = NewDevicePassword()
		d.Password = stored
		return nil
	})
	return pw, err
}

// RemoveDevice forgets a device: it no longer holds messages back, and
// its password stops working.
func (l *Ledger) RemoveDevice(ctx context.Context, st store.Store, user, name string) error {
	return l.editState(ctx, st, user, func(s *state) error {
		if s.Devices[name] == nil {
			return errors.New("ledger: no such device")
		}
		delete(s.Devices, name)
		return nil
	})
}

// DeviceInfo describes a device for listings.
type DeviceInfo struct {
	Name     string    `json:"name"`
	Added    time.Time `json:"added"`
	LastUsed time.Time `json:"last_used"`
	Password bool      `json:"password"`
	Active   bool      `json:"active"`
	Deleted  int       `json:"deleted"`
}

// Devices lists the devices of user's maildrop, read without the lock.
func (l *Ledger) ListDevices(ctx context.Context, st store.Store, user string) ([]DeviceInfo, error) {
	r, ok := st.(store.StateReader)
	if !ok {
		return nil, ErrNoState
	}
	data, err := r.ReadState(ctx, user, stateFile)
	if err != nil {
		return nil, err
	}
	s, err := parseState(data)
	if err != nil {
		return nil, err
	}
	now := l.opts.Now()
	var out []DeviceInfo
	for _, n := range slices.Sorted(maps.Keys(s.Devices)) {
		d := s.Devices[n]
		out = append(out, DeviceInfo{Name: n, Added: time.Unix(d.Added, 0).UTC(), LastUsed: time.Unix(d.LastUsed, 0).UTC(),
			Password: d.Password != "", Active: d.active(now, l.opts.DeviceIdle), Deleted: len(d.deleted)})
	}
	return out, nil
}

// DeviceByPassword returns the device of user whose device password is
// password, reading the state without the lock.
func (l *Ledger) DeviceByPassword(ctx context.Context, st store.Store, user, password string) (string, bool, error) {
	r, ok := st.(store.StateReader)
	if !ok {
		return "", false, nil
	}
	data, err := r.ReadState(ctx, user, stateFile)
	if err != nil || data == nil {
		return "", false, err
	}
	s, err := parseState(data)
	if err != nil {
		return "", false, err
	}
	name, ok := s.matchDevice(password)
	return name, ok, nil
}

func (l *Ledger) editState(ctx context.Context, st store.Store, user string, edit func(*state) error) error {
	md, err := st.Open(ctx, user)
	if err != nil {
		return err
	}
	defer md.Close()
	sf, ok := md.(store.StateFiles)
	if !ok {
		return ErrNoState
	}
	s, err := loadState(sf)
	if err != nil {
		return err
	}
	if err := edit(s); err != nil {
		return err
	}
	return s.save(sf)
}
