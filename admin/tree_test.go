package admin_test

import (
	"context"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/stratum-hq/stratum-proxy/catalog"
	"github.com/stratum-hq/stratum-proxy/provision"
	"github.com/stratum-hq/stratum-proxy/router"
)

// treeState is everything a refused tree change must leave alone: every
// tenant's row, the audit log's length and the shared group's members (one
// backend role per shared tenant).
func treeState(t *testing.T, s *stack, conn *pgx.Conn) string {
	t.Helper()
	ctx := context.Background()
	var rows string
	if err := conn.QueryRow(ctx, `SELECT coalesce(string_agg(concat_ws('|', id, slug, name, parent_id, path,
		depth, status, updated_at), E'\n' ORDER BY id), '') FROM tenants`).Scan(&rows); err != nil {
		t.Fatal(err)
	}
	audit := countRows(t, conn, `SELECT count(*) FROM audit_log`)
	dep, err := s.cat.DeploymentID(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Roles are cluster-wide: the catalog database sees them too.
	roles := countRows(t, conn, `SELECT count(*) FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid
		WHERE g.rolname = $1`, "stratum_"+dep+"_shared")
	return fmt.Sprintf("%s\naudit rows %d\nshared roles %d", rows, audit, roles)
}

// lastAudit returns the newest audit row's action, actor, target and states.
func lastAudit(t *testing.T, conn *pgx.Conn) (action, actor, target string, before, after map[string]any) {
	t.Helper()
	if err := conn.QueryRow(context.Background(), `SELECT action, actor_key_id, target, before, after
		FROM audit_log ORDER BY seq DESC LIMIT 1`).Scan(&action, &actor, &target, &before, &after); err != nil {
		t.Fatal(err)
	}
	return
}

// mkTenants creates shared tenants through the router (real roles): pairs of
// slug and parent ("" for a root).
func mkTenants(t *testing.T, s *stack, pairs ...string) map[string]*catalog.Tenant {
	t.Helper()
	out := map[string]*catalog.Tenant{}
	for i := 0; i < len(pairs); i += 2 {
		tn, err := s.p.CreateTenant(context.Background(), provision.TenantSpec{Slug: pairs[i], Parent: pairs[i+1]})
		if err != nil {
			t.Fatalf("creating %s: %v", pairs[i], err)
		}
		out[tn.Slug] = tn
	}
	return out
}

// slugsOf returns the slugs of a listing's "tenants".
func slugsOf(t *testing.T, r response) []string {
	t.Helper()
	list, ok := r.body["tenants"].([]any)
	if !ok {
		t.Fatalf("no tenants array in %s", r.raw)
	}
	if _, ok := r.body["next_cursor"]; !ok {
		t.Fatalf("no next_cursor in %s", r.raw)
	}
	out := []string{}
	for _, x := range list {
		out = append(out, x.(map[string]any)["slug"].(string))
	}
	return out
}

// walkAPI follows next_cursor from path (which carries ?limit=) to the end,
// calling between before each page after the first.
func walkAPI(t *testing.T, s *stack, key, path string, between func(page int)) []string {
	t.Helper()
	var all []string
	cursor := ""
	for page := 0; page < 1000; page++ {
		if page > 0 && between != nil {
			between(page)
		}
		p := path
		if cursor != "" {
			p += "&cursor=" + url.QueryEscape(cursor)
		}
		r := s.do(t, "GET", p, key, "")
		want(t, r, 200, "")
		all = append(all, slugsOf(t, r)...)
		next, _ := r.body["next_cursor"].(string)
		if next == "" {
			return all
		}
		cursor = next
	}
	t.Fatal("pagination does not end")
	return nil
}

// TestTreeDepthAndMoveAPI builds a 20-level chain over the API: the 21st level
// is refused with a 422 naming it, and nothing is written (no tenant, no
// audit row, no role); moves are refused for depth and cycles alike.
func TestTreeDepthAndMoveAPI(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	conn := s.catalogConn(t)
	k := bootstrapKey
	parent := ""
	for level := 1; level <= catalog.MaxDepth; level++ {
		slug := fmt.Sprintf("l%02d", level)
		want(t, s.do(t, "POST", "/v1/tenants", k, jsonBody(t, map[string]string{"slug": slug, "parent": parent})), 201, "")
		parent = slug
	}
	mkTenants(t, s, "s1", "", "s2", "s1", "lone", "")

	before := treeState(t, s, conn)
	r := s.do(t, "POST", "/v1/tenants", k, `{"slug":"l21","parent":"l20"}`)
	want(t, r, 422, "depth_exceeded")
	if !strings.Contains(r.errMessage(), "level 21") {
		t.Errorf("message %q does not name level 21", r.errMessage())
	}
	if treeState(t, s, conn) != before {
		t.Error("the refused 21st level wrote something")
	}

	tests := []struct {
		name, ref, body string
		status          int
		code, message   string
	}{
		{"subtree would reach level 21", "s1", `{"parent":"l19"}`, 422, "depth_exceeded", "level 21"},
		{"leaf below the deepest level", "lone", `{"parent":"l20"}`, 422, "depth_exceeded", "level 21"},
		{"chain under its own tail", "l05", `{"parent":"l06"}`, 409, "conflict", "inside its own subtree"},
		{"chain under its own deep tail", "l01", `{"parent":"l20"}`, 409, "conflict", "inside its own subtree"},
		{"under itself", "l07", `{"parent":"l07"}`, 409, "conflict", "its own parent"},
		{"whole chain under another root", "l01", `{"parent":"lone"}`, 422, "depth_exceeded", "level 21"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := s.do(t, "POST", "/v1/tenants/"+tc.ref+"/move", k, tc.body)
			want(t, r, tc.status, tc.code)
			t.Logf("refused: %s", r.errMessage())
			if !strings.Contains(r.errMessage(), tc.message) {
				t.Errorf("message %q lacks %q", r.errMessage(), tc.message)
			}
			if treeState(t, s, conn) != before {
				t.Error("a refused move wrote something")
			}
		})
	}
	// One level less fits: s1 under l18 puts s2 at level 20.
	r = s.do(t, "POST", "/v1/tenants/s1/move", k, `{"parent":"l18"}`)
	want(t, r, 200, "")
	if r.body["depth"] != float64(19) {
		t.Errorf("moved s1: %s", r.raw)
	}
	if d := countRows(t, conn, `SELECT depth FROM tenants WHERE slug = 's2'`); d != catalog.MaxDepth {
		t.Errorf("s2 at depth %d", d)
	}
}

