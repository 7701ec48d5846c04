package main

import (
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestCommittedRefusalsParse reads the reviewed table make conformance uses:
// a malformed row must fail here, not at the end of a long run.
func TestCommittedRefusalsParse(t *testing.T) {
	if _, err := readRefusals(filepath.Join("..", "..", "refusals.md")); err != nil {
		t.Fatal(err)
	}
}

// TestRefusalNeedsSuiteTestAndCause checks that a loss is excused only when
// its suite, its test id and its failure message all match one row.
func TestRefusalNeedsSuiteTestAndCause(t *testing.T) {
	path := filepath.Join(t.TempDir(), "refusals.md")
	table := "| suite | test | failure contains | README section |\n|---|---|---|---|\n" +
		"| pgx | `^pgconn\\.TestConnectWith` | `(SQLSTATE 42704)` | Startup parameters |\n"
	if err := os.WriteFile(path, []byte(table), 0o644); err != nil {
		t.Fatal(err)
	}
	rs, err := readRefusals(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 1 {
		t.Fatalf("read %d refusals, want 1", len(rs))
	}
	for _, c := range []struct {
		suite, id, msg, want string
	}{
		{"pgx", "pgconn.TestConnectWithParams", "FATAL: ... (SQLSTATE 42704)", "Startup parameters"},
		{"psycopg", "pgconn.TestConnectWithParams", "FATAL: ... (SQLSTATE 42704)", ""},
		{"pgx", "pgconn.TestOther", "FATAL: ... (SQLSTATE 42704)", ""},
		{"pgx", "pgconn.TestConnectWithParams", "FATAL: ... (SQLSTATE 08P01)", ""},
	} {
		if got := matchRefusal(rs, c.suite, c.id, c.msg); got != c.want {
			t.Errorf("matchRefusal(%s, %s, %q) = %q, want %q", c.suite, c.id, c.msg, got, c.want)
		}
	}
}

// TestCompareCountsLossesOnlyOfDirectPasses checks the comparison: a test
// lost is one that passed directly and failed, skipped or did not run
// through the proxy; a test that fails directly is never a loss.
func TestCompareCountsLossesOnlyOfDirectPasses(t *testing.T) {
	direct, through := newSuiteResult(), newSuiteResult()
	for id, st := range map[string]string{"kept": statusPass, "failed": statusPass, "skipped": statusPass,
		"missing": statusPass, "brokenDirect": statusFail, "gained": statusFail} {
		direct.set(id, outcome{status: st})
	}
	through.set("kept", outcome{status: statusPass})
	through.set("failed", outcome{status: statusFail, message: "boom"})
	through.set("skipped", outcome{status: statusSkip, message: "no"})
	through.set("brokenDirect", outcome{status: statusFail})
	through.set("gained", outcome{status: statusPass})
	rs := []refusal{{suite: "*", test: mustRegexp(t, "^failed$"), cause: "boom", section: "X"}}
	c := compare("s", modeSession, direct, through, rs)
	if c.direct != 4 || c.kept != 1 || len(c.lost) != 3 || c.undocumented != 2 || c.gained != 1 {
		t.Fatalf("direct %d kept %d lost %d undocumented %d gained %d; want 4 1 3 2 1",
			c.direct, c.kept, len(c.lost), c.undocumented, c.gained)
	}
	if c.verdict() != "MISS" {
		t.Errorf("verdict %s with undocumented losses", c.verdict())
	}
}

// TestParentOfDocumentedSubtestsIsDocumented: a Go test that failed only
// because its subtests did (no output of its own) takes their refusal when
// every lost subtest is documented, and not when one is undocumented or when
// it has output of its own.
func TestParentOfDocumentedSubtestsIsDocumented(t *testing.T) {
	direct, through := newSuiteResult(), newSuiteResult()
	for _, id := range []string{"P", "P/a", "P/b", "Q", "Q/a", "Q/b", "R", "R/a"} {
		direct.set(id, outcome{status: statusPass})
	}
	for id, msg := range map[string]string{"P": "", "P/a": "refused", "P/b": "refused",
		"Q": "", "Q/a": "refused", "Q/b": "boom", "R": "own failure", "R/a": "refused"} {
		through.set(id, outcome{status: statusFail, message: msg})
	}
	rs := []refusal{{suite: "*", test: mustRegexp(t, "/a$|^P/b$"), cause: "refused", section: "S"}}
	c := compare("s", modeSession, direct, through, rs)
	got := map[string]string{}
	for _, l := range c.lost {
		got[l.id] = l.refusal
	}
	if !strings.HasPrefix(got["P"], "S ") {
		t.Errorf("P (all subtests documented) refusal %q, want S", got["P"])
	}
	if got["Q"] != "" || got["R"] != "" {
		t.Errorf("Q (an undocumented subtest) %q, R (output of its own) %q: want both undocumented", got["Q"], got["R"])
	}
	if c.undocumented != 3 { // Q, Q/b, R
		t.Errorf("undocumented %d, want 3", c.undocumented)
	}
}

func mustRegexp(t *testing.T, s string) *regexp.Regexp {
	t.Helper()
	re, err := regexp.Compile(s)
	if err != nil {
		t.Fatal(err)
	}
	return re
}

// TestNodeFailureKeepsTheError: a failure whose error line is above the
// stack trace's tail still names it, so a refusal row can match it.
func TestNodeFailureKeepsTheError(t *testing.T) {
	out := "130-tests.jsMessage: ifError got unwanted exception: Command failed: psql template1\npsql: error: connection failed: FATAL:  database \"template1\" does not exist\n" +
		strings.Repeat("    at somewhere (file.js:1:1)\n", 20)
	msg := nodeFailure(out, errors.New("exit status 255"))
	if !strings.Contains(msg, `database "template1" does not exist`) || !strings.HasPrefix(msg, "exit status 255\n") {
		t.Errorf("nodeFailure lost the error line: %q", msg)
	}
}

// TestFlakyOnlyWhenEveryRerunPasses checks the rerun classification: a loss
// with no refusal that passed every time it ran again by itself is flaky
// (not undocumented, still not kept); one that failed any rerun stays
// undocumented, with the reruns noted; a documented refusal stays one.
func TestFlakyOnlyWhenEveryRerunPasses(t *testing.T) {
	direct, through := newSuiteResult(), newSuiteResult()
	for _, id := range []string{"timing", "broken", "norerun", "refused"} {
		direct.set(id, outcome{status: statusPass})
		through.set(id, outcome{status: statusFail, message: "boom"})
	}
	through.set("refused", outcome{status: statusFail, message: "not allowed through stratum-proxy"})
	through.reruns = map[string]rerunRecord{"timing": {tries: 3, passed: 3}, "broken": {tries: 3, passed: 2}}
	rs := []refusal{{suite: "*", test: regexp.MustCompile("^refused$"), cause: "not allowed", section: "Refusals"}}
	c := compare("s", "transaction", direct, through, rs)
	if c.kept != 0 || len(c.lost) != 4 || c.flaky != 1 || c.undocumented != 2 {
		t.Fatalf("kept %d, lost %d, flaky %d, undocumented %d; want 0, 4, 1, 2", c.kept, len(c.lost), c.flaky, c.undocumented)
	}
	for _, l := range c.lost {
		if got, want := l.flaky, l.id == "timing"; got != want {
			t.Errorf("%s: flaky %v, want %v", l.id, got, want)
		}
		if l.id == "broken" && !strings.Contains(l.rerun, "passed 2 of 3") {
			t.Errorf("broken's rerun note %q", l.rerun)
		}
	}
	if c.verdict() != "MISS" {
		t.Errorf("verdict %s with undocumented losses", c.verdict())
	}
}

// TestPsycopgNodeID checks the mapping from JUnit test ids to pytest node ids.
func TestPsycopgNodeID(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"tests/pool/test_pool.py", "tests/test_conninfo.py"} {
		if err := os.MkdirAll(filepath.Join(dir, filepath.Dir(f)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	s := &psycopgSuite{dir: dir}
	for id, want := range map[string]string{
		"tests.pool.test_pool::test_queue":                          "tests/pool/test_pool.py::test_queue",
		"tests.test_conninfo.TestConnectionInfo::test_x[a.b-c::d]":  "tests/test_conninfo.py::TestConnectionInfo::test_x[a.b-c::d]",
		"tests.test_conninfo.TestConnectionInfo.Inner::test_y[off]": "tests/test_conninfo.py::TestConnectionInfo::Inner::test_y[off]",
	} {
		if got, err := s.nodeID(id); err != nil || got != want {
			t.Errorf("nodeID(%s) = %q, %v; want %q", id, got, err, want)
		}
	}
	if _, err := s.nodeID("tests.missing::test_z"); err == nil {
		t.Error("nodeID of a test in no module succeeded")
	}
}
