package admin_test

import (
	"testing"

	"github.com/stratum-hq/stratum-proxy/catalog"
)

// TestDatabaseMappings: PUT/DELETE /v1/tenants/{ref}/databases/{name} map
// client database names inside the caller's subtree, one tenant per name
// (409 the same whether the owner is visible or not), refuse real database
// names, show on GET of the tenant, and are audited.
func TestDatabaseMappings(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	ctlTenant(t, s, "acmesec", "")
	north := ctlTenant(t, s, "northstar", "acmesec")
	ctlTenant(t, s, "alpha", "northstar")
	ctlTenant(t, s, "apex", "acmesec")
	_, bound := ctlKey(t, s, catalog.NewAPIKey{Name: "north writer", Scopes: []string{"write"}, TenantID: &north.ID})

	r := s.do(t, "PUT", "/v1/tenants/alpha/databases/alpha_app", bound, "")
	want(t, r, 200, "")
	if dbs, _ := r.body["databases"].([]any); len(dbs) != 1 || dbs[0] != "alpha_app" {
		t.Errorf("mappings after PUT: %s", r.raw)
	}
	want(t, s.do(t, "PUT", "/v1/tenants/alpha/databases/alpha_app", bound, ""), 200, "") // idempotent
	r = s.do(t, "GET", "/v1/tenants/alpha", bound, "")
	if dbs, _ := r.body["databases"].([]any); len(dbs) != 1 || dbs[0] != "alpha_app" {
		t.Errorf("GET tenant shows %s", r.raw)
	}
	// Outside the subtree: the tenant is not found.
	want(t, s.do(t, "PUT", "/v1/tenants/apex/databases/apex_db", bound, ""), 404, "not_found")
	want(t, s.do(t, "DELETE", "/v1/tenants/apex/databases/apex_db", bootstrapKey, ""), 404, "not_found")
	// A name mapped elsewhere: the same 409 whether or not the caller sees the owner.
	want(t, s.do(t, "PUT", "/v1/tenants/apex/databases/apex_db", bootstrapKey, ""), 200, "")
	hidden := s.do(t, "PUT", "/v1/tenants/northstar/databases/apex_db", bound, "")
	want(t, hidden, 409, "conflict")
	visible := s.do(t, "PUT", "/v1/tenants/northstar/databases/alpha_app", bound, "")
	want(t, visible, 409, "conflict")
	if len(hidden.raw) == 0 || hidden.errMessage() != `mapping database name: database name "apex_db" is mapped to another tenant: already exists` ||
		visible.errMessage() != `mapping database name: database name "alpha_app" is mapped to another tenant: already exists` {
		t.Errorf("409 messages differ in shape: %q / %q", hidden.errMessage(), visible.errMessage())
	}
	// Real and reserved database names.
	shared, _ := r.body["database"].(string) // alpha is a shared tenant: the shared database
	for _, name := range []string{"postgres", "template1", "pg_x", "stratum_catalog", shared, "a%00b"} {
		want(t, s.do(t, "PUT", "/v1/tenants/alpha/databases/"+name, bound, ""), 422, "invalid")
	}
	// Unmapping: audited; only the owner's mapping.
	want(t, s.do(t, "DELETE", "/v1/tenants/northstar/databases/alpha_app", bound, ""), 404, "not_found")
	r = s.do(t, "DELETE", "/v1/tenants/alpha/databases/alpha_app", bound, "")
	want(t, r, 200, "")
	if dbs, _ := r.body["databases"].([]any); len(dbs) != 0 {
		t.Errorf("after DELETE: %s", r.raw)
	}
	db := s.catalogConn(t)
	if n := countRows(t, db, `SELECT count(*) FROM audit_log WHERE target = 'database:alpha_app'
		AND actor_name = 'north writer' AND action IN ('database_map.set', 'database_map.delete')`); n != 2 {
		t.Errorf("%d audit rows for alpha_app, want 2 (set once, delete once)", n)
	}
	if _, err := s.cat.TenantForDatabase(t.Context(), "alpha_app"); err != catalog.ErrNotFound {
		t.Errorf("alpha_app still mapped: %v", err)
	}
}
