package maildir

import (
	"bytes"
	"fmt"
	"strconv"
	"time"
)

// Skipping the directory scan.
//
// A warm Open of a big maildrop used to spend most of its time listing new/
// and cur/ and matching every name against the index. When neither
// directory changed since the index was written, that work finds nothing:
// the index already says where every message is. So after each Open the
// lock file, postoffice-pop3.lock, records a stamp of each directory (device,
// inode, modification and change time in nanoseconds) taken before the
// directory was read, and the checksum of the index those stamps go with. The
// next Open stats both directories and, if both stamps and the checksum
// match, takes the snapshot from the index alone.
//
// A directory's times change whenever an entry is added, removed or
// renamed. They are kept at the kernel's clock tick, though, so two changes
// in the same tick leave the same times: a delivery just after the stamp was
// taken, in the same tick, would go unseen. Dovecot's rule avoids that, and
// so does this: a stamp is recorded only when both times are at least
// dirSettle old when they are read; a directory that changed more recently is
// read again on the next Open. A stamp in the future (a clock set back) is
// not recorded either.
//
// The lock file is a cache, written without fsync: if it is lost or torn,
// the next Open reads the directories and writes it again. Its one line is
//
//	postoffice-lock 1 sweep=<unix seconds> index=<crc32c> new=<stamp> cur=<stamp>
//
// where a stamp is "<dev>.<ino>.<mtime ns>.<ctime ns>" or "-". sweep is the
// last time tmp/ was swept (see sweepTmp): Open sweeps at most every
// sweepEvery instead of on every session.

// dirSettle is how old a directory's times must be before a stamp of it is
// trusted.
const dirSettle = 2 * time.Second

// sweepEvery is how often Open looks for stale files in tmp/. They are
// removed when 36 hours old, so a few hours late does not matter.
const sweepEvery = 6 * time.Hour

// dirStamp identifies the state of a directory's entries. The zero value
// means unknown and never matches.
type dirStamp struct {
	dev, ino     uint64
	mtime, ctime int64 // nanoseconds since the epoch
}

func (d dirStamp) known() bool { return d != dirStamp{} }

// settled returns d if its times are at least dirSettle before now and not
// after it, else the zero (unknown) stamp.
func (d dirStamp) settled(now time.Time) dirStamp {
	limit := now.Add(-dirSettle).UnixNano()
	if !d.known() || d.mtime > limit || d.ctime > limit {
		return dirStamp{}
	}
	return d
}

func (d dirStamp) String() string {
	if !d.known() {
		return "-"
	}
	return fmt.Sprintf("%d.%d.%d.%d", d.dev, d.ino, d.mtime, d.ctime)
}

func parseDirStamp(s []byte) dirStamp {
	var v [4]int64
	for i := range v {
		f, rest, found := bytes.Cut(s, []byte("."))
		if found == (i == len(v)-1) {
			return dirStamp{} // not four fields
		}
		n, err := strconv.ParseInt(string(f), 10, 64)
		if err != nil || n < 0 {
			return dirStamp{}
		}
		v[i], s = n, rest
	}
	return dirStamp{dev: uint64(v[0]), ino: uint64(v[1]), mtime: v[2], ctime: v[3]}
}

// lockState is what the lock file records.
type lockState struct {
	sweep    int64  // unix seconds of the last tmp/ sweep, 0 if unknown
	index    uint32 // checksum of the index the stamps go with
	hasIndex bool
	new, cur dirStamp
}

const lockStateHeader = "postoffice-lock 1"

func (l lockState) String() string {
	idx := "-"
	if l.hasIndex {
		idx = fmt.Sprintf("%08x", l.index)
	}
	return fmt.Sprintf("%s sweep=%d index=%s new=%s cur=%s\n", lockStateHeader, l.sweep, idx, l.new, l.cur)
}

// parseLockState parses the lock file's line. Anything it does not
// understand leaves the fields unknown, which costs a directory read and a
// tmp/ sweep, nothing else.
//
// It works on the bytes, without allocating: every Open reads the line.
func parseLockState(b []byte) lockState {
	var l lockState
	line, ok := bytes.CutPrefix(b, []byte(lockStateHeader+" "))
	if !ok {
		return l
	}
	line, ok = bytes.CutSuffix(line, []byte("\n"))
	if !ok || bytes.IndexByte(line, '\n') >= 0 {
		return lockState{} // torn write, or a longer old line not yet truncated
	}
	for len(line) > 0 {
		// Fields separated by ASCII white space (the line is written with
		// single spaces); anything else in a field leaves it unknown.
		var f []byte
		if i := bytes.IndexAny(line, " \t\v\f\r"); i >= 0 {
			f, line = line[:i], line[i+1:]
		} else {
			f, line = line, nil
		}
		k, v, _ := bytes.Cut(f, []byte("="))
		switch string(k) {
		case "sweep":
			if n, ok := atoi64(string(v)); ok {
				l.sweep = n
			}
		case "index":
			if n, err := strconv.ParseUint(string(v), 16, 32); err == nil && len(v) == 8 {
				l.index, l.hasIndex = uint32(n), true
			}
		case "new":
			l.new = parseDirStamp(v)
		case "cur":
			l.cur = parseDirStamp(v)
		}
	}
	return l
}

// readLockState reads the state recorded in the lock file f.
func readLockState(f *lockFile) lockState {
	var buf [256]byte
	n, _ := f.ReadAt(buf[:], 0)
	return parseLockState(buf[:n])
}

// writeLockState records l in the lock file f, without fsync. A failure
// costs the next Open a directory read, so it is ignored.
func writeLockState(f *lockFile, l lockState) {
	s := l.String()
	if _, err := f.WriteAt([]byte(s), 0); err == nil {
		f.Truncate(int64(len(s)))
	}
}
