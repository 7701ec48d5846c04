package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
)

// pgxPackages are the pgx packages whose tests run: the driver, the
// connection layer, the types and database/sql.
var pgxPackages = []string{".", "./pgconn", "./pgtype", "./stdlib"}

// pgxSuite is pgx's own tests, at the version go.mod requires, from the Go
// module cache (copied to a writable directory: go test writes there).
type pgxSuite struct {
	dir string
	ver string
}

func (s *pgxSuite) name() string    { return "pgx" }
func (s *pgxSuite) version() string { return "github.com/jackc/pgx/v5 " + s.ver }

func (s *pgxSuite) prepare(ctx context.Context) error {
	out, err := exec.CommandContext(ctx, "go", "list", "-m", "-f", "{{.Version}}", "github.com/jackc/pgx/v5").Output()
	if err != nil {
		return fmt.Errorf("go list -m github.com/jackc/pgx/v5: %w", err)
	}
	s.ver = strings.TrimSpace(string(out))
	out, err = exec.CommandContext(ctx, "go", "mod", "download", "-json", "github.com/jackc/pgx/v5@"+s.ver).Output()
	if err != nil {
		return fmt.Errorf("go mod download pgx %s: %w", s.ver, err)
	}
	var mod struct{ Dir string }
	if err := json.Unmarshal(out, &mod); err != nil || mod.Dir == "" {
		return fmt.Errorf("go mod download pgx %s: no module directory in %q", s.ver, out)
	}
	if err := os.MkdirAll(filepath.Dir(s.dir), 0o755); err != nil {
		return err
	}
	if out, err := exec.CommandContext(ctx, "cp", "-r", mod.Dir, s.dir).CombinedOutput(); err != nil {
		return fmt.Errorf("copying %s: %w: %s", mod.Dir, err, out)
	}
	if out, err := exec.CommandContext(ctx, "chmod", "-R", "u+w", s.dir).CombinedOutput(); err != nil {
		return fmt.Errorf("chmod: %w: %s", err, out)
	}
	// Compile once here, so that each mode's run measures the tests only.
	args := append([]string{"test", "-count=1", "-vet=off", "-run", "^$"}, pgxPackages...)
	if out, err := command(ctx, s.dir, []string{"GOFLAGS=-mod=mod"}, "go", args...).CombinedOutput(); err != nil {
		return fmt.Errorf("compiling pgx's tests: %w: %s", err, out)
	}
	return nil
}

// goTestEvent is one line of go test -json.
type goTestEvent struct {
	Action  string
	Package string
	Test    string
	Output  string
}

func (s *pgxSuite) run(ctx context.Context, t target) (*suiteResult, error) {
	return s.goTest(ctx, t, pgxPackages, "")
}

// rerun runs the tests with these ids (package.TestName[/subtest]): each
// one's whole top-level test, in its package.
func (s *pgxSuite) rerun(ctx context.Context, t target, ids []string) (*suiteResult, error) {
	tops := map[string][]string{} // package → top-level test names
	var pkgs []string
	for _, id := range ids {
		pkg, name, ok := strings.Cut(id, ".")
		if !ok {
			return nil, fmt.Errorf("test id %q has no package", id)
		}
		dir := "./" + pkg
		if pkg == "pgx" {
			dir = "."
		}
		if !slices.Contains(pgxPackages, dir) {
			return nil, fmt.Errorf("test id %q: unknown package %s", id, pkg)
		}
		top, _, _ := strings.Cut(name, "/")
		if _, ok := tops[dir]; !ok {
			pkgs = append(pkgs, dir)
		}
		if !slices.Contains(tops[dir], top) {
			tops[dir] = append(tops[dir], top)
		}
	}
	res := newSuiteResult()
	for _, dir := range pkgs {
		var names []string
		for _, n := range tops[dir] {
			names = append(names, regexp.QuoteMeta(n))
		}
		r, err := s.goTest(ctx, t, []string{dir}, "^("+strings.Join(names, "|")+")$")
		if err != nil {
			return nil, err
		}
		for _, id := range r.order {
			res.set(id, r.tests[id])
		}
	}
	return res, nil
}

