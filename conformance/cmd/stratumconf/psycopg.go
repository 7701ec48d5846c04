package main

import (
	"context"
	"encoding/xml"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// debianPython is the interpreter Debian's python3-psycopg and python3-pytest
// are installed for; a python3 earlier on PATH (pyenv, a virtualenv) may not
// see them.
const debianPython = "/usr/bin/python3"

// psycopgSuite is psycopg 3's own tests at the tag of the installed psycopg
// (Debian's python3-psycopg), taken from a git repository of psycopg: the
// Debian package does not ship them and Debian's source packages may be out
// of reach.
type psycopgSuite struct {
	dir, src, filter string
	ver              string
}

func (s *psycopgSuite) name() string    { return "psycopg" }
func (s *psycopgSuite) version() string { return "psycopg " + s.ver + " (Debian python3-psycopg)" }

func (s *psycopgSuite) prepare(ctx context.Context) error {
	out, err := exec.CommandContext(ctx, debianPython, "-c", "import psycopg, pytest; print(psycopg.__version__)").CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s cannot import psycopg and pytest (conformance/install-deps installs python3-psycopg and python3-pytest): %s",
			debianPython, strings.TrimSpace(string(out)))
	}
	s.ver = strings.TrimSpace(string(out))
	// Tags are plain versions (3.1.7).
	if err := gitArchive(ctx, s.src, s.ver, s.dir, "tests", "pyproject.toml"); err != nil {
		return fmt.Errorf("taking psycopg's tests at tag %s: %w", s.ver, err)
	}
	return nil
}

// junit is the part of pytest's --junitxml report that is read.
type junit struct {
	Suites []junitSuite `xml:"testsuite"`
}

type junitSuite struct {
	Cases []junitCase `xml:"testcase"`
}

type junitCase struct {
	Class   string        `xml:"classname,attr"`
	Name    string        `xml:"name,attr"`
	Failure *junitMessage `xml:"failure"`
	Error   *junitMessage `xml:"error"`
	Skipped *junitMessage `xml:"skipped"`
}

type junitMessage struct {
	Message string `xml:"message,attr"`
	Text    string `xml:",chardata"`
}

func (s *psycopgSuite) run(ctx context.Context, t target) (*suiteResult, error) {
	var args []string
	if s.filter != "" {
		args = append(args, "-k", s.filter)
	}
	return s.pytest(ctx, t, t.mode, args)
}

// rerun runs the tests with these ids (as run reports them:
// module.path[.Class]::name) by their pytest node ids.
func (s *psycopgSuite) rerun(ctx context.Context, t target, ids []string) (*suiteResult, error) {
	var nodes []string
	for _, id := range ids {
		n, err := s.nodeID(id)
		if err != nil {
			return nil, err
		}
		nodes = append(nodes, n)
	}
	return s.pytest(ctx, t, t.mode+"-rerun", nodes)
}

// nodeID turns a test id of the JUnit report (tests.pool.test_pool::test_queue,
// tests.test_conninfo.TestConnectionInfo::test_x[p]) into pytest's node id
// (tests/pool/test_pool.py::test_queue,
// tests/test_conninfo.py::TestConnectionInfo::test_x[p]): the longest dotted
// prefix of the class that is a file of the suite is the module.
func (s *psycopgSuite) nodeID(id string) (string, error) {
	class, name, ok := strings.Cut(id, "::")
	if !ok {
		return "", fmt.Errorf("test id %q has no ::", id)
	}
	parts := strings.Split(class, ".")
	for k := len(parts); k > 0; k-- {
		file := filepath.Join(parts[:k]...) + ".py"
		if _, err := os.Stat(filepath.Join(s.dir, file)); err == nil {
			return strings.Join(append(append([]string{filepath.ToSlash(file)}, parts[k:]...), name), "::"), nil
		}
	}
	return "", fmt.Errorf("test id %q: no module of it in %s", id, s.dir)
}

// pytest runs pytest with args added, reporting to junit-<tag>.xml.
func (s *psycopgSuite) pytest(ctx context.Context, t target, tag string, extra []string) (*suiteResult, error) {
	report := filepath.Join(s.dir, "junit-"+tag+".xml")
	os.Remove(report)
	// The mypy tests check psycopg's type annotations, not the database;
	// they need mypy and take long. pytest keeps its cache in the copy of
	// the tests, one per mode: psycopg's conftest.py refuses to run after a
	// run that did not finish (it takes that for a segfault), and a run the
	// time limit stopped must not stop the next mode's.
	args := append([]string{"-m", "pytest", "-q", "-rN", "--junitxml=" + report, "-m", "not mypy",
		"-o", "cache_dir=.pytest_cache_" + tag}, extra...)
	cmd := command(ctx, s.dir, []string{"PSYCOPG_TEST_DSN=" + t.keywords(), "PYTHONDONTWRITEBYTECODE=1"}, debianPython, args...)
	out, err := cmd.CombinedOutput()
	os.WriteFile(filepath.Join(s.dir, "pytest-"+tag+".log"), out, 0o644)
	b, rerr := os.ReadFile(report)
	if rerr != nil {
		if ctx.Err() != nil {
			return &suiteResult{tests: map[string]outcome{}, note: "stopped by the time limit before pytest wrote its report"}, nil
		}
		return nil, fmt.Errorf("pytest wrote no report (%v): %s", err, lastLines(string(out), 15))
	}
	var j junit
	if err := xml.Unmarshal(b, &j); err != nil {
		return nil, fmt.Errorf("reading %s: %w", report, err)
	}
	res := newSuiteResult()
	for _, su := range j.Suites {
		for _, c := range su.Cases {
			id := c.Class + "::" + c.Name
			switch {
			case c.Failure != nil:
				res.set(id, outcome{status: statusFail, message: pytestMessage(c.Failure)})
			case c.Error != nil:
				res.set(id, outcome{status: statusFail, message: pytestMessage(c.Error)})
			case c.Skipped != nil:
				res.set(id, outcome{status: statusSkip, message: c.Skipped.Message})
			default:
				res.set(id, outcome{status: statusPass})
			}
		}
	}
	return res, nil
}

// pytestMessage puts the exception line (pytest's message attribute) before
// the traceback, whose last lines say where it came from.
func pytestMessage(m *junitMessage) string {
	return strings.TrimSpace(m.Message) + "\n" + lastLines(m.Text, 8)
}