// TestTreeMoveAPI checks the move route: body rules, moving to root and back,
// the same-parent no-op and the audit row.
func TestTreeMoveAPI(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	conn := s.catalogConn(t)
	k := bootstrapKey
	ts := mkTenants(t, s, "acme", "", "acme_eu", "acme", "acme_eu_x", "acme_eu", "globex", "")

	t.Run("bad requests write nothing", func(t *testing.T) {
		before := treeState(t, s, conn)
		tests := []struct {
			name, ref, body string
			status          int
			code            string
		}{
			{"missing parent", "acme_eu", `{}`, 422, "invalid"},
			{"empty parent", "acme_eu", `{"parent":""}`, 422, "invalid"},
			{"parent a number", "acme_eu", `{"parent":7}`, 400, "bad_request"},
			{"parent an object", "acme_eu", `{"parent":{"slug":"globex"}}`, 400, "bad_request"},
			{"unknown field", "acme_eu", `{"parent":"globex","force":true}`, 400, "bad_request"},
			{"malformed", "acme_eu", `{"parent":`, 400, "bad_request"},
			{"empty body", "acme_eu", ``, 400, "bad_request"},
			{"unknown parent", "acme_eu", `{"parent":"nobody"}`, 404, "not_found"},
			{"unknown parent id", "acme_eu", `{"parent":"00000000-0000-4000-8000-000000000000"}`, 404, "not_found"},
			{"unknown tenant", "nobody", `{"parent":"globex"}`, 404, "not_found"},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				r := s.do(t, "POST", "/v1/tenants/"+tc.ref+"/move", k, tc.body)
				want(t, r, tc.status, tc.code)
				if tc.name == "unknown parent" && r.errMessage() != `parent tenant "nobody" does not exist` {
					t.Errorf("message %q", r.errMessage())
				}
			})
		}
		if treeState(t, s, conn) != before {
			t.Error("a refused move wrote something")
		}
	})

	t.Run("to another parent, by id", func(t *testing.T) {
		r := s.do(t, "POST", "/v1/tenants/acme_eu/move", k, jsonBody(t, map[string]string{"parent": ts["globex"].ID}))
		want(t, r, 200, "")
		if r.body["parent_id"] != ts["globex"].ID || r.body["path"] != ts["globex"].ShortID+"."+ts["acme_eu"].ShortID {
			t.Errorf("moved: %s", r.raw)
		}
		x := s.do(t, "GET", "/v1/tenants/acme_eu_x", k, "")
		if x.body["path"] != r.body["path"].(string)+"."+ts["acme_eu_x"].ShortID || x.body["depth"] != float64(3) {
			t.Errorf("descendant: %s", x.raw)
		}
		action, actor, target, before, after := lastAudit(t, conn)
		if action != "tenant.move" || actor != "bootstrap" || target != "tenant:acme_eu" ||
			before["parent"] != "acme" || after["parent"] != "globex" || after["subtree"] != float64(2) {
			t.Errorf("audit %s by %s on %s: before %v after %v", action, actor, target, before, after)
		}
	})

	t.Run("to root and back", func(t *testing.T) {
		r := s.do(t, "POST", "/v1/tenants/acme_eu/move", k, `{"parent":null}`)
		want(t, r, 200, "")
		if r.body["parent_id"] != nil || r.body["depth"] != float64(1) || r.body["path"] != ts["acme_eu"].ShortID {
			t.Errorf("moved to root: %s", r.raw)
		}
		want(t, s.do(t, "POST", "/v1/tenants/acme_eu/move", k, `{"parent":"acme"}`), 200, "")
	})

	t.Run("same parent is a no-op", func(t *testing.T) {
		before := treeState(t, s, conn)
		r := s.do(t, "POST", "/v1/tenants/acme_eu/move", k, `{"parent":"acme"}`)
		want(t, r, 200, "")
		if r.body["slug"] != "acme_eu" {
			t.Errorf("answer %s", r.raw)
		}
		want(t, s.do(t, "POST", "/v1/tenants/globex/move", k, `{"parent":null}`), 200, "")
		if treeState(t, s, conn) != before {
			t.Error("a no-op move wrote something")
		}
	})

	t.Run("read key cannot move", func(t *testing.T) {
		_, read, err := s.cat.CreateAPIKey(context.Background(), "reader", []string{"read"}, nil)
		if err != nil {
			t.Fatal(err)
		}
		want(t, s.do(t, "POST", "/v1/tenants/acme_eu/move", read, `{"parent":null}`), 403, "forbidden")
	})
}

