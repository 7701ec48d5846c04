package admin_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/stratum-hq/stratum-proxy/catalog"
	"github.com/stratum-hq/stratum-proxy/policy"
	"github.com/stratum-hq/stratum-proxy/provision"
)

// cfgStack is a stack with the acceptance tree
//
//	acmesec ─┬─ client_alpha
//	         └─ client_beta
//	apex
//
// and keys: writer (write), reader (read), revealer (read, secrets:read) and
// bound (write, secrets:read; bound to client_alpha).
type cfgStack struct {
	*stack
	db                              *pgx.Conn
	ids                             map[string]string
	writer, reader, revealer, bound string
}

func newCfgStack(t *testing.T) *cfgStack {
	t.Helper()
	s := &cfgStack{stack: newStack(t), ids: map[string]string{}}
	ctx := context.Background()
	for _, n := range [][2]string{{"acmesec", ""}, {"client_alpha", "acmesec"}, {"client_beta", "acmesec"}, {"apex", ""}} {
		tn, err := s.p.CreateTenant(ctx, provision.TenantSpec{Slug: n[0], Parent: n[1]})
		if err != nil {
			t.Fatalf("creating tenant %s: %v", n[0], err)
		}
		s.ids[n[0]] = tn.ID
	}
	key := func(name string, scopes []string, tenant *string) string {
		_, secret, err := s.cat.CreateAPIKey(ctx, name, scopes, tenant)
		if err != nil {
			t.Fatal(err)
		}
		return secret
	}
	alpha := s.ids["client_alpha"]
	s.writer = key("writer", []string{"write"}, nil)
	s.reader = key("reader", []string{"read"}, nil)
	s.revealer = key("revealer", []string{"read", "secrets:read"}, nil)
	s.bound = key("bound", []string{"write", "secrets:read"}, &alpha)
	t.Cleanup(func() { s.srv.Exec(t, s.catdb, `DELETE FROM api_keys WHERE tenant_id = $1`, alpha) })
	s.db = s.catalogConn(t)
	return s
}

func (s *cfgStack) count(t *testing.T, sql string, args ...any) int {
	t.Helper()
	return countRows(t, s.db, sql, args...)
}

// cfgEntry finds key in a resolved view body.
func cfgEntry(r response, key string) map[string]any {
	list, _ := r.body["config"].([]any)
	for _, v := range list {
		e, _ := v.(map[string]any)
		if e["key"] == key {
			return e
		}
	}
	return nil
}

// wantEntry checks an entry's value (as JSON), source slug, inherited and
// locked_by slug ("" for unlocked).
func wantEntry(t *testing.T, s *cfgStack, e map[string]any, value, source string, inherited bool, lockedBy string) {
	t.Helper()
	if e == nil {
		t.Fatalf("no entry, want %s from %s", value, source)
	}
	got := jsonBody(t, e["value"])
	src, _ := e["source"].(map[string]any)
	if got != value || src["slug"] != source || src["id"] != s.ids[source] || e["inherited"] != inherited {
		t.Errorf("entry %v: want value %s from %s (inherited %v)", e, value, source, inherited)
	}
	lb, _ := e["locked_by"].(map[string]any)
	if lockedBy == "" && (e["locked"] != false || lb != nil) || lockedBy != "" && (e["locked"] != true || lb["slug"] != lockedBy || lb["id"] != s.ids[lockedBy]) {
		t.Errorf("entry %v: want locked by %q", e, lockedBy)
	}
}

