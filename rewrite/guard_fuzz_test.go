package rewrite

import "testing"

// FuzzGuard: Check, Classify and NeedsFullCheck never panic; when
// NeedsFullCheck is false, Check allows with no reason the proxy must act on
// (so the cheap path never skips a refusal); Classify always equals Check.
func FuzzGuard(f *testing.F) {
	for _, sql := range loadGuardCorpus(f) {
		f.Add(sql)
	}
	g := NewGuard(GuardConfig{CacheSize: 256})
	f.Fuzz(func(t *testing.T, sql string) {
		needs := NeedsFullCheck([]byte(sql))
		v := g.Check(sql)
		if !needs && (!v.Allow || v.ResetsSession || (v.Reason != "" && v.Reason != "parse_error")) {
			t.Fatalf("NeedsFullCheck(%q) = false, but Check = %+v", sql, v)
		}
		if v.Allow != (v.Code == "") || v.Allow != (v.Message == "") || (!v.Allow && v.Reason == "") {
			t.Fatalf("%q: inconsistent verdict %+v", sql, v)
		}
		if w, d := g.Classify(sql); w != v.Writes || d != v.DDL {
			t.Fatalf("%q: Classify = %v, %v; Check = %+v", sql, w, d, v)
		}
	})
}

// FuzzClassifyTenantCommand: never panics, and text in which
// MentionsTenantSetting finds nothing is never a tenant command.
func FuzzClassifyTenantCommand(f *testing.F) {
	for _, s := range []string{
		"SET stratum.tenant = 'client_beta'", "RESET stratum.tenant", "SHOW stratum.tenant",
		"SET LOCAL stratum.tenant = 'a'", "SET stratum.tenant = 'a'; SELECT 1", "SELECT 'stratum.tenant'",
		`SET "STRATUM.TENANT" TO x`, "SET stratum.tenant = 42",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, sql string) {
		cmd, err := ClassifyTenantCommand(sql)
		if !MentionsTenantSetting([]byte(sql)) && (cmd.Kind != NotTenantCommand || err != nil) {
			t.Fatalf("MentionsTenantSetting(%q) = false, but ClassifyTenantCommand = %+v, %v", sql, cmd, err)
		}
		if err != nil && cmd != (TenantCommand{}) {
			t.Fatalf("%q: error %v with command %+v", sql, err, cmd)
		}
	})
}
