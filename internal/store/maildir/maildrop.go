package maildir

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/postoffice-mail/postoffice/internal/store"
)

// tmpMaxAge is how old a file in tmp/ must be before Open removes it: the
// 36 hours of the Maildir specification, which Dovecot uses too.
const tmpMaxAge = 36 * time.Hour

// maxRelocate bounds how often Commit reads new/ and cur/ again for one
// message that keeps moving under it.
const maxRelocate = 3

// entry is one message of a snapshot, and one line of the index (whose
// entries become the snapshot as they are when nothing changed).
type entry struct {
	key  string // base name, without the info part
	sub  string // "new" or "cur"; "" once known to be gone (or not known)
	info string // current info part (":2,S"), file name is key+info
	uidl string
	size int64
}

// maildrop is a locked snapshot of one Maildir.
type maildrop struct {
	s    *Store
	dir  string // the Maildir's path, for logs
	box  *box   // the Maildir, opened without following links
	lock *lockFile

	mu sync.Mutex // guards entries, idx, closed, committed
	// entries is the snapshot with where each message is; it is nil while
	// the snapshot is idx as read (the warm Open), and made from idx when
	// the messages' locations must change (makeEntries).
	entries   []entry
	idx       *index
	msgs      []store.Message
	closed    bool
	committed bool

	afterRelocate func() // test hook, nil in production
}

var _ store.Maildrop = (*maildrop)(nil)

// Open locks user's Maildir (creating it if needed) and returns its
// snapshot. RFC 1939 §4: the lock is exclusive; while it is held Open
// returns store.ErrInUse, from this process or any other.
func (s *Store) Open(ctx context.Context, user string) (store.Maildrop, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	b, err := s.openBox(user, true)
	if err != nil {
		return nil, err
	}
	md := &maildrop{s: s, dir: b.path(), box: b}
	if err := b.do(func() error { return md.open(ctx) }); err != nil {
		b.close()
		return nil, err
	}
	return md, nil
}

// open takes the lock and loads the snapshot, as the Maildir's owner.
func (md *maildrop) open(ctx context.Context) error {
	lf, err := openLockFile(md.box.dir, lockName)
	if err != nil {
		return fmt.Errorf("maildir: lock: %w", err)
	}
	if err := lf.tryLock(); err != nil {
		lf.Close()
		if errors.Is(err, errLocked) {
			return store.ErrInUse
		}
		return fmt.Errorf("maildir: lock: %w", err)
	}
	md.lock = lf
	if err := md.load(ctx); err != nil {
		lf.Close()
		return err
	}
	return nil
}

// found is a file seen in new/ or cur/ that the index does not know.
type found struct {
	key, sub, info string
	rec            *uidlistRec
	size           int64
	regular        bool // the directory entry says a regular file
}