// TestConfigAcceptance walks the example over HTTP.
func TestConfigAcceptance(t *testing.T) {
	t.Parallel()
	s := newCfgStack(t)
	k := s.writer
	want(t, s.do(t, "PUT", "/v1/tenants/acmesec/config/max_users", k, `{"value":1000}`), 200, "")
	r := s.do(t, "PUT", "/v1/tenants/client_alpha/config/max_users", k, `{"value":500}`)
	want(t, r, 200, "")
	wantEntry(t, s, r.body, "500", "client_alpha", false, "")
	r = s.do(t, "PUT", "/v1/tenants/acmesec/config/region", k, `{"value":"eu","locked":true}`)
	want(t, r, 200, "")
	wantEntry(t, s, r.body, `"eu"`, "acmesec", false, "acmesec")

	r = s.do(t, "GET", "/v1/tenants/client_beta/config", s.reader, "")
	want(t, r, 200, "")
	if tn, _ := r.body["tenant"].(map[string]any); tn["slug"] != "client_beta" || tn["id"] != s.ids["client_beta"] {
		t.Errorf("tenant %v", r.body["tenant"])
	}
	wantEntry(t, s, cfgEntry(r, "max_users"), "1000", "acmesec", true, "")
	wantEntry(t, s, cfgEntry(r, "region"), `"eu"`, "acmesec", true, "acmesec")
	if e := cfgEntry(r, "max_users"); e["sensitive"] != false || e["masked"] != false {
		t.Errorf("plain entry %v", e)
	}
	r = s.do(t, "GET", "/v1/tenants/"+s.ids["client_alpha"]+"/config/max_users", s.reader, "")
	want(t, r, 200, "")
	wantEntry(t, s, r.body, "500", "client_alpha", false, "")

	// A write of region on client_alpha is refused naming acmesec; nothing is written.
	before := s.count(t, `SELECT count(*) FROM audit_log`)
	for _, req := range [][3]string{
		{"PUT", "/v1/tenants/client_alpha/config/region", `{"value":"us"}`},
		{"DELETE", "/v1/tenants/client_alpha/config/region", ""},
	} {
		r = s.do(t, req[0], req[1], k, req[2])
		want(t, r, 409, "locked")
		d, _ := r.body["error"].(map[string]any)["details"].(map[string]any)
		lb, _ := d["locked_by"].(map[string]any)
		if lb["slug"] != "acmesec" || lb["id"] != s.ids["acmesec"] || d["key"] != "region" || !strings.Contains(r.errMessage(), "acmesec") {
			t.Errorf("%s: lock error %s", req[0], r.raw)
		}
	}
	if n := s.count(t, `SELECT count(*) FROM config_values WHERE key = 'region'`); n != 1 {
		t.Errorf("%d region rows", n)
	}
	if n := s.count(t, `SELECT count(*) FROM audit_log`); n != before {
		t.Errorf("refused writes added %d audit rows", n-before)
	}
	r = s.do(t, "GET", "/v1/tenants/client_alpha/config/region", s.reader, "")
	wantEntry(t, s, r.body, `"eu"`, "acmesec", true, "acmesec")

	// Every change has its audit row with the actor.
	if n := s.count(t, `SELECT count(*) FROM audit_log WHERE action = 'config.set' AND actor_name = 'writer'
		AND target IN ('config:acmesec/max_users', 'config:client_alpha/max_users', 'config:acmesec/region')`); n != 3 {
		t.Errorf("%d config.set audit rows by writer, want 3", n)
	}

	// A lock beats a descendant's existing value.
	want(t, s.do(t, "PUT", "/v1/tenants/client_beta/config/tier", k, `{"value":"gold"}`), 200, "")
	want(t, s.do(t, "PUT", "/v1/tenants/acmesec/config/tier", k, `{"value":"silver","locked":true}`), 200, "")
	r = s.do(t, "GET", "/v1/tenants/client_beta/config/tier", s.reader, "")
	wantEntry(t, s, r.body, `"silver"`, "acmesec", true, "acmesec")

	// DELETE reveals the inherited value, then there is nothing left to delete.
	r = s.do(t, "DELETE", "/v1/tenants/client_alpha/config/max_users", k, "")
	want(t, r, 200, "")
	if r.body["deleted"] != true || r.body["key"] != "max_users" {
		t.Errorf("delete body %s", r.raw)
	}
	wantEntry(t, s, r.body["entry"].(map[string]any), "1000", "acmesec", true, "")
	want(t, s.do(t, "DELETE", "/v1/tenants/client_alpha/config/max_users", k, ""), 404, "not_found")
	if n := s.count(t, `SELECT count(*) FROM audit_log WHERE action = 'config.delete' AND target = 'config:client_alpha/max_users'`); n != 1 {
		t.Errorf("%d delete audit rows", n)
	}
	want(t, s.do(t, "PUT", "/v1/tenants/apex/config/solo", k, `{"value":[1,2]}`), 200, "")
	r = s.do(t, "DELETE", "/v1/tenants/apex/config/solo", k, "")
	want(t, r, 200, "")
	if r.body["entry"] != nil {
		t.Errorf("entry after last delete %s", r.raw)
	}
	want(t, s.do(t, "GET", "/v1/tenants/apex/config/solo", k, ""), 404, "not_found")

	// The view is sorted by key.
	r = s.do(t, "GET", "/v1/tenants/client_beta/config", s.reader, "")
	var keys []string
	for _, v := range r.body["config"].([]any) {
		keys = append(keys, v.(map[string]any)["key"].(string))
	}
	if !slices.Equal(keys, []string{"max_users", "region", "tier"}) {
		t.Errorf("keys %v", keys)
	}
	r = s.do(t, "GET", "/v1/tenants/apex/config", s.reader, "")
	if list, ok := r.body["config"].([]any); r.status != 200 || !ok || len(list) != 0 {
		t.Errorf("empty view %s", r.raw)
	}
}

