package archtest

import (
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const module = "github.com/stratum-hq/stratum-proxy/"

// allowed lists, for each top-level package, which of our packages it may
// import. "internal" stands for any leaf helper under internal/.
var allowed = map[string][]string{
	"migrations":        {},
	"rewrite":           {},
	"policy":            {"internal"},
	"catalog":           {"migrations", "policy", "internal"},
	"router":            {"catalog", "policy", "internal"},
	"provision":         {"catalog", "policy", "internal"},
	"proxy":             {"router", "policy", "catalog", "rewrite", "internal"},
	"admin":             {"provision", "policy", "catalog", "rewrite", "internal"},
	"server":            {"proxy", "admin", "router", "provision", "policy", "catalog", "rewrite", "internal"},
	"cli":               {},
	"cmd/stratum-proxy": {"server", "cli", "proxy", "router", "provision", "internal"},
	"internal":          {"internal"},
	// The end-to-end harness starts a whole stack; only tests import it.
	"internal/stacktest": {"server", "router", "provision", "catalog", "internal"},
	"e2e":                {"*"},
	"bench":              {"*"},
	// The conformance run starts a whole stack and provisions its tenants.
	"conformance": {"server", "router", "provision", "internal"},
}

// testOnly lists what a package's tests may import besides its own rules
// (they check through a lower package what the package did).
var testOnly = map[string][]string{
	"cli":   {"catalog"},
	"admin": {"router"},
}

// TestImportArrows parses every Go file of the module and fails when a package
// imports one of ours that the design does not let it import, or when anything
// imports cmd.
func TestImportArrows(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	checked := 0
	err = filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata") && path != root {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") {
			return nil
		}
		rel, _ := filepath.Rel(root, filepath.Dir(path))
		rel = filepath.ToSlash(rel)
		owner := topLevel(rel)
		rules, ok := allowed[owner]
		if !ok {
			t.Errorf("%s: package %s has no import rule; add one to allowed", path, rel)
			return nil
		}
		f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		isTest := strings.HasSuffix(path, "_test.go")
		for _, imp := range f.Imports {
			p := strings.Trim(imp.Path.Value, `"`)
			if !strings.HasPrefix(p, module) {
				continue
			}
			checked++
			target := topLevel(strings.TrimPrefix(p, module))
			if target == "cmd/stratum-proxy" {
				t.Errorf("%s imports %s: nothing imports cmd", path, p)
				continue
			}
			if isTest && strings.HasPrefix(target, "internal") {
				continue // test harnesses live under internal/
			}
			if target == owner && owner != "internal" {
				continue
			}
			if !permits(rules, target) && !(isTest && permits(testOnly[owner], target)) {
				t.Errorf("%s imports %s: %s may import only %v", path, p, owner, rules)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if checked == 0 {
		t.Fatal("no imports of our packages found; is the walk rooted right?")
	}
}

func topLevel(rel string) string {
	switch {
	case strings.HasPrefix(rel, "cmd/"):
		return rel
	case rel == "internal/stacktest":
		return rel
	case strings.HasPrefix(rel, "internal"):
		return "internal"
	}
	first, _, _ := strings.Cut(rel, "/")
	return first
}

func permits(rules []string, target string) bool {
	for _, r := range rules {
		if r == "*" || r == target {
			return true
		}
	}
	return false
}
