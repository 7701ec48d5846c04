package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Test outcomes.
const (
	statusPass = "pass"
	statusFail = "fail"
	statusSkip = "skip"
)

// allSuites are the driver suites, in the order they run.
var allSuites = []string{"pgx", "psycopg", "node-postgres"}

// suite is one driver's own test suite.
type suite interface {
	name() string
	// version names the driver and version the suite tests.
	version() string
	// prepare makes the suite runnable (copies, installs into the
	// temporary directory, compiles) without a database.
	prepare(ctx context.Context) error
	// run runs the whole suite against t. An error means the suite could
	// not be run at all; failing tests are results.
	run(ctx context.Context, t target) (*suiteResult, error)
}

// rerunner is a suite that can run some of its tests by id. A test lost
// through the proxy with no documented refusal is run again by itself, a few
// times, through the same proxy (runMode): one that then passes every time is
// reported as flaky (its loss came from timing under the full run's load), not
// as undocumented, and the report keeps its first failure.
type rerunner interface {
	rerun(ctx context.Context, t target, ids []string) (*suiteResult, error)
}

// Reruns of lost tests: how many times, and at most how many tests (more
// losses than that are not timing).
const (
	rerunTries = 3
	rerunMax   = 20
)

// rerunRecord is how a lost test did when run again by itself.
type rerunRecord struct{ tries, passed int }

// newSuite makes the named suite, working in dir.
func newSuite(name string, opt options, dir string) (suite, error) {
	switch name {
	case "pgx":
		return &pgxSuite{dir: dir}, nil
	case "psycopg":
		if opt.psycopgSrc == "" {
			return nil, fmt.Errorf("the psycopg suite needs its tests, which python3-psycopg does not ship: " +
				"pass -psycopg-src (or PSYCOPG_SRC=) a git repository of github.com/psycopg/psycopg, or leave psycopg out of -suites")
		}
		return &psycopgSuite{dir: dir, src: opt.psycopgSrc, filter: opt.pytestFilter}, nil
	case "node-postgres":
		if opt.nodePGSrc == "" {
			return nil, fmt.Errorf("the node-postgres suite needs its tests, which the pg package on npm does not ship: " +
				"pass -node-pg-src (or NODE_PG_SRC=) a git repository of github.com/brianc/node-postgres, or leave node-postgres out of -suites")
		}
		return &nodeSuite{dir: dir, src: opt.nodePGSrc}, nil
	}
	return nil, fmt.Errorf("unknown suite %q", name)
}

// outcome is one test's result in one run.
type outcome struct {
	status string
	// message is the failure output (for a failed test) or the skip reason.
	message string
}

// suiteResult is one suite's run in one mode.
type suiteResult struct {
	tests   map[string]outcome
	order   []string // test ids in the order they were first seen
	elapsed time.Duration
	// note says what went wrong with the run as a whole (a time limit,
	// a runner that died), if anything.
	note string
	// extra is a suite-specific line for the report (node-postgres: checks).
	extra string
	// reruns are the lost tests run again by themselves, by id.
	reruns map[string]rerunRecord
}

func newSuiteResult() *suiteResult { return &suiteResult{tests: map[string]outcome{}} }

func (s *suiteResult) set(id string, o outcome) {
	if _, ok := s.tests[id]; !ok {
		s.order = append(s.order, id)
	}
	s.tests[id] = o
}

func (s *suiteResult) counts() (pass, fail, skip int) {
	for _, o := range s.tests {
		switch o.status {
		case statusPass:
			pass++
		case statusFail:
			fail++
		case statusSkip:
			skip++
		}
	}
	return
}

// sortedIDs are the result's test ids in a stable order.
func (s *suiteResult) sortedIDs() []string {
	ids := make([]string, 0, len(s.tests))
	for id := range s.tests {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

// command is exec.CommandContext with the environment and directory set and a
// process group of its own, so that a time limit ends the runner's children
// (test binaries, node processes) too.
func command(ctx context.Context, dir string, env []string, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	setProcessGroup(cmd)
	cmd.WaitDelay = 10 * time.Second
	return cmd
}

// firstLines is the first n non-empty lines of s, each cut to 300 bytes.
func firstLines(s string, n int) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		l = strings.TrimRight(l, " \t\r")
		if strings.TrimSpace(l) == "" {
			continue
		}
		if len(l) > 300 {
			l = l[:300] + "…"
		}
		out = append(out, l)
		if len(out) == n {
			break
		}
	}
	return strings.Join(out, "\n")
}

func splitHostPort(addr string) (string, int, error) {
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(p)
	return h, port, err
}

// gitArchive extracts paths of repo at ref into dir (repo may be a work tree
// or a bare repository).
func gitArchive(ctx context.Context, repo, ref, dir string, paths ...string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	archive := exec.CommandContext(ctx, "git", append([]string{"-C", repo, "archive", "--format=tar", ref}, paths...)...)
	tar := exec.CommandContext(ctx, "tar", "-x", "-C", dir)
	pipe, err := archive.StdoutPipe()
	if err != nil {
		return err
	}
	tar.Stdin = pipe
	var aerr strings.Builder
	archive.Stderr = &aerr
	if err := tar.Start(); err != nil {
		return err
	}
	if err := archive.Run(); err != nil {
		tar.Wait()
		return fmt.Errorf("git archive %s in %s: %w: %s", ref, repo, err, strings.TrimSpace(aerr.String()))
	}
	return tar.Wait()
}