// TestConfigSecrets: sensitive values are masked without secrets:read, in
// the clear with it, and never in plaintext in the catalog.
func TestConfigSecrets(t *testing.T) {
	t.Parallel()
	s := newCfgStack(t)
	const secret = "hunter2-zz-topsecret"
	r := s.do(t, "PUT", "/v1/tenants/acmesec/config/smtp.password", s.writer, `{"value":"`+secret+`","sensitive":true}`)
	want(t, r, 200, "")
	if r.body["value"] != "********" || r.body["masked"] != true || r.body["sensitive"] != true || strings.Contains(r.raw, secret) {
		t.Errorf("writer's answer %s", r.raw)
	}
	for _, k := range []string{s.reader, s.writer} {
		for _, path := range []string{"/v1/tenants/client_beta/config", "/v1/tenants/client_beta/config/smtp.password"} {
			r = s.do(t, "GET", path, k, "")
			want(t, r, 200, "")
			e := r.body
			if path == "/v1/tenants/client_beta/config" {
				e = cfgEntry(r, "smtp.password")
			}
			if e["value"] != "********" || e["masked"] != true || strings.Contains(r.raw, secret) {
				t.Errorf("GET %s without secrets:read: %s", path, r.raw)
			}
		}
	}
	for _, k := range []string{s.revealer, bootstrapKey, s.bound} {
		r = s.do(t, "GET", "/v1/tenants/client_alpha/config/smtp.password", k, "")
		want(t, r, 200, "")
		if r.body["value"] != secret || r.body["masked"] != false || r.body["sensitive"] != true {
			t.Errorf("GET with secrets:read: %s", r.raw)
		}
	}
	// Diff: masked without secrets:read, even though the values differ.
	want(t, s.do(t, "PUT", "/v1/tenants/client_beta/config/smtp.password", s.writer, `{"value":"other","sensitive":true}`), 200, "")
	r = s.do(t, "GET", "/v1/config/diff?a=client_alpha&b=client_beta", s.reader, "")
	want(t, r, 200, "")
	if strings.Contains(r.raw, secret) || !strings.Contains(r.raw, `"********"`) {
		t.Errorf("masked diff %s", r.raw)
	}
	r = s.do(t, "GET", "/v1/config/diff?a=client_alpha&b=client_beta", s.revealer, "")
	if !strings.Contains(r.raw, secret) || !strings.Contains(r.raw, `"other"`) {
		t.Errorf("revealed diff %s", r.raw)
	}

	// Not in plaintext anywhere in the catalog database.
	rows, err := s.db.Query(context.Background(), `SELECT tablename FROM pg_tables WHERE schemaname = 'public'`)
	if err != nil {
		t.Fatal(err)
	}
	tables, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil || len(tables) < 5 {
		t.Fatalf("tables %v %v", tables, err)
	}
	for _, name := range tables {
		n := s.count(t, fmt.Sprintf(`SELECT count(*) FROM %s r WHERE r::text LIKE '%%' || $1 || '%%'
			OR r::text LIKE '%%' || encode(convert_to($1, 'UTF8'), 'hex') || '%%'`, pgx.Identifier{name}.Sanitize()), secret)
		if n != 0 {
			t.Errorf("the secret is in plaintext in %d rows of %s", n, name)
		}
	}
	if n := s.count(t, `SELECT count(*) FROM audit_log WHERE target = 'config:acmesec/smtp.password' AND after->>'value' = '********'`); n != 1 {
		t.Errorf("%d masked audit rows", n)
	}
}