// TestTreeRenameAPI renames a provisioned tenant: the router resolves the new
// slug to the same placement (whose role still logs in), the old slug is
// gone, and users stay bound.
func TestTreeRenameAPI(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	conn := s.catalogConn(t)
	ctx := context.Background()
	k := bootstrapKey
	ts := mkTenants(t, s, "acme", "", "globex", "", "acme_child", "acme")
	want(t, s.do(t, "POST", "/v1/users", k, `{"name":"alice","password":"secret-pw","tenant":"acme"}`), 201, "")
	old, err := s.r.Resolve(ctx, "acme") // cached now
	if err != nil {
		t.Fatal(err)
	}

	r := s.do(t, "PATCH", "/v1/tenants/acme", k, `{"slug":"acme_corp","name":"Acme Corporation"}`)
	want(t, r, 200, "")
	if r.body["id"] != ts["acme"].ID || r.body["slug"] != "acme_corp" || r.body["name"] != "Acme Corporation" ||
		r.body["role_name"] != ts["acme"].RoleName || r.body["path"] != ts["acme"].Path {
		t.Errorf("renamed: %s", r.raw)
	}
	action, actor, target, before, after := lastAudit(t, conn)
	if action != "tenant.update" || actor != "bootstrap" || target != "tenant:acme_corp" ||
		before["slug"] != "acme" || after["slug"] != "acme_corp" {
		t.Errorf("audit %s by %s on %s: before %v after %v", action, actor, target, before["slug"], after["slug"])
	}

	p, err := s.r.Resolve(ctx, "acme_corp")
	if err != nil {
		t.Fatal(err)
	}
	if p.Tenant.ID != old.Tenant.ID || p.Tenant.RoleName != old.Tenant.RoleName || p.Tenant.Database != old.Tenant.Database {
		t.Errorf("placement changed: %+v, was %+v", p.Tenant, old.Tenant)
	}
	sc, err := s.r.Acquire(ctx, p, map[string]string{})
	if err != nil {
		t.Fatalf("the renamed tenant's role no longer logs in: %v", err)
	}
	s.r.Release(sc, router.Close)
	// Once the catalog's NOTIFY arrives, the router resolves the old slug to
	// the renamed tenant (old slugs stay reserved for their tenant, so a
	// connection naming one reaches no other); the admin API names tenants
	// by their current slug only.
	deadline := time.Now().Add(5 * time.Second)
	for {
		p, err := s.r.Resolve(ctx, "acme")
		if err == nil && p.Tenant.Slug == "acme_corp" && p.Tenant.ID == ts["acme"].ID {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the old slug resolves to %+v, %v; want the renamed tenant", p, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	want(t, s.do(t, "GET", "/v1/tenants/acme", k, ""), 404, "not_found")
	want(t, s.do(t, "GET", "/v1/tenants/acme_corp", k, ""), 200, "")
	if u, err := s.cat.GetUser(ctx, "alice"); err != nil || u.TenantID != ts["acme"].ID {
		t.Errorf("user alice: %+v %v", u, err)
	}
	if c := s.do(t, "GET", "/v1/tenants/acme_child", k, ""); c.body["parent_id"] != ts["acme"].ID {
		t.Errorf("child: %s", c.raw)
	}
	// The name alone, by id.
	r = s.do(t, "PATCH", "/v1/tenants/"+ts["acme"].ID, k, `{"name":"Acme"}`)
	want(t, r, 200, "")
	if r.body["slug"] != "acme_corp" || r.body["name"] != "Acme" {
		t.Errorf("renamed: %s", r.raw)
	}

	t.Run("refusals write nothing", func(t *testing.T) {
		before := treeState(t, s, conn)
		tests := []struct {
			name, ref, body string
			status          int
			code            string
		}{
			{"taken slug", "acme_corp", `{"slug":"globex"}`, 409, "conflict"},
			{"bad slug", "acme_corp", `{"slug":"Bad-Slug"}`, 422, "invalid"},
			{"empty slug", "acme_corp", `{"slug":""}`, 422, "invalid"},
			{"long name", "acme_corp", `{"name":"` + strings.Repeat("n", 201) + `"}`, 422, "invalid"},
			{"empty name", "acme_corp", `{"name":""}`, 422, "invalid"},
			{"name with NUL", "acme_corp", `{"name":"a\u0000b"}`, 422, "invalid"},
			{"nothing to change", "acme_corp", `{}`, 422, "invalid"},
			{"slug a number", "acme_corp", `{"slug":5}`, 400, "bad_request"},
			{"unknown field", "acme_corp", `{"parent":"globex"}`, 400, "bad_request"},
			{"malformed", "acme_corp", `{"slug"`, 400, "bad_request"},
			{"unknown tenant", "acme", `{"name":"x"}`, 404, "not_found"},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				want(t, s.do(t, "PATCH", "/v1/tenants/"+tc.ref, k, tc.body), tc.status, tc.code)
			})
		}
		// Renaming to the slug it has changes nothing.
		want(t, s.do(t, "PATCH", "/v1/tenants/acme_corp", k, `{"slug":"acme_corp"}`), 200, "")
		if treeState(t, s, conn) != before {
			t.Error("a refused or empty rename wrote something")
		}
	})
}

