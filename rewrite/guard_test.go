package rewrite

import (
	"flag"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
)

var updateGolden = flag.Bool("update", false, "rewrite the golden files under testdata from the current results")

const (
	guardCorpusPath = "testdata/guard.sql"
	guardGoldenPath = "testdata/guard.golden"
)

// loadGuardCorpus reads testdata/guard.sql: entries separated by lines
// "-- next", lines starting with "--- " dropped, each entry trimmed.
func loadGuardCorpus(t testing.TB) []string {
	t.Helper()
	data, err := os.ReadFile(guardCorpusPath)
	if err != nil {
		t.Fatalf("reading corpus: %v", err)
	}
	var entries, cur []string
	flush := func() {
		entries = append(entries, strings.TrimSpace(strings.Join(cur, "\n")))
		cur = nil
	}
	for _, line := range strings.Split(string(data), "\n") {
		switch {
		case strings.TrimSpace(line) == "-- next":
			flush()
		case strings.HasPrefix(line, "--- ") || line == "---":
		default:
			cur = append(cur, line)
		}
	}
	flush()
	return entries
}

// goldenLine renders a verdict as one stable line of guard.golden:
// allow|deny, code, reason ("-" when empty), the four flags, and the entry's
// SQL on one line, shortened.
func goldenLine(sql string, v Verdict) string {
	verdict, code, reason := "allow", v.Code, v.Reason
	if !v.Allow {
		verdict = "deny"
	}
	if code == "" {
		code = "-"
	}
	if reason == "" {
		reason = "-"
	}
	excerpt := strings.Join(strings.Fields(sql), " ")
	if excerpt == "" {
		excerpt = "(empty)"
	}
	if r := []rune(excerpt); len(r) > 72 {
		excerpt = string(r[:71]) + "…"
	}
	return fmt.Sprintf("%-5s %-5s %-38s writes=%-5t ddl=%-5t tx=%-5t resets=%-5t | %s",
		verdict, code, reason, v.Writes, v.DDL, v.TxControl, v.ResetsSession, excerpt)
}

func TestGuardGolden(t *testing.T) {
	entries := loadGuardCorpus(t)
	g := NewGuard(GuardConfig{})
	var got []string
	for _, sql := range entries {
		got = append(got, goldenLine(sql, g.Check(sql)))
	}
	if *updateGolden {
		if err := os.WriteFile(guardGoldenPath, []byte(strings.Join(got, "\n")+"\n"), 0o644); err != nil {
			t.Fatalf("writing golden: %v", err)
		}
		return
	}
	data, err := os.ReadFile(guardGoldenPath)
	if err != nil {
		t.Fatalf("reading golden (run with -update to create it): %v", err)
	}
	want := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
	if len(want) != len(got) {
		t.Errorf("golden has %d lines, corpus has %d entries (run with -update and review the diff)", len(want), len(got))
	}
	for i := 0; i < len(got) && i < len(want); i++ {
		if got[i] != want[i] {
			t.Errorf("entry %d:\n got: %s\nwant: %s", i+1, got[i], want[i])
		}
	}
}

func TestGuardCorpusSize(t *testing.T) {
	if n := len(loadGuardCorpus(t)); n < 120 {
		t.Errorf("corpus has %d entries, want at least 120", n)
	}
}

// lexerSettingReasons are the refusals of a value of the settings the proxy
// keeps fixed, answered with 0A000 rather than 42501.
var lexerSettingReasons = map[string]bool{
	"standard_conforming_strings": true, "client_encoding": true,
	"set_config_standard_conforming_strings": true, "set_config_client_encoding": true,
}