// load builds the snapshot: index entries whose files still exist, in index
// order, then files the index does not know yet, in delivery order. It
// writes the index back, durably, if that changed anything, before any UIDL
// can reach a client (but on a full disk it serves the session without). When neither new/ nor cur/ changed since the index was
// written (see dirstate.go), the index alone is the snapshot.
func (md *maildrop) load(ctx context.Context) error {
	now := md.s.clock()
	prev := readLockState(md.lock)
	// Stamp the directories before reading anything: a change after this
	// moves their times past the stamps.
	var next lockState
	next.sweep = prev.sweep
	if st, err := statDir(md.box.dir, "new"); err == nil {
		next.new = st.settled(now)
	}
	if st, err := statDir(md.box.dir, "cur"); err == nil {
		next.cur = st.settled(now)
	}
	idx, err := readIndexFile(md.box.dir)
	changed := false
	if errors.Is(err, errCorrupt) {
		md.s.log.Warn("maildir: rebuilding corrupt index", "dir", md.dir, "err", err)
		idx, changed = nil, true
	} else if err != nil {
		return err
	}
	hasIndex, sum := idx != nil, uint32(0)
	if idx != nil {
		sum = idx.sum
	}
	if !changed && idx != nil && prev.hasIndex && prev.index == sum && next.new.known() && next.cur.known() &&
		next.new == prev.new && next.cur == prev.cur && idx.located {
		// The index says where every message is: it is the snapshot.
		md.idx, md.msgs = idx, idx.msgs
	} else {
		if md.s.scanHook != nil {
			md.s.scanHook(md.dir)
		}
		entries, scanChanged, err := md.scan(ctx, idx)
		if err != nil {
			return err
		}
		if changed || scanChanged {
			sum, err = md.s.writeIndexSum(md.box.dir, entries)
			switch {
			case err == nil:
				hasIndex = true // written, though maybe empty
			case noSpace(err):
				// The index is a cache: every UIDL it would record is
				// derived from a file name or read from dovecot-uidlist,
				// which gives the same UIDLs again at the next open. So a
				// full disk costs this session nothing but the write, and
				// no stamps are recorded: the old index must not pass for
				// the current one, the next open reads the directories.
				md.s.log.Warn("maildir: index not written, no space left; serving this session from the directories, the next open rescans",
					"dir", md.dir, "err", err)
				sum, hasIndex = 0, false
			default:
				return err
			}
		}
		md.entries = entries
		md.msgs = make([]store.Message, len(entries))
		for i, e := range entries {
			md.msgs[i] = store.Message{UID: e.uidl, Size: e.size}
		}
	}
	// Stamps go with an index file that exists; an empty maildrop that
	// never had one is read every time, which costs nothing.
	next.index, next.hasIndex = sum, hasIndex
	if !next.hasIndex {
		next.new, next.cur = dirStamp{}, dirStamp{}
	}
	if t := now.Unix(); t-prev.sweep >= int64(sweepEvery/time.Second) || prev.sweep > t+3600 {
		md.s.sweepTmp(md.box)
		next.sweep = t
	}
	if next != prev {
		writeLockState(md.lock, next)
	}
	return nil
}

// scan reads new/ and cur/ and matches them with the index idx: entries
// whose files still exist, in index order, then files the index does not
// know, in delivery order. changed reports whether the index must be
// written again: a message came or went, or one moved.
func (md *maildrop) scan(ctx context.Context, x *index) (entries []entry, changed bool, err error) {
	log := md.s.log
	// entries starts as the index; the directory scan fills in where each
	// message is, and entries never found are dropped after it.
	idx := x.entries()
	entries = make([]entry, len(idx))
	for i, e := range idx {
		entries[i] = entry{key: e.key, uidl: e.uidl, size: e.size}
	}
	pos := newKeyIndex(len(entries), func(i int) string { return entries[i].key })
	if pos.dup {
		// A repeated key: the index is corrupt (we never write one).
		log.Warn("maildir: rebuilding corrupt index", "dir", md.dir, "err", "duplicate key")
		entries, idx, changed = nil, nil, true
		pos = newKeyIndex(0, nil)
	}

	// Info parts repeat (":2,S", ":2,RS"): keep one string of each.
	infos := map[string]string{"": ""}
	intern := func(b []byte) string {
		if s, ok := infos[string(b)]; ok {
			return s
		}
		s := string(b)
		infos[s] = s
		return s
	}
	var fresh []found
	var freshSeen map[string]bool
	for _, sub := range []string{"new", "cur"} {
		if err := ctx.Err(); err != nil {
			return nil, false, err
		}
		err := scanDir(md.box.dir, sub, func(name []byte, typ fileType) {
			if typ == typeDir || !usableName(name) {
				return
			}
			key, info := splitName(name)
			if i, ok := pos.lookup(key); ok {
				if entries[i].sub == "" {
					entries[i].sub, entries[i].info = sub, intern(info)
				}
				return
			}
			if freshSeen == nil {
				freshSeen = make(map[string]bool)
			}
			if freshSeen[string(key)] {
				return // in both new/ and cur/ while another agent moves it
			}
			k := string(key)
			freshSeen[k] = true
			fresh = append(fresh, found{key: k, sub: sub, info: intern(info), regular: typ == typeRegular})
		})
		if errors.Is(err, fs.ErrNotExist) {
			if err := md.s.createSubs(md.box); err != nil {
				return nil, false, err
			}
			continue
		}
		if err != nil {
			return nil, false, err
		}
	}
	for i := range idx {
		if entries[i].sub != idx[i].sub || entries[i].info != idx[i].info {
			changed = true // moved, renamed, or removed by another agent
		}
	}

	kept := entries[:0]
	for _, e := range entries {
		if e.sub != "" {
			kept = append(kept, e)
		}
	}
	entries = kept
	if len(fresh) > 0 {
		changed = true
		added, err := md.addFresh(ctx, entries, fresh)
		if err != nil {
			return nil, false, err
		}
		entries = append(entries, added...)
	}
	return entries, changed, nil
}

