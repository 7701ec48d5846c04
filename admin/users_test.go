package admin_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/stratum-hq/stratum-proxy/catalog"
)

// TestUserNameRules: the API refuses names with ".", case-insensitive
// duplicates and reserved names with 422 (409 for a taken name), and the
// catalog refuses them too when written around the API.
func TestUserNameRules(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	ctlTenant(t, s, "acme", "")
	create := func(name string) response {
		return s.do(t, "POST", "/v1/users", bootstrapKey, jsonBody(t, map[string]any{"name": name, "password": "secret-pw", "tenant": "acme"}))
	}
	want(t, create("Alice"), 201, "")
	want(t, create("alice"), 409, "conflict")
	want(t, create("ALICE"), 409, "conflict")
	adminUser := s.p.AdminUsers()[0]
	for _, name := range []string{"demo.northstar_msp", "a.", "postgres", "Postgres", "pg_monitor", "PG_x",
		"stratum_x", "Stratum", "public", "current_user", "root", adminUser, strings.ToUpper(adminUser)} {
		r := create(name)
		want(t, r, 422, "invalid")
		if !strings.Contains(r.errMessage(), "user name") {
			t.Errorf("%q: message %q does not say what is wrong", name, r.errMessage())
		}
	}
	want(t, create("demo_northstar"), 201, "")
	want(t, create("postgresql_app"), 201, "") // only the exact name postgres is reserved

	// The catalog enforces the fixed rules whoever writes.
	db := s.catalogConn(t)
	ctx := context.Background()
	for _, name := range []string{"x.y", "postgres", "pg_x", "stratum_y", "ALICE"} {
		_, err := db.Exec(ctx, `INSERT INTO proxy_users (name, verifier, tenant_id)
			SELECT $1, 'SCRAM-SHA-256$x', id FROM tenants WHERE slug = 'acme'`, name)
		if err == nil {
			t.Errorf("the catalog stored user %q", name)
		}
		_, err = db.Exec(ctx, `UPDATE proxy_users SET name = $1 WHERE name = 'demo_northstar'`, name)
		if err == nil {
			t.Errorf("the catalog renamed a user to %q", name)
		}
	}
}

