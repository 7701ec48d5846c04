package admin_test

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/stratum-hq/stratum-proxy/provision"
)

// permStack is a stack with the tree northstar ─ client_alpha ─ leaf_one and
// a second root apex, keys bound to some of them, and a connection to the
// catalog database.
type permStack struct {
	*stack
	ids map[string]string
	// Keys: write scope bound to northstar, client_alpha and apex; read scope
	// bound to northstar.
	ns, alpha, apex, nsRead string
	keyIDs                  map[string]string // key secret -> key id
	db                      *pgx.Conn
}

func newPermStack(t *testing.T) *permStack {
	t.Helper()
	s := &permStack{stack: newStack(t), ids: map[string]string{}, keyIDs: map[string]string{}}
	ctx := context.Background()
	for _, n := range [][2]string{{"northstar", ""}, {"client_alpha", "northstar"}, {"leaf_one", "client_alpha"}, {"apex", ""}} {
		tn, err := s.p.CreateTenant(ctx, provision.TenantSpec{Slug: n[0], Parent: n[1]})
		if err != nil {
			t.Fatalf("creating tenant %s: %v", n[0], err)
		}
		s.ids[n[0]] = tn.ID
	}
	key := func(name string, scopes []string, tenant string) string {
		id := s.ids[tenant]
		k, secret, err := s.cat.CreateAPIKey(ctx, name, scopes, &id)
		if err != nil {
			t.Fatal(err)
		}
		s.keyIDs[secret] = k.ID
		return secret
	}
	s.ns = key("ns", []string{"write"}, "northstar")
	s.alpha = key("alpha", []string{"write"}, "client_alpha")
	s.apex = key("apex", []string{"write"}, "apex")
	s.nsRead = key("ns-read", []string{"read"}, "northstar")
	t.Cleanup(func() { s.srv.Exec(t, s.catdb, `DELETE FROM api_keys WHERE tenant_id IS NOT NULL`) })
	s.db = s.catalogConn(t)
	return s
}

func permPath(tenant, key string) string {
	if key == "" {
		return "/v1/tenants/" + tenant + "/permissions"
	}
	return "/v1/tenants/" + tenant + "/permissions/" + key
}

func policyBody(value, mode, rev string) string {
	return `{"value":` + value + `,"mode":"` + mode + `","revocation":"` + rev + `"}`
}

