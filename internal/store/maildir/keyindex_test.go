package maildir

import (
	"testing"
)

func TestKeyIndex(t *testing.T) {
	t.Parallel()
	keys := []string{"a", "b", "1700000000.M1P1.h,S=1,W=1"}
	for _, collide := range []bool{false, true} {
		x := newKeyIndex(len(keys), func(i int) string { return keys[i] })
		if collide { // force the string-map fallback
			x = &keyIndex{byKey: map[string]int{}}
			for i, k := range keys {
				x.byKey[k] = i
			}
		}
		for i, k := range keys {
			if j, ok := x.lookup([]byte(k)); !ok || j != i {
				t.Errorf("collide=%v: lookup(%q) = %d, %v, want %d", collide, k, j, ok, i)
			}
		}
		if _, ok := x.lookup([]byte("c")); ok {
			t.Errorf("collide=%v: lookup of a missing key succeeded", collide)
		}
		if x.dup {
			t.Errorf("collide=%v: dup set without duplicates", collide)
		}
	}
	dups := []string{"a", "b", "a"}
	if x := newKeyIndex(3, func(i int) string { return dups[i] }); !x.dup {
		t.Error("duplicate key not reported")
	}

}