// usableName reports whether a directory entry of new/ or cur/ is a
// message: not a dot-file, and nothing the index line format cannot hold.
func usableName(name []byte) bool {
	return len(name) > 0 && name[0] != '.' && name[0] != infoSep && !bytes.ContainsAny(name, "\n\r")
}

// splitName splits a file name into its key and its info part.
func splitName(name []byte) (key, info []byte) {
	if i := bytes.IndexByte(name, infoSep); i >= 0 {
		return name[:i], name[i:]
	}
	return name, nil
}

// addFresh sizes, orders and names the files the index did not know.
// Messages Dovecot listed in dovecot-uidlist come first, in its POP3 order
// (O field, then UID), and keep the UIDL Dovecot showed; the rest follow in
// delivery order of their names and get UIDLs derived from their keys.
func (md *maildrop) addFresh(ctx context.Context, kept []entry, fresh []found) ([]entry, error) {
	ul, err := readUIDListAt(md.box.dir, uidlist)
	if err != nil {
		// A broken dovecot-uidlist costs the old UIDLs, not the mail.
		md.s.log.Warn("maildir: ignoring dovecot-uidlist", "dir", md.dir, "err", err)
		ul = nil
	}
	if ul != nil {
		for i := range fresh {
			if r, ok := ul.recs[fresh[i].key]; ok {
				fresh[i].rec = &r
			}
		}
	}
	// Sort indexes with each name's delivery time parsed once, not in
	// every comparison, and move the (large) found records once.
	type sortKey struct{ secs, usec string }
	keys := make([]sortKey, len(fresh))
	order := make([]int32, len(fresh))
	for i := range fresh {
		order[i] = int32(i)
		if fresh[i].rec == nil {
			keys[i].secs, keys[i].usec = deliveryTime(fresh[i].key)
		}
	}
	slices.SortFunc(order, func(i, j int32) int {
		a, b := &fresh[i], &fresh[j]
		switch {
		case a.rec != nil && b.rec != nil:
			if a.rec.hasOrder != b.rec.hasOrder {
				if a.rec.hasOrder {
					return -1
				}
				return 1
			}
			if c := cmp.Compare(a.rec.order, b.rec.order); c != 0 {
				return c
			}
			return cmp.Compare(a.rec.uid, b.rec.uid)
		case a.rec != nil:
			return -1
		case b.rec != nil:
			return 1
		}
		return compareTimed(a.key, keys[i].secs, keys[i].usec, b.key, keys[j].secs, keys[j].usec)
	})
	sorted := make([]found, len(fresh))
	for k, i := range order {
		sorted[k] = fresh[i]
	}
	fresh = sorted

	if err := md.sizeAll(ctx, fresh); err != nil {
		return nil, err
	}

	var used map[string]bool
	if ul != nil {
		used = make(map[string]bool, len(kept)+len(fresh))
		for _, e := range kept {
			used[e.uidl] = true
		}
	}
	added := make([]entry, 0, len(fresh))
	for _, f := range fresh {
		if f.size < 0 {
			continue // vanished while we looked
		}
		uidl := ""
		if f.rec != nil {
			uidl = ul.uidl(*f.rec, f.key)
			if !validUIDL(uidl) || used[uidl] {
				md.s.log.Warn("maildir: dovecot-uidlist UIDL not usable, deriving a new one",
					"dir", md.dir, "key", f.key, "uidl", uidl)
				uidl = ""
			}
		}
		if uidl == "" {
			uidl = deriveUIDL(f.key)
			for n := 1; used[uidl]; n++ {
				uidl = deriveUIDL(f.key + "\x00" + strconv.Itoa(n))
			}
		}
		if used != nil {
			used[uidl] = true
		}
		added = append(added, entry{key: f.key, sub: f.sub, info: f.info, uidl: uidl, size: f.size})
	}
	return added, nil
}

