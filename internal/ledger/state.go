package ledger

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base32"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/postoffice-mail/postoffice/internal/store"
)

// Names of the state files (store.StateFiles).
const (
	stateFile   = "devices"
	historyFile = "history"
)

// state is the content of the "devices" state file: the devices of one
// maildrop and the first complete retrieval of each message.
type state struct {
	Version int `json:"version"`
	// Devices by name; "" is the default device (a login without one).
	Devices map[string]*device `json:"devices,omitempty"`
	// Retrieved is the first complete RETR of each UIDL, by any device,
	// in Unix seconds.
	Retrieved map[string]int64 `json:"retrieved,omitempty"`
	// HistoryLines counts journal lines appended since the last
	// compaction.
	HistoryLines int `json:"history_lines,omitempty"`
}

// device is one device of a maildrop.
type device struct {
	Added    int64 `json:"added"`     // Unix seconds
	LastUsed int64 `json:"last_used"` // Unix seconds of the last login
	// Password is "{SHA256}" and the base64 SHA-256 of the device
	// password, when one was made; the password is 120 random bits, so a
	// plain hash is as strong as a slow one.
	Password string `json:"password,omitempty"`
	// Deleted are the UIDLs this device deleted (hidden from it).
	Deleted []string `json:"deleted,omitempty"`
	// Seen are the UIDLs this device retrieved completely.
	Seen []string `json:"seen,omitempty"`

	deleted, seen map[string]bool
}

func (d *device) unpack() {
	d.deleted = setOf(d.Deleted)
	d.seen = setOf(d.Seen)
}

func (d *device) pack() {
	d.Deleted = slices.Sorted(maps.Keys(d.deleted))
	d.Seen = slices.Sorted(maps.Keys(d.seen))
}

func setOf(s []string) map[string]bool {
	m := make(map[string]bool, len(s))
	for _, v := range s {
		m[v] = true
	}
	return m
}

// loadState reads the state of a maildrop; a missing file is an empty
// state. A corrupt file is an error: guessing would show deleted messages
// again.
func loadState(sf store.StateFiles) (*state, error) {
	data, err := sf.ReadState(stateFile)
	if err != nil {
		return nil, err
	}
	return parseState(data)
}

func parseState(data []byte) (*state, error) {
	st, ok := fastState(data) // statefast.go: the form save writes
	if !ok {
		st = &state{}
		if len(data) > 0 {
			if err := json.Unmarshal(data, st); err != nil {
				return nil, fmt.Errorf("ledger: device state is corrupt: %w", err)
			}
		}
	}
	if st.Devices == nil {
		st.Devices = make(map[string]*device)
	}
	if st.Retrieved == nil {
		st.Retrieved = make(map[string]int64)
	}
	for _, d := range st.Devices {
		d.unpack()
	}
	return st, nil
}

func (st *state) save(sf store.StateFiles) error {
	st.Version = 1
	for _, d := range st.Devices {
		d.pack()
	}
	data, err := json.Marshal(st)
	if err != nil {
		return err
	}
	return sf.WriteState(stateFile, data)
}

// device returns the named device, made (added now) if new.
func (st *state) device(name string, now time.Time) (d *device, made bool) {
	if d = st.Devices[name]; d != nil {
		return d, false
	}
	d = &device{Added: now.Unix(), LastUsed: now.Unix(), deleted: map[string]bool{}, seen: map[string]bool{}}
	st.Devices[name] = d
	return d, true
}

// active reports whether d holds messages back at now.
func (d *device) active(now time.Time, idle time.Duration) bool {
	return now.Sub(time.Unix(max(d.LastUsed, d.Added), 0)) < idle
}

// prune forgets UIDLs that are not in live (the maildrop's messages), so
// the state stays as large as the maildrop. It reports whether anything
// changed.
func (st *state) prune(live map[string]bool) bool {
	changed := false
	for u := range st.Retrieved {
		if !live[u] {
			delete(st.Retrieved, u)
			changed = true
		}
	}
	for _, d := range st.Devices {
		for _, set := range []map[string]bool{d.deleted, d.seen} {
			for u := range set {
				if !live[u] {
					delete(set, u)
					changed = true
				}
			}
		}
	}
	return changed
}

// NewDevicePassword returns a random device password: 24 characters of
// base32, 120 bits, and the form stored.
func NewDevicePassword() (password, stored string) {
	var b [15]byte
	rand.Read(b[:])
	password = base32.StdEncoding.EncodeToString(b[:])
	return password, hashDevicePassword(password)
}

func hashDevicePassword(p string) string {
	h := sha256.Sum256([]byte(p))
	return "{SHA256}" + base64.StdEncoding.EncodeToString(h[:])
}

// matchDevice returns the device whose password is p, if any. Every
// device is compared, in constant time each.
func (st *state) matchDevice(p string) (string, bool) {
	want := []byte(hashDevicePassword(p))
	found, name := false, ""
	for _, n := range slices.Sorted(maps.Keys(st.Devices)) {
		d := st.Devices[n]
		if d.Password != "" && subtle.ConstantTimeCompare([]byte(d.Password), want) == 1 && !found {
			found, name = true, n
		}
	}
	return name, found
}