// TestGuardVerdictFields checks what the golden file does not show: codes,
// messages and fingerprints.
func TestGuardVerdictFields(t *testing.T) {
	g := NewGuard(GuardConfig{})
	for _, sql := range loadGuardCorpus(t) {
		v := g.Check(sql)
		if v.Allow {
			if v.Code != "" || v.Message != "" {
				t.Errorf("%q: allowed with code %q, message %q", sql, v.Code, v.Message)
			}
			continue
		}
		wantCode := CodeInsufficientPrivilege
		if lexerSettingReasons[v.Reason] {
			wantCode = CodeFeatureNotSupported
		}
		if v.Code != wantCode || v.Reason == "" {
			t.Errorf("%q: refused with code %q, reason %q", sql, v.Code, v.Reason)
		}
		if !strings.Contains(v.Message, " is not allowed through stratum-proxy") || !strings.Contains(v.Message, ": ") {
			t.Errorf("%q: message %q does not say what and why", sql, v.Message)
		}
	}
	for sql, want := range map[string]string{
		"SET ROLE admin":                                                 "SET ROLE is not allowed through stratum-proxy: the session's role is the tenant's",
		"RESET SESSION AUTHORIZATION":                                    "RESET SESSION AUTHORIZATION is not allowed through stratum-proxy: the session's role is the tenant's",
		"SELECT set_config('role', 'x', false)":                          "set_config('role', ...) is not allowed through stratum-proxy: the session's role is the tenant's",
		"DO $$ BEGIN SET LOCAL ROLE admin; END $$":                       "SET LOCAL ROLE is not allowed through stratum-proxy (inside a DO block): the session's role is the tenant's",
		"SET LOCAL stratum.tenant = 'a'":                                 "SET LOCAL stratum.tenant is not allowed through stratum-proxy: the tenant is chosen for the whole session, outside a transaction",
		"SET stratum.x = 'a'":                                            "SET stratum.x is not allowed through stratum-proxy: " + whyStratum,
		"COPY t FROM PROGRAM 'id'":                                       "COPY ... PROGRAM is not allowed through stratum-proxy: it runs a program on the database server",
		"UPDATE pg_settings SET setting = 'x'":                           "a statement that writes to or builds on pg_settings is not allowed through stratum-proxy: updating pg_settings changes session settings, including the role",
		"SELECT set_config(x, 'y', false) FROM t":                        "set_config with a setting name that is not a constant is not allowed through stratum-proxy: it could change the session's role or tenant",
		"ALTER ROLE me SET search_path = x":                              "ALTER ROLE ... SET is not allowed through stratum-proxy: the tenant's role must not reshape roles",
		"ALTER SYSTEM SET work_mem = '1MB'":                              "ALTER SYSTEM is not allowed through stratum-proxy: server configuration belongs to the operator",
		"SET client_encoding = 'SJIS'":                                   "SET client_encoding to SJIS is not allowed through stratum-proxy: " + whyEncoding,
		"SET standard_conforming_strings TO 'off'":                       "SET standard_conforming_strings other than on is not allowed through stratum-proxy: " + whyStandardStrings,
		"SELECT set_config('standard_conforming_strings', 'off', false)": "set_config('standard_conforming_strings', 'off', ...) is not allowed through stratum-proxy: " + whyStandardStrings,
		"SELECT set_config('client_encoding', $1, false)":                "set_config('client_encoding', ...) with a value that is not a constant is not allowed through stratum-proxy: " + whyUnknownValue,
	} {
		if got := g.Check(sql).Message; got != want {
			t.Errorf("%q:\n got %q\nwant %q", sql, got, want)
		}
	}

	a, b := g.Check("SELECT * FROM orders WHERE id = 1"), g.Check("SELECT * FROM orders WHERE id = 2")
	if a.Fingerprint == "" || a.Fingerprint != b.Fingerprint {
		t.Errorf("fingerprints %q, %q: want equal and non-empty for texts differing in literals", a.Fingerprint, b.Fingerprint)
	}
	if c := g.Check("SELECT * FROM customers WHERE id = 1"); c.Fingerprint == a.Fingerprint {
		t.Errorf("different statements share fingerprint %q", c.Fingerprint)
	}
	if v := g.Check("SELEC 1"); v.Fingerprint != "" {
		t.Errorf("unparseable text has fingerprint %q", v.Fingerprint)
	}
}

// TestNeedsFullCheckCoversRefusals: the cheap path never skips a refusal, a
// reset or the proxy's own tenant commands.
func TestNeedsFullCheckCoversRefusals(t *testing.T) {
	g := NewGuard(GuardConfig{})
	for _, sql := range loadGuardCorpus(t) {
		v := g.Check(sql)
		mustCheck := !v.Allow || v.ResetsSession || (v.Reason != "" && v.Reason != "parse_error")
		if mustCheck && !NeedsFullCheck([]byte(sql)) {
			t.Errorf("NeedsFullCheck false for %q, which Check answers %+v", sql, v)
		}
	}
}

