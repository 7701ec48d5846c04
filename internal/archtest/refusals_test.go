package archtest

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestREADMEListsEveryRefusal keeps the README's "Refusals" section complete
// without pinning its wording: every SQLSTATE the proxy refuses with
// (errorf, fatalf and Error literals in proxy/) and every refusal label
// (the guard's refuse calls in rewrite/, the proxy's denial counters) must
// appear in it. A new refusal with a new code or label therefore cannot go
// unlisted; one with a known code should still be added by hand.
func TestREADMEListsEveryRefusal(t *testing.T) {
	readme, err := os.ReadFile(filepath.Join(root(t), "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	section := refusalsSection(string(readme))
	if section == "" {
		t.Fatal(`README.md has no "## Refusals" section`)
	}
	codes, labels := refusalsInCode(t, filepath.Join(root(t), "proxy"))
	rcodes, rlabels := refusalsInCode(t, filepath.Join(root(t), "rewrite"))
	for c := range rcodes {
		codes[c] = true
	}
	for l := range rlabels {
		labels[l] = true
	}
	if len(codes) < 10 || len(labels) < 20 {
		t.Fatalf("found only %d codes and %d labels in the code: the scan is broken", len(codes), len(labels))
	}
	for c := range codes {
		if !strings.Contains(section, c) {
			t.Errorf("SQLSTATE %s is used by a refusal but not in the README's Refusals section", c)
		}
	}
	for l := range labels {
		if !strings.Contains(section, "`"+l+"`") {
			t.Errorf("refusal label %q is not in the README's Refusals section", l)
		}
	}
}

// root is the repository's root directory.
func root(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// refusalsSection is the README's "## Refusals" section, up to the next
// second-level heading.
func refusalsSection(readme string) string {
	_, rest, ok := strings.Cut(readme, "\n## Refusals\n")
	if !ok {
		return ""
	}
	if i := strings.Index(rest, "\n## "); i >= 0 {
		rest = rest[:i]
	}
	return rest
}

// refusalsInCode scans the non-test Go files of dir for refusals: the
// SQLSTATE constants (string constants named code* or Code*) passed to
// errorf, fatalf, refuseCode or set as an Error's Code, and the labels given
// to the guard's refuse and refuseCode and to the denial counter
// (denials.WithLabelValues).
func refusalsInCode(t *testing.T, dir string) (codes, labels map[string]bool) {
	t.Helper()
	codes, labels = map[string]bool{}, map[string]bool{}
	fset := token.NewFileSet()
	files, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		t.Fatal(err)
	}
	consts := map[string]string{}
	var parsed []*ast.File
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		af, err := parser.ParseFile(fset, f, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		parsed = append(parsed, af)
		ast.Inspect(af, func(n ast.Node) bool {
			vs, ok := n.(*ast.ValueSpec)
			if !ok {
				return true
			}
			for i, name := range vs.Names {
				if i < len(vs.Values) && strings.HasPrefix(strings.ToLower(name.Name), "code") {
					if v, ok := stringLit(vs.Values[i]); ok {
						consts[name.Name] = v
					}
				}
			}
			return true
		})
	}
	code := func(e ast.Expr) {
		if id, ok := e.(*ast.Ident); ok && consts[id.Name] != "" {
			codes[consts[id.Name]] = true
		}
	}
	label := func(e ast.Expr) {
		if v, ok := stringLit(e); ok {
			labels[v] = true
		}
	}
	for _, af := range parsed {
		ast.Inspect(af, func(n ast.Node) bool {
			switch x := n.(type) {
			case *ast.CallExpr:
				name := ""
				switch fn := x.Fun.(type) {
				case *ast.Ident:
					name = fn.Name
				case *ast.SelectorExpr:
					name = fn.Sel.Name
				}
				switch {
				case (name == "errorf" || name == "fatalf") && len(x.Args) > 0:
					code(x.Args[0])
				case name == "refuse" && len(x.Args) == 3:
					code(ast.NewIdent("CodeInsufficientPrivilege"))
					label(x.Args[0])
				case name == "refuseCode" && len(x.Args) == 4:
					code(x.Args[0])
					label(x.Args[1])
				case name == "WithLabelValues" && len(x.Args) == 1:
					if sel, ok := x.Fun.(*ast.SelectorExpr); ok && isDenials(sel.X) {
						label(x.Args[0])
					}
				}
			case *ast.CompositeLit:
				// An Error literal (not a NoticeResponse's, which refuses nothing).
				if id, ok := x.Type.(*ast.Ident); !ok || id.Name != "Error" {
					return true
				}
				for _, el := range x.Elts {
					if kv, ok := el.(*ast.KeyValueExpr); ok {
						if k, ok := kv.Key.(*ast.Ident); ok && k.Name == "Code" {
							code(kv.Value)
						}
					}
				}
			}
			return true
		})
	}
	return codes, labels
}

// isDenials reports whether e is a selector ending in .denials (the
// proxy's guard-denial counter).
func isDenials(e ast.Expr) bool {
	sel, ok := e.(*ast.SelectorExpr)
	return ok && sel.Sel.Name == "denials"
}

// stringLit returns the value of a string literal.
func stringLit(e ast.Expr) (string, bool) {
	bl, ok := e.(*ast.BasicLit)
	if !ok || bl.Kind != token.STRING {
		return "", false
	}
	v, err := strconv.Unquote(bl.Value)
	return v, err == nil
}