// TestConfigBatchAPI: a PATCH applies its valid keys and reports the others.
func TestConfigBatchAPI(t *testing.T) {
	t.Parallel()
	s := newCfgStack(t)
	want(t, s.do(t, "PUT", "/v1/tenants/acmesec/config/region", s.writer, `{"value":"eu","locked":true}`), 200, "")
	want(t, s.do(t, "PUT", "/v1/tenants/client_alpha/config/old", s.writer, `{"value":1}`), 200, "")
	r := s.do(t, "PATCH", "/v1/tenants/client_alpha/config", s.writer, `{
		"max_users": {"value": 500},
		"feature.beta": {"value": true, "locked": true},
		"old": null,
		"region": {"value": "us"},
		"Bad-Key": {"value": 1},
		"nullish": {"value": null},
		"nothing": {"locked": true},
		"not_object": 5,
		"extra": {"value": 1, "colour": "red"},
		"proxy.max_connections": {"value": "many"},
		"proxy.bogus": {"value": 1},
		"gone": null
	}`)
	want(t, r, 200, "")
	applied, _ := r.body["applied"].([]any)
	if fmt.Sprint(applied) != "[feature.beta max_users old]" {
		t.Errorf("applied %v", applied)
	}
	errs, _ := r.body["errors"].(map[string]any)
	wantCodes := map[string]string{"region": "locked", "Bad-Key": "invalid", "nullish": "invalid", "nothing": "invalid",
		"not_object": "bad_request", "extra": "bad_request", "proxy.max_connections": "invalid",
		"proxy.bogus": "invalid", "gone": "not_found"}
	if len(errs) != len(wantCodes) {
		t.Errorf("errors %v", errs)
	}
	for key, code := range wantCodes {
		e, _ := errs[key].(map[string]any)
		if e["code"] != code || e["message"] == "" {
			t.Errorf("%s: error %v, want code %s", key, e, code)
		}
		if d, _ := e["details"].(map[string]any); d["key"] != key {
			t.Errorf("%s: details %v do not name the key", key, e["details"])
		}
	}
	lb, _ := errs["region"].(map[string]any)["details"].(map[string]any)["locked_by"].(map[string]any)
	if lb["slug"] != "acmesec" {
		t.Errorf("region error does not name acmesec: %v", errs["region"])
	}
	if known, _ := errs["proxy.bogus"].(map[string]any)["details"].(map[string]any)["known"].([]any); len(known) != len(policy.Keys()) {
		t.Errorf("proxy.bogus error does not list the known keys: %v", errs["proxy.bogus"])
	}
	if n := s.count(t, `SELECT count(*) FROM config_values WHERE tenant_id = $1`, s.ids["client_alpha"]); n != 2 {
		t.Errorf("client_alpha holds %d values, want 2", n)
	}
	if n := s.count(t, `SELECT count(*) FROM audit_log WHERE target LIKE 'config:client_alpha/%'`); n != 4 {
		t.Errorf("%d client_alpha audit rows, want 4", n)
	}
	// Nothing valid: still 200, nothing applied.
	r = s.do(t, "PATCH", "/v1/tenants/client_alpha/config", s.writer, `{"region":{"value":1}}`)
	want(t, r, 200, "")
	if a, _ := r.body["applied"].([]any); a == nil || len(a) != 0 {
		t.Errorf("applied %s", r.raw)
	}
	// Whole-request refusals.
	want(t, s.do(t, "PATCH", "/v1/tenants/client_alpha/config", s.writer, `{}`), 422, "invalid")
	want(t, s.do(t, "PATCH", "/v1/tenants/client_alpha/config", s.writer, `[]`), 400, "bad_request")
	want(t, s.do(t, "PATCH", "/v1/tenants/client_alpha/config", s.writer, `{"a":`), 400, "bad_request")
	want(t, s.do(t, "PATCH", "/v1/tenants/nobody/config", s.writer, `{"a":{"value":1}}`), 404, "not_found")
	want(t, s.do(t, "PATCH", "/v1/tenants/client_alpha/config", s.reader, `{"a":{"value":1}}`), 403, "forbidden")
}

