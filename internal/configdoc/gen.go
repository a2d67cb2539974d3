package main

import (
	"bufio"
	"bytes"
	"encoding"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/postoffice-mail/postoffice/internal/config"
	"github.com/postoffice-mail/postoffice/internal/fetch"
)

// A Key is one documented configuration key.
type Key struct {
	Table    string // "pop3", "auth.oauth", "tls.certificates" (an array of tables), "account"
	Name     string // "listen"
	Type     string // TOML type: string, integer, boolean, duration, array of strings, ...
	Default  string // TOML literal, or "required"
	Example  string // TOML literal from the annotated sample files; "" when there is none
	Doc      string // from the field's comment, Go names replaced by keys
	Required bool
}

// Full returns the key's dotted name, as the parsers' messages name it.
func (k Key) Full() string { return k.Table + "." + k.Name }

// A Table is one TOML table and its keys, in struct order.
type Table struct {
	Name  string // dotted name
	Array bool   // an array of tables ([[name]])
	Doc   string // from the struct type's comment
	Keys  []Key
}

// Header returns the table as it is written in a file.
func (t Table) Header() string {
	if t.Array {
		return "[[" + t.Name + "]]"
	}
	return "[" + t.Name + "]"
}

// minimalServer is the smallest server file config.Parse accepts; its keys
// are the required ones (each is checked by removing it).
const minimalServer = `[auth]
passwd_file = "/etc/postoffice/users"
[mail]
location = "maildir:/var/vmail/%d/%n/Maildir"
`

// minimalFetch is the smallest fetch file fetch.ParseConfig accepts.
const minimalFetch = `[[account]]
name = "example"
server = "pop.example.org:995"
user = "me@example.org"
password = "secret"
target = "maildir:/var/mail/me"
state_dir = "/var/lib/postoffice-fetch"
`

// ServerTables returns the tables of internal/config.Config. root is the
// module root (for the comments in the source and the examples in the
// docs).
func ServerTables(root string) ([]Table, error) {
	docs, err := fieldDocs(filepath.Join(root, "internal", "config"))
	if err != nil {
		return nil, err
	}
	examples, err := sampleValues(root)
	if err != nil {
		return nil, err
	}
	cfg, err := config.Parse("minimal.toml", []byte(minimalServer))
	if err != nil {
		return nil, fmt.Errorf("the minimal server config no longer parses: %v", err)
	}
	required := requiredKeys(minimalServer, "", func(text string) error {
		_, err := config.Parse("x.toml", []byte(text))
		return err
	})
	var tables []Table
	v := reflect.ValueOf(*cfg)
	for i := range v.NumField() {
		f := v.Type().Field(i)
		name := tomlName(f)
		if name == "" {
			continue
		}
		tables = walkTable(tables, name, false, v.Field(i), docs, examples, required)
	}
	return tables, nil
}

// FetchTables returns the tables of a fetch configuration file.
func FetchTables(root string) ([]Table, error) {
	docs, err := fieldDocs(filepath.Join(root, "internal", "fetch"))
	if err != nil {
		return nil, err
	}
	examples, err := sampleValues(root)
	if err != nil {
		return nil, err
	}
	cfg, err := fetch.ParseConfig("minimal.toml", []byte(minimalFetch))
	if err != nil {
		return nil, fmt.Errorf("the minimal fetch config no longer parses: %v", err)
	}
	required := requiredKeys(minimalFetch, "account", func(text string) error {
		_, err := fetch.ParseConfig("x.toml", []byte(text))
		return err
	})
	tables := walkTable(nil, "account", true, reflect.ValueOf(*cfg.Accounts[0]), docs, examples, required)
	// keep and poll_interval are left unset by the parser; their accessors
	// say what unset means.
	a := cfg.Accounts[0]
	for i := range tables[0].Keys {
		k := &tables[0].Keys[i]
		switch k.Name {
		case "keep":
			k.Default = strconv.FormatBool(a.KeepOnServer())
		case "poll_interval":
			k.Default = strconv.Quote(shortDuration(a.Poll()))
		}
	}
	return tables, nil
}