func TestNeedsFullCheck(t *testing.T) {
	for sql, want := range map[string]bool{
		"SELECT * FROM orders WHERE id = $1":                false,
		"INSERT INTO orders (id, total) VALUES ($1, $2)":    false,
		"UPDATE orders SET total = total + 1 WHERE id = $1": false,
		"DELETE FROM orders WHERE id = $1":                  false,
		"SELECT role_id, user_roles.x FROM user_roles":      false, // role only as a word
		"SELECT * FROM windows w ORDER BY random()":         false, // do only as a word
		"select 1":                              false,
		"":                                      false,
		"SELECT role FROM users":                true,
		"SET ROLE x":                            true,
		"set\trole x":                           true,
		"SET SESSION AUTHORIZATION x":           true,
		"SET session_authorization = x":         true,
		"select SET_CONFIG('a','b',false)":      true,
		"SET stratum.tenant = 'a'":              true,
		"DISCARD ALL":                           true,
		"RESET ALL":                             true,
		"ALTER SYSTEM SET x = 1":                true,
		"create role x":                         true,
		"LOAD 'x'":                              true,
		"COPY t FROM PROGRAM 'x'":               true,
		"DO$$BEGIN END$$":                       true, // the identifier do$$begin: '$' splits words, conservatively
		"$DO $$ $$":                             true, // '$' cannot start an identifier: "$" then DO
		"SELECT $$x$$DO $b$ $b$":                true, // a string, then DO
		"SELECT 1role":                          true, // leading digits ignored, conservatively
		"SELECT x$role":                         true,
		"DO $$BEGIN END$$":                      true,
		"SELECT 1;DO $$ $$":                     true,
		"SET U&\"r\\006Fle\" TO x":              true,
		"UPDATE pg_settings SET setting = 'x'":  true,
		"SET NAMES 'SJIS'":                      true,
		"SET standard_conforming_strings = off": true,
		"INSERT INTO t VALUES (1) ON CONFLICT DO NOTHING":     true,
		"SELECT \"Role\" FROM t":                              true,
		"SELECT * FROM t WHERE kind = 'role'":                 true,
		"SELECT * FROM roles":                                 false,
		"SELECT authorization_code FROM payments":             true, // substring: conservative
		"GRANT SELECT ON t TO u":                              true,
		"drop table t":                                        true,
		"SELECT 1 -- the quick brown fox jumps over the drop": true,
	} {
		if got := NeedsFullCheck([]byte(sql)); got != want {
			t.Errorf("NeedsFullCheck(%q) = %v, want %v", sql, got, want)
		}
	}
}

func TestNeedsFullCheckDoesNotAllocate(t *testing.T) {
	sql := []byte("SELECT o.id, o.total FROM orders o JOIN customers c ON c.id = o.customer_id WHERE o.id = $1")
	if n := testing.AllocsPerRun(100, func() { NeedsFullCheck(sql) }); n != 0 {
		t.Errorf("NeedsFullCheck allocates %v times", n)
	}
}

// TestClassifyAgreesWithCheck: the keyword fast path and Check never differ.
func TestClassifyAgreesWithCheck(t *testing.T) {
	g := NewGuard(GuardConfig{})
	extra := []string{
		"SELECT * FROM orders", "  select 1", "SELECT * FROM t FOR UPDATE", "SELECT 1 INTO x",
		"insert into t values (1)", "INSERT", "UPDATE t SET a = 1", "DELETE FROM t", "delete",
		"MERGE INTO t USING s ON true WHEN MATCHED THEN DELETE", "SELECT 'into'", "SELECTx", "SELECT",
		"select\x00; set role x", "SELECT 'unterminated", "INSERT INTO t VALUES ('unterminated",
		"SELECT * FROM (WITH d AS (DELETE FROM t RETURNING 1) SELECT 1) s",
	}
	for _, sql := range append(loadGuardCorpus(t), extra...) {
		v := g.Check(sql)
		w, d := g.Classify(sql)
		if w != v.Writes || d != v.DDL {
			t.Errorf("%q: Classify = writes %v, ddl %v; Check = writes %v, ddl %v", sql, w, d, v.Writes, v.DDL)
		}
	}
	for sql, want := range map[string]bool{
		"SELECT * FROM orders": true, "insert into t values (1)": true, "DELETE FROM t": true,
		"SELECT 1; SELECT 2": false, "SELECT * INTO x FROM t": false, "WITH x AS (SELECT 1) SELECT 1": false,
		"SELECT 1 FOR UPDATE": false, "CREATE TABLE t (x int)": false,
	} {
		if _, _, ok := classifyByKeyword(sql); ok != want {
			t.Errorf("classifyByKeyword(%q) answered %v, want %v", sql, ok, want)
		}
	}
}

func TestGuardCache(t *testing.T) {
	g := NewGuard(GuardConfig{CacheSize: 3})
	first := g.Check("SET ROLE admin")
	if got := g.Check("SET ROLE admin"); got != first {
		t.Errorf("second Check differs: %+v vs %+v", got, first)
	}
	if _, ok := g.cache.Get("SET ROLE admin"); !ok {
		t.Error("verdict not cached")
	}
	for i := 0; i < 10; i++ {
		g.Check(fmt.Sprintf("SELECT %d", i))
	}
	if n := g.cache.Len(); n != 3 {
		t.Errorf("cache holds %d verdicts, want 3 (its bound)", n)
	}

	long := "SELECT 1 /*" + strings.Repeat("x", maxCachedSQLLen) + "*/; SET ROLE admin"
	g2 := NewGuard(GuardConfig{})
	if v := g2.Check(long); v.Allow || v.Reason != "set_role" {
		t.Errorf("long text: %+v", v)
	}
	if g2.cache.Len() != 0 {
		t.Error("a text over 8 KiB was cached")
	}
	if NewGuard(GuardConfig{CacheSize: -1}).cache == nil {
		t.Error("no cache for a negative size")
	}
}

