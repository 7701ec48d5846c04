package catalog_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/stratum-hq/stratum-proxy/catalog"
	"github.com/stratum-hq/stratum-proxy/internal/pgtest"
	"github.com/stratum-hq/stratum-proxy/internal/secrets"
	"github.com/stratum-hq/stratum-proxy/policy"
)

// configFixture is a migrated catalog with a small tenant tree:
//
//	acmesec ─┬─ client_alpha ── alpha_team
//	         └─ client_beta
//	apex
type configFixture struct {
	c   *catalog.Catalog
	url string
	ids map[string]string // slug -> id
}

func newConfigFixture(t *testing.T, keyring string) *configFixture {
	t.Helper()
	srv := pgtest.Get(t)
	url := srv.URL(srv.NewDatabase(t, "cat"))
	c := openKeyring(t, url, keyring)
	ctx := context.Background()
	if _, err := c.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	f := &configFixture{c: c, url: url, ids: map[string]string{}}
	for _, n := range [][2]string{{"acmesec", ""}, {"client_alpha", "acmesec"}, {"client_beta", "acmesec"},
		{"alpha_team", "client_alpha"}, {"apex", ""}} {
		id, short, err := catalog.NewID()
		if err != nil {
			t.Fatal(err)
		}
		tn, err := c.InsertTenant(ctx, catalog.NewTenant{ID: id, ShortID: short, Slug: n[0], Name: n[0], Parent: n[1],
			Isolation: "shared", Backend: "main", Database: "app", Schema: "public", Role: "r_" + short,
			RolePassword: "pw-" + n[0]})
		if err != nil {
			t.Fatal(err)
		}
		f.ids[n[0]] = tn.ID
	}
	return f
}

