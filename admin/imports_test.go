package admin_test

import (
	"go/parser"
	"go/token"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestImportArrows keeps admin below cmd and beside proxy: it may use router
// and catalog, never proxy or cmd.
func TestImportArrows(t *testing.T) {
	const module = "github.com/stratum-hq/stratum-proxy/"
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range f.Imports {
			path, _ := strconv.Unquote(imp.Path.Value)
			for _, banned := range []string{"proxy", "cmd"} {
				if path == module+banned || strings.HasPrefix(path, module+banned+"/") {
					t.Errorf("%s imports %s; admin must not import %s", name, path, banned)
				}
			}
		}
	}
}
