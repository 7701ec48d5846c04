package rewrite

import (
	"reflect"
	"testing"
)

func TestPinReason(t *testing.T) {
	for sql, want := range map[string]string{
		"LISTEN jobs":                                "LISTEN",
		"listen \"Jobs\"; select 1":                  "LISTEN",
		"SELECT pg_advisory_lock(42)":                "session advisory lock",
		"select PG_TRY_ADVISORY_LOCK(1, 2)":          "session advisory lock",
		"SELECT pg_advisory_xact_lock(42)":           "",
		"DECLARE c CURSOR WITH HOLD FOR SELECT 1":    "cursor WITH HOLD",
		"DECLARE c CURSOR WITHOUT HOLD FOR SELECT 1": "",
		"CREATE TEMP TABLE t (x int)":                "temporary table",
		"create temporary table t as select 1":       "temporary table",
		"SELECT 1 INTO TEMP t":                       "temporary table",
		"CREATE TABLE templates (x int)":             "",
		"PREPARE q AS SELECT 1":                      "PREPARE",
		"SELECT 'listen to this'":                    "",
		"SELECT * FROM holdings":                     "",
		"INSERT INTO orders (item) VALUES ('temp')":  "",
	} {
		if got := PinReason(sql); got != want {
			t.Errorf("PinReason(%q) = %q, want %q", sql, got, want)
		}
	}
}

func TestSessionSettings(t *testing.T) {
	for sql, want := range map[string][]SettingChange{
		"SET statement_timeout = '5s'":    {{Kind: SetSetting, Name: "statement_timeout", Text: `SET statement_timeout TO "5s"`}},
		"set TimeZone to 'UTC'; select 1": {{Kind: SetSetting, Name: "timezone", Text: `SET timezone TO "UTC"`}},
		"RESET search_path":               {{Kind: ResetSetting, Name: "search_path"}},
		"SET work_mem TO DEFAULT":         {{Kind: ResetSetting, Name: "work_mem"}},
		"RESET ALL":                       {{Kind: ResetAll}},
		"DISCARD ALL":                     {{Kind: ResetAll, DropsStatements: true}},
		"DEALLOCATE ALL":                  {{DropsStatements: true}},
		"SET LOCAL work_mem = '1MB'":      nil,
		"SET stratum.tenant = 'x'":        nil,
		"SELECT 1":                        nil,
		"UPDATE settings SET x = 1":       nil,
	} {
		if got := SessionSettings(sql); !reflect.DeepEqual(got, want) {
			t.Errorf("SessionSettings(%q) = %+v, want %+v", sql, got, want)
		}
	}
}

func TestMayChangeSettings(t *testing.T) {
	for sql, want := range map[string]bool{
		"SET x = 1":                    true,
		"  set\tstatement_timeout = 1": true,
		"/* c */ RESET ALL":            true,
		"-- c\nDISCARD ALL":            true,
		"DEALLOCATE ALL":               true,
		"SELECT 1; SET x = 1":          true,
		"UPDATE t SET x = 1":           false,
		"SELECT * FROM t OFFSET 5":     false,
		"SELECT 1;":                    false,
		"settings":                     false,
		"SELECT 'a;b', reset":          true,
	} {
		if got := MayChangeSettings([]byte(sql)); got != want {
			t.Errorf("MayChangeSettings(%q) = %v, want %v", sql, got, want)
		}
	}
	// Everything SessionSettings reports, the pre-check lets through.
	for _, sql := range []string{"SET a = 1", "RESET a", "RESET ALL", "DISCARD ALL", "DEALLOCATE ALL", "select 1; set b = 2"} {
		if len(SessionSettings(sql)) > 0 && !MayChangeSettings([]byte(sql)) {
			t.Errorf("pre-check skips %q", sql)
		}
	}
}

func TestUsesNotifications(t *testing.T) {
	for sql, want := range map[string]bool{
		"LISTEN jobs":                      true,
		"unlisten *":                       true,
		"NOTIFY jobs, 'x'":                 true,
		"SELECT pg_notify('jobs', 'x')":    true,
		"SELECT 1; NOTIFY jobs":            true,
		"SELECT 'notify me' AS listen_col": false,
		"SELECT * FROM listeners":          false,
	} {
		if got := UsesNotifications(sql); got != want {
			t.Errorf("UsesNotifications(%q) = %v, want %v", sql, got, want)
		}
	}
}

func TestDeallocations(t *testing.T) {
	type want struct {
		ds    []Deallocate
		stmts int
	}
	for sql, w := range map[string]want{
		"DEALLOCATE q":                       {[]Deallocate{{Name: "q"}}, 1},
		"deallocate prepare \"Q x\"":         {[]Deallocate{{Name: "Q x"}}, 1},
		"DEALLOCATE ALL":                     {[]Deallocate{{All: true}}, 1},
		"DEALLOCATE PREPARE ALL;":            {[]Deallocate{{All: true}}, 1},
		"SELECT 1; DEALLOCATE q":             {[]Deallocate{{Name: "q"}}, 2},
		"SELECT 'deallocate'":                {nil, 1},
		"SELECT 1":                           {nil, 0},
		"DEALLOCATE":                         {nil, 0},
		"/* c */ DEALLOCATE q; DEALLOCATE r": {[]Deallocate{{Name: "q"}, {Name: "r"}}, 2},
	} {
		ds, n := Deallocations(sql)
		if !reflect.DeepEqual(ds, w.ds) || n != w.stmts {
			t.Errorf("Deallocations(%q) = %v, %d; want %v, %d", sql, ds, n, w.ds, w.stmts)
		}
	}
}
