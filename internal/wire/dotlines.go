package wire

import "bytes"

// DotLines records where the lines that start with "." start in a message
// written to it in order, a buffer at a time: the lines a store that keeps
// a message's wire form must stuff with one more "." as it sends it (RFC
// 1939 §3), so that it can send the rest as it is. It keeps at most Max
// offsets; past that, Many reports true and the offsets are no longer
// complete (the store then leaves the message to DotWriter).
type DotLines struct {
	Max  int
	n    int64 // octets written
	last byte  // the last of them
	offs []int64
	many bool
}

// Write records the lines of p that start with ".".
func (d *DotLines) Write(p []byte) {
	if len(p) == 0 {
		return
	}
	if !d.many {
		if p[0] == '.' && (d.n == 0 || d.last == '\n') {
			d.add(d.n)
		}
		for i := 0; !d.many; {
			j := bytes.Index(p[i:], []byte("\n."))
			if j < 0 {
				break
			}
			d.add(d.n + int64(i+j+1))
			i += j + 1
		}
	}
	d.n += int64(len(p))
	d.last = p[len(p)-1]
}

func (d *DotLines) add(off int64) {
	if len(d.offs) == d.Max {
		d.many = true
		return
	}
	d.offs = append(d.offs, off)
}

// Offsets returns where the lines found start, ascending; complete only
// if Many is false.
func (d *DotLines) Offsets() []int64 { return d.offs }

// Many reports whether more than Max lines start with ".".
func (d *DotLines) Many() bool { return d.many }
