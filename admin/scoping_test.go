package admin_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/stratum-hq/stratum-proxy/admin"
	"github.com/stratum-hq/stratum-proxy/catalog"
)

// scopeSnapshot is the catalog state a bound key must not change: every
// row of the tables the API writes, and the audit log's length.
func scopeSnapshot(t *testing.T, db *pgx.Conn) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, table := range []string{"tenants", "config_values", "permission_policies", "api_keys", "proxy_users", "database_map", "tenant_moves"} {
		var s string
		if err := db.QueryRow(context.Background(), `SELECT coalesce(jsonb_agg(to_jsonb(t) ORDER BY to_jsonb(t)::text), '[]')::text FROM `+
			pgx.Identifier{table}.Sanitize()+` t`).Scan(&s); err != nil {
			t.Fatalf("snapshot of %s: %v", table, err)
		}
		out[table] = s
	}
	var n string
	if err := db.QueryRow(context.Background(), `SELECT count(*)::text FROM audit_log`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	out["audit_log rows"] = n
	return out
}

// scopeBodies are request bodies that an unbound admin key would have
// accepted, by "METHOD path"; routes not listed get {} (mutations) or no
// body (GET, DELETE).
var scopeBodies = map[string][]string{
	"PATCH /v1/tenants/{ref}":                 {`{"name":"Renamed"}`, `{"slug":"renamed_by_walker"}`},
	"POST /v1/tenants/{ref}/move":             {`{"parent":null}`, `{"parent":"northstar_msp"}`, `{"parent":"client_alpha"}`},
	"PATCH /v1/tenants/{ref}/config":          {`{"region":{"value":"stolen"}}`, `{"region":null}`},
	"PUT /v1/tenants/{ref}/config/{key}":      {`{"value":"stolen","locked":true,"sensitive":false}`},
	"PUT /v1/tenants/{ref}/permissions/{key}": {`{"value":false,"mode":"LOCKED","revocation":"CASCADE"}`},
	"POST /v1/tenants": {`{"slug":"walker_child","parent":"apex_partners"}`, `{"slug":"walker_child","parent":"client_gamma"}`,
		`{"slug":"walker_root"}`},
	"POST /v1/users": {`{"name":"walker","password":"walker-password","tenant":"client_gamma"}`,
		`{"name":"walker","password":"walker-password","tenant":"apex_partners"}`},
	"POST /v1/keys": {`{"name":"walker","scopes":["read"],"tenant":"apex_partners"}`, `{"name":"walker","scopes":["read"],"tenant":null}`,
		`{"name":"walker","scopes":["read"],"tenant":"acmesec"}`},
}

// scopeQueries are the query strings tried on a route, by path; others get
// none. An outside tenant named in a query must be refused like one in the
// path.
var scopeQueries = map[string][]string{
	"/v1/audit":       {"tenant=apex_partners", "tenant=client_gamma&subtree=true", "tenant=acmesec&subtree=true"},
	"/v1/config/diff": {"a=client_alpha&b=client_gamma", "a=apex_partners&b=client_alpha", "a=client_gamma&b=apex_partners"},
}