// goTest runs go test -json on pkgs (with -run when run is not empty)
// against t and reads each test's outcome.
func (s *pgxSuite) goTest(ctx context.Context, t target, pkgs []string, run string) (*suiteResult, error) {
	url := t.url()
	env := []string{
		"GOFLAGS=-mod=mod",
		"PGX_TEST_DATABASE=" + url,
		"PGX_TEST_TCP_CONN_STRING=" + url,
		"PGX_TEST_SCRAM_PASSWORD_CONN_STRING=" + url,
	}
	// One package at a time (-p 1): the machine is small and the
	// packages share the database.
	args := []string{"test", "-count=1", "-vet=off", "-p", "1", "-json", "-timeout", "30m"}
	if run != "" {
		args = append(args, "-run", run)
	}
	args = append(args, pkgs...)
	cmd := command(ctx, s.dir, env, "go", args...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	res := newSuiteResult()
	output := map[string]*strings.Builder{} // test id → its output
	pkgOutput := map[string]*strings.Builder{}
	running := map[string]bool{}
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	mod := "github.com/jackc/pgx/v5"
	for sc.Scan() {
		var ev goTestEvent
		if json.Unmarshal(sc.Bytes(), &ev) != nil {
			continue
		}
		pkg := strings.TrimPrefix(strings.TrimPrefix(ev.Package, mod), "/")
		if pkg == "" {
			pkg = "pgx"
		}
		if ev.Test == "" {
			if ev.Action == "output" {
				b := pkgOutput[pkg]
				if b == nil {
					b = &strings.Builder{}
					pkgOutput[pkg] = b
				}
				b.WriteString(ev.Output)
			}
			continue
		}
		id := pkg + "." + stableName(ev.Test)
		switch ev.Action {
		case "run":
			running[id] = true
		case "output":
			b := output[id]
			if b == nil {
				b = &strings.Builder{}
				output[id] = b
			}
			b.WriteString(ev.Output)
		case "pass", "fail", "skip":
			delete(running, id)
			o := outcome{status: map[string]string{"pass": statusPass, "fail": statusFail, "skip": statusSkip}[ev.Action]}
			if o.status != statusPass && output[id] != nil {
				o.message = testMessage(output[id].String())
			}
			res.set(id, o)
		}
	}
	waitErr := cmd.Wait()
	// A test that started but never ended died with its package (a panic,
	// go test's own timeout) or with ours: it failed, with the package's
	// last words as its cause.
	for id := range running {
		pkg := id[:strings.Index(id, ".")]
		msg := "the test never ended (its package's test binary died or was stopped)"
		if b := pkgOutput[pkg]; b != nil {
			msg += "\n" + lastLines(b.String(), 6)
		}
		if b := output[id]; b != nil {
			msg += "\n" + lastLines(b.String(), 6)
		}
		res.set(id, outcome{status: statusFail, message: msg})
	}
	if waitErr != nil && len(res.tests) == 0 {
		return nil, fmt.Errorf("go test: %w: %s", waitErr, lastLines(stderr.String(), 10))
	}
	return res, nil
}

// tempDigits are the random digits of a temporary directory's name
// (t.TempDir), which some pgx subtests carry in their names.
var tempDigits = regexp.MustCompile(`[0-9]{6,}`)

// stableName is a test name without the random parts that differ from run
// to run, so that the same test matches across modes.
func stableName(name string) string { return tempDigits.ReplaceAllString(name, "N") }

// testMessage is a failing test's output without go test's own framing lines
// (=== RUN, --- FAIL, and so on), which say nothing about the cause.
func testMessage(out string) string {
	var keep []string
	for _, l := range strings.Split(out, "\n") {
		t := strings.TrimSpace(l)
		if strings.HasPrefix(t, "=== ") || strings.HasPrefix(t, "--- ") {
			continue
		}
		keep = append(keep, l)
	}
	return strings.Join(keep, "\n")
}

// lastLines is the last n non-empty lines of s.
func lastLines(s string, n int) string {
	var lines []string
	for _, l := range strings.Split(s, "\n") {
		if strings.TrimSpace(l) != "" {
			lines = append(lines, strings.TrimRight(l, " \r"))
		}
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