// TestGuardConcurrent runs Check from many goroutines (run with -race) and
// compares with sequential results.
func TestGuardConcurrent(t *testing.T) {
	entries := loadGuardCorpus(t)
	want := make([]Verdict, len(entries))
	for i, sql := range entries {
		want[i] = checkSQL(sql)
	}
	g := NewGuard(GuardConfig{CacheSize: 64}) // smaller than the corpus: evictions race with hits
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for round := 0; round < 3; round++ {
				for i := range entries {
					j := (i + w*17) % len(entries)
					if got := g.Check(entries[j]); got != want[j] {
						t.Errorf("entry %d: concurrent verdict %+v, want %+v", j+1, got, want[j])
					}
					g.Classify(entries[j])
				}
			}
		}(w)
	}
	wg.Wait()
}

func TestUnsafeClientEncoding(t *testing.T) {
	for enc, want := range map[string]bool{
		"SJIS": true, "Shift_JIS": true, "win-932": true, "BIG5": true, "GB18030": true,
		"UTF8": false, "utf-8": false, "LATIN1": false, "EUC_JP": false, "SQL_ASCII": false,
	} {
		if got := unsafeClientEncoding(enc); got != want {
			t.Errorf("unsafeClientEncoding(%q) = %v", enc, got)
		}
	}
}

func TestGuardStringDecoding(t *testing.T) {
	for raw, want := range map[string]string{
		`'a''b'`:              "a'b",
		"'a'\n'b'":            "ab",
		`E'\x53ET \u0052OLE'`: "SET ROLE",
		`e'\123\\'`:           `S\`,
		`$$x$$`:               "x",
		`$t$SET ROLE$t$`:      "SET ROLE",
		`U&'\0072ole'`:        "role",
		`'unterminated`:       `'unterminated`,
	} {
		toks, ok := guardScanTokens(raw)
		if !ok || len(toks) == 0 {
			// Unterminated: the raw text stands.
			if got := guardStringValue(guardToken{text: raw}); got != want {
				t.Errorf("%s: %q, want %q", raw, got, want)
			}
			continue
		}
		if got := guardStringValue(toks[0]); got != want {
			t.Errorf("%s: %q, want %q", raw, got, want)
		}
	}
}

func TestGuardNestingLimit(t *testing.T) {
	nest := func(inner string, levels int) string {
		for i := 0; i < levels; i++ {
			inner = fmt.Sprintf("DO $t%d$ BEGIN EXECUTE '%s'; END $t%d$", i, strings.ReplaceAll(inner, "'", "''"), i)
		}
		return inner
	}
	for levels, want := range map[int]string{1: "set_role", 3: "set_role", 4: "nesting_too_deep", 10: "nesting_too_deep"} {
		if v := checkSQL(nest("SET ROLE x", levels)); v.Allow || v.Reason != want {
			t.Errorf("%d levels: %+v, want refusal %s", levels, v, want)
		}
	}
	if v := checkSQL(nest("SELECT 1", 3)); !v.Allow {
		t.Errorf("3 innocent levels refused: %+v", v)
	}
}

func TestGuardEdgeCases(t *testing.T) {
	for sql, want := range map[string]string{
		// PostgreSQL and pg_query stop at the first NUL.
		"SELECT 1\x00; SET ROLE admin": "",
		"SET ROLE admin\x00":           "set_role",
		// Setting names fold ASCII only: these name no protected setting.
		"SET \"\u017ftratum.x\" = 'a'":                         "",
		"SET \"\u212aole\" = 'a'":                              "",
		"SELECT set_config('\u017ftratum.tenant', 'x', false)": "",
	} {
		v := checkSQL(sql)
		if (want == "") != v.Allow || (want != "" && v.Reason != want) {
			t.Errorf("%q: %+v, want reason %q", sql, v, want)
		}
	}
	cmd, err := ClassifyTenantCommand("SET \"\u017ftratum.tenant\" = 'x'")
	if err != nil || cmd.Kind != NotTenantCommand {
		t.Errorf("long s folded into stratum.tenant: %+v, %v", cmd, err)
	}
}
