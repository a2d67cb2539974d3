package ledger

import "strconv"

// Reading the state without encoding/json.
//
// Every session reads the state file when it opens its view (the default
// device's last use is kept to the hour, Open), so its parse is on the
// path of every login. encoding/json decodes it by reflection: for the
// 72 octets a maildrop without devices holds, that was as much CPU as
// reading the file, a few per cent of a whole login session. The state
// is written by save alone, as json.Marshal writes it: no spaces, the
// fields in their declared order, map keys sorted, empty fields left
// out. fastState reads exactly that form, and gives up (ok false) on
// anything else, which parseState then hands to json.Unmarshal as
// before: a file written by another version, or by hand, reads as it
// always did.
//
// What fastState accepts is valid JSON (RFC 8259) with no member twice,
// strings of printable ASCII without escapes (what json.Marshal writes
// for device names and UIDLs, RFC 1939 §7: 0x21-0x7E, except for the
// few characters it escapes), and integers (RFC 8259 §6 without
// fraction or exponent) that fit the field. For such input it builds
// the state json.Unmarshal builds; FuzzParseState checks it against
// json.Unmarshal.

// stateParser reads data from its offset i.
type stateParser struct {
	data []byte
	i    int
}

// lit consumes s if data continues with it.
func (p *stateParser) lit(s string) bool {
	if len(p.data)-p.i < len(s) || string(p.data[p.i:p.i+len(s)]) != s {
		return false
	}
	p.i += len(s)
	return true
}

// peek reports whether the next octet is c.
func (p *stateParser) peek(c byte) bool { return p.i < len(p.data) && p.data[p.i] == c }

// str reads a string of printable ASCII other than '"' and '\'.
func (p *stateParser) str() (string, bool) {
	if !p.peek('"') {
		return "", false
	}
	start := p.i + 1
	for j := start; j < len(p.data); j++ {
		switch c := p.data[j]; {
		case c == '"':
			p.i = j + 1
			return string(p.data[start:j]), true
		case c < 0x20 || c > 0x7e || c == '\\':
			return "", false
		}
	}
	return "", false
}

// int reads a JSON integer (no fraction, no exponent) that fits bits.
func (p *stateParser) int(bits int) (int64, bool) {
	start := p.i
	j := start
	if j < len(p.data) && p.data[j] == '-' {
		j++
	}
	digits := j
	for j < len(p.data) && '0' <= p.data[j] && p.data[j] <= '9' {
		j++
	}
	// RFC 8259 §6: at least one digit, no leading zero.
	if j == digits || (p.data[digits] == '0' && j-digits > 1) {
		return 0, false
	}
	if j < len(p.data) && (p.data[j] == '.' || p.data[j] == 'e' || p.data[j] == 'E') {
		return 0, false
	}
	n, err := strconv.ParseInt(string(p.data[start:j]), 10, bits)
	if err != nil {
		return 0, false
	}
	p.i = j
	return n, true
}

// strList reads a non-empty array of strings.
func (p *stateParser) strList() ([]string, bool) {
	if !p.lit("[") {
		return nil, false
	}
	var out []string
	for {
		s, ok := p.str()
		if !ok {
			return nil, false
		}
		out = append(out, s)
		if p.lit("]") {
			return out, true
		}
		if !p.lit(",") {
			return nil, false
		}
	}
}

// device reads a device object in the order of its fields.
func (p *stateParser) device() (*device, bool) {
	d := &device{}
	var ok bool
	if !p.lit(`{"added":`) {
		return nil, false
	}
	if d.Added, ok = p.int(64); !ok {
		return nil, false
	}
	if !p.lit(`,"last_used":`) {
		return nil, false
	}
	if d.LastUsed, ok = p.int(64); !ok {
		return nil, false
	}
	if p.lit(`,"password":`) {
		if d.Password, ok = p.str(); !ok {
			return nil, false
		}
	}
	if p.lit(`,"deleted":`) {
		if d.Deleted, ok = p.strList(); !ok {
			return nil, false
		}
	}
	if p.lit(`,"seen":`) {
		if d.Seen, ok = p.strList(); !ok {
			return nil, false
		}
	}
	return d, p.lit("}")
}

// fastState parses data in the form save writes; ok is false for
// anything else, which json.Unmarshal must read.
func fastState(data []byte) (st *state, ok bool) {
	p := &stateParser{data: data}
	st = &state{}
	if !p.lit(`{"version":`) {
		return nil, false
	}
	v, ok := p.int(strconv.IntSize)
	if !ok {
		return nil, false
	}
	st.Version = int(v)
	if p.lit(`,"devices":{`) {
		st.Devices = make(map[string]*device)
		// Keys in increasing order, as json.Marshal sorts them: a name
		// given twice (which json.Unmarshal would merge) is refused.
		prev := ""
		for first := true; ; first = false {
			name, ok := p.str()
			if !ok || (!first && name <= prev) || !p.lit(":") {
				return nil, false
			}
			d, ok := p.device()
			if !ok {
				return nil, false
			}
			st.Devices[name], prev = d, name
			if p.lit("}") {
				break
			}
			if !p.lit(",") {
				return nil, false
			}
		}
	}
	if p.lit(`,"retrieved":{`) {
		st.Retrieved = make(map[string]int64)
		prev := ""
		for first := true; ; first = false {
			u, ok := p.str()
			if !ok || (!first && u <= prev) || !p.lit(":") {
				return nil, false
			}
			t, ok := p.int(64)
			if !ok {
				return nil, false
			}
			st.Retrieved[u], prev = t, u
			if p.lit("}") {
				break
			}
			if !p.lit(",") {
				return nil, false
			}
		}
	}
	if p.lit(`,"history_lines":`) {
		n, ok := p.int(strconv.IntSize)
		if !ok {
			return nil, false
		}
		st.HistoryLines = int(n)
	}
	if !p.lit("}") || p.i != len(data) {
		return nil, false
	}
	return st, true
}
