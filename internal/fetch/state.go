package fetch

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// stateHeader is the first line of a state snapshot written now;
// stateHeaderV1 that of one written by a version that recorded only
// "<unix-seconds> <uidl>", which is still read (see Rec.Legacy). A version
// that knows only stateHeaderV1 refuses a newer snapshot as "not a state
// file" rather than misreading it.
const (
	stateHeader   = "postoffice-fetch-state 2"
	stateHeaderV1 = "postoffice-fetch-state 1"
)

// Rec is what the state knows of one message.
type Rec struct {
	// Time is the first retrieval (for a rejected message: the refusal).
	Time time.Time
	// Size is the size LIST gave when the message was recorded; -1 when
	// unknown.
	Size int64
	// Digest is the headerDigest of the message's header; "" when unknown
	// (Legacy, or accepted by --reset-state without being downloaded).
	Digest string
	// Partial reports that only part of the message was delivered (TOP:
	// headers_only, or oversize = "truncate"): its copy on the server is
	// the only whole one, so it is never deleted.
	Partial bool
	// Legacy reports a record written by a version that kept only the
	// time: Size, Digest and Partial are unknown.
	Legacy bool
	// Rejected reports a message the target refused for good (Reject).
	Rejected bool
}

// entry is a Rec as held in memory: t < 0 marks a rejected message.
type entry struct {
	t       int64
	size    int64
	digest  string
	partial bool
	legacy  bool
}

// State is the durable record of the messages an account has delivered:
// UIDL -> Rec (time of first retrieval, size, header digest, whether the
// whole message was delivered). A negative time marks a message the target
// refused for good (Reject): it is neither fetched nor deleted.
//
// On disk, in the state directory, per account NAME:
//   - NAME.state: the snapshot, a header line then one line per message,
//     "<unix-seconds> <uidl> size=<octets> [hdr=<hex digest>] whole|partial"
//     (UIDLs have no spaces, RFC 1939 §7; unknown fields are skipped, and a
//     line of only "<unix-seconds> <uidl>", as older versions wrote, is a
//     Legacy record), replaced atomically (temporary file, fsync, rename,
//     directory fsync) by Compact;
//   - NAME.journal: records appended since the snapshot, same line format,
//     each fsynced before Record returns; a later line for a UIDL replaces
//     an earlier one (a server that reused the UIDL for another message).
//     A torn last line (a kill during the write) is ignored and cut off;
//   - NAME.lock: flock'ed while the account is fetched, so two fetchers
//     never work on the same account (the kernel drops it on SIGKILL).
//
// Record (or RecordMany, for a batch) costs one small append and one fsync,
// whatever the size of the state, so every message is durable before its
// DELE without rewriting a 100,000-line file per message; Compact folds the journal into the
// snapshot once per session.
type State struct {
	dir, name string
	entries   map[string]entry
	journal   *os.File
	lock      *os.File
	syncs     int // fsyncs made, for Result.Syncs
}

