package policy

import (
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
)

// TestKeysAreDefinedOnce: every key is listed once, sorted, with a doc line
// and under KeyPrefix.
func TestKeysAreDefinedOnce(t *testing.T) {
	t.Parallel()
	names := Keys()
	if !slices.IsSorted(names) || len(slices.Compact(slices.Clone(names))) != len(names) {
		t.Errorf("Keys() = %v: want sorted, no duplicates", names)
	}
	for _, n := range names {
		if !Governs(n) || Doc(n) == "" {
			t.Errorf("key %q: governed %v, doc %q", n, Governs(n), Doc(n))
		}
	}
	if Doc("proxy.nope") != "" || Governs("proxy") || !IsPermission(PermWrite) || IsPermission("sql.read") {
		t.Error("unknown names are known")
	}
}

func TestValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		key, value string
		sensitive  bool
		reason     string // "" when accepted
	}{
		{KeyMaxConnections, "10", false, ""},
		{KeyMaxConnections, "1e3", false, ""},
		{KeyMaxConnections, "10001", false, "must be an integer from 1 to 10000"},
		{KeyMaxConnections, `"10"`, false, "must be an integer from 1 to 10000"},
		{KeyMaxConnections, "10", true, "proxy keys cannot be sensitive"},
		{KeyStatementTimeout, `"30s"`, false, ""},
		{KeyStatementTimeout, `"25h"`, false, statementTimeoutWant},
		{KeyReadOnly, "false", false, ""},
		{KeyReadOnly, `"true"`, false, "must be true or false"},
		{"proxy.nope", "1", false, "unknown proxy key; the known ones are proxy.idle_in_transaction_timeout, proxy.max_connections, proxy.read_only, proxy.statement_timeout"},
	}
	for _, tc := range tests {
		err := Validate(tc.key, json.RawMessage(tc.value), tc.sensitive)
		var ke *KeyError
		switch {
		case tc.reason == "" && err != nil:
			t.Errorf("Validate(%s, %s) = %v, want nil", tc.key, tc.value, err)
		case tc.reason != "" && (!errors.As(err, &ke) || ke.Reason != tc.reason || ke.Key != tc.key):
			t.Errorf("Validate(%s, %s) = %v, want reason %q", tc.key, tc.value, err, tc.reason)
		case ke != nil && ke.Unknown != strings.HasPrefix(tc.reason, "unknown"):
			t.Errorf("Validate(%s): Unknown = %v", tc.key, ke.Unknown)
		}
	}
}

