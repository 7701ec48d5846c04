package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// nodeFileTimeout bounds one node-postgres test file: the suite's own runner
// gives each test 5 s, and a file holds at most a few dozen.
const nodeFileTimeout = 3 * time.Minute

// nodeSuite is node-postgres's integration tests (packages/pg/test/integration)
// at the newest pg@<version> tag of a git repository of node-postgres, run
// against that version of pg installed from npm. The npm package does not
// ship its tests.
//
// Its runner ends a file at the first failing test, so the unit of comparison
// is the file; the checks (✔ lines) each file printed are counted as well.
type nodeSuite struct {
	dir, src string
	ver      string
}

func (s *nodeSuite) name() string    { return "node-postgres" }
func (s *nodeSuite) version() string { return "pg " + s.ver + " (npm)" }

// pgDir is where the installed pg package, and the tests copied into it, are.
func (s *nodeSuite) pgDir() string { return filepath.Join(s.dir, "node_modules", "pg") }

func (s *nodeSuite) prepare(ctx context.Context) error {
	out, err := exec.CommandContext(ctx, "git", "-C", s.src, "tag", "--list", "pg@*", "--sort=-v:refname").Output()
	if err != nil {
		return fmt.Errorf("listing the pg@ tags of %s: %w", s.src, err)
	}
	tags := strings.Fields(string(out))
	if len(tags) == 0 {
		return fmt.Errorf("%s has no pg@<version> tag", s.src)
	}
	tag := tags[0]
	s.ver = strings.TrimPrefix(tag, "pg@")
	pkgJSON, err := exec.CommandContext(ctx, "git", "-C", s.src, "show", tag+":packages/pg/package.json").Output()
	if err != nil {
		return fmt.Errorf("reading packages/pg/package.json at %s: %w", tag, err)
	}
	var pkg struct{ DevDependencies map[string]string }
	if err := json.Unmarshal(pkgJSON, &pkg); err != nil {
		return err
	}
	// pg itself brings its dependencies (pg-types, pgpass, ...); the
	// tests also need these of its development dependencies, at the
	// versions the repository pins.
	install := []string{"pg@" + s.ver}
	for _, dep := range []string{"async", "bluebird", "co", "pg-copy-streams"} {
		v, ok := pkg.DevDependencies[dep]
		if !ok {
			return fmt.Errorf("packages/pg/package.json at %s has no development dependency %s", tag, dep)
		}
		install = append(install, dep+"@"+v)
	}
	if err := os.MkdirAll(s.dir, 0o755); err != nil {
		return err
	}
	args := append([]string{"install", "--prefix", s.dir, "--no-save", "--no-package-lock", "--no-audit", "--no-fund", "--loglevel=error"}, install...)
	if out, err := command(ctx, s.dir, nil, "npm", args...).CombinedOutput(); err != nil {
		return fmt.Errorf("npm install %s: %w: %s", strings.Join(install, " "), err, lastLines(string(out), 10))
	}
	tmp := filepath.Join(s.dir, "src")
	if err := gitArchive(ctx, s.src, tag, tmp, "packages/pg/test"); err != nil {
		return err
	}
	return os.Rename(filepath.Join(tmp, "packages", "pg", "test"), filepath.Join(s.pgDir(), "test"))
}

// files are the integration test files, relative to the pg package.
func (s *nodeSuite) files() ([]string, error) {
	var files []string
	root := filepath.Join(s.pgDir(), "test", "integration")
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && strings.HasSuffix(p, "-tests.js") {
			rel, _ := filepath.Rel(s.pgDir(), p)
			files = append(files, rel)
		}
		return nil
	})
	sort.Strings(files)
	return files, err
}

func (s *nodeSuite) run(ctx context.Context, t target) (*suiteResult, error) {
	files, err := s.files()
	if err != nil {
		return nil, err
	}
	env := []string{
		"PGHOST=" + t.host, fmt.Sprintf("PGPORT=%d", t.port), "PGUSER=" + t.user,
		"PGPASSWORD=" + t.password, "PGDATABASE=" + t.database, "PGSSLMODE=disable",
	}
	res := newSuiteResult()
	checks := 0
	for _, f := range files {
		if ctx.Err() != nil {
			res.set(f, outcome{status: statusFail, message: "not run: the suite's time limit was reached"})
			continue
		}
		fctx, cancel := context.WithTimeout(ctx, nodeFileTimeout)
		out, err := command(fctx, s.pgDir(), env, "node", f).CombinedOutput()
		timedOut := fctx.Err() != nil
		cancel()
		n := strings.Count(string(out), "✔")
		checks += n
		switch {
		case err == nil:
			res.set(f, outcome{status: statusPass, message: fmt.Sprintf("%d checks", n)})
		case timedOut:
			res.set(f, outcome{status: statusFail, message: fmt.Sprintf("stopped after %v\n%s", nodeFileTimeout, lastLines(string(out), 8))})
		default:
			res.set(f, outcome{status: statusFail, message: nodeFailure(string(out), err)})
		}
	}
	res.extra = fmt.Sprintf("%d checks (✔) printed", checks)
	return res, nil
}

// nodeFailure is the cause of a failed file: from the suite runner's FAILED!
// line on when there is one (the failing test's name is just before it),
// else the end of the output.
func nodeFailure(out string, err error) string {
	if i := strings.Index(out, "FAILED!"); i >= 0 {
		start := strings.LastIndex(out[:i], "\n") + 1
		return strings.TrimSpace(out[start:])
	}
	tail := lastLines(out, 10)
	// The errors themselves may be above the stack trace the tail shows (a
	// child process's stderr, for one): put the first few in front.
	var errs []string
	for line := range strings.SplitSeq(out, "\n") {
		if strings.Contains(line, "rror") && !strings.Contains(tail, line) && len(errs) < 3 {
			errs = append(errs, strings.TrimSpace(line))
		}
	}
	if len(errs) > 0 {
		return fmt.Sprintf("%v\n%s\n%s", err, strings.Join(errs, "\n"), tail)
	}
	return fmt.Sprintf("%v\n%s", err, tail)
}