func openKeyring(t *testing.T, url, keyring string) *catalog.Catalog {
	t.Helper()
	if keyring == "" {
		keyring, _ = secrets.NewKeyText("k1")
	}
	keys, err := secrets.Parse(keyring)
	if err != nil {
		t.Fatal(err)
	}
	c, err := catalog.Open(context.Background(), catalog.Config{URL: url, Keys: keys})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func (f *configFixture) set(t *testing.T, slug, key, value string, locked, sensitive bool) error {
	t.Helper()
	return f.c.SetConfig(context.Background(), f.ids[slug], key,
		catalog.ConfigValue{Value: json.RawMessage(value), Locked: locked, Sensitive: sensitive})
}

func (f *configFixture) mustSet(t *testing.T, slug, key, value string, locked, sensitive bool) {
	t.Helper()
	if err := f.set(t, slug, key, value, locked, sensitive); err != nil {
		t.Fatalf("set %s %s=%s: %v", slug, key, value, err)
	}
}

// entry resolves one key; nil when it does not resolve.
func (f *configFixture) entry(t *testing.T, slug, key string) *catalog.ConfigEntry {
	t.Helper()
	entries, err := f.c.ResolveConfig(context.Background(), f.ids[slug])
	if err != nil {
		t.Fatal(err)
	}
	for i := range entries {
		if entries[i].Key == key {
			return &entries[i]
		}
	}
	return nil
}

// expect checks a resolved entry's value, source and lock.
func (f *configFixture) expect(t *testing.T, slug, key, value, source, lockedBy string) {
	t.Helper()
	e := f.entry(t, slug, key)
	if e == nil {
		t.Fatalf("%s: %s does not resolve", slug, key)
	}
	if string(e.Value) != value || e.Source.Slug != source || e.Source.ID != f.ids[source] ||
		e.Inherited != (source != slug) {
		t.Errorf("%s: %s = %s from %s (inherited %v), want %s from %s", slug, key, e.Value, e.Source.Slug, e.Inherited, value, source)
	}
	switch {
	case lockedBy == "" && (e.Locked || e.LockedBy != nil):
		t.Errorf("%s: %s is locked by %v, want unlocked", slug, key, e.LockedBy)
	case lockedBy != "" && (!e.Locked || e.LockedBy == nil || e.LockedBy.Slug != lockedBy || e.LockedBy.ID != f.ids[lockedBy]):
		t.Errorf("%s: %s locked %v by %v, want locked by %s", slug, key, e.Locked, e.LockedBy, lockedBy)
	}
}

func (f *configFixture) query(t *testing.T, sql string, args ...any) int {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), f.url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var n int
	if err := conn.QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func (f *configFixture) audits(t *testing.T, action, target string) int {
	t.Helper()
	return f.query(t, `SELECT count(*) FROM audit_log WHERE action = $1 AND target = $2`, action, target)
}

// TestConfigInheritance is the acceptance example, then locks over existing
// descendant values, unlocking, deletes and nested locks.
func TestConfigInheritance(t *testing.T) {
	t.Parallel()
	f := newConfigFixture(t, "")
	ctx := context.Background()

	f.mustSet(t, "acmesec", "max_users", "1000", false, false)
	f.mustSet(t, "client_alpha", "max_users", "500", false, false)
	f.mustSet(t, "acmesec", "region", `"eu"`, true, false)

	f.expect(t, "client_beta", "max_users", "1000", "acmesec", "")
	f.expect(t, "client_alpha", "max_users", "500", "client_alpha", "")
	f.expect(t, "alpha_team", "max_users", "500", "client_alpha", "")
	f.expect(t, "acmesec", "region", `"eu"`, "acmesec", "acmesec")
	f.expect(t, "alpha_team", "region", `"eu"`, "acmesec", "acmesec")
	if e := f.entry(t, "apex", "max_users"); e != nil {
		t.Errorf("apex resolves max_users from %s", e.Source.Slug)
	}
	if n := f.audits(t, "config.set", "config:acmesec/max_users"); n != 1 {
		t.Errorf("%d audit rows for acmesec/max_users, want 1", n)
	}

	// A write under the lock is refused, naming the locking tenant; nothing is written.
	for _, slug := range []string{"client_alpha", "alpha_team"} {
		err := f.set(t, slug, "region", `"us"`, false, false)
		var le *catalog.LockedError
		if !errors.As(err, &le) || !errors.Is(err, catalog.ErrLocked) || le.By.Slug != "acmesec" || le.By.ID != f.ids["acmesec"] || le.Key != "region" {
			t.Fatalf("%s: write under lock: %v, want LockedError by acmesec", slug, err)
		}
		if !strings.Contains(err.Error(), "acmesec") {
			t.Errorf("message %q does not name acmesec", err)
		}
	}
	if err := f.c.DeleteConfig(ctx, f.ids["client_alpha"], "region"); !errors.Is(err, catalog.ErrLocked) {
		t.Fatalf("delete under lock: %v", err)
	}
	if n := f.query(t, `SELECT count(*) FROM config_values WHERE key = 'region'`); n != 1 {
		t.Fatalf("%d region rows, want only acmesec's", n)
	}
	if n := f.query(t, `SELECT count(*) FROM audit_log WHERE target LIKE 'config:%/region'`); n != 1 {
		t.Fatalf("%d region audit rows, want 1", n)
	}
	// The locking tenant itself may change the value.
	f.mustSet(t, "acmesec", "region", `"eu-west"`, true, false)
	f.expect(t, "client_beta", "region", `"eu-west"`, "acmesec", "acmesec")

	// A lock beats values descendants already hold; unlocking reveals them.
	f.mustSet(t, "client_alpha", "tier", `"gold"`, false, false)
	f.mustSet(t, "alpha_team", "tier", `"bronze"`, false, false)
	f.mustSet(t, "acmesec", "tier", `"silver"`, true, false)
	f.expect(t, "client_alpha", "tier", `"silver"`, "acmesec", "acmesec")
	f.expect(t, "alpha_team", "tier", `"silver"`, "acmesec", "acmesec")
	// Nested locks: the topmost wins.
	if err := f.set(t, "client_alpha", "tier", `"gold"`, true, false); !errors.Is(err, catalog.ErrLocked) {
		t.Fatalf("relock below a lock: %v", err)
	}
	f.mustSet(t, "acmesec", "tier", `"silver"`, false, false) // unlock
	f.expect(t, "client_alpha", "tier", `"gold"`, "client_alpha", "")
	f.expect(t, "alpha_team", "tier", `"bronze"`, "alpha_team", "")
	f.expect(t, "client_beta", "tier", `"silver"`, "acmesec", "")
	f.mustSet(t, "client_alpha", "tier", `"gold"`, true, false)
	f.expect(t, "alpha_team", "tier", `"gold"`, "client_alpha", "client_alpha")
	f.mustSet(t, "acmesec", "tier", `"platinum"`, true, false)
	f.expect(t, "alpha_team", "tier", `"platinum"`, "acmesec", "acmesec")

	// DELETE removes the own value and reveals the inherited one.
	if err := f.c.DeleteConfig(ctx, f.ids["client_alpha"], "max_users"); err != nil {
		t.Fatal(err)
	}
	f.expect(t, "client_alpha", "max_users", "1000", "acmesec", "")
	f.expect(t, "alpha_team", "max_users", "1000", "acmesec", "")
	if n := f.audits(t, "config.delete", "config:client_alpha/max_users"); n != 1 {
		t.Errorf("%d delete audit rows, want 1", n)
	}
	if err := f.c.DeleteConfig(ctx, f.ids["client_alpha"], "max_users"); !errors.Is(err, catalog.ErrNotFound) {
		t.Errorf("second delete: %v, want ErrNotFound", err)
	}
	if err := f.c.DeleteConfig(ctx, f.ids["acmesec"], "max_users"); err != nil {
		t.Fatal(err)
	}
	if e := f.entry(t, "client_beta", "max_users"); e != nil {
		t.Errorf("max_users still resolves after every value went: %+v", e)
	}

	// Reads: one key, sorted views, unknown tenants.
	e, err := f.c.ReadConfigKey(ctx, f.ids["client_beta"], "region", false)
	if err != nil || string(e.Value) != `"eu-west"` {
		t.Fatalf("read key: %+v %v", e, err)
	}
	if _, err := f.c.ReadConfigKey(ctx, f.ids["client_beta"], "nothing", false); !errors.Is(err, catalog.ErrNotFound) {
		t.Errorf("missing key: %v", err)
	}
	all, err := f.c.ResolveConfig(ctx, f.ids["alpha_team"])
	if err != nil || !slices.IsSortedFunc(all, func(a, b catalog.ConfigEntry) int { return strings.Compare(a.Key, b.Key) }) {
		t.Errorf("resolve not sorted: %v %v", all, err)
	}
	if _, err := f.c.ResolveConfig(ctx, "00000000-0000-4000-8000-000000000000"); !errors.Is(err, catalog.ErrNotFound) {
		t.Errorf("unknown tenant: %v", err)
	}
	if _, err := f.c.ResolveConfig(ctx, "not-an-id"); !errors.Is(err, catalog.ErrNotFound) {
		t.Errorf("malformed tenant id: %v", err)
	}
	if err := f.set(t, "apex", "x", "1", false, false); err != nil {
		t.Fatal(err)
	}
	if err := f.c.SetConfig(ctx, "00000000-0000-4000-8000-000000000000", "x", catalog.ConfigValue{Value: json.RawMessage("1")}); !errors.Is(err, catalog.ErrNotFound) {
		t.Errorf("set on unknown tenant: %v", err)
	}
}

// TestConfigSensitive: sealed at rest, bound to its row, masked unless
// revealed, never in plaintext anywhere in the catalog.
func TestConfigSensitive(t *testing.T) {
	t.Parallel()
	f := newConfigFixture(t, "")
	ctx := context.Background()
	const secret = "s3cr3t-pa55-zebra"
	f.mustSet(t, "acmesec", "smtp.password", `"`+secret+`"`, false, true)
	f.mustSet(t, "acmesec", "smtp.password", `"`+secret+`"`, false, true) // an update: before and after in the audit
	f.mustSet(t, "client_alpha", "api.token", `{"token":"`+secret+`"}`, false, true)

	f.expect(t, "client_beta", "smtp.password", `"`+secret+`"`, "acmesec", "")
	if e := f.entry(t, "client_beta", "smtp.password"); !e.Sensitive {
		t.Error("entry not marked sensitive")
	}
	_, masked, err := f.c.ReadConfig(ctx, f.ids["client_alpha"], false)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range masked {
		if string(e.Value) != catalog.MaskedValue || !e.Sensitive {
			t.Errorf("masked read of %s: %s", e.Key, e.Value)
		}
	}
	e, err := f.c.ReadConfigKey(ctx, f.ids["client_alpha"], "api.token", true)
	if err != nil || string(e.Value) != `{"token":"`+secret+`"}` {
		t.Fatalf("revealed read: %+v %v", e, err)
	}

	// No table holds the secret in its text, nor its bytes in a bytea.
	tables := f.query(t, `SELECT count(*) FROM pg_tables WHERE schemaname = 'public'`)
	if tables < 5 {
		t.Fatalf("%d tables", tables)
	}
	conn, err := pgx.Connect(ctx, f.url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, `SELECT tablename FROM pg_tables WHERE schemaname = 'public'`)
	if err != nil {
		t.Fatal(err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range names {
		var n int
		q := fmt.Sprintf(`SELECT count(*) FROM %s r WHERE r::text LIKE '%%' || $1 || '%%'
			OR position(convert_to($1, 'UTF8') IN convert_to(r::text, 'UTF8')) > 0
			OR r::text LIKE '%%' || encode(convert_to($1, 'UTF8'), 'hex') || '%%'`, pgx.Identifier{name}.Sanitize())
		if err := conn.QueryRow(ctx, q, secret).Scan(&n); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if n != 0 {
			t.Errorf("the secret is in plaintext in %d rows of %s", n, name)
		}
	}
	if n := f.query(t, `SELECT count(*) FROM audit_log WHERE action = 'config.set' AND target = 'config:acmesec/smtp.password'
		AND before->>'value' = '********' AND after->>'value' = '********' AND (after->>'sensitive')::boolean`); n != 1 {
		t.Errorf("%d masked update audit rows, want 1", n)
	}

	// A ciphertext moved onto another row does not open there.
	if _, err := conn.Exec(ctx, `INSERT INTO config_values (tenant_id, key, sensitive, key_id, ciphertext)
		SELECT $1, key, true, key_id, ciphertext FROM config_values WHERE tenant_id = $2 AND key = 'smtp.password'`,
		f.ids["client_beta"], f.ids["acmesec"]); err != nil {
		t.Fatal(err)
	}
	if _, err := f.c.ResolveConfig(ctx, f.ids["client_beta"]); err == nil {
		t.Error("a ciphertext copied to another tenant opened")
	}

	// A sensitive value may become plain again, and back.
	f.mustSet(t, "apex", "note", `"public"`, false, false)
	f.mustSet(t, "apex", "note", `"hidden"`, false, true)
	f.expect(t, "apex", "note", `"hidden"`, "apex", "")
	if n := f.query(t, `SELECT count(*) FROM config_values WHERE key = 'note' AND value IS NULL AND ciphertext IS NOT NULL`); n != 1 {
		t.Errorf("sensitive row not sealed")
	}
}

// TestConfigValidation: keys, values and the proxy keys.
func TestConfigValidation(t *testing.T) {
	t.Parallel()
	big := `"` + strings.Repeat("x", catalog.MaxConfigValueBytes) + `"`
	tests := []struct {
		key, value string
		sensitive  bool
		ok         bool
	}{
		{"max_users", "1000", false, true},
		{"a.b.c", `{"x":[1,2,{"y":null}]}`, false, true},
		{"nested.deep.a.b.c.d.e.f", "true", false, true},
		{"nested.deep.a.b.c.d.e.f.g", "true", false, false}, // nine parts
		{"Upper", "1", false, false},
		{"1abc", "1", false, false},
		{"has-dash", "1", false, false},
		{"trailing.", "1", false, false},
		{"", "1", false, false},
		{"x", "null", false, false},
		{"x", " null ", false, false},
		{"x", "", false, false},
		{"x", `{"bad"`, false, false},
		{"x", `"nul\u0000here"`, false, false},
		{"x", `{"k\u0000":1}`, false, false},
		{"x", `"escaped\\u0000 is fine"`, false, true},
		{"x", big, false, false},
		{"x", `"` + strings.Repeat("x", catalog.MaxConfigValueBytes-2) + `"`, false, true},
		{"proxy.max_connections", "10", false, true},
		{"proxy.max_connections", "1e3", false, true},
		{"proxy.max_connections", "0", false, false},
		{"proxy.max_connections", "10001", false, false},
		{"proxy.max_connections", "2.5", false, false},
		{"proxy.max_connections", `"10"`, false, false},
		{"proxy.max_connections", "10", true, false},
		{"proxy.statement_timeout", "30000", false, true},
		{"proxy.statement_timeout", `"30s"`, false, true},
		{"proxy.statement_timeout", `"2min"`, false, true},
		{"proxy.statement_timeout", "-1", false, false},
		{"proxy.statement_timeout", `"2 weeks"`, false, false},
		{"proxy.statement_timeout", `"25h"`, false, false},
		{"proxy.statement_timeout", "true", false, false},
		{"proxy.read_only", "true", false, true},
		{"proxy.read_only", "false", false, true},
		{"proxy.read_only", `"true"`, false, false},
		{"proxy.read_only", "1", false, false},
		{"proxy.unknown", "1", false, false},
		{"proxy", "1", false, true}, // not under "proxy."
	}
	for _, tc := range tests {
		err := catalog.ValidateConfig(tc.key, catalog.ConfigValue{Value: json.RawMessage(tc.value), Sensitive: tc.sensitive})
		if (err == nil) != tc.ok {
			t.Errorf("ValidateConfig(%q, %.40s, sensitive %v) = %v, want ok %v", tc.key, tc.value, tc.sensitive, err, tc.ok)
		}
		var ce *catalog.ConfigError
		if err != nil && (!errors.Is(err, catalog.ErrInvalid) || !errors.As(err, &ce) || ce.Key != tc.key) {
			t.Errorf("ValidateConfig(%q): %v is not a ConfigError matching ErrInvalid", tc.key, err)
		}
	}
	err := catalog.ValidateConfig("proxy.nope", catalog.ConfigValue{Value: json.RawMessage("1")})
	var ce *catalog.ConfigError
	if !errors.As(err, &ce) || !slices.Equal(ce.Known, policy.Keys()) || !strings.Contains(err.Error(), "proxy.read_only") {
		t.Errorf("unknown proxy key: %v", err)
	}
}

// TestConfigStorageRefusals: values that pass the JSON checks but that
// PostgreSQL's jsonb refuses are ErrInvalid, and nothing is written.
func TestConfigStorageRefusals(t *testing.T) {
	t.Parallel()
	f := newConfigFixture(t, "")
	for _, v := range []string{`1e1000000`, `"\ud800"`} {
		err := f.set(t, "apex", "odd", v, false, false)
		if !errors.Is(err, catalog.ErrInvalid) {
			t.Errorf("value %s: %v, want ErrInvalid", v, err)
		}
	}
	if n := f.query(t, `SELECT count(*) FROM config_values WHERE key = 'odd'`); n != 0 {
		t.Errorf("%d rows written", n)
	}
	if n := f.query(t, `SELECT count(*) FROM audit_log WHERE action LIKE 'config.%'`); n != 0 {
		t.Errorf("%d audit rows written", n)
	}
}

// TestConfigBatch: a batch applies its valid keys and reports the others.
func TestConfigBatch(t *testing.T) {
	t.Parallel()
	f := newConfigFixture(t, "")
	ctx := context.Background()
	f.mustSet(t, "acmesec", "region", `"eu"`, true, false)
	f.mustSet(t, "client_alpha", "old", `1`, false, false)
	val := func(v string) *catalog.ConfigValue { return &catalog.ConfigValue{Value: json.RawMessage(v)} }
	applied, failed, err := f.c.ApplyConfig(ctx, f.ids["client_alpha"], map[string]*catalog.ConfigValue{
		"max_users":             val("500"),
		"region":                val(`"us"`),      // locked by acmesec
		"Bad-Key":               val("1"),         // invalid key
		"proxy.max_connections": val("0"),         // out of range
		"odd":                   val(`1e1000000`), // refused by jsonb, in its savepoint
		"old":                   nil,              // delete
		"never_set":             nil,              // nothing to delete
		"proxy.read_only":       val("true"),
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"max_users", "old", "proxy.read_only"}; !slices.Equal(applied, want) {
		t.Errorf("applied %v, want %v", applied, want)
	}
	wantFail := map[string]error{"region": catalog.ErrLocked, "Bad-Key": catalog.ErrInvalid,
		"proxy.max_connections": catalog.ErrInvalid, "odd": catalog.ErrInvalid, "never_set": catalog.ErrNotFound}
	if len(failed) != len(wantFail) {
		t.Errorf("failed %v", failed)
	}
	for k, want := range wantFail {
		if !errors.Is(failed[k], want) {
			t.Errorf("%s: %v, want %v", k, failed[k], want)
		}
	}
	f.expect(t, "client_alpha", "max_users", "500", "client_alpha", "")
	f.expect(t, "client_alpha", "proxy.read_only", "true", "client_alpha", "")
	if e := f.entry(t, "client_alpha", "old"); e != nil {
		t.Errorf("old not deleted")
	}
	if n := f.query(t, `SELECT count(*) FROM config_values WHERE tenant_id = $1`, f.ids["client_alpha"]); n != 2 {
		t.Errorf("client_alpha has %d values, want 2", n)
	}
	if n := f.query(t, `SELECT count(*) FROM audit_log WHERE target LIKE 'config:client_alpha/%'`); n != 4 {
		t.Errorf("%d audit rows for client_alpha, want 4 (old set, 2 sets, 1 delete)", n)
	}
	if n := f.audits(t, "config.delete", "config:client_alpha/old"); n != 1 {
		t.Errorf("no delete audit row")
	}
	// A batch on an unknown tenant fails whole.
	if _, _, err := f.c.ApplyConfig(ctx, "00000000-0000-4000-8000-000000000000", map[string]*catalog.ConfigValue{"a": val("1")}); !errors.Is(err, catalog.ErrNotFound) {
		t.Errorf("unknown tenant: %v", err)
	}
}

// TestConfigDiff compares resolved views.
func TestConfigDiff(t *testing.T) {
	t.Parallel()
	f := newConfigFixture(t, "")
	ctx := context.Background()
	f.mustSet(t, "acmesec", "max_users", "1000", false, false)
	f.mustSet(t, "client_alpha", "max_users", "500", false, false)
	f.mustSet(t, "acmesec", "region", `"eu"`, false, false)
	f.mustSet(t, "client_alpha", "obj", `{"a":1,"b":[1,2]}`, false, false)
	f.mustSet(t, "client_beta", "obj", `{"b":[1,2],"a":1.0}`, false, false) // the same value
	f.mustSet(t, "client_alpha", "only_alpha", "true", false, false)
	f.mustSet(t, "client_alpha", "secret", `"one"`, false, true)
	f.mustSet(t, "client_beta", "secret", `"two"`, false, true)
	f.mustSet(t, "client_alpha", "same_secret", `"x"`, false, true)
	f.mustSet(t, "client_beta", "same_secret", `"x"`, false, true)
	ra, rb, diff, err := f.c.DiffConfig(ctx, f.ids["client_alpha"], f.ids["client_beta"], false)
	if err != nil {
		t.Fatal(err)
	}
	if ra.Slug != "client_alpha" || rb.Slug != "client_beta" {
		t.Errorf("refs %v %v", ra, rb)
	}
	var keys []string
	for _, d := range diff {
		keys = append(keys, d.Key)
	}
	if want := []string{"max_users", "only_alpha", "secret"}; !slices.Equal(keys, want) {
		t.Fatalf("diff keys %v, want %v", keys, want)
	}
	if string(diff[0].A.Value) != "500" || string(diff[0].B.Value) != "1000" || diff[0].B.Source.Slug != "acmesec" {
		t.Errorf("max_users diff %+v %+v", diff[0].A, diff[0].B)
	}
	if diff[1].B != nil || diff[1].A == nil {
		t.Errorf("only_alpha diff %+v", diff[1])
	}
	if string(diff[2].A.Value) != catalog.MaskedValue || string(diff[2].B.Value) != catalog.MaskedValue {
		t.Errorf("secret diff not masked: %s %s", diff[2].A.Value, diff[2].B.Value)
	}
	_, _, diff, err = f.c.DiffConfig(ctx, f.ids["client_alpha"], f.ids["client_beta"], true)
	if err != nil || string(diff[2].A.Value) != `"one"` || string(diff[2].B.Value) != `"two"` {
		t.Errorf("revealed secret diff: %v %v", diff, err)
	}
	_, _, diff, err = f.c.DiffConfig(ctx, f.ids["client_alpha"], f.ids["client_alpha"], false)
	if err != nil || len(diff) != 0 {
		t.Errorf("self diff %v %v", diff, err)
	}
}

// TestConfigRotateKeys seals under k1, then rotates with the keyring
// "k2,k1": every sealed value moves to k2 and still opens.
func TestConfigRotateKeys(t *testing.T) {
	t.Parallel()
	k1, _ := secrets.NewKeyText("k1")
	k2, _ := secrets.NewKeyText("k2")
	f := newConfigFixture(t, k1)
	ctx := context.Background()
	f.mustSet(t, "acmesec", "s1", `"alpha"`, false, true)
	f.mustSet(t, "client_beta", "s2", `{"x":"beta"}`, false, true)
	f.mustSet(t, "client_beta", "plain", `1`, false, false)

	rotated := openKeyring(t, f.url, k2+","+k1)
	res, err := rotated.RotateKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if res.ActiveKeyID != "k2" || res.Reencrypted.Config != 2 || res.Reencrypted.Credentials != 5 {
		t.Fatalf("rotation %+v, want k2, 2 config values, 5 credentials", res)
	}
	if n := f.query(t, `SELECT count(*) FROM config_values WHERE sensitive AND key_id <> 'k2'`); n != 0 {
		t.Errorf("%d config values not under k2", n)
	}
	if n := f.query(t, `SELECT count(*) FROM backend_credentials WHERE key_id <> 'k2'`); n != 0 {
		t.Errorf("%d credentials not under k2", n)
	}
	if n := f.query(t, `SELECT count(*) FROM audit_log WHERE action = 'keys.rotate'
		AND (after->'reencrypted'->>'config')::int = 2 AND after->>'active_key_id' = 'k2'`); n != 1 {
		t.Errorf("%d rotation audit rows", n)
	}
	// Only the new key is needed now.
	only2 := openKeyring(t, f.url, k2)
	e, err := only2.ReadConfigKey(ctx, f.ids["client_alpha"], "s1", true)
	if err != nil || string(e.Value) != `"alpha"` {
		t.Fatalf("read after rotation: %+v %v", e, err)
	}
	e, err = only2.ReadConfigKey(ctx, f.ids["client_beta"], "s2", true)
	if err != nil || string(e.Value) != `{"x":"beta"}` {
		t.Fatalf("read after rotation: %+v %v", e, err)
	}
	if pw, err := only2.BackendPassword(ctx, f.ids["apex"]); err != nil || pw != "pw-apex" {
		t.Fatalf("credential after rotation: %q %v", pw, err)
	}
	// Nothing left to do.
	res, err = rotated.RotateKeys(ctx)
	if err != nil || res.Reencrypted != (catalog.RotationCounts{}) {
		t.Errorf("second rotation %+v %v", res, err)
	}
	// A keyring that lacks the sealing key fails whole and changes nothing.
	k3, _ := secrets.NewKeyText("k3")
	f.mustSet(t, "apex", "s3", `"gamma"`, false, true) // still sealed under k1 by f.c
	if _, err := openKeyring(t, f.url, k3).RotateKeys(ctx); !errors.Is(err, secrets.ErrUnknownKey) {
		t.Errorf("rotation without the old key: %v", err)
	}
	if n := f.query(t, `SELECT count(*) FROM config_values WHERE key_id = 'k3'`); n != 0 {
		t.Errorf("a failed rotation re-encrypted %d values", n)
	}
}
