package maildir

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"time"

	"github.com/postoffice-mail/postoffice/internal/store"
	"github.com/postoffice-mail/postoffice/internal/store/safefs"
)

// stateMax bounds the size of a state file read back: the caller bounds
// what it writes (the history journal is compacted long before this).
const stateMax = 64 << 20

var (
	_ store.StateFiles  = (*maildrop)(nil)
	_ store.Arrivals    = (*maildrop)(nil)
	_ store.StateReader = (*Store)(nil)
)

// stateName maps a state file name to the file kept in the Maildir:
// "postoffice-" and the name, which must be a plain lower-case word.
func stateName(name string) (string, error) {
	if name == "" || len(name) > 32 {
		return "", fmt.Errorf("maildir: bad state file name %q", name)
	}
	for _, c := range name {
		if (c < 'a' || c > 'z') && c != '-' {
			return "", fmt.Errorf("maildir: bad state file name %q", name)
		}
	}
	switch name {
	case "pop3.lock", "index", "uids":
		return "", fmt.Errorf("maildir: state file name %q is taken", name)
	}
	return "postoffice-" + name, nil
}

// ReadState implements store.StateFiles.
func (md *maildrop) ReadState(name string) ([]byte, error) {
	md.mu.Lock()
	defer md.mu.Unlock()
	if err := md.usable(); err != nil {
		return nil, err
	}
	var data []byte
	err := md.box.do(func() (err error) {
		data, err = readState(md.box.dir, name)
		return err
	})
	return data, err
}

func readState(d *safefs.Dir, name string) ([]byte, error) {
	file, err := stateName(name)
	if err != nil {
		return nil, err
	}
	// readFile: open without following a link, fstat, one read of the
	// size it gave, close; no os.File, which costs an allocation, its
	// cleanup and more system calls, on every login (internal/ledger reads
	// "devices" when a session opens its view). The size read is the one
	// fstat gave: "devices" is replaced by rename, never written in place;
	// "history" is appended to, and what was appended after the fstat is
	// left for the next reader, as it would be had it come a moment later
	// (a reader of it skips a torn last line, store.StateFiles). A FIFO
	// does not block the open (O_NONBLOCK) and is refused.
	tooLarge := false
	data, err := readFile(d, file, func(size int64) []byte {
		if size > stateMax {
			tooLarge = true
			return []byte{}
		}
		return make([]byte, size)
	})
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("maildir: %s: %w", file, err)
	}
	if tooLarge {
		return nil, fmt.Errorf("maildir: %s: larger than %d octets", file, stateMax)
	}
	return data, nil
}

// WriteState implements store.StateFiles: a temporary file, fsync,
// rename, directory fsync, as the index is written.
func (md *maildrop) WriteState(name string, data []byte) error {
	file, err := stateName(name)
	if err != nil {
		return err
	}
	md.mu.Lock()
	defer md.mu.Unlock()
	if err := md.usable(); err != nil {
		return err
	}
	if md.appendName == file {
		md.closeAppend()
	}
	return md.box.do(func() error {
		d := md.box.dir
		tmp := file + ".tmp"
		if err := d.Remove(tmp); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("maildir: %s: %w", file, err)
		}
		f, err := d.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return fmt.Errorf("maildir: %s: %w", file, err)
		}
		_, err = f.Write(data)
		if err == nil && !md.s.noSync {
			err = f.Sync()
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err == nil {
			err = d.Rename(tmp, d, file)
		}
		if err != nil {
			d.Remove(tmp)
			return fmt.Errorf("maildir: %s: %w", file, err)
		}
		return md.s.syncDir(d)
	})
}

// AppendState implements store.StateFiles. The file is opened with
// O_APPEND, never through a link (safefs), and stays open for the next
// append until the maildrop is closed or the file replaced by WriteState;
// each append is one write(2), so it is in the kernel when AppendState
// returns.
func (md *maildrop) AppendState(name string, data []byte) error {
	file, err := stateName(name)
	if err != nil {
		return err
	}
	md.mu.Lock()
	defer md.mu.Unlock()
	if err := md.usable(); err != nil {
		return err
	}
	if md.appendName != file {
		md.closeAppend()
		err := md.box.do(func() error {
			f, err := md.box.dir.OpenFile(file, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
			if err != nil {
				return err
			}
			md.appendFile, md.appendName = f, file
			return nil
		})
		if err != nil {
			return fmt.Errorf("maildir: %s: %w", file, err)
		}
	}
	if _, err := md.appendFile.Write(data); err != nil {
		md.closeAppend()
		return fmt.Errorf("maildir: %s: %w", file, err)
	}
	return nil
}

// closeAppend closes the file AppendState keeps open, if any. md.mu is
// held.
func (md *maildrop) closeAppend() {
	if md.appendFile != nil {
		md.appendFile.Close()
		md.appendFile, md.appendName = nil, ""
	}
}

// SyncState implements store.StateFiles.
func (md *maildrop) SyncState(name string) error {
	file, err := stateName(name)
	if err != nil {
		return err
	}
	md.mu.Lock()
	defer md.mu.Unlock()
	if err := md.usable(); err != nil {
		return err
	}
	if md.s.noSync {
		return nil
	}
	return md.box.do(func() error {
		f, err := md.box.dir.OpenFile(file, os.O_RDONLY, 0)
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("maildir: %s: %w", file, err)
		}
		err = f.Sync()
		f.Close()
		if err == nil {
			// A file just made needs its directory entry durable too.
			err = md.s.syncDir(md.box.dir)
		}
		return err
	})
}

// ReadState implements store.StateReader: it reads a maildrop's state file
// without its lock, as the owner. A user without a Maildir has none.
func (s *Store) ReadState(ctx context.Context, user, name string) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	b, err := s.openBox(user, false)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer b.close()
	var data []byte
	err = b.do(func() (err error) {
		data, err = readState(b.dir, name)
		return err
	})
	return data, err
}

// Delivered implements store.Arrivals: a Maildir file name starts with the
// delivery time in seconds since the epoch ("1700000000.M12P3Q4.host"),
// which every Maildir deliverer writes and no agent changes. A name that
// does not start so (hand-made files) has no known arrival.
func (md *maildrop) Delivered(i int) (time.Time, bool) {
	md.mu.Lock()
	defer md.mu.Unlock()
	if i < 0 || i >= len(md.msgs) {
		return time.Time{}, false
	}
	key := md.entry(i).key
	n := 0
	for n < len(key) && n < 12 && key[n] >= '0' && key[n] <= '9' {
		n++
	}
	if n == 0 || (n < len(key) && key[n] != '.') {
		return time.Time{}, false
	}
	secs, err := strconv.ParseInt(key[:n], 10, 64)
	if err != nil || secs <= 0 {
		return time.Time{}, false
	}
	return time.Unix(secs, 0), true
}