// TestConfigBadInput: every malformed request is a 4xx with the right code
// and writes nothing.
func TestConfigBadInput(t *testing.T) {
	t.Parallel()
	s := newCfgStack(t)
	k := s.writer
	huge := `{"value":"` + strings.Repeat("x", catalog.MaxConfigValueBytes) + `"}`
	tests := []struct {
		name, method, path, body string
		status                   int
		code                     string
	}{
		{"bad key name", "PUT", "/v1/tenants/apex/config/Bad-Key", `{"value":1}`, 422, "invalid"},
		{"key with empty part", "PUT", "/v1/tenants/apex/config/a..b", `{"value":1}`, 422, "invalid"},
		{"null value", "PUT", "/v1/tenants/apex/config/x", `{"value":null}`, 422, "invalid"},
		{"missing value", "PUT", "/v1/tenants/apex/config/x", `{"locked":true}`, 422, "invalid"},
		{"huge value", "PUT", "/v1/tenants/apex/config/x", huge, 422, "invalid"},
		{"NUL in value", "PUT", "/v1/tenants/apex/config/x", `{"value":"a\u0000b"}`, 422, "invalid"},
		{"number jsonb cannot hold", "PUT", "/v1/tenants/apex/config/x", `{"value":1e1000000}`, 422, "invalid"},
		{"malformed json", "PUT", "/v1/tenants/apex/config/x", `{"value":`, 400, "bad_request"},
		{"unknown field", "PUT", "/v1/tenants/apex/config/x", `{"value":1,"lock":true}`, 400, "bad_request"},
		{"locked not a boolean", "PUT", "/v1/tenants/apex/config/x", `{"value":1,"locked":"yes"}`, 400, "bad_request"},
		{"empty body", "PUT", "/v1/tenants/apex/config/x", ``, 400, "bad_request"},
		{"max_connections string", "PUT", "/v1/tenants/apex/config/proxy.max_connections", `{"value":"abc"}`, 422, "invalid"},
		{"max_connections zero", "PUT", "/v1/tenants/apex/config/proxy.max_connections", `{"value":0}`, 422, "invalid"},
		{"max_connections too many", "PUT", "/v1/tenants/apex/config/proxy.max_connections", `{"value":10001}`, 422, "invalid"},
		{"statement_timeout bad unit", "PUT", "/v1/tenants/apex/config/proxy.statement_timeout", `{"value":"3 fortnights"}`, 422, "invalid"},
		{"statement_timeout negative", "PUT", "/v1/tenants/apex/config/proxy.statement_timeout", `{"value":-1}`, 422, "invalid"},
		{"read_only not boolean", "PUT", "/v1/tenants/apex/config/proxy.read_only", `{"value":"yes"}`, 422, "invalid"},
		{"sensitive proxy key", "PUT", "/v1/tenants/apex/config/proxy.read_only", `{"value":true,"sensitive":true}`, 422, "invalid"},
		{"unknown proxy key", "PUT", "/v1/tenants/apex/config/proxy.nope", `{"value":1}`, 422, "invalid"},
		{"unknown tenant", "PUT", "/v1/tenants/nobody/config/x", `{"value":1}`, 404, "not_found"},
		{"malformed tenant ref", "PUT", "/v1/tenants/No-Body/config/x", `{"value":1}`, 404, "not_found"},
		{"read key cannot write", "PUT", "/v1/tenants/apex/config/x", `{"value":1}`, 403, "forbidden"},
		{"get bad key name", "GET", "/v1/tenants/apex/config/Bad-Key", ``, 422, "invalid"},
		{"delete bad key name", "DELETE", "/v1/tenants/apex/config/Bad-Key", ``, 422, "invalid"},
		{"delete missing", "DELETE", "/v1/tenants/apex/config/never", ``, 404, "not_found"},
		{"get unknown tenant", "GET", "/v1/tenants/nobody/config", ``, 404, "not_found"},
		{"diff without b", "GET", "/v1/config/diff?a=apex", ``, 400, "bad_request"},
		{"diff unknown tenant", "GET", "/v1/config/diff?a=apex&b=nobody", ``, 404, "not_found"},
		{"wrong method", "POST", "/v1/tenants/apex/config/x", `{"value":1}`, 405, "method_not_allowed"},
		{"rotate by a writer", "POST", "/v1/config/rotate-keys", ``, 403, "forbidden"},
		{"no key", "GET", "/v1/tenants/apex/config", ``, 401, "unauthorized"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			key := k
			switch {
			case strings.HasPrefix(tc.name, "read key"):
				key = s.reader
			case tc.name == "no key":
				key = ""
			}
			r := s.do(t, tc.method, tc.path, key, tc.body)
			want(t, r, tc.status, tc.code)
			if tc.name == "unknown proxy key" {
				d, _ := r.body["error"].(map[string]any)["details"].(map[string]any)
				if known, _ := d["known"].([]any); len(known) != len(policy.Keys()) || !strings.Contains(r.errMessage(), "proxy.statement_timeout") {
					t.Errorf("unknown proxy key error does not list the known keys: %s", r.raw)
				}
			}
		})
	}
	if n := s.count(t, `SELECT count(*) FROM config_values`); n != 0 {
		t.Errorf("%d config values written", n)
	}
	if n := s.count(t, `SELECT count(*) FROM audit_log WHERE action LIKE 'config.%'`); n != 0 {
		t.Errorf("%d config audit rows written", n)
	}
	// The proxy keys accept their documented forms.
	for path, body := range map[string]string{
		"proxy.max_connections":   `{"value":25}`,
		"proxy.statement_timeout": `{"value":"30s"}`,
		"proxy.read_only":         `{"value":true}`,
	} {
		r := s.do(t, "PUT", "/v1/tenants/apex/config/"+path, k, body)
		want(t, r, 200, "")
	}
	r := s.do(t, "GET", "/v1/tenants/apex/config/proxy.statement_timeout", s.reader, "")
	if r.body["value"] != "30s" {
		t.Errorf("statement_timeout stored as %v, want as given", r.body["value"])
	}
}