// walkTable appends the table name (whose value is v, a struct) and its
// sub-tables to tables.
func walkTable(tables []Table, name string, array bool, v reflect.Value, docs map[string]string,
	examples map[string]string, required map[string]bool) []Table {
	t := v.Type()
	tables = append(tables, Table{Name: name, Array: array, Doc: docs[t.Name()]})
	self := len(tables) - 1
	goNames := make(map[string]string) // Go field name -> key
	var subs []func()
	for i := range t.NumField() {
		f := t.Field(i)
		key := tomlName(f)
		if key == "" {
			continue
		}
		goNames[f.Name] = key
		fv := v.Field(i)
		if sub, isArray, ok := tableType(f.Type); ok {
			full := name + "." + key
			if fv.Kind() == reflect.Pointer && fv.IsNil() || isArray {
				fv = reflect.New(sub).Elem()
			} else if fv.Kind() == reflect.Pointer {
				fv = fv.Elem()
			}
			subs = append(subs, func() { tables = walkTable(tables, full, isArray, fv, docs, examples, required) })
			if !isArray {
				continue
			}
		}
		k := Key{
			Table:   name,
			Name:    key,
			Type:    typeName(f.Type),
			Default: literal(fv),
			Doc:     docs[t.Name()+"."+f.Name],
		}
		if _, isArray, ok := tableType(f.Type); ok && isArray {
			k.Default = "[]"
		}
		if required[k.Full()] {
			k.Required = true
			k.Default = "required"
		}
		k.Example = examples[k.Full()]
		tables[self].Keys = append(tables[self].Keys, k)
	}
	for i := range tables[self].Keys {
		tables[self].Keys[i].Doc = keyNames(tables[self].Keys[i].Doc, tables[self].Keys[i].Name, goNames)
	}
	tables[self].Doc = keyNames(tables[self].Doc, "", goNames)
	for _, s := range subs {
		s()
	}
	return tables
}

// tomlName returns the key of a struct field, or "" for one TOML never sees.
func tomlName(f reflect.StructField) string {
	if !f.IsExported() {
		return ""
	}
	name, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
	if name == "-" {
		return ""
	}
	if name == "" {
		return f.Name
	}
	return name
}

var textUnmarshaler = reflect.TypeFor[encoding.TextUnmarshaler]()

// tableType reports whether t is written as a table (a struct or a pointer
// to one) or an array of tables (a slice of those), and the struct type.
func tableType(t reflect.Type) (sub reflect.Type, array, ok bool) {
	if t.Kind() == reflect.Slice {
		array = true
		t = t.Elem()
	}
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct || reflect.PointerTo(t).Implements(textUnmarshaler) {
		return nil, false, false
	}
	return t, array, true
}

// typeName returns the TOML type of a key of Go type t.
func typeName(t reflect.Type) string {
	if sub, array, ok := tableType(t); ok && array {
		var keys []string
		for i := range sub.NumField() {
			if k := tomlName(sub.Field(i)); k != "" {
				keys = append(keys, k)
			}
		}
		return "array of tables (" + strings.Join(keys, ", ") + ")"
	}
	if t == reflect.TypeFor[config.Duration]() {
		return "duration"
	}
	switch t.Kind() {
	case reflect.Pointer:
		return typeName(t.Elem())
	case reflect.String:
		return "string"
	case reflect.Bool:
		return "boolean"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "integer"
	case reflect.Slice:
		return "array of " + typeName(t.Elem()) + "s"
	}
	return t.String()
}

// literal writes v as a TOML value.
func literal(v reflect.Value) string {
	if d, ok := v.Interface().(config.Duration); ok {
		return strconv.Quote(shortDuration(d.Duration))
	}
	switch v.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			return "unset"
		}
		return literal(v.Elem())
	case reflect.String:
		return strconv.Quote(v.String())
	case reflect.Bool:
		return strconv.FormatBool(v.Bool())
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return strconv.FormatInt(v.Int(), 10)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return strconv.FormatUint(v.Uint(), 10)
	case reflect.Slice:
		var parts []string
		for i := range v.Len() {
			parts = append(parts, literal(v.Index(i)))
		}
		return "[" + strings.Join(parts, ", ") + "]"
	}
	return fmt.Sprint(v.Interface())
}

// shortDuration writes d as time.ParseDuration reads it, without the zero
// units String adds ("10m", not "10m0s").
func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// requiredKeys returns the keys of minimal (a file of "key = value" lines
// under table headers) without which parse refuses the file. An array of
// tables is named by array.
func requiredKeys(minimal, array string, parse func(string) error) map[string]bool {
	lines := strings.Split(minimal, "\n")
	req := make(map[string]bool)
	table := ""
	for i, l := range lines {
		if strings.HasPrefix(l, "[") {
			table = strings.Trim(l, "[]")
			continue
		}
		key, _, ok := strings.Cut(l, " = ")
		if !ok {
			continue
		}
		without := slices.Concat(lines[:i:i], lines[i+1:])
		if parse(strings.Join(without, "\n")) != nil {
			req[table+"."+key] = true
		}
	}
	return req
}