// TestBoundKeyReachesNothingOutside walks every registered route (so routes
// added later are covered too) with an admin key bound to northstar_msp,
// naming tenants and keys outside its subtree in every way a route takes
// them. Every such request must answer 403 or 404, nothing in the catalog
// may change, and no answer may show an outside tenant, key or value beyond
// what the request itself named (404 bodies included). Reads of the key's own
// subtree must answer 200, show that subtree and nothing outside it.
//
//	acmesec ─┬─ northstar_msp ── client_alpha     (the key's subtree)
//	         └─ apex_partners ── client_gamma     (outside)
func TestBoundKeyReachesNothingOutside(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	db := s.catalogConn(t)
	ctlTenant(t, s, "acmesec", "")
	north := ctlTenant(t, s, "northstar_msp", "acmesec")
	alpha := ctlTenant(t, s, "client_alpha", "northstar_msp")
	apex := ctlTenant(t, s, "apex_partners", "acmesec")
	gamma := ctlTenant(t, s, "client_gamma", "apex_partners")

	_, bound := ctlKey(t, s, catalog.NewAPIKey{Name: "north admin", Scopes: admin.AllScopes, TenantID: &north.ID})
	apexKey, _ := ctlKey(t, s, catalog.NewAPIKey{Name: "apex reader", Scopes: []string{"read"}, TenantID: &apex.ID})
	gammaKey, _ := ctlKey(t, s, catalog.NewAPIKey{Name: "gamma admin", Scopes: []string{"admin"}, TenantID: &gamma.ID})
	platformKey, _ := ctlKey(t, s, catalog.NewAPIKey{Name: "platform reader", Scopes: []string{"read"}})
	ctlKey(t, s, catalog.NewAPIKey{Name: "alpha reader", Scopes: []string{"read"}, TenantID: &alpha.ID})
	want(t, s.do(t, "POST", "/v1/users", bootstrapKey, `{"name":"gamma_app","password":"gamma-password","tenant":"client_gamma"}`), 201, "")
	want(t, s.do(t, "POST", "/v1/users", bootstrapKey, `{"name":"north_app","password":"north-password","tenant":"client_alpha"}`), 201, "")
	// Config values and policies on both sides, written straight into the
	// catalog so the walk does not depend on those routes.
	for _, tn := range []*catalog.Tenant{apex, gamma, north, alpha} {
		s.srv.Exec(t, s.catdb, `INSERT INTO config_values (tenant_id, key, value) VALUES ($1, 'region', to_jsonb($2::text))`,
			tn.ID, "value-of-"+tn.Slug)
		s.srv.Exec(t, s.catdb, `INSERT INTO permission_policies (tenant_id, key, value, mode, revocation)
			VALUES ($1, 'sql.write', 'true', 'DELEGATED', 'SOFT')`, tn.ID)
	}
	// Placement moves on both sides, written straight into the catalog: an
	// outside one whose phase would let cancel or finalize act, and an
	// inside one for the reads.
	gammaMove, _, _ := catalog.NewID()
	alphaMove, _, _ := catalog.NewID()
	for _, m := range []struct {
		id    string
		tn    *catalog.Tenant
		phase string
	}{{gammaMove, gamma, "switched"}, {alphaMove, alpha, "failed"}} {
		s.srv.Exec(t, s.catdb, `INSERT INTO tenant_moves (id, tenant_id, from_isolation, from_backend, from_database, from_schema,
			to_isolation, to_backend, to_database, to_schema, phase, created_by)
			VALUES ($1, $2, $3, $4, $5, $6, 'schema', $4, $5, 't_walker_move', $7, 'walker')`,
			m.id, m.tn.ID, m.tn.Isolation, m.tn.Backend, m.tn.Database, m.tn.Schema, m.phase)
	}
	// What no answer to the bound key may contain.
	outside := []string{"apex_partners", "client_gamma", apex.ID, gamma.ID, apexKey.ID, gammaKey.ID, platformKey.ID,
		"gamma_app", "value-of-apex_partners", "value-of-client_gamma", gammaMove}

	// What answers about the key's own subtree show of it.
	insideMarks := []string{"northstar_msp", "client_alpha", north.ID, alpha.ID, "north admin", "alpha reader", "north_app"}
	// The inside reads whose right answer is an empty list: client_alpha
	// has no children, and northstar_msp's ancestors are all outside.
	emptyInside := map[string]bool{"/v1/tenants/client_alpha/children": true, "/v1/tenants/client_alpha/descendants": true,
		"/v1/tenants/northstar_msp/ancestors": true}

	api := admin.New(admin.Config{BootstrapKey: bootstrapKey}, s.p)
	hs := httptest.NewServer(api)
	t.Cleanup(hs.Close)
	ask := func(method, path, body string) response {
		t.Helper()
		return doURL(t, hs.URL, method, path, "Bearer "+bound, true, body)
	}
	// leaks lists the outside strings in an answer, but for those the
	// request itself named (a refusal may echo what it was asked).
	leaks := func(r response, asked string) []string {
		var found []string
		for _, o := range outside {
			if strings.Contains(r.raw, o) && !strings.Contains(asked, o) {
				found = append(found, o)
			}
		}
		return found
	}

	before := scopeSnapshot(t, db)
	placeholder := regexp.MustCompile(`\{([a-z_]+)\}`)
	fill := func(tmpl, ref, id string) string {
		return placeholder.ReplaceAllStringFunc(tmpl, func(m string) string {
			switch m {
			case "{ref}":
				return ref
			case "{id}":
				if strings.HasPrefix(tmpl, "/v1/moves/") {
					if ref == "northstar_msp" || ref == "client_alpha" {
						return alphaMove
					}
					return gammaMove
				}
				return id
			case "{name}": // a proxy user: one bound inside, or gamma_app
				if ref == "northstar_msp" || ref == "client_alpha" {
					return "north_app"
				}
				return "gamma_app"
			case "{key}":
				if strings.Contains(tmpl, "/permissions/") {
					return "sql.write"
				}
				return "region"
			}
			return gamma.ID // a placeholder the walker does not know yet
		})
	}
	walked := 0
	for _, route := range api.Routes() {
		if !strings.HasPrefix(route.Path, "/v1/") || route.Path == "/v1/openapi.json" {
			continue // probes, metrics and the API description are public and hold no tenant data
		}
		for _, method := range route.Methods {
			op := method + " " + route.Path
			bodies := scopeBodies[op]
			if bodies == nil {
				bodies = []string{""}
				if method == "POST" || method == "PUT" || method == "PATCH" {
					bodies = []string{`{}`}
				}
			}
			hasPlaceholder := placeholder.MatchString(route.Path)

			// The route asked about things outside the subtree.
			var paths []string
			if hasPlaceholder {
				for _, ref := range []string{"apex_partners", "client_gamma", gamma.ID, "acmesec"} {
					for _, id := range []string{apexKey.ID, platformKey.ID} {
						paths = append(paths, fill(route.Path, ref, id))
						if !strings.Contains(route.Path, "{id}") {
							break
						}
					}
				}
			} else {
				for _, q := range scopeQueries[route.Path] {
					paths = append(paths, route.Path+"?"+q)
				}
				if method != "GET" {
					paths = append(paths, route.Path) // the body names the outside
				}
			}
			if route.Path == "/v1/audit/verify" || route.Path == "/v1/config/rotate-keys" {
				paths = append(paths, route.Path) // platform-wide: refused to a bound key
			}
			// An outside tenant answers exactly like an unknown one (the
			// ref itself aside), so a bound key cannot enumerate slugs.
			if hasPlaceholder && !strings.Contains(route.Path, "{id}") {
				for _, ref := range []string{"apex_partners", "client_gamma", gamma.ID, "acmesec"} {
					unknown := "no_such_tenant"
					if ref == gamma.ID {
						unknown = "00000000-0000-4000-8000-000000000000"
					}
					for _, body := range bodies {
						walked++
						ro := ask(method, fill(route.Path, ref, ""), body)
						ru := ask(method, fill(route.Path, unknown, ""), body)
						norm := func(r response, name string) string {
							return fmt.Sprint(r.status) + " " + strings.ReplaceAll(r.raw, name, "<ref>")
						}
						if a, b := norm(ro, ref), norm(ru, unknown); a != b {
							t.Errorf("%s %s %s: an outside tenant answers\n%s\nan unknown one\n%s", method, route.Path, body, a, b)
						}
					}
				}
			}
			for _, p := range paths {
				for _, body := range bodies {
					walked++
					r := ask(method, p, body)
					if r.status != 403 && r.status != 404 {
						t.Errorf("%s %s %s: answered %d, want 403 or 404: %s", method, p, body, r.status, r.raw)
					}
					if l := leaks(r, p+" "+body); len(l) > 0 {
						t.Errorf("%s %s: the refusal shows %v: %s", method, p, l, r.raw)
					}
				}
			}

			// Reads of the key's own subtree show nothing outside it.
			if method != "GET" || route.Path == "/v1/audit/verify" {
				continue
			}
			var inside []string
			if hasPlaceholder {
				for _, ref := range []string{"northstar_msp", "client_alpha"} {
					inside = append(inside, fill(route.Path, ref, ""))
				}
			} else {
				inside = append(inside, route.Path)
			}
			if route.Path == "/v1/config/diff" {
				inside = []string{route.Path + "?a=northstar_msp&b=client_alpha"}
			}
			if route.Path == "/v1/keys" {
				inside = append(inside, route.Path+"?include_revoked=true")
			}
			for _, p := range inside {
				if strings.Contains(p, "/v1/keys/") {
					continue // {id} inside: covered by TestKeysNoEscalation
				}
				walked++
				r := ask("GET", p, "")
				if r.status != 200 {
					t.Errorf("GET %s inside the key's subtree: answered %d, want 200: %s", p, r.status, r.raw)
				}
				if !containsAny(r.raw, insideMarks) && !emptyInside[p] {
					t.Errorf("GET %s inside the key's subtree shows nothing of it, so proves nothing: %s", p, r.raw)
				}
				if l := leaks(r, ""); len(l) > 0 {
					t.Errorf("GET %s shows outside data %v: %s", p, l, r.raw)
				}
			}
		}
	}

	// Moves across the boundary, from inside.
	for _, tc := range []struct{ path, body string }{
		{"/v1/tenants/client_alpha/move", `{"parent":"apex_partners"}`},
		{"/v1/tenants/client_alpha/move", `{"parent":"` + gamma.ID + `"}`},
		{"/v1/tenants/client_alpha/move", `{"parent":null}`},
		{"/v1/tenants/northstar_msp/move", `{"parent":"apex_partners"}`},
		{"/v1/tenants/northstar_msp/move", `{"parent":null}`},
	} {
		walked++
		if r := ask("POST", tc.path, tc.body); r.status != 403 && r.status != 404 {
			t.Errorf("POST %s %s: answered %d, want 403 or 404: %s", tc.path, tc.body, r.status, r.raw)
		}
	}

	after := scopeSnapshot(t, db)
	for table, b := range before {
		if after[table] != b {
			t.Errorf("%s changed during the walk:\nbefore %s\nafter  %s", table, b, after[table])
		}
	}
	if walked < 60 {
		t.Errorf("only %d requests walked; the route registry looks empty", walked)
	}
	t.Logf("%d requests over %d routes", walked, len(api.Routes()))

	// The walk proves something only if the same requests work for an
	// unbound admin: spot-check a few.
	want(t, s.do(t, "GET", "/v1/tenants/client_gamma", bootstrapKey, ""), 200, "")
	want(t, s.do(t, "GET", "/v1/keys/"+apexKey.ID, bootstrapKey, ""), 200, "")
	want(t, s.do(t, "GET", "/v1/audit?tenant=apex_partners", bootstrapKey, ""), 200, "")
	want(t, ask("GET", "/v1/tenants/client_alpha", ""), 200, "")
}

// containsAny reports whether s contains one of subs.
func containsAny(s string, subs []string) bool {
	for _, sub := range subs {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}
