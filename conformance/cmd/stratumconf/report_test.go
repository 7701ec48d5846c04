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
