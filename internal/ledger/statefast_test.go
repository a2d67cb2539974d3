package ledger

import (
	"encoding/json"
	"fmt"
	"reflect"
	"testing"
	"time"
)

// marshalState is what save writes for st.
func marshalState(t testing.TB, st *state) []byte {
	t.Helper()
	st.Version = 1
	for _, d := range st.Devices {
		d.pack()
	}
	data, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// sampleStates are states as sessions leave them: a maildrop without
// devices after a login, after retrievals, and with devices.
func sampleStates() []*state {
	now := time.Unix(1796684058, 0)
	var out []*state
	st := &state{Devices: map[string]*device{}, Retrieved: map[string]int64{}}
	st.device("", now)
	out = append(out, st)

	st = &state{Devices: map[string]*device{}, Retrieved: map[string]int64{}, HistoryLines: 37}
	d, _ := st.device("", now)
	for i := range 50 {
		u := fmt.Sprintf("et6yha4IT5yID%07d", i)
		st.Retrieved[u] = now.Unix() - int64(i)
		d.seen[u] = true
	}
	out = append(out, st)

	st = &state{Devices: map[string]*device{}, Retrieved: map[string]int64{"u1": 1, "u2": 2}}
	for _, n := range []string{"phone", "laptop", "", "a.b_c-1"} {
		d, _ := st.device(n, now)
		d.deleted["u1"] = true
		d.seen["u2"] = true
		_, d.Password = NewDevicePassword()
	}
	st.Devices["idle"] = &device{Added: -5, LastUsed: 0, deleted: map[string]bool{}, seen: map[string]bool{}}
	out = append(out, st)

	out = append(out, &state{})
	return out
}

// The states save writes take the fast path and read back as
// json.Unmarshal reads them.
func TestFastStateReadsWhatSaveWrites(t *testing.T) {
	for i, st := range sampleStates() {
		data := marshalState(t, st)
		fast, ok := fastState(data)
		if !ok {
			t.Errorf("state %d: fastState refused %s", i, data)
			continue
		}
		want := &state{}
		if err := json.Unmarshal(data, want); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(fast, want) {
			t.Errorf("state %d: fastState read %s as\n%+v\nwant\n%+v", i, data, fast, want)
		}
	}
}

// Forms that are valid JSON but not save's go to json.Unmarshal, and so
// do invalid ones, which stay corrupt.
func TestFastStateRefuses(t *testing.T) {
	for _, s := range []string{
		``,
		`{}`,
		` {"version":1}`,
		`{"version":1} `,
		`{"version": 1}`,
		`{"Version":1}`,
		`{"version":1.0}`,
		`{"version":1e0}`,
		`{"version":01}`,
		`{"version":-}`,
		`{"version":99999999999999999999}`,
		`{"version":1,"devices":{}}`,
		`{"version":1,"devices":{"b":{"added":1,"last_used":2},"a":{"added":1,"last_used":2}}}`,
		`{"version":1,"devices":{"a":{"added":1,"last_used":2},"a":{"added":3,"last_used":4}}}`,
		`{"version":1,"devices":{"a":{"last_used":2,"added":1}}}`,
		`{"version":1,"devices":{"a":{"added":1,"last_used":2,"deleted":[]}}}`,
		`{"version":1,"devices":{"a":{"added":1,"last_used":2,"seen":["x\u003cy"]}}}`,
		`{"version":1,"devices":{"\u0061":{"added":1,"last_used":2}}}`,
		`{"version":1,"devices":{"é":{"added":1,"last_used":2}}}`,
		`{"version":1,"retrieved":{"u":1.5}}`,
		`{"version":1,"retrieved":{"u":1},"devices":{"a":{"added":1,"last_used":2}}}`,
		`{"version":1,"history_lines":3,"extra":1}`,
		`{"version":1,"devices":null}`,
	} {
		if st, ok := fastState([]byte(s)); ok {
			t.Errorf("fastState accepted %s: %+v", s, st)
		}
	}
}

// FuzzParseState: whatever fastState accepts, json.Unmarshal reads the
// same.
func FuzzParseState(f *testing.F) {
	for _, st := range sampleStates() {
		f.Add(marshalState(f, st))
	}
	f.Add([]byte(`{"version":1,"devices":{"":{"added":-0,"last_used":0}},"history_lines":-1}`))
	f.Add([]byte(`{"version":1,"retrieved":{"a<b":1,"a>b":2}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		fast, ok := fastState(data)
		if !ok {
			return
		}
		want := &state{}
		if err := json.Unmarshal(data, want); err != nil {
			t.Fatalf("fastState accepted %q, which json.Unmarshal refuses: %v", data, err)
		}
		if !reflect.DeepEqual(fast, want) {
			t.Fatalf("fastState read %q as\n%+v\nwant\n%+v", data, fast, want)
		}
	})
}

func BenchmarkParseState(b *testing.B) {
	for i, st := range sampleStates()[:2] {
		data := marshalState(b, st)
		b.Run(fmt.Sprint("state", i), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := parseState(data); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