func TestStatementTimeoutMillis(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want int
		ok   bool
	}{
		{"0", 0, true},
		{"30000", 30000, true},
		{"86400000", 86400000, true},
		{"86400001", 0, false},
		{"1.5e3", 1500, true},
		{"1.5", 0, false},
		{"-5", 0, false},
		{`"30s"`, 30000, true},
		{`"500ms"`, 500, true},
		{`"2min"`, 120000, true},
		{`"1h"`, 3600000, true},
		{`"1d"`, 86400000, true},
		{`"1.5s"`, 1500, true},
		{`" 30 s "`, 30000, true},
		{`"1500"`, 1500, true},
		{`"2500us"`, 3, true},
		{`"2d"`, 0, false},
		{`"30S"`, 0, false},
		{`"30 seconds"`, 0, false},
		{`"-1s"`, 0, false},
		{`""`, 0, false},
		{`"s"`, 0, false},
		{"true", 0, false},
		{"null", 0, false},
		{`{"ms":1}`, 0, false},
	}
	for _, tc := range tests {
		got, ok := statementTimeoutMillis(json.RawMessage(tc.in))
		if ok != tc.ok || got != tc.want {
			t.Errorf("statementTimeoutMillis(%s) = %d, %v; want %d, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

func TestResolve(t *testing.T) {
	t.Parallel()
	raw := func(s string) json.RawMessage { return json.RawMessage(s) }
	tests := []struct {
		name string
		in   Input
		want Policy
	}{
		{"nothing", Input{Tenant: "acme"}, Policy{StatementTimeout: -1}},
		{"provisioning", Input{Tenant: "acme", Blocker: &Blocker{Slug: "acme", Status: "provisioning", Self: true, Provisioning: true}},
			Policy{StatementTimeout: -1, Blocked: `tenant "acme" is not ready (status provisioning)`}},
		{"suspended", Input{Tenant: "acme", Blocker: &Blocker{Slug: "acme", Status: "suspended", Self: true}},
			Policy{StatementTimeout: -1, Blocked: `tenant "acme" is suspended`}},
		{"ancestor", Input{Tenant: "acme", Blocker: &Blocker{Slug: "msp", Status: "archived"}},
			Policy{StatementTimeout: -1, Blocked: `tenant "acme" is unavailable: its ancestor "msp" is archived`}},
		{"paused", Input{Tenant: "acme", Pause: &Pause{Slug: "acme", Reason: "move", Self: true}},
			Policy{StatementTimeout: -1, Paused: `tenant "acme" is paused (move)`}},
		{"ancestor paused", Input{Tenant: "acme", Pause: &Pause{Slug: "msp", Reason: "upgrade"}},
			Policy{StatementTimeout: -1, Paused: `tenant "acme" is paused: its ancestor "msp" is paused (upgrade)`}},
		{"keys", Input{Tenant: "acme", Config: []ConfigEntry{
			{Key: KeyMaxConnections, Value: raw("7"), Source: "acme"},
			{Key: KeyStatementTimeout, Value: raw(`"2s"`), Source: "msp"},
			{Key: KeyReadOnly, Value: raw("true"), Source: "msp"},
			{Key: "proxy.future", Value: raw("1"), Source: "acme"},
			{Key: "secret", Value: raw(`"********"`), Source: "acme", Sensitive: true},
			{Key: "region", Value: raw(`"eu's"`), Source: "acme"},
			{Key: "limits", Value: raw(`{"a":1}`), Source: "acme"},
		}}, Policy{
			MaxConns: 7, StatementTimeout: 2000, Access: AccessRead,
			ReadOnly: `tenant "acme" is read-only (proxy.read_only is true, set on "msp")`,
			Settings: []Setting{{"stratum.config.limits", `{"a":1}`}, {"stratum.config.region", "eu's"}},
			SQL:      `SET statement_timeout = 2000;SET default_transaction_read_only = on;SELECT pg_catalog.set_config(E'stratum.config.limits', E'{"a":1}', false), pg_catalog.set_config(E'stratum.config.region', E'eu''s', false);`,
		}},
		{"bad stored values are ignored", Input{Tenant: "acme", Config: []ConfigEntry{
			{Key: KeyMaxConnections, Value: raw(`"x"`)},
			{Key: KeyStatementTimeout, Value: raw(`"2 weeks"`)},
			{Key: KeyReadOnly, Value: raw(`"yes"`)},
		}}, Policy{StatementTimeout: -1}},
		{"permissions", Input{Tenant: "acme", Permissions: []PermissionEntry{
			{Key: PermWrite, Value: raw("false"), Mode: "LOCKED", Source: "msp"},
			{Key: PermDDL, Value: raw("false"), Mode: "DELEGATED", Source: "acme"},
			{Key: "sql.other", Value: raw("false")},
		}}, Policy{StatementTimeout: -1, Access: AccessRead,
			ReadOnly: `tenant "acme" may not write: permission sql.write is false (LOCKED, from "msp")`,
			NoDDL:    `tenant "acme" may not change the schema: permission sql.ddl is false (DELEGATED, from "acme")`,
			SQL:      "SET default_transaction_read_only = on;",
		}},
		{"no ddl", Input{Tenant: "acme", Permissions: []PermissionEntry{
			{Key: PermDDL, Value: raw("false"), Mode: "LOCKED", Source: "msp"},
		}}, Policy{StatementTimeout: -1, Access: AccessWrite,
			NoDDL: `tenant "acme" may not change the schema: permission sql.ddl is false (LOCKED, from "msp")`,
		}},
	}
	for _, tc := range tests {
		got := Resolve(tc.in)
		tc.want.Sig = tc.want.SQL
		if tc.want.NoDDL != "" {
			tc.want.Sig += "\x00no ddl"
		}
		if tc.want.Access != AccessFull {
			tc.want.Sig += "\x00access " + tc.want.Access.String()
		}
		if got.Access != tc.want.Access || got.Blocked != tc.want.Blocked || got.Paused != tc.want.Paused || got.ReadOnly != tc.want.ReadOnly || got.NoDDL != tc.want.NoDDL ||
			got.StatementTimeout != tc.want.StatementTimeout || got.MaxConns != tc.want.MaxConns ||
			!slices.Equal(got.Settings, tc.want.Settings) || got.SQL != tc.want.SQL || got.Sig != tc.want.Sig {
			t.Errorf("%s:\n got %+v\nwant %+v", tc.name, got, tc.want)
		}
	}
}

// TestAccessRoles: each level logs in as its own role, the full level as the
// tenant's own.
func TestAccessRoles(t *testing.T) {
	t.Parallel()
	for a, want := range map[Access]string{AccessFull: "stratum_t_ab", AccessWrite: "stratum_t_ab_w", AccessRead: "stratum_t_ab_r"} {
		if got := a.Role("stratum_t_ab"); got != want {
			t.Errorf("%s.Role = %q, want %q", a, got, want)
		}
	}
}

// TestLimitsTakeTheTightestOnThePath: each limit key resolves to the
// smallest value set on the tenant and its ancestors (0 disables a timeout,
// so it is the loosest), values below a lock are ignored, and a shared
// tenant without an idle timeout on its path gets the default.
func TestLimitsTakeTheTightestOnThePath(t *testing.T) {
	t.Parallel()
	lv := func(key, value, src string, locked bool) LimitValue {
		return LimitValue{Key: key, Value: json.RawMessage(value), Source: src, Locked: locked}
	}
	// cfg is the nearest value, as config resolution would give it.
	cfg := func(key, value, src string) ConfigEntry {
		return ConfigEntry{Key: key, Value: json.RawMessage(value), Source: src}
	}
	defIdle := int(DefaultSharedIdleInTxTimeout.Milliseconds())
	tests := []struct {
		name                 string
		in                   Input
		maxConns, stmt, idle int
	}{
		{name: "nothing set", in: Input{Tenant: "c"}, maxConns: 0, stmt: -1, idle: -1},
		{name: "nothing set, shared", in: Input{Tenant: "c", Shared: true}, maxConns: 0, stmt: -1, idle: defIdle},
		{name: "a descendant raises: the parent's cap holds", in: Input{Tenant: "c",
			Config: []ConfigEntry{cfg(KeyMaxConnections, "10000", "c"), cfg(KeyStatementTimeout, `"1h"`, "c"), cfg(KeyIdleInTransactionTimeout, "0", "c")},
			Limits: []LimitValue{lv(KeyMaxConnections, "5", "root", false), lv(KeyStatementTimeout, "500", "p", false), lv(KeyIdleInTransactionTimeout, `"2s"`, "p", false),
				lv(KeyMaxConnections, "10000", "c", false), lv(KeyStatementTimeout, `"1h"`, "c", false), lv(KeyIdleInTransactionTimeout, "0", "c", false)}},
			maxConns: 5, stmt: 500, idle: 2000},
		{name: "a descendant lowers", in: Input{Tenant: "c", Shared: true,
			Config: []ConfigEntry{cfg(KeyMaxConnections, "3", "c"), cfg(KeyStatementTimeout, "100", "c"), cfg(KeyIdleInTransactionTimeout, "300", "c")},
			Limits: []LimitValue{lv(KeyMaxConnections, "5", "root", false), lv(KeyStatementTimeout, "0", "p", false), lv(KeyIdleInTransactionTimeout, `"2s"`, "p", false),
				lv(KeyMaxConnections, "3", "c", false), lv(KeyStatementTimeout, "100", "c", false), lv(KeyIdleInTransactionTimeout, "300", "c", false)}},
			maxConns: 3, stmt: 100, idle: 300},
		{name: "a grandparent's cap beats a parent's looser value", in: Input{Tenant: "c",
			Config: []ConfigEntry{cfg(KeyMaxConnections, "50", "p")},
			Limits: []LimitValue{lv(KeyMaxConnections, "7", "root", false), lv(KeyMaxConnections, "50", "p", false)}},
			maxConns: 7, stmt: -1, idle: -1},
		{name: "values below a lock are ignored, those above still cap", in: Input{Tenant: "c",
			Config: []ConfigEntry{cfg(KeyStatementTimeout, "2000", "p")},
			Limits: []LimitValue{lv(KeyStatementTimeout, "5000", "root", false), lv(KeyStatementTimeout, "2000", "p", true), lv(KeyStatementTimeout, "10", "c", false)}},
			maxConns: 0, stmt: 2000, idle: -1},
		{name: "0 disables only where nothing above sets a timeout", in: Input{Tenant: "c", Shared: true,
			Config: []ConfigEntry{cfg(KeyIdleInTransactionTimeout, "0", "root")},
			Limits: []LimitValue{lv(KeyIdleInTransactionTimeout, "0", "root", false)}},
			maxConns: 0, stmt: -1, idle: 0},
	}
	for _, tc := range tests {
		p := Resolve(tc.in)
		if p.MaxConns != tc.maxConns || p.StatementTimeout != tc.stmt || p.IdleInTxTimeout != tc.idle {
			t.Errorf("%s: max_connections %d, statement_timeout %d, idle_in_transaction_timeout %d; want %d, %d, %d",
				tc.name, p.MaxConns, p.StatementTimeout, p.IdleInTxTimeout, tc.maxConns, tc.stmt, tc.idle)
		}
	}
}

// TestInheritedCap: what a tenant-bound key may set on a tenant, given the
// values its ancestors set.
func TestInheritedCap(t *testing.T) {
	t.Parallel()
	above := []LimitValue{
		{Key: KeyMaxConnections, Value: json.RawMessage("20"), Source: "root"},
		{Key: KeyMaxConnections, Value: json.RawMessage("10"), Source: "p"},
		{Key: KeyStatementTimeout, Value: json.RawMessage("0"), Source: "p"},
	}
	c, ok := InheritedCap(KeyMaxConnections, above, false, 20)
	if !ok || c.Value != 10 || c.Source != "p" || !c.Admits(json.RawMessage("10")) || c.Admits(json.RawMessage("11")) {
		t.Errorf("max_connections cap = %+v, %v", c, ok)
	}
	if c, ok := InheritedCap(KeyStatementTimeout, above, true, 20); !ok || !c.Admits(json.RawMessage("0")) || !c.Admits(json.RawMessage(`"1d"`)) {
		t.Errorf("a disabled timeout caps nothing: %+v, %v", c, ok)
	}
	c, ok = InheritedCap(KeyIdleInTransactionTimeout, above, true, 20)
	if !ok || c.Source != "" || c.Admits(json.RawMessage("0")) || c.Admits(json.RawMessage(`"31s"`)) || !c.Admits(json.RawMessage(`"30s"`)) {
		t.Errorf("shared default cap = %+v, %v", c, ok)
	}
	if _, ok := InheritedCap(KeyIdleInTransactionTimeout, above, false, 20); ok {
		t.Error("a schema or database tenant has no default idle timeout to respect")
	}
	if !strings.Contains(c.String(), "default") {
		t.Errorf("cap text %q", c.String())
	}
	// Nothing set above: the proxy's per-tenant limit caps max_connections,
	// so a tenant cannot raise its own share past the platform's default.
	c, ok = InheritedCap(KeyMaxConnections, nil, false, 20)
	if !ok || c.Source != "" || !c.Admits(json.RawMessage("20")) || c.Admits(json.RawMessage("10000")) {
		t.Errorf("platform max_connections cap = %+v, %v", c, ok)
	}
	if !strings.Contains(c.String(), "pool.max_per_tenant") {
		t.Errorf("cap text %q", c.String())
	}
	if _, ok := InheritedCap(KeyMaxConnections, nil, false, 0); ok {
		t.Error("no platform limit given: no cap")
	}
}
