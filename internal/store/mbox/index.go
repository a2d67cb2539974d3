package mbox

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// index is the cached scan of an mbox and the UIDL counter.
type index struct {
	dev, ino uint64
	end      int64 // the octets of the file the messages cover
	mtime    int64 // the file's mtime (ns) when its size was end
	next     uint64
	stamp    string // per-index prefix of assigned UIDLs
	msgs     []msg
}

const indexMagic = "postoffice-mbox-index 1"

func (x *index) newUID() string {
	x.next++
	return fmt.Sprintf("%s.%d", x.stamp, x.next)
}

func newStamp() string { return strconv.FormatInt(time.Now().UnixNano()/1e6, 36) }

// readIndex reads the index; a missing one is (nil, nil), a corrupt one is
// logged and treated as missing, except that its counter cannot be
// trusted: a new stamp keeps UIDLs from being reused.
func (s *Store) readIndex(b *box) (*index, error) {
	var fd int
	err := b.do(func() (err error) {
		fd, _, err = b.idir.OpenFD(b.indexName(), unix.O_RDONLY, 0)
		return err
	})
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("mbox: index: %w", err)
	}
	f := os.NewFile(uintptr(fd), b.indexName())
	defer f.Close()
	data, err := io.ReadAll(f)
	if err != nil {
		return nil, fmt.Errorf("mbox: index: %w", err)
	}
	x, err := parseIndex(data)
	if err != nil {
		s.log.Warn("mbox: corrupt index rebuilt", "path", b.path, "err", err)
		return &index{stamp: newStamp()}, nil
	}
	return x, nil
}

func parseIndex(data []byte) (*index, error) {
	i := bytes.LastIndex(data[:max(len(data)-1, 0)], []byte("\nsum "))
	if i < 0 {
		return nil, errors.New("no checksum")
	}
	body, sum := data[:i+1], strings.TrimSpace(string(data[i+5:]))
	if fmt.Sprintf("%x", sha256.Sum256(body)) != sum {
		return nil, errors.New("bad checksum")
	}
	x := &index{}
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(nil, 1<<20)
	n := 0
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		n++
		switch {
		case n == 1:
			if sc.Text() != indexMagic {
				return nil, errors.New("bad magic")
			}
		case len(f) == 5 && f[0] == "file":
			v, err := ints(f[1:])
			if err != nil {
				return nil, err
			}
			x.dev, x.ino, x.end, x.mtime = uint64(v[0]), uint64(v[1]), v[2], v[3]
		case len(f) == 3 && f[0] == "next":
			v, err := strconv.ParseUint(f[1], 10, 64)
			if err != nil {
				return nil, err
			}
			x.next, x.stamp = v, f[2]
		case len(f) == 10 && f[0] == "m":
			v, err := ints(f[1:7])
			if err != nil {
				return nil, err
			}
			klen, err := strconv.ParseInt(f[8-1], 10, 64)
			if err != nil {
				return nil, err
			}
			_ = klen
			m := msg{off: v[0], body: v[1], end: v[2], next: v[3], size: v[4], raw: v[5] == 1, key: f[8], uid: f[9]}
			if m.klen, err = strconv.ParseInt(f[7], 10, 64); err != nil {
				return nil, err
			}
			if validUID(m.uid) != nil {
				return nil, fmt.Errorf("bad uid %q", m.uid)
			}
			x.msgs = append(x.msgs, m)
		default:
			return nil, fmt.Errorf("bad line %d", n)
		}
	}
	if x.stamp == "" {
		return nil, errors.New("no counter")
	}
	return x, sc.Err()
}

func ints(f []string) ([]int64, error) {
	v := make([]int64, len(f))
	for i, s := range f {
		var err error
		if v[i], err = strconv.ParseInt(s, 10, 64); err != nil {
			return nil, err
		}
	}
	return v, nil
}

// writeIndex replaces the index atomically: a temporary file, fsync,
// rename, directory fsync.
func (s *Store) writeIndex(b *box, x *index) error {
	var buf bytes.Buffer
	fmt.Fprintf(&buf, "%s\nfile %d %d %d %d\nnext %d %s\n", indexMagic, x.dev, x.ino, x.end, x.mtime, x.next, x.stamp)
	for _, m := range x.msgs {
		raw := 0
		if m.raw {
			raw = 1
		}
		fmt.Fprintf(&buf, "m %d %d %d %d %d %d %d %s %s\n", m.off, m.body, m.end, m.next, m.size, raw, m.klen, m.key, m.uid)
	}
	fmt.Fprintf(&buf, "sum %x\n", sha256.Sum256(buf.Bytes()))
	tmp := b.indexName() + ".tmp"
	b.dirOp(func() error { return ignoreNotExist(b.idir.Remove(tmp)) })
	fd, err := b.openFile(b.idir, tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("mbox: index: %w", err)
	}
	f := os.NewFile(uintptr(fd), tmp)
	_, err = f.Write(buf.Bytes())
	if err == nil {
		err = s.fsync(fd)
	}
	f.Close()
	if err == nil {
		err = b.dirOp(func() error { return b.idir.Rename(tmp, b.idir, b.indexName()) })
	}
	if err != nil {
		b.dirOp(func() error { return b.idir.Remove(tmp) })
		return fmt.Errorf("mbox: index: %w", err)
	}
	return s.syncDir(b.idir)
}

// validUID checks RFC 1939 §7: 1 to 70 characters in 0x21-0x7E.
func validUID(u string) error {
	if len(u) < 1 || len(u) > 70 {
		return fmt.Errorf("length %d", len(u))
	}
	for i := 0; i < len(u); i++ {
		if c := u[i]; c < 0x21 || c > 0x7e {
			return fmt.Errorf("octet 0x%02x", c)
		}
	}
	return nil
}