// TestConfigBoundKey: a key bound to client_alpha reaches nothing outside its
// subtree through the config routes, and cannot rotate keys.
func TestConfigBoundKey(t *testing.T) {
	t.Parallel()
	s := newCfgStack(t)
	want(t, s.do(t, "PUT", "/v1/tenants/apex/config/x", s.writer, `{"value":1}`), 200, "")
	want(t, s.do(t, "PUT", "/v1/tenants/client_beta/config/x", s.writer, `{"value":2}`), 200, "")
	want(t, s.do(t, "PUT", "/v1/tenants/acmesec/config/y", s.writer, `{"value":3}`), 200, "")
	b := s.bound
	// Its own subtree works, inherited values included.
	r := s.do(t, "PUT", "/v1/tenants/client_alpha/config/x", b, `{"value":9}`)
	want(t, r, 200, "")
	r = s.do(t, "GET", "/v1/tenants/client_alpha/config/y", b, "")
	want(t, r, 200, "")
	before := s.count(t, `SELECT count(*) FROM audit_log`)
	for _, other := range []string{"apex", "client_beta", "acmesec", s.ids["apex"], s.ids["client_beta"]} {
		for _, req := range [][3]string{
			{"GET", "/v1/tenants/" + other + "/config", ""},
			{"GET", "/v1/tenants/" + other + "/config/x", ""},
			{"PUT", "/v1/tenants/" + other + "/config/x", `{"value":0}`},
			{"PATCH", "/v1/tenants/" + other + "/config", `{"x":{"value":0}}`},
			{"DELETE", "/v1/tenants/" + other + "/config/x", ""},
			{"GET", "/v1/config/diff?a=client_alpha&b=" + other, ""},
			{"GET", "/v1/config/diff?a=" + other + "&b=client_alpha", ""},
		} {
			r := s.do(t, req[0], req[1], b, req[2])
			want(t, r, 404, "not_found")
			if strings.Contains(r.raw, `"value"`) {
				t.Errorf("%s %s leaked a value: %s", req[0], req[1], r.raw)
			}
		}
	}
	want(t, s.do(t, "POST", "/v1/config/rotate-keys", b, ""), 403, "forbidden")
	if n := s.count(t, `SELECT count(*) FROM audit_log`); n != before {
		t.Errorf("refused requests wrote %d audit rows", n-before)
	}
	if n := s.count(t, `SELECT count(*) FROM config_values WHERE value = '0'::jsonb`); n != 0 {
		t.Errorf("a refused write landed")
	}
}

