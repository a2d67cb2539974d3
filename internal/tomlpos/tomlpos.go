// Package tomlpos finds the line each key of a TOML file is set on, for
// error messages that name a key and its line: BurntSushi/toml reports
// positions for syntax errors only. It understands the subset of TOML the
// postoffice config files use: [table] and [[array]] headers (dotted names
// allowed) and key = value lines; a value spanning lines is attributed to
// its first line.
package tomlpos

import (
	"bufio"
	"bytes"
	"strconv"
	"strings"
)

// Lines maps each key to the line (from 1) it is first set on:
// "table.key" under [table], "key" before any header, and
// "array.N.key" under the N-th (from 0) [[array]] header. Headers map too:
// "table" and "array.N".
func Lines(data []byte) map[string]int {
	lines := make(map[string]int)
	set := func(k string, n int) {
		if _, ok := lines[k]; !ok {
			lines[k] = n
		}
	}
	table := ""
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
			if strings.HasPrefix(l, "[[") {
				table = name + "." + strconv.Itoa(count[name])
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
			if table != "" {
				k = table + "." + k
			}
			set(k, n)
		}
	}
	return lines
}