// fieldDocs reads the comments of the struct types and fields declared in
// the Go files (tests excluded) of dir: "Type" -> the type's comment,
// "Type.Field" -> the field's comment (the one above it, else the one
// beside it), each as one paragraph.
func fieldDocs(dir string) (map[string]string, error) {
	fset := token.NewFileSet()
	files, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		return nil, err
	}
	docs := make(map[string]string)
	for _, path := range files {
		if strings.HasSuffix(path, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, path, nil, parser.ParseComments)
		if err != nil {
			return nil, err
		}
		for _, decl := range f.Decls {
			gd, ok := decl.(*ast.GenDecl)
			if !ok || gd.Tok != token.TYPE {
				continue
			}
			for _, spec := range gd.Specs {
				ts := spec.(*ast.TypeSpec)
				st, ok := ts.Type.(*ast.StructType)
				if !ok {
					continue
				}
				doc := ts.Doc
				if doc == nil && len(gd.Specs) == 1 {
					doc = gd.Doc
				}
				docs[ts.Name.Name] = paragraph(doc)
				for _, field := range st.Fields.List {
					text := paragraph(field.Doc)
					if text == "" {
						text = paragraph(field.Comment)
					}
					for _, n := range field.Names {
						docs[ts.Name.Name+"."+n.Name] = text
					}
				}
			}
		}
	}
	return docs, nil
}

// paragraph joins a comment's lines into one line.
func paragraph(cg *ast.CommentGroup) string {
	if cg == nil {
		return ""
	}
	return strings.Join(strings.Fields(cg.Text()), " ")
}

// keyNames replaces the Go field names in doc by their keys, so the page
// speaks of `password_command`, not PasswordCommand. A name that is all
// capitals (APOP, TLS) is also a protocol's name, so it is replaced only as
// the first word of the comment, where Go's convention puts the field's
// own name; self is the key of the field doc describes.
func keyNames(doc, self string, goNames map[string]string) string {
	if doc == "" {
		return ""
	}
	words := wordRE.FindAllStringIndex(doc, -1)
	var b strings.Builder
	last := 0
	for i, w := range words {
		word := doc[w[0]:w[1]]
		key, ok := goNames[word]
		if !ok || (strings.ToUpper(word) == word && !(i == 0 && w[0] == 0 && key == self)) {
			continue
		}
		b.WriteString(doc[last:w[0]])
		b.WriteString("`" + key + "`")
		last = w[1]
	}
	b.WriteString(doc[last:])
	return b.String()
}

var wordRE = regexp.MustCompile(`[A-Za-z][A-Za-z0-9]*`)

// sampleValues reads the annotated sample files: the TOML blocks of
// README.md and of docs/*.md (this page excepted), commented-out lines
// included. It returns "table.key" -> the value written there (the first
// one found, README.md first); the keys of [[account]] are "account.key".
func sampleValues(root string) (map[string]string, error) {
	files := []string{filepath.Join(root, "README.md")}
	more, err := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	if err != nil {
		return nil, err
	}
	slices.Sort(more)
	for _, f := range more {
		if filepath.Base(f) != filepath.Base(output) {
			files = append(files, f)
		}
	}
	values := make(map[string]string)
	for _, path := range files {
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, err
		}
		sampleBlocks(data, values)
	}
	return values, nil
}

var (
	headerRE = regexp.MustCompile(`^\[\[?([a-z0-9_.]+)\]\]?(\s|$)`)
	keyRE    = regexp.MustCompile(`^#?\s*([a-z0-9_]+) = (.+)$`)
)

// sampleBlocks adds the keys of the ```toml blocks of a Markdown file.
func sampleBlocks(data []byte, values map[string]string) {
	sc := bufio.NewScanner(bytes.NewReader(data))
	in, table := false, ""
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case strings.HasPrefix(line, "```toml"):
			in, table = true, ""
			continue
		case strings.HasPrefix(line, "```"):
			in = false
			continue
		case !in:
			continue
		}
		if m := headerRE.FindStringSubmatch(line); m != nil {
			table = m[1]
			continue
		}
		m := keyRE.FindStringSubmatch(line)
		if m == nil || table == "" {
			continue
		}
		full := table + "." + m[1]
		if _, ok := values[full]; !ok {
			if v := valueOf(m[2]); v != "" {
				values[full] = v
			}
		}
	}
}

// valueOf returns the TOML value at the start of s, without a trailing
// comment: it stops at a '#' outside strings, brackets and braces.
func valueOf(s string) string {
	depth := 0
	var quote rune
	for i, r := range s {
		switch {
		case quote != 0:
			if r == quote {
				quote = 0
			}
		case r == '"' || r == '\'':
			quote = r
		case r == '[' || r == '{':
			depth++
		case r == ']' || r == '}':
			depth--
		case r == '#' && depth == 0 && (i == 0 || unicode.IsSpace(rune(s[i-1]))):
			return strings.TrimSpace(s[:i])
		}
	}
	return strings.TrimSpace(s)
}