// deriveUIDL returns the UIDL of a message whose key is key: the first 15
// octets of SHA-256(key) in unpadded base64url, 20 characters of 0x21-0x7E
// (RFC 1939 §7). Maildir names are unique and never reused, so these are
// too, and they come out the same if the index is lost.
func deriveUIDL(key string) string {
	sum := sha256.Sum256([]byte(key))
	return base64.RawURLEncoding.EncodeToString(sum[:15])
}

// sizeAll sets the wire size of every file in fresh, or -1 for one that has
// vanished. Sizes trusted from W= cost nothing; the files that must be
// opened, when many, are sized by sizeWorkers goroutines: the work is
// system calls and, with a cold page cache, waiting for the disk.
func (md *maildrop) sizeAll(ctx context.Context, fresh []found) error {
	var open []int // indexes into fresh of the files to open
	for i := range fresh {
		if w, ok := md.trustedSize(&fresh[i]); ok {
			fresh[i].size = w
		} else {
			open = append(open, i)
		}
	}
	if len(open) == 0 {
		return nil
	}
	var dirs [2]dirFD
	for i, sub := range []string{"new", "cur"} {
		d, err := md.box.sub(sub)
		if err != nil {
			return fmt.Errorf("maildir: size: %w", err)
		}
		dirs[i] = dirFDOf(d)
	}
	dirOf := func(f *found) dirFD {
		if f.sub == "cur" {
			return dirs[1]
		}
		return dirs[0]
	}
	if len(open) < 2*sizeWorkers {
		buf := make([]byte, 32<<10)
		for _, i := range open {
			if err := ctx.Err(); err != nil {
				return err
			}
			if err := md.size(dirOf(&fresh[i]), &fresh[i], buf); err != nil {
				return err
			}
		}
		return nil
	}
	var (
		wg    sync.WaitGroup
		next  = make(chan int, sizeWorkers)
		errMu sync.Mutex
		first error
	)
	for range sizeWorkers {
		wg.Go(func() {
			// Each worker opens files as the Maildir's owner, on a
			// thread of its own (safefs.Do).
			err := md.box.do(func() error {
				var buf []byte
				for i := range next {
					if buf == nil {
						buf = make([]byte, 32<<10)
					}
					if err := md.size(dirOf(&fresh[i]), &fresh[i], buf); err != nil {
						errMu.Lock()
						first = cmp.Or(first, err)
						errMu.Unlock()
					}
				}
				return nil
			})
			if err != nil {
				errMu.Lock()
				first = cmp.Or(first, err)
				errMu.Unlock()
				for range next {
				}
			}
		})
	}
	var err error
loop:
	for _, i := range open {
		select {
		case next <- i:
		case <-ctx.Done():
			err = ctx.Err()
			break loop
		}
	}
	close(next)
	wg.Wait()
	return cmp.Or(err, first)
}

// vsize returns Dovecot's W= of f: the ",W=<n>" field of its name, else the
// W field of its dovecot-uidlist record.
func vsize(f *found) (int64, bool) {
	if w, ok := sizeField(f.key, 'W'); ok {
		return w, true
	}
	if f.rec != nil && f.rec.vsize >= 0 {
		return f.rec.vsize, true
	}
	return 0, false
}

// trustedSize returns the size of f without opening it, as Dovecot does:
// its W=, unless Options.VerifySizeFields is set, f has no W=, or its
// directory entry does not say it is a regular file (a FIFO must be
// seen and left out; a symbolic link may point anywhere).
func (md *maildrop) trustedSize(f *found) (int64, bool) {
	if md.s.verifySizes || !f.regular {
		return 0, false
	}
	return vsize(f)
}

// size computes the wire size of f: RFC 1939 §11 and store.Message.Size, the
// octets in CRLF form plus the CRLF a server appends when the message does
// not end in a newline. Dovecot's W= (in the name or in dovecot-uidlist) is
// the CRLF size without that completion; when sizeAll could not trust it
// (see trustedSize), the file is opened and only its last octet read, to
// decide the completion. Without W= the whole file is read once, through
// buf. A file that vanished, or is not a regular file, gets size -1 and is
// left out.
func (md *maildrop) size(d dirFD, f *found, buf []byte) error {
	w, ok := vsize(f)
	if md.s.sizeHook != nil {
		md.s.sizeHook(f.key + f.info)
	}
	n, last, crlf, gone, regular, err := d.sizeAt(f.key+f.info, !ok, buf)
	switch {
	case err != nil:
		return fmt.Errorf("maildir: size: %w", err)
	case gone:
		f.size = -1
		return nil
	case !regular:
		md.s.log.Warn("maildir: ignoring non-regular file", "dir", md.dir, "name", f.key+f.info)
		f.size = -1
		return nil
	}
	if !ok {
		w = crlf
	}
	f.size = w + completion(n, last)
	return nil
}