// OpenState locks and loads the state of account name in dir, creating dir.
func OpenState(dir, name string) (*State, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("fetch: state: %w", err)
	}
	s := &State{dir: dir, name: name, entries: make(map[string]entry)}
	lock, err := os.OpenFile(s.path(".lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("fetch: state: %w", err)
	}
	if err := flockBriefly(lock); err != nil {
		lock.Close()
		return nil, &Error{Code: ExitTempFail, Err: fmt.Errorf("fetch: account %s is being fetched by another process", name)}
	}
	s.lock = lock
	if err := s.load(); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// flockBriefly takes the lock, retrying for up to a second: a lock just
// released can stay held for a moment by a child process forked (for an MDA
// or password_command) while the descriptor was open, until its exec closes
// it. A fetch that really runs holds it far longer.
func flockBriefly(f *os.File) error {
	var err error
	for i := 0; i < 20; i++ {
		if err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err == nil {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return err
}

func (s *State) path(ext string) string { return filepath.Join(s.dir, s.name+ext) }

func (s *State) load() error {
	f, err := os.Open(s.path(".state"))
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return fmt.Errorf("fetch: state: %w", err)
	default:
		br := bufio.NewReader(f)
		head, _ := br.ReadString('\n')
		if h := strings.TrimSpace(head); h != stateHeader && h != stateHeaderV1 {
			f.Close()
			return &Error{Code: ExitDataErr, Err: fmt.Errorf("fetch: state %s: not a state file", s.path(".state"))}
		}
		_, err := s.parse(br)
		f.Close()
		if err != nil {
			return fmt.Errorf("fetch: state %s: %w", s.path(".state"), err)
		}
	}
	j, err := os.OpenFile(s.path(".journal"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("fetch: state: %w", err)
	}
	s.journal = j
	good, err := s.parse(bufio.NewReader(j))
	if err != nil {
		return fmt.Errorf("fetch: state %s: %w", s.path(".journal"), err)
	}
	// Cut a torn record so the next append starts on a line of its own.
	if err := j.Truncate(good); err != nil {
		return fmt.Errorf("fetch: state: %w", err)
	}
	if _, err := j.Seek(good, io.SeekStart); err != nil {
		return fmt.Errorf("fetch: state: %w", err)
	}
	return nil
}

// parse reads complete record lines and returns the offset after the last
// complete line. A later record of a UIDL replaces an earlier one.
func (s *State) parse(br *bufio.Reader) (int64, error) {
	var off int64
	for {
		line, err := br.ReadBytes('\n')
		if err == io.EOF {
			return off, nil // a final line without '\n' is torn
		}
		if err != nil {
			return off, err
		}
		off += int64(len(line))
		uid, e, err := parseRecord(bytes.TrimRight(line, "\n"))
		if err != nil {
			return off, err
		}
		s.entries[uid] = e
	}
}

// parseRecord parses one record line (see State).
func parseRecord(line []byte) (string, entry, error) {
	f := strings.Fields(string(line))
	bad := fmt.Errorf("bad line %q", line)
	if len(f) < 2 {
		return "", entry{}, bad
	}
	t, err := strconv.ParseInt(f[0], 10, 64)
	if err != nil {
		return "", entry{}, bad
	}
	e := entry{t: t, size: -1, legacy: true}
	for _, field := range f[2:] {
		switch k, v, _ := strings.Cut(field, "="); k {
		case "size":
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n < 0 {
				return "", entry{}, bad
			}
			e.size = n
		case "hdr":
			e.digest = v
		case "whole":
			e.legacy = false
		case "partial":
			e.partial, e.legacy = true, false
		}
	}
	return f[1], e, nil
}

// format returns the record line of uidl (see State).
func (e entry) format(uidl string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d %s", e.t, uidl)
	if e.size >= 0 {
		fmt.Fprintf(&b, " size=%d", e.size)
	}
	if e.digest != "" {
		b.WriteString(" hdr=" + e.digest)
	}
	switch {
	case e.partial:
		b.WriteString(" partial")
	case !e.legacy:
		b.WriteString(" whole")
	}
	b.WriteByte('\n')
	return b.String()
}

// Get returns the record of uidl, delivered or rejected.
func (s *State) Get(uidl string) (Rec, bool) {
	e, ok := s.entries[uidl]
	if !ok {
		return Rec{}, false
	}
	r := Rec{Time: time.Unix(e.t, 0), Size: e.size, Digest: e.digest, Partial: e.partial, Legacy: e.legacy}
	if e.t < 0 {
		r.Time, r.Rejected = time.Unix(-e.t, 0), true
	}
	return r, true
}

// Has reports whether uidl was delivered, and when it was first retrieved.
func (s *State) Has(uidl string) (time.Time, bool) {
	e, ok := s.entries[uidl]
	if e.t < 0 {
		return time.Time{}, false // rejected
	}
	return time.Unix(e.t, 0), ok
}

// Known reports whether uidl has an entry, delivered or rejected.
func (s *State) Known(uidl string) bool {
	_, ok := s.entries[uidl]
	return ok
}

// Rejected reports whether the target refused uidl for good (see Reject).
func (s *State) Rejected(uidl string) bool { return s.entries[uidl].t < 0 }

// Reject durably notes that the target refused uidl (of the given LIST
// size) permanently, so it is neither fetched again nor deleted from the
// server. It is stored as a negative time, and replaces an earlier record
// of uidl.
func (s *State) Reject(uidl string, t time.Time, size int64) error {
	return s.append(uidl, entry{t: -max(t.Unix(), 1), size: size})
}

// Len returns the number of entries.
func (s *State) Len() int { return len(s.entries) }

// Record durably notes uidl as delivered per r (Time, Size, Digest,
// Partial; Legacy and Rejected are ignored): it returns once the record is
// on disk. It replaces an earlier record of uidl.
func (s *State) Record(uidl string, r Rec) error {
	return s.append(uidl, entry{t: r.Time.Unix(), size: r.Size, digest: r.Digest, partial: r.Partial})
}

func (s *State) append(uidl string, e entry) error {
	return s.appendMany([]stateRecord{{uidl: uidl}}, []entry{e})
}

// stateRecord is one record of a RecordMany batch.
type stateRecord struct {
	uidl string
	rec  Rec
}

// RecordMany durably notes each of recs as Record does, with one write
// and one fsync for them all (a group commit): it returns once every
// record is on disk. A kill during the write leaves a prefix of the
// records and at most one torn line, which the next OpenState cuts off.
func (s *State) RecordMany(recs []stateRecord) error {
	if len(recs) == 0 {
		return nil
	}
	es := make([]entry, len(recs))
	for i, r := range recs {
		es[i] = entry{t: r.rec.Time.Unix(), size: r.rec.Size, digest: r.rec.Digest, partial: r.rec.Partial}
	}
	return s.appendMany(recs, es)
}

func (s *State) appendMany(recs []stateRecord, es []entry) error {
	var b strings.Builder
	for i, r := range recs {
		b.WriteString(es[i].format(r.uidl))
	}
	if _, err := io.WriteString(s.journal, b.String()); err != nil {
		return &Error{Code: ExitIOErr, Err: fmt.Errorf("fetch: state: %w", err)}
	}
	s.syncs++
	if err := s.journal.Sync(); err != nil {
		return &Error{Code: ExitIOErr, Err: fmt.Errorf("fetch: state: %w", err)}
	}
	for i, r := range recs {
		s.entries[r.uidl] = es[i]
	}
	return nil
}

// Reset forgets every entry (in memory; Compact makes it durable).
func (s *State) Reset() { clear(s.entries) }

// Compact drops the entries for which keep returns false (nil keeps all),
// writes the snapshot atomically and empties the journal.
func (s *State) Compact(keep func(uidl string) bool) error {
	uids := make([]string, 0, len(s.entries))
	for u := range s.entries {
		if keep == nil || keep(u) {
			uids = append(uids, u)
		} else {
			delete(s.entries, u)
		}
	}
	sort.Strings(uids)
	tmp, err := os.CreateTemp(s.dir, s.name+".state.tmp*")
	if err != nil {
		return &Error{Code: ExitIOErr, Err: fmt.Errorf("fetch: state: %w", err)}
	}
	defer os.Remove(tmp.Name())
	w := bufio.NewWriterSize(tmp, 64<<10)
	fmt.Fprintln(w, stateHeader)
	for _, u := range uids {
		w.WriteString(s.entries[u].format(u))
	}
	err = w.Flush()
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), s.path(".state"))
	}
	if err == nil {
		err = syncDir(s.dir)
	}
	// Only once the snapshot is durable may the journal go; a kill in
	// between replays records the snapshot already has, which is harmless.
	if err == nil {
		err = s.journal.Truncate(0)
	}
	if err == nil {
		_, err = s.journal.Seek(0, io.SeekStart)
	}
	if err == nil {
		err = s.journal.Sync()
	}
	if err != nil {
		return &Error{Code: ExitIOErr, Err: fmt.Errorf("fetch: state: %w", err)}
	}
	return nil
}

// Close releases the files and the lock.
func (s *State) Close() error {
	if s.journal != nil {
		s.journal.Close()
	}
	if s.lock != nil {
		s.lock.Close()
	}
	return nil
}

// syncDir fsyncs a directory so a rename or link in it is durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}
