package main

import (
	"fmt"
	"os"
	"regexp"
	"strings"
)

// refusal is one row of the reviewed table of deliberate refusals
// (conformance/refusals.md): a test that may be lost through the proxy
// because the proxy refuses on purpose what it does, as the README documents.
// A lost test counts as a documented refusal only when its suite, its id and
// its failure message all match a row; nothing is excused by default.
type refusal struct {
	suite   string         // a suite name, or * for all
	test    *regexp.Regexp // matched against the test id
	cause   string         // a substring of the failure message
	section string         // the README section that documents the refusal
}

// readRefusals reads the markdown table of path: the rows after the header's
// |---| line, columns suite, test regexp, cause, README section (further
// columns are for the reader).
func readRefusals(path string) ([]refusal, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading the refusals table: %w", err)
	}
	var out []refusal
	inTable := false
	for n, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if !strings.HasPrefix(line, "|") {
			inTable = false
			continue
		}
		if strings.HasPrefix(line, "|---") || strings.HasPrefix(line, "| ---") {
			inTable = true
			continue
		}
		if !inTable {
			continue
		}
		cols := splitRow(line)
		if len(cols) < 4 {
			return nil, fmt.Errorf("%s:%d: a refusal row needs suite, test, cause and README section", path, n+1)
		}
		re, err := regexp.Compile(unticked(cols[1]))
		if err != nil {
			return nil, fmt.Errorf("%s:%d: test pattern: %w", path, n+1, err)
		}
		r := refusal{suite: unticked(cols[0]), test: re, cause: unticked(cols[2]), section: cols[3]}
		if r.cause == "" || r.section == "" {
			return nil, fmt.Errorf("%s:%d: a refusal needs a cause to match and the README section that documents it", path, n+1)
		}
		out = append(out, r)
	}
	return out, nil
}

// splitRow splits a markdown table row on its unescaped pipes.
func splitRow(line string) []string {
	line = strings.TrimSuffix(strings.TrimPrefix(line, "|"), "|")
	var cols []string
	var cur strings.Builder
	for i := 0; i < len(line); i++ {
		if line[i] == '\\' && i+1 < len(line) && line[i+1] == '|' {
			cur.WriteByte('|')
			i++
			continue
		}
		if line[i] == '|' {
			cols = append(cols, strings.TrimSpace(cur.String()))
			cur.Reset()
			continue
		}
		cur.WriteByte(line[i])
	}
	return append(cols, strings.TrimSpace(cur.String()))
}

// unticked removes the backticks around a code span.
func unticked(s string) string {
	if len(s) >= 2 && strings.HasPrefix(s, "`") && strings.HasSuffix(s, "`") {
		return s[1 : len(s)-1]
	}
	return s
}

// matchRefusal is the README section of the first refusal that matches a lost
// test, or "".
func matchRefusal(rs []refusal, suite, id, message string) string {
	for _, r := range rs {
		if (r.suite == "*" || r.suite == suite) && r.test.MatchString(id) && strings.Contains(message, r.cause) {
			return r.section
		}
	}
	return ""
}