// TestTreeLifecycleAPI walks suspend, resume and archive over the API, with
// their audit rows; repeats are no-ops and archived is final.
func TestTreeLifecycleAPI(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	conn := s.catalogConn(t)
	ctx := context.Background()
	k := bootstrapKey
	mkTenants(t, s, "life", "", "other", "")
	// A tenant still provisioning (catalog only; the stack drops it).
	id, short, err := catalog.NewID()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.cat.InsertTenant(ctx, catalog.NewTenant{ID: id, ShortID: short, Slug: "halfway", Name: "halfway",
		Isolation: "shared", Backend: "main", Database: s.r.Config().SharedDatabase, Schema: "public",
		Role: "stratum_t_" + short, RolePassword: "pw"}); err != nil {
		t.Fatal(err)
	}

	steps := []struct {
		name, ref, action string
		status            int
		code              string
		wantStatus        string // the tenant's status afterwards
		audit             string // the audit action written; "" none
		message           string
	}{
		{"suspend", "life", "suspend", 200, "", "suspended", "tenant.suspend", ""},
		{"suspend again", "life", "suspend", 200, "", "suspended", "", ""},
		{"resume", "life", "resume", 200, "", "active", "tenant.resume", ""},
		{"resume again", "life", "resume", 200, "", "active", "", ""},
		{"archive an active tenant", "life", "archive", 200, "", "archived", "tenant.archive", ""},
		{"archive again", "life", "archive", 200, "", "archived", "", ""},
		{"resume an archived tenant", "life", "resume", 409, "conflict", "archived", "", "archived, which is final"},
		{"suspend an archived tenant", "life", "suspend", 409, "conflict", "archived", "", "archived, which is final"},
		{"suspend then archive", "other", "suspend", 200, "", "suspended", "tenant.suspend", ""},
		{"archive a suspended tenant", "other", "archive", 200, "", "archived", "tenant.archive", ""},
		{"resume a provisioning tenant", "halfway", "resume", 409, "conflict", "provisioning", "", "still provisioning"},
		{"suspend a provisioning tenant", "halfway", "suspend", 409, "conflict", "provisioning", "", "still provisioning"},
		{"archive a provisioning tenant", "halfway", "archive", 409, "conflict", "provisioning", "", "still provisioning"},
		{"unknown tenant", "nobody", "suspend", 404, "not_found", "", "", ""},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			rows := countRows(t, conn, `SELECT count(*) FROM audit_log`)
			r := s.do(t, "POST", "/v1/tenants/"+st.ref+"/"+st.action, k, "")
			want(t, r, st.status, st.code)
			if st.status == 200 && r.body["status"] != st.wantStatus {
				t.Errorf("answer %s, want status %s", r.raw, st.wantStatus)
			}
			if st.message != "" && !strings.Contains(r.errMessage(), st.message) {
				t.Errorf("message %q lacks %q", r.errMessage(), st.message)
			}
			if st.wantStatus != "" {
				if got := s.do(t, "GET", "/v1/tenants/"+st.ref, k, ""); got.body["status"] != st.wantStatus {
					t.Errorf("status %v, want %s", got.body["status"], st.wantStatus)
				}
			}
			added := countRows(t, conn, `SELECT count(*) FROM audit_log`) - rows
			if st.audit == "" {
				if added != 0 {
					t.Errorf("wrote %d audit rows, want none", added)
				}
				return
			}
			action, actor, target, before, after := lastAudit(t, conn)
			if added != 1 || action != st.audit || actor != "bootstrap" || target != "tenant:"+st.ref ||
				after["status"] != st.wantStatus || before["status"] == st.wantStatus {
				t.Errorf("%d rows; last %s by %s on %s: %v -> %v", added, action, actor, target, before["status"], after["status"])
			}
		})
	}
	// A key without write scope cannot change the lifecycle.
	_, read, err := s.cat.CreateAPIKey(ctx, "reader", []string{"read"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	want(t, s.do(t, "POST", "/v1/tenants/halfway/suspend", read, ""), 403, "forbidden")
	// The router's own activation still works and is audited as such.
	if err := s.cat.SetTenantStatus(ctx, id, catalog.StatusActive); err != nil {
		t.Fatal(err)
	}
	if action, _, _, _, _ := lastAudit(t, conn); action != "tenant.activate" {
		t.Errorf("activation audited as %s", action)
	}
}

// TestTreeListingsAPI pages through the tenant list, children, descendants
// and ancestors, with tenants created and deleted between pages.
func TestTreeListingsAPI(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	ctx := context.Background()
	k := bootstrapKey
	pairs := []string{"root", "", "zeta", ""}
	for i := range 5 {
		m := fmt.Sprintf("m%d", i)
		pairs = append(pairs, m, "root", m+"_a", m, m+"_b", m)
	}
	ts := mkTenants(t, s, pairs...)
	var all []string
	for slug := range ts {
		all = append(all, slug)
	}

	t.Run("list, with inserts and deletes between pages", func(t *testing.T) {
		var added []string
		got := walkAPI(t, s, k, "/v1/tenants?limit=4", func(page int) {
			slug := fmt.Sprintf("new%d", page)
			want(t, s.do(t, "POST", "/v1/tenants", k, jsonBody(t, map[string]string{"slug": slug, "parent": "m1"})), 201, "")
			added = append(added, slug)
			if page%2 == 0 {
				if err := s.p.DropTenant(ctx, added[0]); err != nil {
					t.Fatal(err)
				}
				added = added[1:]
			}
		})
		seen := map[string]int{}
		for _, slug := range got {
			if seen[slug]++; seen[slug] > 1 {
				t.Errorf("%s listed twice", slug)
			}
		}
		for _, slug := range all {
			if seen[slug] != 1 {
				t.Errorf("%s listed %d times", slug, seen[slug])
			}
		}
		for _, slug := range added {
			if err := s.p.DropTenant(ctx, slug); err != nil {
				t.Fatal(err)
			}
		}
	})

	t.Run("one page", func(t *testing.T) {
		r := s.do(t, "GET", "/v1/tenants", k, "")
		want(t, r, 200, "")
		if got := slugsOf(t, r); len(got) != len(all) || r.body["next_cursor"] != nil {
			t.Errorf("default page: %d tenants, next %v", len(got), r.body["next_cursor"])
		}
	})

	t.Run("children by slug", func(t *testing.T) {
		got := walkAPI(t, s, k, "/v1/tenants/root/children?limit=2", nil)
		if !slices.Equal(got, []string{"m0", "m1", "m2", "m3", "m4"}) {
			t.Errorf("children %v", got)
		}
		r := s.do(t, "GET", "/v1/tenants/m0_a/children", k, "")
		want(t, r, 200, "")
		if got := slugsOf(t, r); len(got) != 0 || r.body["next_cursor"] != nil {
			t.Errorf("children of a leaf: %s", r.raw)
		}
	})

	t.Run("descendants in tree order", func(t *testing.T) {
		got := walkAPI(t, s, k, "/v1/tenants/root/descendants?limit=3", nil)
		if len(got) != 15 || slices.Contains(got, "root") || slices.Contains(got, "zeta") {
			t.Errorf("descendants %v", got)
		}
		// Tree order: each m before its children.
		for i := range 5 {
			m := fmt.Sprintf("m%d", i)
			if slices.Index(got, m) > slices.Index(got, m+"_a") || slices.Index(got, m) > slices.Index(got, m+"_b") {
				t.Errorf("%s after its children: %v", m, got)
			}
		}
	})

	t.Run("ancestors root first", func(t *testing.T) {
		r := s.do(t, "GET", "/v1/tenants/m3_b/ancestors", k, "")
		want(t, r, 200, "")
		if got := slugsOf(t, r); !slices.Equal(got, []string{"root", "m3"}) || r.body["next_cursor"] != nil {
			t.Errorf("ancestors %s", r.raw)
		}
		r = s.do(t, "GET", "/v1/tenants/root/ancestors", k, "")
		if got := slugsOf(t, r); len(got) != 0 {
			t.Errorf("ancestors of a root %s", r.raw)
		}
	})

	t.Run("bad paging", func(t *testing.T) {
		r := s.do(t, "GET", "/v1/tenants/root/children?limit=1", k, "")
		childCursor, _ := r.body["next_cursor"].(string)
		if childCursor == "" {
			t.Fatalf("no cursor: %s", r.raw)
		}
		for _, p := range []string{
			"/v1/tenants?limit=0", "/v1/tenants?limit=-1", "/v1/tenants?limit=501", "/v1/tenants?limit=ten",
			"/v1/tenants?limit=1e3", "/v1/tenants?cursor=garbage", "/v1/tenants?cursor=" + url.QueryEscape(childCursor),
			"/v1/tenants/root/children?cursor=%00", "/v1/tenants/root/descendants?limit=9999999999999999999999",
		} {
			want(t, s.do(t, "GET", p, k, ""), 400, "bad_request")
		}
		want(t, s.do(t, "GET", "/v1/tenants?limit=500", k, ""), 200, "")
		want(t, s.do(t, "GET", "/v1/tenants/nobody/children", k, ""), 404, "not_found")
		want(t, s.do(t, "GET", "/v1/tenants/nobody/descendants", k, ""), 404, "not_found")
		want(t, s.do(t, "GET", "/v1/tenants/nobody/ancestors", k, ""), 404, "not_found")
	})
}

// TestTreeBoundKey checks a key bound to northstar_msp: it lists and changes
// only its subtree, cannot move its own root or make a root, and cannot move
// anything in or out of its subtree.
func TestTreeBoundKey(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	conn := s.catalogConn(t)
	ctx := context.Background()
	ts := mkTenants(t, s,
		"acmesec", "",
		"northstar_msp", "acmesec", "client_alpha", "northstar_msp", "client_beta", "northstar_msp",
		"apex_partners", "acmesec", "client_gamma", "apex_partners")
	_, bound, err := s.cat.CreateAPIKey(ctx, "msp", []string{"admin"}, &ts["northstar_msp"].ID)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.srv.Exec(t, s.catdb, `DELETE FROM api_keys WHERE tenant_id = $1`, ts["northstar_msp"].ID) })
	outside := func() string {
		t.Helper()
		var rows string
		if err := conn.QueryRow(ctx, `SELECT string_agg(concat_ws('|', id, slug, name, parent_id, path, status, updated_at), E'\n' ORDER BY id)
			FROM tenants WHERE slug IN ('acmesec', 'apex_partners', 'client_gamma')`).Scan(&rows); err != nil {
			t.Fatal(err)
		}
		return rows
	}
	before := outside()

	t.Run("lists only its subtree", func(t *testing.T) {
		got := walkAPI(t, s, bound, "/v1/tenants?limit=2", nil)
		slices.Sort(got)
		if !slices.Equal(got, []string{"client_alpha", "client_beta", "northstar_msp"}) {
			t.Errorf("listed %v", got)
		}
		r := s.do(t, "GET", "/v1/tenants/client_alpha/ancestors", bound, "")
		want(t, r, 200, "")
		if got := slugsOf(t, r); !slices.Equal(got, []string{"northstar_msp"}) {
			t.Errorf("ancestors %v: they must stop at the key's root", got)
		}
		r = s.do(t, "GET", "/v1/tenants/northstar_msp/ancestors", bound, "")
		if got := slugsOf(t, r); len(got) != 0 {
			t.Errorf("ancestors of the key's root %v", got)
		}
		got = walkAPI(t, s, bound, "/v1/tenants/northstar_msp/descendants?limit=1", nil)
		slices.Sort(got)
		if !slices.Equal(got, []string{"client_alpha", "client_beta"}) {
			t.Errorf("descendants %v", got)
		}
	})

	tests := []struct {
		name, method, path, body string
		status                   int
		code                     string
	}{
		{"move its own root", "POST", "/v1/tenants/northstar_msp/move", `{"parent":"client_alpha"}`, 403, "forbidden"},
		{"move its own root to root", "POST", "/v1/tenants/northstar_msp/move", `{"parent":null}`, 403, "forbidden"},
		{"make a root", "POST", "/v1/tenants/client_alpha/move", `{"parent":null}`, 403, "forbidden"},
		{"move out of its subtree", "POST", "/v1/tenants/client_alpha/move", `{"parent":"apex_partners"}`, 404, "not_found"},
		{"move out, by id", "POST", "/v1/tenants/client_alpha/move", jsonBody(t, map[string]string{"parent": ts["acmesec"].ID}), 404, "not_found"},
		{"move in from outside", "POST", "/v1/tenants/client_gamma/move", `{"parent":"northstar_msp"}`, 404, "not_found"},
		{"move outside", "POST", "/v1/tenants/client_gamma/move", `{"parent":"acmesec"}`, 404, "not_found"},
		{"rename outside", "PATCH", "/v1/tenants/apex_partners", `{"name":"mine"}`, 404, "not_found"},
		{"suspend outside", "POST", "/v1/tenants/client_gamma/suspend", ``, 404, "not_found"},
		{"resume outside", "POST", "/v1/tenants/client_gamma/resume", ``, 404, "not_found"},
		{"archive outside", "POST", "/v1/tenants/acmesec/archive", ``, 404, "not_found"},
		{"children outside", "GET", "/v1/tenants/acmesec/children", ``, 404, "not_found"},
		{"descendants outside", "GET", "/v1/tenants/apex_partners/descendants", ``, 404, "not_found"},
		{"ancestors outside", "GET", "/v1/tenants/client_gamma/ancestors", ``, 404, "not_found"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := s.do(t, tc.method, tc.path, bound, tc.body)
			want(t, r, tc.status, tc.code)
			for _, slug := range []string{"acmesec", "apex_partners", "client_gamma"} {
				if strings.Contains(r.raw, ts[slug].ShortID) || strings.Contains(r.raw, ts[slug].ID) && !strings.Contains(tc.body, ts[slug].ID) {
					t.Errorf("answer shows %s: %s", slug, r.raw)
				}
			}
		})
	}
	if outside() != before {
		t.Error("a bound key changed a tenant outside its subtree")
	}

	t.Run("changes inside its subtree", func(t *testing.T) {
		r := s.do(t, "POST", "/v1/tenants/client_alpha/move", bound, `{"parent":"client_beta"}`)
		want(t, r, 200, "")
		if r.body["parent_id"] != ts["client_beta"].ID {
			t.Errorf("moved %s", r.raw)
		}
		want(t, s.do(t, "PATCH", "/v1/tenants/client_alpha", bound, `{"name":"Alpha"}`), 200, "")
		want(t, s.do(t, "POST", "/v1/tenants/client_alpha/suspend", bound, ``), 200, "")
		var actor string
		if err := conn.QueryRow(ctx, `SELECT actor_name FROM audit_log ORDER BY seq DESC LIMIT 1`).Scan(&actor); err != nil || actor != "msp" {
			t.Errorf("audit actor %q %v", actor, err)
		}
		// And back.
		want(t, s.do(t, "POST", "/v1/tenants/client_alpha/move", bound, `{"parent":"northstar_msp"}`), 200, "")
	})
	if outside() != before {
		t.Error("a bound key changed a tenant outside its subtree")
	}
}