// stored lists the policies for key as "slug=value/mode/revocation".
func (s *permStack) stored(t *testing.T, key string) string {
	t.Helper()
	rows, err := s.db.Query(context.Background(), `SELECT t.slug || '=' || p.value::text || '/' || p.mode || '/' || p.revocation
		FROM permission_policies p JOIN tenants t ON t.id = p.tenant_id WHERE p.key = $1 ORDER BY t.path`, key)
	if err != nil {
		t.Fatal(err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return strings.Join(out, " ")
}

func (s *permStack) wantStored(t *testing.T, key, want string) {
	t.Helper()
	if got := s.stored(t, key); got != want {
		t.Fatalf("stored %s: %q, want %q", key, got, want)
	}
}

func detail(r response, name string) any {
	e, _ := r.body["error"].(map[string]any)
	d, _ := e["details"].(map[string]any)
	return d[name]
}

func slugOf(v any) string {
	m, _ := v.(map[string]any)
	s, _ := m["slug"].(string)
	return s
}

func TestPermissionsAPI(t *testing.T) {
	t.Parallel()
	s := newPermStack(t)
	boot := bootstrapKey

	t.Run("locked", func(t *testing.T) {
		r := s.do(t, "PUT", permPath("northstar", "sql.ddl"), boot, policyBody("false", "LOCKED", "CASCADE"))
		want(t, r, 200, "")
		if r.body["key"] != "sql.ddl" || r.body["value"] != false || r.body["mode"] != "LOCKED" ||
			r.body["revocation"] != "CASCADE" || slugOf(r.body["source"]) != "northstar" ||
			r.body["inherited"] != false || r.body["granted_by"] != nil {
			t.Fatalf("set answered %s", r.raw)
		}
		// The tenant below resolves it, inherited.
		r = s.do(t, "GET", permPath("client_alpha", ""), s.alpha, "")
		want(t, r, 200, "")
		list, _ := r.body["permissions"].([]any)
		if slugOf(r.body["tenant"]) != "client_alpha" || len(list) != 1 {
			t.Fatalf("resolved %s", r.raw)
		}
		e := list[0].(map[string]any)
		if e["key"] != "sql.ddl" || slugOf(e["source"]) != "northstar" || e["inherited"] != true || e["mode"] != "LOCKED" {
			t.Fatalf("entry %v", e)
		}
		r = s.do(t, "GET", permPath("leaf_one", "sql.ddl"), boot, "")
		want(t, r, 200, "")
		if slugOf(r.body["source"]) != "northstar" || r.body["value"] != false {
			t.Fatalf("one key %s", r.raw)
		}

		// It binds its holder (the platform granted it) ...
		r = s.do(t, "PUT", permPath("northstar", "sql.ddl"), s.ns, policyBody("true", "LOCKED", "CASCADE"))
		want(t, r, 409, "locked")
		if slugOf(detail(r, "holder")) != "northstar" || detail(r, "granted_by") != nil || detail(r, "reason") != "locked" ||
			!strings.Contains(r.errMessage(), "platform") {
			t.Fatalf("refusal %s", r.raw)
		}
		want(t, s.do(t, "DELETE", permPath("northstar", "sql.ddl"), s.ns, ""), 409, "locked")
		// ... and every descendant, whoever asks.
		for _, k := range []string{s.alpha, s.ns, boot} {
			r = s.do(t, "PUT", permPath("client_alpha", "sql.ddl"), k, policyBody("false", "DELEGATED", "SOFT"))
			want(t, r, 409, "locked")
			if slugOf(detail(r, "holder")) != "northstar" || !strings.Contains(r.errMessage(), `"northstar"`) {
				t.Fatalf("refusal %s does not name northstar", r.raw)
			}
		}
		s.wantStored(t, "sql.ddl", "northstar=false/LOCKED/CASCADE")
	})

	t.Run("inherited", func(t *testing.T) {
		r := s.do(t, "PUT", permPath("northstar", "feature.beta"), s.ns, policyBody("true", "INHERITED", "CASCADE"))
		want(t, r, 200, "")
		if slugOf(r.body["granted_by"]) != "northstar" {
			t.Fatalf("granted_by in %s", r.raw)
		}
		want(t, s.do(t, "PUT", permPath("northstar", "feature.beta"), s.ns, policyBody("false", "INHERITED", "CASCADE")), 200, "")
		r = s.do(t, "PUT", permPath("client_alpha", "feature.beta"), s.alpha, policyBody("false", "DELEGATED", "SOFT"))
		want(t, r, 409, "locked")
		if detail(r, "reason") != "inherited" || slugOf(detail(r, "holder")) != "northstar" {
			t.Fatalf("refusal %s", r.raw)
		}
		s.wantStored(t, "feature.beta", "northstar=false/INHERITED/CASCADE")
	})

	t.Run("delegated", func(t *testing.T) {
		want(t, s.do(t, "PUT", permPath("northstar", "limits.regions"), boot, policyBody(`["eu","us"]`, "DELEGATED", "SOFT")), 200, "")
		r := s.do(t, "PUT", permPath("client_alpha", "limits.regions"), s.alpha, policyBody(`["eu","ap"]`, "DELEGATED", "SOFT"))
		want(t, r, 422, "widening")
		if slugOf(detail(r, "holder")) != "northstar" || !strings.Contains(r.errMessage(), `["eu","us"]`) ||
			!strings.Contains(r.errMessage(), `["eu","ap"]`) {
			t.Fatalf("widening %s", r.raw)
		}
		dv, _ := detail(r, "delegated_value").([]any)
		if len(dv) != 2 {
			t.Fatalf("delegated_value in %s", r.raw)
		}
		s.wantStored(t, "limits.regions", `northstar=["eu", "us"]/DELEGATED/SOFT`)
		r = s.do(t, "PUT", permPath("client_alpha", "limits.regions"), s.alpha, policyBody(`["eu"]`, "DELEGATED", "SOFT"))
		want(t, r, 200, "")
		if slugOf(r.body["source"]) != "client_alpha" || slugOf(r.body["granted_by"]) != "client_alpha" {
			t.Fatalf("narrowed %s", r.raw)
		}
		want(t, s.do(t, "PUT", permPath("leaf_one", "limits.regions"), s.alpha, policyBody(`["us"]`, "LOCKED", "SOFT")), 422, "widening")

		// The set wrote one audit row with the actor, before and after.
		var actor, target string
		var before, after map[string]any
		if err := s.db.QueryRow(context.Background(), `SELECT actor_key_id, target, before, after FROM audit_log
			WHERE action = 'permission.set' AND tenant_id = $1 ORDER BY seq DESC LIMIT 1`, s.ids["client_alpha"]).
			Scan(&actor, &target, &before, &after); err != nil {
			t.Fatal(err)
		}
		if actor != s.keyIDs[s.alpha] || target != "permission:client_alpha/limits.regions" || before != nil ||
			after["mode"] != "DELEGATED" || slugOf(after["tenant"]) != "client_alpha" {
			t.Fatalf("audit row %s %s %v %v", actor, target, before, after)
		}

		// SOFT: the copy below stays and resolves on its own.
		r = s.do(t, "DELETE", permPath("northstar", "limits.regions"), boot, "")
		want(t, r, 200, "")
		if removed, _ := r.body["removed"].([]any); len(removed) != 0 || r.body["revoked"] == nil {
			t.Fatalf("soft revoke answered %s", r.raw)
		}
		s.wantStored(t, "limits.regions", `client_alpha=["eu"]/DELEGATED/SOFT`)
		want(t, s.do(t, "DELETE", permPath("northstar", "limits.regions"), boot, ""), 404, "not_found")
	})

	t.Run("cascade", func(t *testing.T) {
		want(t, s.do(t, "PUT", permPath("northstar", "quota.rows"), s.ns, policyBody("10", "DELEGATED", "CASCADE")), 200, "")
		want(t, s.do(t, "PUT", permPath("client_alpha", "quota.rows"), s.alpha, policyBody("5", "DELEGATED", "SOFT")), 200, "")
		want(t, s.do(t, "PUT", permPath("leaf_one", "quota.rows"), s.alpha, policyBody("5", "INHERITED", "SOFT")), 200, "")
		r := s.do(t, "DELETE", permPath("northstar", "quota.rows"), s.ns, "")
		want(t, r, 200, "")
		removed, _ := r.body["removed"].([]any)
		if len(removed) != 2 || slugOf(removed[0].(map[string]any)["tenant"]) != "client_alpha" {
			t.Fatalf("cascade answered %s", r.raw)
		}
		s.wantStored(t, "quota.rows", "")
		want(t, s.do(t, "GET", permPath("leaf_one", "quota.rows"), boot, ""), 404, "not_found")
		var n int
		if err := s.db.QueryRow(context.Background(), `SELECT count(*) FROM audit_log
			WHERE action = 'permission.revoke' AND target LIKE 'permission:%/quota.rows' AND actor_key_id = $1`,
			s.keyIDs[s.ns]).Scan(&n); err != nil || n != 3 {
			t.Fatalf("%d revoke audit rows (%v), want 3", n, err)
		}
	})

	t.Run("permanent", func(t *testing.T) {
		r := s.do(t, "PUT", permPath("client_alpha", "quota.conns"), s.ns, policyBody("100", "DELEGATED", "PERMANENT"))
		want(t, r, 200, "")
		// The holder (below the granter) may neither downgrade nor revoke it.
		r = s.do(t, "PUT", permPath("client_alpha", "quota.conns"), s.alpha, policyBody("50", "DELEGATED", "PERMANENT"))
		want(t, r, 409, "locked")
		if detail(r, "reason") != "permanent" || slugOf(detail(r, "granted_by")) != "northstar" {
			t.Fatalf("refusal %s", r.raw)
		}
		want(t, s.do(t, "PUT", permPath("client_alpha", "quota.conns"), s.alpha, policyBody("100", "LOCKED", "PERMANENT")), 409, "locked")
		want(t, s.do(t, "DELETE", permPath("client_alpha", "quota.conns"), s.alpha, ""), 409, "locked")
		// A cascade from the holder's level that would remove a PERMANENT
		// policy below it, granted above it, is refused too.
		want(t, s.do(t, "PUT", permPath("leaf_one", "quota.conns"), s.ns, policyBody("10", "DELEGATED", "PERMANENT")), 200, "")
		r = s.do(t, "DELETE", permPath("client_alpha", "quota.conns"), s.alpha, "")
		want(t, r, 409, "locked")
		if !strings.Contains(r.errMessage(), "PERMANENT") {
			t.Fatalf("cascade refusal %s", r.raw)
		}
		s.wantStored(t, "quota.conns", "client_alpha=100/DELEGATED/PERMANENT leaf_one=10/DELEGATED/PERMANENT")
		// The granter may downgrade it.
		want(t, s.do(t, "PUT", permPath("client_alpha", "quota.conns"), s.ns, policyBody("80", "DELEGATED", "PERMANENT")), 200, "")
		// The platform (an unbound key) is above every granter: it revokes
		// it, cascading, audited as itself.
		r = s.do(t, "DELETE", permPath("client_alpha", "quota.conns"), boot, "")
		want(t, r, 200, "")
		s.wantStored(t, "quota.conns", "")
		var n int
		if err := s.db.QueryRow(context.Background(), `SELECT count(*) FROM audit_log
			WHERE action = 'permission.revoke' AND target IN ('permission:client_alpha/quota.conns', 'permission:leaf_one/quota.conns')
			AND actor_key_id = 'bootstrap' AND before->>'revocation' = 'PERMANENT'`).Scan(&n); err != nil || n != 2 {
			t.Fatalf("%d platform revoke audit rows (%v), want 2", n, err)
		}
		// A parent may revoke a PERMANENT policy a descendant set in its subtree.
		want(t, s.do(t, "PUT", permPath("leaf_one", "quota.conns"), s.alpha, policyBody("5", "DELEGATED", "PERMANENT")), 200, "")
		want(t, s.do(t, "DELETE", permPath("leaf_one", "quota.conns"), s.ns, ""), 200, "")
		s.wantStored(t, "quota.conns", "")
	})

	t.Run("scoping", func(t *testing.T) {
		want(t, s.do(t, "PUT", permPath("apex", "x.y"), boot, policyBody("1", "DELEGATED", "SOFT")), 200, "")
		// A key bound elsewhere sees nothing and changes nothing.
		for _, c := range []struct{ key, tenant string }{{s.apex, "northstar"}, {s.apex, "client_alpha"},
			{s.alpha, "northstar"}, {s.ns, "apex"}, {s.apex, s.ids["leaf_one"]}} {
			want(t, s.do(t, "GET", permPath(c.tenant, ""), c.key, ""), 404, "not_found")
			want(t, s.do(t, "GET", permPath(c.tenant, "x.y"), c.key, ""), 404, "not_found")
			want(t, s.do(t, "PUT", permPath(c.tenant, "x.y"), c.key, policyBody("1", "DELEGATED", "SOFT")), 404, "not_found")
			want(t, s.do(t, "DELETE", permPath(c.tenant, "x.y"), c.key, ""), 404, "not_found")
		}
		want(t, s.do(t, "DELETE", permPath("apex", "x.y"), s.ns, ""), 404, "not_found")
		s.wantStored(t, "x.y", "apex=1/DELEGATED/SOFT")
		// Scopes: read reads, write writes.
		want(t, s.do(t, "GET", permPath("client_alpha", ""), s.nsRead, ""), 200, "")
		want(t, s.do(t, "PUT", permPath("client_alpha", "x.y"), s.nsRead, policyBody("1", "DELEGATED", "SOFT")), 403, "forbidden")
		want(t, s.do(t, "DELETE", permPath("northstar", "sql.ddl"), s.nsRead, ""), 403, "forbidden")
		want(t, s.do(t, "GET", permPath("client_alpha", ""), "", ""), 401, "unauthorized")
	})

	t.Run("bad input", func(t *testing.T) {
		tests := []struct {
			name, key, body string
			status          int
			code            string
		}{
			{"malformed json", "a.b", `{"value":`, 400, "bad_request"},
			{"unknown field", "a.b", `{"value":1,"mode":"LOCKED","revocation":"SOFT","extra":1}`, 400, "bad_request"},
			{"not an object", "a.b", `[1]`, 400, "bad_request"},
			{"missing mode", "a.b", `{"value":1,"revocation":"SOFT"}`, 422, "invalid"},
			{"missing value", "a.b", `{"mode":"LOCKED","revocation":"SOFT"}`, 422, "invalid"},
			{"lower-case mode", "a.b", policyBody("1", "locked", "SOFT"), 422, "invalid"},
			{"unknown revocation", "a.b", policyBody("1", "LOCKED", "NEVER"), 422, "invalid"},
			{"sql.write not boolean", "sql.write", policyBody(`"yes"`, "LOCKED", "SOFT"), 422, "invalid"},
			{"sql.ddl not boolean", "sql.ddl", policyBody(`0`, "LOCKED", "SOFT"), 422, "invalid"},
			{"number out of range", "a.b", policyBody(`1e99999999`, "LOCKED", "SOFT"), 422, "invalid"},
			{"nul in text", "a.b", policyBody(`"a\u0000b"`, "LOCKED", "SOFT"), 422, "invalid"},
			{"malformed key", "A-B", policyBody("1", "LOCKED", "SOFT"), 422, "invalid"},
			{"key too deep", "a.b.c.d.e.f.g.h.i", policyBody("1", "LOCKED", "SOFT"), 422, "invalid"},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				want(t, s.do(t, "PUT", permPath("apex", tc.key), boot, tc.body), tc.status, tc.code)
			})
		}
		want(t, s.do(t, "GET", permPath("apex", "A-B"), boot, ""), 422, "invalid")
		want(t, s.do(t, "DELETE", permPath("apex", "A-B"), boot, ""), 422, "invalid")
		want(t, s.do(t, "GET", permPath("apex", "no.such"), boot, ""), 404, "not_found")
		want(t, s.do(t, "GET", permPath("nobody", ""), boot, ""), 404, "not_found")
		want(t, s.do(t, "PUT", permPath("nobody", "a.b"), boot, policyBody("1", "LOCKED", "SOFT")), 404, "not_found")
		r := s.do(t, "POST", permPath("apex", "a.b"), boot, "")
		want(t, r, http.StatusMethodNotAllowed, "method_not_allowed")
		var n int
		if err := s.db.QueryRow(context.Background(), `SELECT count(*) FROM permission_policies WHERE tenant_id = $1`,
			s.ids["apex"]).Scan(&n); err != nil || n != 1 {
			t.Fatalf("%d policies on apex after refusals (%v), want 1", n, err)
		}
		// Any JSON is a value, null included.
		r = s.do(t, "PUT", permPath("apex", "a.b"), boot, policyBody("null", "DELEGATED", "SOFT"))
		want(t, r, 200, "")
		if v, ok := r.body["value"]; !ok || v != nil {
			t.Fatalf("null value answered %s", r.raw)
		}
	})
}
