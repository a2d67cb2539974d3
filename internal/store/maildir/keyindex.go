package maildir

import "hash/maphash"

// keyIndex maps message keys to positions. It keys a map by a 128-bit hash
// of the key (two 64-bit maphash sums with independent seeds) rather than by
// the key: with 100,000 keys of 50-70 octets that map is smaller, and a
// lookup touches neither the key strings nor the entries, which is what
// dominated a warm Open. Two different keys share a 128-bit hash with
// probability about n²/2^129, far below hardware error rates; if two index
// keys ever did, it falls back to a map keyed by string.
type keyIndex struct {
	s1, s2 maphash.Seed
	byHash map[hash128]int
	byKey  map[string]int // non-nil after a hash collision
	dup    bool           // some key was given twice
}

type hash128 struct{ a, b uint64 }

func newKeyIndex(n int, key func(int) string) *keyIndex {
	x := &keyIndex{s1: maphash.MakeSeed(), s2: maphash.MakeSeed(), byHash: make(map[hash128]int, n)}
	for i := range n {
		k := key(i)
		h := hash128{maphash.String(x.s1, k), maphash.String(x.s2, k)}
		if j, dup := x.byHash[h]; dup && key(j) != k {
			x.byKey = make(map[string]int, n)
			for m := range n {
				if _, ok := x.byKey[key(m)]; ok {
					x.dup = true
				} else {
					x.byKey[key(m)] = m
				}
			}
			x.byHash = nil
			return x
		} else if dup {
			x.dup = true
			continue
		}
		x.byHash[h] = i
	}
	return x
}

// lookup returns the position of key.
func (x *keyIndex) lookup(key []byte) (int, bool) {
	if x.byKey != nil {
		i, ok := x.byKey[string(key)]
		return i, ok
	}
	i, ok := x.byHash[hash128{maphash.Bytes(x.s1, key), maphash.Bytes(x.s2, key)}]
	return i, ok
}