// TestUserRoutes: list, read, change and delete users, scoped to a bound
// key's subtree (outside users answer 404 like missing ones), audited, and
// never showing a credential.
func TestUserRoutes(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	ctx := context.Background()
	ctlTenant(t, s, "acmesec", "")
	north := ctlTenant(t, s, "northstar", "acmesec")
	alpha := ctlTenant(t, s, "alpha", "northstar")
	ctlTenant(t, s, "apex", "acmesec")
	_, bound := ctlKey(t, s, catalog.NewAPIKey{Name: "north writer", Scopes: []string{"write"}, TenantID: &north.ID})
	_, reader := ctlKey(t, s, catalog.NewAPIKey{Name: "north reader", Scopes: []string{"read"}, TenantID: &north.ID})
	for _, u := range [][2]string{{"north_app", "alpha"}, {"apex_app", "apex"}, {"top_app", "acmesec"}} {
		want(t, s.do(t, "POST", "/v1/users", bootstrapKey, jsonBody(t, map[string]any{"name": u[0], "password": "secret-pw", "tenant": u[1]})), 201, "")
	}

	names := func(r response) []string {
		var out []string
		for _, u := range r.body["users"].([]any) {
			out = append(out, u.(map[string]any)["name"].(string))
		}
		return out
	}
	r := s.do(t, "GET", "/v1/users", reader, "")
	want(t, r, 200, "")
	if got := strings.Join(names(r), ","); got != "north_app" {
		t.Errorf("bound key lists %q, want north_app only", got)
	}
	r = s.do(t, "GET", "/v1/users", bootstrapKey, "")
	if got := strings.Join(names(r), ","); got != "apex_app,north_app,top_app" {
		t.Errorf("platform lists %q", got)
	}
	if strings.Contains(strings.ToLower(r.raw), "scram") || strings.Contains(strings.ToLower(r.raw), "verifier") {
		t.Errorf("the list shows a credential: %s", r.raw)
	}

	// Outside the subtree: exactly the answer for a missing user.
	missing := s.do(t, "GET", "/v1/users/nobody", reader, "")
	want(t, missing, 404, "not_found")
	for _, tc := range []struct{ method, body string }{{"GET", ""}, {"PATCH", `{"password":"taken-over"}`}, {"DELETE", ""}} {
		r := s.do(t, tc.method, "/v1/users/apex_app", bound, tc.body)
		want(t, r, 404, "not_found")
		if strings.ReplaceAll(r.errMessage(), "apex_app", "nobody") != missing.errMessage() {
			t.Errorf("%s outside: %q differs from a missing user's %q", tc.method, r.errMessage(), missing.errMessage())
		}
	}
	// Rebinding out of the subtree: the target tenant is not found.
	want(t, s.do(t, "PATCH", "/v1/users/north_app", bound, `{"tenant":"apex"}`), 404, "not_found")
	// A reader cannot change.
	want(t, s.do(t, "PATCH", "/v1/users/north_app", reader, `{"can_switch":true}`), 403, "forbidden")
	want(t, s.do(t, "DELETE", "/v1/users/north_app", reader, ""), 403, "forbidden")

	// Inside: change it.
	before, _ := s.cat.GetUser(ctx, "north_app")
	r = s.do(t, "PATCH", "/v1/users/north_app", bound, `{"password":"new-secret","tenant":"northstar","can_switch":true}`)
	want(t, r, 200, "")
	if r.body["tenant_id"] != north.ID || r.body["can_switch"] != true {
		t.Errorf("patched user %s", r.raw)
	}
	after, _ := s.cat.GetUser(ctx, "north_app")
	if after.Verifier == before.Verifier || after.TenantID != north.ID {
		t.Errorf("the catalog did not change: %+v", after)
	}
	db := s.catalogConn(t)
	if n := countRows(t, db, `SELECT count(*) FROM audit_log WHERE action = 'user.update' AND target = 'user:north_app'
		AND before->>'tenant_id' = $1 AND after->>'tenant_id' = $2 AND (after->>'password_changed')::bool
		AND actor_name = 'north writer' AND after::text NOT LIKE '%SCRAM%'`, alpha.ID, north.ID); n != 1 {
		t.Errorf("%d user.update audit rows, want 1", n)
	}
	want(t, s.do(t, "DELETE", "/v1/users/north_app", bound, ""), 200, "")
	if _, err := s.cat.GetUser(ctx, "north_app"); err != catalog.ErrNotFound {
		t.Errorf("deleted user still there: %v", err)
	}
	if n := countRows(t, db, `SELECT count(*) FROM audit_log WHERE action = 'user.delete' AND target = 'user:north_app'
		AND actor_name = 'north writer'`); n != 1 {
		t.Errorf("%d user.delete audit rows, want 1", n)
	}
	want(t, s.do(t, "GET", "/v1/users/north_app", bootstrapKey, ""), 404, "not_found")
	// The catalog checks the subtree again inside its transaction.
	if _, err := s.cat.UpdateUser(ctx, "apex_app", catalog.UserChange{CanSwitch: new(true), Within: &north.ID}); !errors.Is(err, catalog.ErrNotFound) {
		t.Errorf("UpdateUser outside Within: %v", err)
	}
	if err := s.cat.DeleteUser(ctx, "apex_app", &north.ID); !errors.Is(err, catalog.ErrNotFound) {
		t.Errorf("DeleteUser outside within: %v", err)
	}
	if _, err := s.cat.GetUser(ctx, "apex_app"); err != nil {
		t.Errorf("a refused delete removed the user: %v", err)
	}
	// The platform reaches every user.
	want(t, s.do(t, "PATCH", "/v1/users/apex_app", bootstrapKey, `{"tenant":"alpha"}`), 200, "")
	if n := countRows(t, db, `SELECT count(*) FROM audit_log WHERE action = 'user.update' AND target = 'user:apex_app'`); n != 1 {
		t.Errorf("%d audit rows for the platform's change", n)
	}
}