// TestConfigRotateKeysAPI: the admin route answers the active key and counts
// and leaves one audit row. (Re-encryption itself is tested in catalog.)
func TestConfigRotateKeysAPI(t *testing.T) {
	t.Parallel()
	s := newCfgStack(t)
	want(t, s.do(t, "PUT", "/v1/tenants/apex/config/s", s.writer, `{"value":"x","sensitive":true}`), 200, "")
	r := s.do(t, "POST", "/v1/config/rotate-keys", bootstrapKey, "")
	want(t, r, 200, "")
	re, _ := r.body["reencrypted"].(map[string]any)
	if r.body["active_key_id"] != "k1" || re["config"] != 0.0 || re["credentials"] != 0.0 {
		t.Errorf("rotation answer %s (everything is already under k1)", r.raw)
	}
	if n := s.count(t, `SELECT count(*) FROM audit_log WHERE action = 'keys.rotate' AND actor_key_id = 'bootstrap'`); n != 1 {
		t.Errorf("%d keys.rotate audit rows", n)
	}
	want(t, s.do(t, "POST", "/v1/config/rotate-keys", s.writer, ""), 403, "forbidden")
}

// effectivePolicy resolves the tenant's policy as the router does.
func (s *cfgStack) effectivePolicy(t *testing.T, slug string) policy.Policy {
	t.Helper()
	ctx := context.Background()
	tn, err := s.cat.GetTenant(ctx, slug)
	if err != nil {
		t.Fatal(err)
	}
	in, err := s.cat.PolicyInput(ctx, tn)
	if err != nil {
		t.Fatal(err)
	}
	return policy.Resolve(in)
}