// sweepTmp removes files left in tmp/ by deliveries that died more than
// 36 hours ago. Failures only cost disk space, so they are logged. Open
// calls it at most every sweepEvery (the time is kept in the lock file),
// as the Maildir's owner. A tmp/ that is a symbolic link is not swept (its
// open refuses it), and what is removed is the entry in tmp/ itself: a
// link planted there is removed, never what it points to.
func (s *Store) sweepTmp(b *box) {
	var names []string
	err := scanDir(b.dir, "tmp", func(name []byte, typ fileType) {
		if typ != typeDir {
			names = append(names, string(name))
		}
	})
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			s.log.Warn("maildir: not sweeping tmp", "dir", b.path(), "err", err)
		}
		return
	}
	if len(names) == 0 {
		return
	}
	tmp, err := b.sub("tmp")
	if err != nil {
		s.log.Warn("maildir: not sweeping tmp", "dir", b.path(), "err", err)
		return
	}
	cutoff := s.clock().Add(-tmpMaxAge).UnixNano()
	for _, name := range names {
		st, err := tmp.Lstat(name)
		if err != nil || st.Mode&syscall.S_IFMT == syscall.S_IFDIR || st.Mtim.Nano() > cutoff {
			continue
		}
		if err := tmp.Remove(name); err != nil && !errors.Is(err, fs.ErrNotExist) {
			s.log.Warn("maildir: removing stale tmp file", "dir", b.path(), "err", err)
		}
	}
}

// Messages returns the snapshot taken by Open.
func (md *maildrop) Messages() []store.Message { return md.msgs }

// Open returns message i as stored. If another agent (Dovecot's IMAP, a
// mail client on the Maildir) has moved it from new/ to cur/ or changed its
// flags since the snapshot, it is found again by its key; if it is gone,
// Open returns store.ErrNoMessage.
func (md *maildrop) Open(ctx context.Context, i int) (io.ReadCloser, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	md.mu.Lock()
	defer md.mu.Unlock()
	if md.closed {
		return nil, errors.New("maildir: maildrop closed")
	}
	if i < 0 || i >= len(md.msgs) {
		return nil, fmt.Errorf("maildir: no message %d", i)
	}
	for attempt := 0; ; attempt++ {
		e := md.entry(i)
		if e.sub == "" {
			return nil, store.ErrNoMessage
		}
		f, err := md.openMessage(e)
		if err == nil {
			return f, nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("maildir: open message: %w", err)
		}
		if attempt > 0 {
			return nil, store.ErrNoMessage
		}
		if err := md.relocate(); err != nil {
			return nil, err
		}
	}
}

// entry returns message i of the snapshot. The caller holds md.mu.
func (md *maildrop) entry(i int) entry {
	if md.entries == nil {
		return md.idx.entry(i)
	}
	return md.entries[i]
}

// openMessage opens e's file, as the Maildir's owner.
func (md *maildrop) openMessage(e entry) (io.ReadCloser, error) {
	d, err := md.box.sub(e.sub)
	if err != nil {
		return nil, err
	}
	if !md.box.switches() {
		return openMessage(d, e.key+e.info) // no closure to allocate per message
	}
	var f io.ReadCloser
	err = md.box.do(func() (err error) {
		f, err = openMessage(d, e.key+e.info)
		return err
	})
	return f, err
}

// makeEntries makes md.entries from md.idx, if the snapshot is still the index
// as read, so that the messages' locations can change. The caller holds
// md.mu.
func (md *maildrop) makeEntries() {
	if md.entries == nil && md.idx != nil {
		md.entries, md.idx = md.idx.entries(), nil
	}
}

