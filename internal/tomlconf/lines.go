package tomlconf

import (
	"bufio"
	"bytes"
	"strconv"
	"strings"
)

// Lines maps each key of a TOML file to the line (from 1) it is first set
// on. It understands the subset of TOML the postoffice files use: [table]
// and [[array]] headers (dotted names allowed) and key = value lines; a
// value spanning lines is attributed to its first line. Keys are
// "table.key" under [table], "key" before any header, and
// "array.N.key" under the N-th (from 0) [[array]] header. Headers map too:
// "table" and "array.N".
func Lines(data []byte) map[string]int {
	lines, _ := scan(data)
	return lines
}

// scan is Lines, and also lists the keys set under [[array]] headers by
// the name the TOML decoder gives them, which has no index
// ("account.user"), each with the indexed keys it stands for, in file
// order ("account.0.user", "account.2.user").
func scan(data []byte) (lines map[string]int, inArrays map[string][]string) {
	lines = make(map[string]int)
	inArrays = make(map[string][]string)
	set := func(k string, n int) {
		if _, ok := lines[k]; !ok {
			lines[k] = n
		}
	}
	table, array := "", ""        // array: the name of the [[array]] table we are in
	count := make(map[string]int) // [[array]] headers seen
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, 1<<20)
	for n := 1; sc.Scan(); n++ {
		l := strings.TrimSpace(sc.Text())
		switch {
		case l == "" || l[0] == '#':
		case l[0] == '[':
			if i := strings.IndexByte(l, '#'); i >= 0 {
				l = strings.TrimSpace(l[:i])
			}
			name := strings.TrimSpace(strings.Trim(l, "[]"))
			array = ""
			if strings.HasPrefix(l, "[[") {
				table, array = name+"."+strconv.Itoa(count[name]), name
				count[name]++
			} else {
				table = name
			}
			set(table, n)
		default:
			k, _, ok := strings.Cut(l, "=")
			if !ok {
				continue
			}
			k = strings.Trim(strings.TrimSpace(k), `"`)
			if array != "" {
				inArrays[array+"."+k] = append(inArrays[array+"."+k], table+"."+k)
			}
			if table != "" {
				k = table + "." + k
			}
			set(k, n)
		}
	}
	return lines, inArrays
}
