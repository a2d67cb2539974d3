// Package replytext checks that the -ERR replies a POP3 client can meet
// are actionable: each says what went wrong (the reason) and what the
// user or client can do about it (the advice), after the optional
// response code of RFC 2449 §8 / RFC 3206.
//
// The form is "[CODE] reason; advice" or "[CODE] reason: advice", for
// example "-ERR [LOGIN-DELAY] Logins are limited to one every 15 minutes;
// the next login is allowed in 4 minutes". Check decides whether a text
// has that form: the advice part must hold one of a short list of words
// that tell the reader what to do or when it will work (Advice).
//
// Walk finds the texts in Go source without running it: every string
// expression whose constant part starts with "-ERR " and every Text field
// of an Error composite literal (pop3server.Error, the value a backend
// returns for the client to see). Parts of an expression that are not
// constant (a language tag echoed back, a count) read as "X". A test in
// each package that writes replies walks its own source with it, so a new
// reply without advice fails the build's tests, wherever it is added.
package replytext

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// Advice are the words of which the advice part must hold at least one
// (as a whole word, case-insensitive): what to do, or when the failure
// ends.
var Advice = []string{
	"use", "send", "try", "retry", "wait", "reconnect", "log in", "quit",
	"check", "ask", "tell", "start", "list", "lists", "allowed", "ends",
	"undo", "undoes", "go on", "contact", "choose", "connect",
}

var codeRE = regexp.MustCompile(`^\[[A-Z0-9/-]+\] `)

// Check reports why text (a whole -ERR line, or the Text of an Error,
// with or without its code) is not actionable, or nil.
func Check(text string) error {
	t := strings.TrimPrefix(text, "-ERR ")
	t = codeRE.ReplaceAllString(t, "")
	i := strings.IndexAny(t, ";:")
	for i >= 0 && (i+1 >= len(t) || t[i+1] != ' ') {
		j := strings.IndexAny(t[i+1:], ";:")
		if j < 0 {
			i = -1
			break
		}
		i += 1 + j
	}
	if i < 0 {
		return fmt.Errorf("%q: no advice: write \"reason; advice\" or \"reason: advice\"", text)
	}
	reason, advice := strings.TrimSpace(t[:i]), strings.TrimSpace(t[i+1:])
	if len(strings.Fields(reason)) < 2 {
		return fmt.Errorf("%q: the reason %q says too little", text, reason)
	}
	low := " " + strings.ToLower(strings.Map(func(r rune) rune {
		if r == ',' || r == '.' || r == '(' || r == ')' {
			return ' '
		}
		return r
	}, advice)) + " "
	for _, w := range Advice {
		if strings.Contains(low, " "+w+" ") {
			return nil
		}
	}
	return fmt.Errorf("%q: the advice %q says nothing to do (none of %q)", text, advice, Advice)
}

// Found is one reply text in the source.
type Found struct {
	Pos  string // file:line
	Text string // constant parts joined, "X" for the others
	// Dynamic is set when the text is not constant at all (a Text field
	// set from a variable); Text is then empty and Check does not apply.
	Dynamic bool
}

// Walk parses the non-test Go files of dir and returns the reply texts in
// them, in source order.
func Walk(dir string) ([]Found, error) {
	fset := token.NewFileSet()
	names, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		return nil, err
	}
	sort.Strings(names)
	var files []*ast.File
	consts := map[string]ast.Expr{}
	for _, n := range names {
		if strings.HasSuffix(n, "_test.go") {
			continue
		}
		src, err := os.ReadFile(n)
		if err != nil {
			return nil, err
		}
		f, err := parser.ParseFile(fset, n, src, 0)
		if err != nil {
			return nil, err
		}
		files = append(files, f)
		for _, d := range f.Decls {
			g, ok := d.(*ast.GenDecl)
			if !ok || g.Tok != token.CONST {
				continue
			}
			for _, s := range g.Specs {
				vs := s.(*ast.ValueSpec)
				for k, id := range vs.Names {
					if k < len(vs.Values) {
						consts[id.Name] = vs.Values[k]
					}
				}
			}
		}
	}
	var out []Found
	for _, f := range files {
		ast.Inspect(f, func(n ast.Node) bool {
			switch x := n.(type) {
			case *ast.CompositeLit:
				if !isErrorType(x.Type) {
					return true
				}
				for _, el := range x.Elts {
					kv, ok := el.(*ast.KeyValueExpr)
					if !ok {
						continue
					}
					if k, ok := kv.Key.(*ast.Ident); !ok || k.Name != "Text" {
						continue
					}
					s, constant := eval(kv.Value, consts, 0)
					out = append(out, Found{Pos: pos(fset, kv.Pos()), Text: s, Dynamic: !constant && s == "X"})
				}
				return false
			case *ast.BinaryExpr, *ast.BasicLit:
				s, _ := eval(x.(ast.Expr), consts, 0)
				if strings.HasPrefix(s, "-ERR ") {
					if !isFormatter(s) {
						out = append(out, Found{Pos: pos(fset, x.Pos()), Text: s})
					}
					return false
				}
			case *ast.ValueSpec:
				// A constant is checked where it is declared.
			}
			return true
		})
	}
	return out, nil
}

// isFormatter reports whether s is only the frame of a reply whose text
// comes from elsewhere ("-ERR [%s] %s", "-ERR " + e.Text): that text is
// checked where it is written.
func isFormatter(s string) bool {
	switch strings.TrimPrefix(s, "-ERR ") {
	case "X", "[%s] %s", "[X] X":
		return true
	}
	return false
}

func pos(fset *token.FileSet, p token.Pos) string {
	ps := fset.Position(p)
	return filepath.Base(ps.Filename) + ":" + strconv.Itoa(ps.Line)
}

// isErrorType reports whether t names a type Error (pop3server.Error, or
// Error inside package pop3server).
func isErrorType(t ast.Expr) bool {
	switch x := t.(type) {
	case *ast.Ident:
		return x.Name == "Error"
	case *ast.SelectorExpr:
		return x.Sel.Name == "Error"
	}
	return false
}

// eval returns the string value of e with "X" for what is not constant,
// and whether all of it was constant.
func eval(e ast.Expr, consts map[string]ast.Expr, depth int) (string, bool) {
	if depth > 8 {
		return "X", false
	}
	switch x := e.(type) {
	case *ast.BasicLit:
		if x.Kind == token.STRING {
			s, err := strconv.Unquote(x.Value)
			if err == nil {
				return s, true
			}
		}
	case *ast.ParenExpr:
		return eval(x.X, consts, depth+1)
	case *ast.BinaryExpr:
		if x.Op == token.ADD {
			a, ca := eval(x.X, consts, depth+1)
			b, cb := eval(x.Y, consts, depth+1)
			return a + b, ca && cb
		}
	case *ast.Ident:
		if v, ok := consts[x.Name]; ok {
			return eval(v, consts, depth+1)
		}
	}
	return "X", false
}
