package maildir

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strconv"
	"syscall"
	"time"

	"github.com/postoffice-mail/postoffice/internal/store"
	"github.com/postoffice-mail/postoffice/internal/uidlfmt"
)

// tmpMaxAge is how old a file in tmp/ must be before Open removes it: the
// 36 hours of the Maildir specification, which Dovecot uses too.
const tmpMaxAge = 36 * time.Hour

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
	md := &maildrop{s: s, dir: b.path(), box: b, beforeScan: s.beforeScan}
	if err := b.do(func() error { return md.open(ctx) }); err != nil {
		b.close()
		return nil, err
	}
	// tmp/, new/ and cur/ were opened for the snapshot; a RETR opens the
	// one it needs again. Until the session idles (Idle) it holds the
	// Maildir and its lock, not five descriptors.
	b.closeSubs()
	err = b.releasable(func() (*box, error) { return s.openBox(user, false) })
	if err != nil {
		md.Close()
		return nil, fmt.Errorf("maildir: %w", err)
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
	wire           bool   // read whole when sized, and found in wire form
	scan           bool   // trusted W=, read all the same to find the wire form
	stuff          string // with wire: where the lines to dot-stuff start (entry.stuff)
	regular        bool   // the directory entry says a regular file
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
		entries, held, scanChanged, err := md.scan(ctx, idx)
		if err != nil {
			return err
		}
		if changed || scanChanged {
			sum, err = md.s.writeIndexSum(md.box.dir, withHeld(entries, held, nil))
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
		md.entries, md.held = entries, held
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
//
// An index entry whose file the reading missed is dropped only when the
// miss is settled, by the rule relocate follows at Commit: POSIX leaves
// unspecified whether readdir returns an entry renamed during the read,
// and ext4's hash order can skip a file that Dovecot renames to change
// its flags under both its names. Dropping it would lose a UIDL that only
// the index holds (set by `postoffice migrate uidl` through ImportUIDLs, or given
// from the postoffice-uids counter), and the message would come back
// under another UIDL: a client that leaves mail on the server would
// download it again. So when the index lists a message the reading
// missed, the directories are read again (locate) until a reading settles
// (maxScans readings in all, the first one included). A message no
// reading saw is then gone. If the readings never settle, the message is
// left out of this session only (held): it stays in the index, with its
// UIDL, for the next session to find. When nothing is missed, which is
// almost always, nothing is read twice.
func (md *maildrop) scan(ctx context.Context, x *index) (entries []entry, held []heldEntry, changed bool, err error) {
	log := md.s.log
	// entries starts as the index; the directory scan fills in where each
	// message is, and entries never found are dropped after it.
	idx := x.entries()
	entries = make([]entry, len(idx))
	for i, e := range idx {
		entries[i] = entry{key: e.key, uidl: e.uidl, size: e.size, wire: e.wire, stuff: e.stuff}
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
			return nil, nil, false, err
		}
		if md.beforeScan != nil {
			md.beforeScan(sub)
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
				return nil, nil, false, err
			}
			continue
		}
		if err != nil {
			return nil, nil, false, err
		}
	}

	// Index entries the reading missed: read again until it settles.
	var missed []int
	for i := range entries {
		if entries[i].sub == "" {
			missed = append(missed, i)
		}
	}
	var hold []bool // by index entry: left out of this session, kept in the index
	if len(missed) > 0 {
		at := make(map[string]int, len(missed))
		for k, i := range missed {
			at[entries[i].key] = k
		}
		seen := make([]place, len(missed))
		settled, err := md.locate(1, func(key []byte) (int, bool) {
			k, ok := at[string(key)]
			return k, ok
		}, seen)
		if err != nil {
			return nil, nil, false, err
		}
		for k, i := range missed {
			switch {
			case seen[k].sub != "":
				entries[i].sub, entries[i].info = seen[k].sub, intern([]byte(seen[k].info))
			case !settled:
				if hold == nil {
					hold = make([]bool, len(entries))
				}
				hold[i] = true
			}
		}
		if hold != nil {
			log.Info("maildir: files kept moving while the directories were read; messages left out of this session, kept in the index",
				"dir", md.dir, "readings", maxScans)
		}
	}

	for i := range idx {
		if hold != nil && hold[i] {
			continue // the index keeps it as it is
		}
		if entries[i].sub != idx[i].sub || entries[i].info != idx[i].info {
			changed = true // moved, renamed, or removed by another agent
		}
	}

	kept := entries[:0]
	for i, e := range entries {
		switch {
		case e.sub != "":
			kept = append(kept, e)
		case hold != nil && hold[i]:
			held = append(held, heldEntry{at: len(kept), e: idx[i]})
		}
	}
	entries = kept
	if len(fresh) > 0 {
		changed = true
		added, err := md.addFresh(ctx, withHeld(entries, held, nil), fresh)
		if err != nil {
			return nil, nil, false, err
		}
		entries = append(entries, added...)
	}
	return entries, held, changed, nil
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

	// Courier's list, when there is one, names the UIDLs Courier served.
	cl, err := readCourierList(md.box.dir)
	if err != nil {
		md.s.log.Warn("maildir: ignoring courierpop3dsizelist", "dir", md.dir, "err", err)
		cl = nil
	}
	format := md.s.uidlFormat

	var used map[string]bool
	if ul != nil || cl != nil || format != nil {
		used = make(map[string]bool, len(kept)+len(fresh))
		for _, e := range kept {
			used[e.uidl] = true
		}
	}
	// UIDs for messages that neither list names, when the format needs
	// them: they continue dovecot-uidlist's numbering (and that of the
	// UIDs given before, postoffice-uids) under its UIDVALIDITY.
	var uids uidState
	var counted []int // indexes in added of UIDLs made from uids
	needUIDs := format != nil && format.Uses(uidlfmt.UID|uidlfmt.UIDValidity)
	if needUIDs {
		if uids, err = readUIDs(md.box.dir); err != nil {
			return nil, err
		}
		validity := uids.validity
		if ul != nil {
			validity = ul.uidValidity
		}
		if validity == 0 {
			validity = uint32(md.s.clock().Unix())
		}
		if validity != uids.validity {
			uids = uidState{validity: validity, next: 1}
		}
		if ul != nil {
			uids.next = max(uids.next, ul.nextUID, ul.maxUID()+1)
		}
		uids.next = max(uids.next, 1)
	}
	start := uids
	added := make([]entry, 0, len(fresh))
	for _, f := range fresh {
		if f.size < 0 {
			continue // vanished while we looked
		}
		uidl, from := "", ""
		switch {
		case f.rec != nil:
			uidl, from = ul.uidl(*f.rec, f.key, format), uidlist
		case cl[f.key] != "":
			uidl, from = cl[f.key], courier
		case format != nil:
			v := uidlfmt.Values{Filename: f.key, GUID: f.key}
			if needUIDs {
				if uids.next == 0 || uids.next > 0xfffffffe {
					// UIDs are exhausted (RFC 3501 §2.3.1.1: 32 bits);
					// derived UIDLs are still unique.
					break
				}
				v.UID, v.UIDValidity = uids.next, uids.validity
				uids.next++
				counted = append(counted, len(added))
			}
			uidl, from = format.Expand(v), "uidl_format"
		}
		if uidl != "" && (!validUIDL(uidl) || used[uidl]) {
			md.s.log.Warn("maildir: UIDL not usable (invalid or not unique), deriving a new one",
				"dir", md.dir, "key", f.key, "uidl", uidl, "from", from)
			uidl = ""
		}
		if uidl == "" {
			uidl = uniqueDerived(f.key, used)
		}
		if used != nil {
			used[uidl] = true
		}
		added = append(added, entry{key: f.key, sub: f.sub, info: f.info, uidl: uidl, size: f.size, wire: f.wire, stuff: f.stuff})
	}
	if uids != start {
		// Durable before any of these UIDLs is recorded or served, so no
		// UID is given twice.
		if err := md.s.writeUIDs(md.box.dir, uids); err != nil {
			if !noSpace(err) {
				return nil, err
			}
			// On a full disk the session is served with derived UIDLs
			// for the new mail; the next open, with space, gives them
			// the UIDs again.
			md.s.log.Warn("maildir: UID counter not written, no space left; new mail gets derived UIDLs this session",
				"dir", md.dir, "err", err)
			for _, i := range counted {
				delete(used, added[i].uidl)
				added[i].uidl = uniqueDerived(added[i].key, used)
				used[added[i].uidl] = true
			}
		}
	}
	return added, nil
}

// uniqueDerived is deriveUIDL of key, or of key with a counter appended
// when used already has it.
func uniqueDerived(key string, used map[string]bool) string {
	uidl := deriveUIDL(key)
	for n := 1; used[uidl]; n++ {
		uidl = deriveUIDL(key + "\x00" + strconv.Itoa(n))
	}
	return uidl
}

// deriveUIDL returns the UIDL of a message whose key is key: the first 15
// octets of SHA-256(key) in unpadded base64url, 20 characters of 0x21-0x7E
// (RFC 1939 §7). Maildir names are unique and never reused, so these are
// too, and they come out the same if the index is lost.
func deriveUIDL(key string) string {
	sum := sha256.Sum256([]byte(key))
	return base64.RawURLEncoding.EncodeToString(sum[:15])
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