// relocate reads new/ and cur/ again and updates where every entry is; an
// entry not found is marked gone. The caller holds md.mu.
func (md *maildrop) relocate() error {
	md.makeEntries()
	pos := make(map[string]int, len(md.entries))
	for i, e := range md.entries {
		pos[e.key] = i
		md.entries[i].sub = ""
	}
	for _, sub := range []string{"new", "cur"} {
		err := scanDir(md.box.dir, sub, func(name []byte, typ fileType) {
			if typ == typeDir || !usableName(name) {
				return
			}
			key, info := splitName(name)
			if i, ok := pos[string(key)]; ok && md.entries[i].sub == "" {
				md.entries[i].sub, md.entries[i].info = sub, string(info)
			}
		})
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	if md.afterRelocate != nil {
		md.afterRelocate()
	}
	return nil
}

// Commit removes the messages with the given indexes (RFC 1939 §6, the
// UPDATE state), fsyncs the directories and rewrites the index without them,
// all under the lock. A message already gone counts as removed. On partial
// failure it removes what it can and returns the errors; a failed index
// write (a full disk) is only logged, since the removals are durable. A context already
// done when Commit starts deletes nothing.
func (md *maildrop) Commit(ctx context.Context, deleted []int) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	md.mu.Lock()
	defer md.mu.Unlock()
	if md.closed {
		return errors.New("maildir: maildrop closed")
	}
	if md.committed {
		return errors.New("maildir: commit called twice")
	}
	for _, i := range deleted {
		if i < 0 || i >= len(md.msgs) {
			return fmt.Errorf("maildir: commit: no message %d", i)
		}
	}
	md.committed = true
	if len(deleted) == 0 {
		return nil
	}
	return md.box.do(func() error { return md.commit(deleted) })
}

// commit is Commit under the lock, as the Maildir's owner.
func (md *maildrop) commit(deleted []int) error {
	md.makeEntries()
	removed := make([]bool, len(md.entries))
	var errs []error
	touched := map[string]bool{}
	for _, i := range deleted {
		if removed[i] {
			continue
		}
		// A miss means another agent moved or removed the file since we
		// last looked, possibly just after a relocate: look again. A file
		// no lookup finds was removed; one that only moved must be
		// unlinked, or it would come back in the next session.
		for attempt := 0; ; attempt++ {
			e := &md.entries[i]
			if e.sub == "" {
				removed[i] = true // removed by another agent
				break
			}
			d, err := md.box.sub(e.sub)
			if err == nil {
				err = d.Remove(e.key + e.info)
			}
			if err == nil {
				removed[i] = true
				touched[e.sub] = true
				break
			}
			if !errors.Is(err, fs.ErrNotExist) {
				errs = append(errs, fmt.Errorf("maildir: remove message %d: %w", i, err))
				break
			}
			if attempt == maxRelocate {
				errs = append(errs, fmt.Errorf("maildir: remove message %d: still moving after %d lookups", i, attempt))
				break
			}
			if err := md.relocate(); err != nil {
				errs = append(errs, err)
				break
			}
		}
	}
	for _, sub := range []string{"new", "cur"} {
		if touched[sub] {
			d, err := md.box.sub(sub)
			if err == nil {
				err = md.s.syncDir(d)
			}
			if err != nil {
				errs = append(errs, err)
			}
		}
	}
	var keep []indexEntry
	for i, e := range md.entries {
		if !removed[i] {
			keep = append(keep, e)
		}
	}
	if _, err := md.s.writeIndexSum(md.box.dir, keep); err != nil {
		// The removals are durable; the index is only a cache, and the
		// next Open sees from the directories' stamps that it is stale
		// and reads them again. Failing the commit would tell the client
		// its deleted messages are still there, which they are not.
		md.s.log.Warn("maildir: index not updated after commit; the next open rescans", "dir", md.dir, "err", err)
	}
	return errors.Join(errs...)
}

// Close releases the lock: closing the lock file's descriptor drops the
// flock. It deletes nothing (RFC 1939 §6: only UPDATE deletes).
func (md *maildrop) Close() error {
	md.mu.Lock()
	defer md.mu.Unlock()
	if md.closed {
		return nil
	}
	md.closed = true
	if md.idx != nil {
		// Nothing uses the index any more (Open and Commit check closed):
		// its buffer can serve the next session.
		md.idx.release()
		md.idx = nil
	}
	err := md.lock.Close()
	md.box.close()
	if err != nil {
		return fmt.Errorf("maildir: unlock: %w", err)
	}
	return nil
}

// noSpace reports whether err says the file system or the user's quota is
// full.
func noSpace(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)
}
