package proxy

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/stratum-hq/stratum-proxy/internal/pgfake"
)

// TestCheckStartup is the allow-list over identify's parameter handling:
// what is forwarded to the backend, what is refused with which SQLSTATE, and
// that a refusal names the parameter.
func TestCheckStartup(t *testing.T) {
	base := func(kv ...string) map[string]string {
		m := map[string]string{"user": "app", "database": "app"}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	for _, tc := range []struct {
		desc    string
		startup map[string]string
		code    string            // "" when accepted
		names   string            // what the refusal message must contain
		params  map[string]string // forwarded, when accepted
		tenant  string            // named in options
	}{
		{"consumed only", base("stratum.tenant", "t1", "replication", "off"), "", "", map[string]string{}, ""},
		{"what JDBC sends", base("DateStyle", "ISO", "TimeZone", "UTC", "extra_float_digits", "2",
			"client_encoding", "UTF8", "application_name", "PostgreSQL JDBC Driver"), "", "",
			map[string]string{"DateStyle": "ISO", "TimeZone": "UTC", "extra_float_digits": "2",
				"client_encoding": "UTF8", "application_name": "PostgreSQL JDBC Driver"}, ""},
		{"what lib/pq sends", base("datestyle", "ISO, MDY", "extra_float_digits", "2", "client_encoding", "UTF8"), "", "",
			map[string]string{"datestyle": "ISO, MDY", "extra_float_digits": "2", "client_encoding": "UTF8"}, ""},
		{"session defaults", base("search_path", "app", "statement_timeout", "5s", "lock_timeout", "1s",
			"idle_in_transaction_session_timeout", "10s", "default_transaction_isolation", "serializable",
			"default_transaction_read_only", "off", "IntervalStyle", "iso_8601", "standard_conforming_strings", "on"), "", "",
			map[string]string{"search_path": "app", "statement_timeout": "5s", "lock_timeout": "1s",
				"idle_in_transaction_session_timeout": "10s", "default_transaction_isolation": "serializable",
				"default_transaction_read_only": "off", "IntervalStyle": "iso_8601", "standard_conforming_strings": "on"}, ""},
		{"settings a session could SET itself", base("client_min_messages", "warning", "bytea_output", "escape"), "", "",
			map[string]string{"client_min_messages": "warning", "bytea_output": "escape"}, ""},
		{"ASCII-safe encodings", base("client_encoding", "LATIN1"), "", "", map[string]string{"client_encoding": "LATIN1"}, ""},
		{"options: allowed settings pass, tenant taken",
			base("options", `-c stratum.tenant=t1 -c application_name=a\ b --TimeZone=UTC -cDateStyle=ISO`), "", "",
			map[string]string{"options": `-c application_name=a\ b --TimeZone=UTC -cDateStyle=ISO`}, "t1"},
		{"options: dashes fold to underscores", base("options", "--statement-timeout=5s -c Extra-Float-Digits=3"), "", "",
			map[string]string{"options": "--statement-timeout=5s -c Extra-Float-Digits=3"}, ""},
		{"options: a trailing lone backslash", base("options", `-c stratum.tenant=t1 -c application_name=a \`), "", "",
			map[string]string{"options": "-c application_name=a "}, "t1"},

		{"role", base("role", "postgres"), "42501", `"role"`, nil, ""},
		{"ROLE", base("ROLE", "postgres"), "42501", `"ROLE"`, nil, ""},
		{"session_authorization", base("session_authorization", "postgres"), "42501", `"session_authorization"`, nil, ""},
		{"stratum.config.*", base("stratum.config.plan", "gold"), "42501", `"stratum.config.plan"`, nil, ""},
		{"stratum.* other", base("stratum.anything", "x"), "42501", `"stratum.anything"`, nil, ""},
		{"stratum.tenant in capitals", base("Stratum.Tenant", "t2"), "42501", `"Stratum.Tenant"`, nil, ""},
		{"unknown key", base("maintenance_work_mem", "1GB"), "42704", `"maintenance_work_mem"`, nil, ""},
		{"libpq's fallback name is client-side", base("fallback_application_name", "x"), "42704", `"fallback_application_name"`, nil, ""},
		{"SJIS", base("client_encoding", "SJIS"), "0A000", `"client_encoding"`, nil, ""},
		{"WINDOWS-932", base("client_encoding", "WINDOWS-932"), "0A000", `"client_encoding"`, nil, ""},
		{"s.jis", base("client_encoding", "s.jis"), "0A000", `"client_encoding"`, nil, ""},
		{"standard_conforming_strings off", base("standard_conforming_strings", "off"), "0A000", `"standard_conforming_strings"`, nil, ""},
		{"standard_conforming_strings false", base("standard_conforming_strings", "FALSE"), "0A000", `"standard_conforming_strings"`, nil, ""},
		{"replication", base("replication", "database"), "0A000", "replication", nil, ""},

		{"options: -c role", base("options", "-c role=postgres"), "42501", `"role" in options`, nil, ""},
		{"options: -crole", base("options", "-crole=postgres"), "42501", `"role" in options`, nil, ""},
		{"options: --session-authorization", base("options", "--session-authorization=postgres"), "42501",
			`"session-authorization" in options`, nil, ""},
		{"options: stratum.config.*", base("options", "-c stratum.tenant=t1 -c stratum.config.plan=gold"), "42501",
			`"stratum.config.plan" in options`, nil, ""},
		{"options: unknown", base("options", "-c maintenance_work_mem=1GB"), "42704", `"maintenance_work_mem" in options`, nil, ""},
		{"options: replication is no setting", base("options", "-c replication=database"), "42704", `"replication" in options`, nil, ""},
		{"options: standard_conforming_strings", base("options", "-c standard_conforming_strings=off"), "0A000",
			`"standard_conforming_strings" in options`, nil, ""},
		{"options: --client-encoding", base("options", "--client-encoding=BIG5"), "0A000", `"client-encoding" in options`, nil, ""},
		{"options: -cclient_encoding", base("client_encoding", "UTF8", "options", "-cclient_encoding=GBK"), "0A000",
			`"client_encoding" in options`, nil, ""},
		{"options: a postgres switch", base("options", "-d 5"), "0A000", `"-d"`, nil, ""},
		{"options: -F", base("options", "-c stratum.tenant=t1 -F"), "0A000", `"-F"`, nil, ""},
		{"options: a stray word", base("options", "-c application_name=a b"), "0A000", `"b"`, nil, ""},
		{"options: -c at the end", base("options", "-c application_name=a -c"), "0A000", `"-c"`, nil, ""},
		{"options: no value", base("options", "-c application_name"), "0A000", `"application_name"`, nil, ""},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			params, tenant, _, err := checkStartup(tc.startup)
			if tc.code == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				if !maps.Equal(params, tc.params) || tenant != tc.tenant {
					t.Errorf("forwarded %q tenant %q, want %q tenant %q", params, tenant, tc.params, tc.tenant)
				}
				return
			}
			if err == nil {
				t.Fatalf("accepted, forwarding %q; want %s", params, tc.code)
			}
			if err.Code != tc.code || !err.Fatal || !strings.Contains(err.Message, tc.names) {
				t.Errorf("got %v (fatal %v), want FATAL %s naming %s", err, err.Fatal, tc.code, tc.names)
			}
		})
	}
}

// TestStartupSettingsFolded: the table's keys are written as settingKey
// folds names, or they could never match.
func TestStartupSettingsFolded(t *testing.T) {
	for k := range startupSettings {
		if settingKey(k) != k {
			t.Errorf("allow-list key %q is not folded (%q)", k, settingKey(k))
		}
		if !strings.Contains(strings.ToLower(allowedSettingNames), k) {
			t.Errorf("allowedSettingNames does not list %q", k)
		}
	}
}

// TestStartupAllowListRefusesAtConnect: a session naming a parameter off the
// allow-list, as a startup parameter or in options, ends with a FATAL error
// naming it before any backend is acquired; one with allowed parameters
// reaches its backend.
func TestStartupAllowListRefusesAtConnect(t *testing.T) {
	for _, mode := range []string{PoolSession, PoolTransaction} {
		t.Run(mode, func(t *testing.T) {
			h := newHarness(t, mode)
			h.be.Script(h.t1, pgfake.NewScript(pgfake.Query("SELECT 1", "SELECT 1", txIdle)))
			h.start()
			for _, tc := range []struct {
				query, code, names string
			}{
				{"role=postgres", "42501", `startup parameter "role"`},
				{"stratum.config.plan=gold", "42501", `startup parameter "stratum.config.plan"`},
				{"maintenance_work_mem=1GB", "42704", `startup parameter "maintenance_work_mem"`},
				{"options=-c%20session_authorization%3Dpostgres", "42501", `setting "session_authorization" in options`},
				{"options=-c%20standard_conforming_strings%3Doff", "0A000", `setting "standard_conforming_strings" in options`},
				{"options=--client-encoding%3DBIG5", "0A000", `setting "client-encoding" in options`},
			} {
				ctx, cancel := context.WithTimeout(context.Background(), testWait)
				pc, err := pgconn.Connect(ctx, fmt.Sprintf("postgres://app.t1:secret@%s/app?sslmode=disable&%s", h.addr, tc.query))
				cancel()
				if err == nil {
					pc.Close(context.Background())
					t.Fatalf("%s: connected, want %s", tc.query, tc.code)
				}
				var pe *pgconn.PgError
				if !errors.As(err, &pe) || pe.Code != tc.code || pe.Severity != "FATAL" || !strings.Contains(pe.Message, tc.names) {
					t.Errorf("%s: %v, want FATAL %s naming %s", tc.query, err, tc.code, tc.names)
				}
			}
			ctx, cancel := context.WithTimeout(context.Background(), testWait)
			defer cancel()
			pc, err := pgconn.Connect(ctx, fmt.Sprintf("postgres://app.t1:secret@%s/app?sslmode=disable"+
				"&application_name=x&TimeZone=UTC&options=-c%%20DateStyle%%3DISO", h.addr))
			if err != nil {
				t.Fatalf("allowed parameters: %v", err)
			}
			if _, err := pc.Exec(ctx, "SELECT 1").ReadAll(); err != nil {
				t.Fatal(err)
			}
			h.expectEvents("acquire t1 #1")
			if mode == PoolTransaction {
				h.expectEvents("release t1 #1 keep")
			}
			pc.Close(ctx)
			if mode == PoolSession {
				h.expectEvents("release t1 #1 reset")
			}
		})
	}
}