// TestConfigBoundKeyCannotRaiseLimits: a key bound to client_alpha may lower
// its tenant's limits but not raise them past what acmesec sets (422, nothing
// stored), nor switch off the shared placement's default idle timeout; a
// value above the cap that a platform key stores anyway does not change the
// effective policy.
func TestConfigBoundKeyCannotRaiseLimits(t *testing.T) {
	t.Parallel()
	s := newCfgStack(t)
	want(t, s.do(t, "PUT", "/v1/tenants/acmesec/config/proxy.max_connections", s.writer, `{"value":5}`), 200, "")
	want(t, s.do(t, "PUT", "/v1/tenants/acmesec/config/proxy.statement_timeout", s.writer, `{"value":"2s"}`), 200, "")
	b := s.bound
	before := s.count(t, `SELECT count(*) FROM config_values`)
	for _, req := range []struct{ key, value, cap string }{
		{"proxy.max_connections", "10000", `at most 5, set on ancestor tenant "acmesec"`},
		{"proxy.statement_timeout", `"1h"`, `at most 2000 ms, set on ancestor tenant "acmesec"`},
		{"proxy.statement_timeout", "0", `at most 2000 ms`},
		{"proxy.idle_in_transaction_timeout", "0", "the platform's default for tenants in the shared placement"},
		{"proxy.idle_in_transaction_timeout", `"1min"`, "the platform's default"},
	} {
		r := s.do(t, "PUT", "/v1/tenants/client_alpha/config/"+req.key, b, `{"value":`+req.value+`}`)
		want(t, r, 422, "invalid")
		if !strings.Contains(r.errMessage(), req.cap) {
			t.Errorf("PUT %s = %s: message %q does not name the cap %q", req.key, req.value, r.errMessage(), req.cap)
		}
		r = s.do(t, "PATCH", "/v1/tenants/client_alpha/config", b, `{"`+req.key+`":{"value":`+req.value+`}}`)
		want(t, r, 200, "")
		if e, _ := r.body["errors"].(map[string]any)[req.key].(map[string]any); e == nil || e["code"] != "invalid" ||
			!strings.Contains(fmt.Sprint(e["message"]), "never raise it") {
			t.Errorf("PATCH %s = %s: %s, want the key refused as invalid", req.key, req.value, r.raw)
		}
	}
	if n := s.count(t, `SELECT count(*) FROM config_values`); n != before {
		t.Errorf("refused limits landed: %d rows more", n-before)
	}
	if p := s.effectivePolicy(t, "client_alpha"); p.MaxConns != 5 || p.StatementTimeout != 2000 || p.IdleInTxTimeout != 30_000 {
		t.Errorf("client_alpha's policy: max_connections %d, statement_timeout %d, idle %d; want 5, 2000, 30000",
			p.MaxConns, p.StatementTimeout, p.IdleInTxTimeout)
	}

	// Lowering is allowed.
	want(t, s.do(t, "PUT", "/v1/tenants/client_alpha/config/proxy.max_connections", b, `{"value":3}`), 200, "")
	want(t, s.do(t, "PUT", "/v1/tenants/client_alpha/config/proxy.idle_in_transaction_timeout", b, `{"value":"5s"}`), 200, "")
	if p := s.effectivePolicy(t, "client_alpha"); p.MaxConns != 3 || p.IdleInTxTimeout != 5000 {
		t.Errorf("after lowering: max_connections %d, idle %d; want 3, 5000", p.MaxConns, p.IdleInTxTimeout)
	}
	// A platform key may store more; the parent's cap still holds.
	want(t, s.do(t, "PUT", "/v1/tenants/client_alpha/config/proxy.max_connections", s.writer, `{"value":10000}`), 200, "")
	if p := s.effectivePolicy(t, "client_alpha"); p.MaxConns != 5 {
		t.Errorf("client_alpha stores 10000 under acmesec's 5: effective %d, want 5", p.MaxConns)
	}
}
