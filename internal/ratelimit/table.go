package ratelimit

// entryHead is the state of one counter (an address group or a user).
// Times are Unix nanoseconds of Options.Now.
type entryHead struct {
	failures    int
	last        int64 // last counted failure
	slot        int64 // groups: the next free attempt slot
	bannedUntil int64 // groups: end of the ban in force, or 0
	ring        [ringSize]mark
	ringPos     int
}

// mark is one remembered failure: its fingerprint (0 if unknown) and the
// user key it was for.
type mark struct {
	fp, user uint64
	set      bool
}

// seen reports whether fp is among the remembered failures.
func (e *entryHead) seen(fp uint64) bool {
	for _, m := range e.ring {
		if m.set && m.fp == fp {
			return true
		}
	}
	return false
}

func (e *entryHead) push(fp, user uint64) {
	e.ring[e.ringPos] = mark{fp: fp, user: user, set: true}
	e.ringPos = (e.ringPos + 1) % ringSize
}

func (e *entryHead) expired(t, window int64) bool {
	return t-e.last > window && t >= e.bannedUntil
}

type entry[K comparable] struct {
	entryHead
	key        K
	prev, next *entry[K] // toward head (most recent) and tail
}

// table is a map with a recency list, bounded at max entries.
type table[K comparable] struct {
	m          map[K]*entry[K]
	head, tail *entry[K]
	max        int
}

func (tb *table[K]) init(max int) { tb.m, tb.max = make(map[K]*entry[K]), max }

func (tb *table[K]) get(k K) *entry[K] { return tb.m[k] }

// live returns k's entry unless it has expired at t, dropping an expired
// one; nil when there is none.
func (tb *table[K]) live(k K, t, window int64) *entry[K] {
	e := tb.m[k]
	if e != nil && e.expired(t, window) {
		tb.remove(e)
		return nil
	}
	return e
}

// liveOrAdd returns k's live entry, or a fresh one, at the head.
func (tb *table[K]) liveOrAdd(k K, t, window int64) *entry[K] {
	e := tb.live(k, t, window)
	if e == nil {
		return tb.add(k, t, window)
	}
	tb.touch(e)
	return e
}

// add inserts a fresh entry for k at the head. When the table is full it
// first drops expired entries from the tail, then evicts the least recent
// entry without a ban in force among the last few, or else the least
// recent entry.
func (tb *table[K]) add(k K, t, window int64) *entry[K] {
	for n := 0; n < 4 && tb.tail != nil && tb.tail.expired(t, window); n++ {
		tb.remove(tb.tail)
	}
	if len(tb.m) >= tb.max {
		victim := tb.tail
		for e, n := tb.tail, 0; e != nil && n < 16; e, n = e.prev, n+1 {
			if t >= e.bannedUntil {
				victim = e
				break
			}
		}
		tb.remove(victim)
	}
	e := &entry[K]{key: k}
	tb.m[k] = e
	tb.pushFront(e)
	return e
}

// touch moves e to the head.
func (tb *table[K]) touch(e *entry[K]) {
	if tb.head == e {
		return
	}
	tb.unlink(e)
	tb.pushFront(e)
}

func (tb *table[K]) remove(e *entry[K]) {
	tb.unlink(e)
	delete(tb.m, e.key)
}

func (tb *table[K]) pushFront(e *entry[K]) {
	e.prev, e.next = nil, tb.head
	if tb.head != nil {
		tb.head.prev = e
	}
	tb.head = e
	if tb.tail == nil {
		tb.tail = e
	}
}

func (tb *table[K]) unlink(e *entry[K]) {
	if e.prev != nil {
		e.prev.next = e.next
	} else {
		tb.head = e.next
	}
	if e.next != nil {
		e.next.prev = e.prev
	} else {
		tb.tail = e.prev
	}
	e.prev, e.next = nil, nil
}
