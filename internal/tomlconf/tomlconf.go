// Package tomlconf reads the postoffice TOML files, the server
// configuration and the fetcher's accounts, one way: Decode decodes a file
// into its struct, a syntax or type error comes back with its line, and
// every other problem (a key the struct has no field for, a value the
// caller's checks refuse) is collected in the File, placed at the line of
// its key, so that one error can list them all. BurntSushi/toml reports
// positions for syntax errors only; Lines finds the line of every key.
package tomlconf

import (
	"errors"
	"fmt"
	"strings"

	"github.com/BurntSushi/toml"
)

// File is a TOML file being read: its path (for messages), the line each
// key is set on, and the problems found in it so far, in the order found.
type File struct {
	path     string
	lines    map[string]int
	problems []string
}

// Decode decodes data, read from path, into v. The error, when data is not
// TOML or a value does not fit its field, is "PATH:LINE: message" where
// the decoder gives a position (a syntax error, a bad duration), else
// "PATH: message" in the decoder's words. A key v has no field for is not
// an error: it is a problem of the File, "PATH:LINE: KEY: unknown key"
// (KEY with its table's index under an [[array]] header, as Lines names
// it), so that the caller's checks add theirs to the same list.
func Decode(path string, data []byte, v any) (*File, error) {
	md, err := toml.Decode(string(data), v)
	if err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			return nil, fmt.Errorf("%s:%d: %s", path, pe.Position.Line, pe.Message)
		}
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	lines, inArrays := scan(data)
	f := &File{path: path, lines: lines}
	for _, k := range md.Undecoded() {
		key := k.String()
		if ks := inArrays[key]; len(ks) > 0 {
			// The decoder names a key of an [[array]] table without
			// the table's index, once for each table that sets it,
			// in file order: put the index back.
			key, inArrays[key] = ks[0], ks[1:]
		}
		f.Bad(key, "unknown key")
	}
	return f, nil
}

// Line returns the line key is set on, or 0 when the file does not set
// it. A [[array]] header is the key "array.N" (see Lines).
func (f *File) Line(key string) int { return f.lines[key] }

// Pos returns where a problem with key is reported: "PATH:LINE" with the
// key's own line, else that of the nearest enclosing key or table set in
// the file (the [auth.oauth] header for a missing auth.oauth.issuer, the
// line of an inline table for a key inside it), else "PATH" alone.
func (f *File) Pos(key string) string {
	for k := key; k != ""; {
		if n, ok := f.lines[k]; ok {
			return fmt.Sprintf("%s:%d", f.path, n)
		}
		i := strings.LastIndexByte(k, '.')
		if i < 0 {
			break
		}
		k = k[:i]
	}
	return f.path
}

// Bad adds a problem with key: "POS: KEY: message" (see Pos), the message
// formatted as by fmt.Sprintf.
func (f *File) Bad(key, format string, args ...any) {
	f.Add(fmt.Sprintf("%s: %s: %s", f.Pos(key), key, fmt.Sprintf(format, args...)))
}

// Add adds a problem the caller has placed and worded itself.
func (f *File) Add(problem string) { f.problems = append(f.problems, problem) }

// Problems returns the problems found so far; nil when there are none.
func (f *File) Problems() []string { return f.problems }
