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

// stateHeader is the first line of a state snapshot.
const stateHeader = "postoffice-fetch-state 1"

// State is the durable record of the messages an account has delivered:
// UIDL -> time of first retrieval. A negative time marks a message the
// target refused for good (Reject): it is neither fetched nor deleted.
//
// On disk, in the state directory, per account NAME:
//   - NAME.state: the snapshot, a header line then "<unix-seconds> <uidl>"
//     lines, replaced atomically (temporary file, fsync, rename, directory
//     fsync) by Compact;
//   - NAME.journal: records appended since the snapshot, same line format,
//     each fsynced before Record returns. A torn last line (a kill during
//     the write) is ignored and cut off;
//   - NAME.lock: flock'ed while the account is fetched, so two fetchers
//     never work on the same account (the kernel drops it on SIGKILL).
//
// Record costs one small append and one fsync, whatever the size of the
// state, so every message is durable before its DELE without rewriting a
// 100,000-line file per message; Compact folds the journal into the
// snapshot once per session.
type State struct {
	dir, name string
	entries   map[string]int64
	journal   *os.File
	lock      *os.File
}

// OpenState locks and loads the state of account name in dir, creating dir.
func OpenState(dir, name string) (*State, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("fetch: state: %w", err)
	}
	s := &State{dir: dir, name: name, entries: make(map[string]int64)}
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
		if strings.TrimSpace(head) != stateHeader {
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

// parse reads complete "<ts> <uidl>\n" lines and returns the offset after
// the last complete line.
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
		ts, uid, ok := bytes.Cut(bytes.TrimRight(line, "\n"), []byte(" "))
		if !ok {
			return off, fmt.Errorf("bad line %q", line)
		}
		t, err := strconv.ParseInt(string(ts), 10, 64)
		if err != nil || len(uid) == 0 {
			return off, fmt.Errorf("bad line %q", line)
		}
		if old, ok := s.entries[string(uid)]; !ok || t < old {
			s.entries[string(uid)] = t
		}
	}
}

// Has reports whether uidl was delivered, and when it was first retrieved.
func (s *State) Has(uidl string) (time.Time, bool) {
	t, ok := s.entries[uidl]
	if t < 0 {
		return time.Time{}, false // rejected
	}
	return time.Unix(t, 0), ok
}

// Known reports whether uidl has an entry, delivered or rejected.
func (s *State) Known(uidl string) bool {
	_, ok := s.entries[uidl]
	return ok
}

// Rejected reports whether the target refused uidl for good (see Reject).
func (s *State) Rejected(uidl string) bool { return s.entries[uidl] < 0 }

// Reject durably notes that the target refused uidl permanently, so it is
// neither fetched again nor deleted from the server. It is stored as a
// negative time.
func (s *State) Reject(uidl string, t time.Time) error {
	if _, ok := s.entries[uidl]; ok {
		return nil
	}
	return s.append(uidl, -max(t.Unix(), 1))
}

// Len returns the number of entries.
func (s *State) Len() int { return len(s.entries) }

// Record durably notes uidl as delivered at t: it returns once the record
// is on disk.
func (s *State) Record(uidl string, t time.Time) error {
	if _, ok := s.entries[uidl]; ok {
		return nil
	}
	return s.append(uidl, t.Unix())
}

func (s *State) append(uidl string, ts int64) error {
	if _, err := fmt.Fprintf(s.journal, "%d %s\n", ts, uidl); err != nil {
		return &Error{Code: ExitIOErr, Err: fmt.Errorf("fetch: state: %w", err)}
	}
	if err := s.journal.Sync(); err != nil {
		return &Error{Code: ExitIOErr, Err: fmt.Errorf("fetch: state: %w", err)}
	}
	s.entries[uidl] = ts
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
		fmt.Fprintf(w, "%d %s\n", s.entries[u], u)
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
