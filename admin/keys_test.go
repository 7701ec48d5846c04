package admin_test

import (
	"context"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/stratum-hq/stratum-proxy/admin"
	"github.com/stratum-hq/stratum-proxy/catalog"
	"github.com/stratum-hq/stratum-proxy/provision"
)

// ctlTenant provisions a tenant under parent ("" for a root).
func ctlTenant(t *testing.T, s *stack, slug, parent string) *catalog.Tenant {
	t.Helper()
	tn, err := s.p.CreateTenant(context.Background(), provision.TenantSpec{Slug: slug, Parent: parent})
	if err != nil {
		t.Fatalf("creating tenant %s: %v", slug, err)
	}
	return tn
}

// ctlKey stores a key straight in the catalog and returns it and its secret.
func ctlKey(t *testing.T, s *stack, nk catalog.NewAPIKey) (*catalog.APIKey, string) {
	t.Helper()
	k, secret, err := s.cat.InsertAPIKey(context.Background(), nk)
	if err != nil {
		t.Fatalf("creating key %s: %v", nk.Name, err)
	}
	return k, secret
}

// ctlIDs returns the "id" of each object in the body's list member.
func ctlIDs(r response, member string) []string {
	var ids []string
	list, _ := r.body[member].([]any)
	for _, v := range list {
		o, _ := v.(map[string]any)
		id, _ := o["id"].(string)
		ids = append(ids, id)
	}
	return ids
}

func TestKeysCreate(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	db := s.catalogConn(t)
	acme := ctlTenant(t, s, "acme", "")

	var created response
	t.Run("created and shown once", func(t *testing.T) {
		created = s.do(t, "POST", "/v1/keys", bootstrapKey,
			`{"name":"deploy bot","scopes":["write","read","write"],"tenant":"acme","rate_limit":120}`)
		want(t, created, 201, "")
		secret, _ := created.body["secret"].(string)
		id, _ := created.body["id"].(string)
		if !strings.HasPrefix(secret, "stk_") || len(secret) < 36 || !catalog.IsUUID(id) {
			t.Fatalf("created %s", created.raw)
		}
		if created.header.Get("Location") != "/v1/keys/"+id {
			t.Errorf("Location %q", created.header.Get("Location"))
		}
		if created.body["name"] != "deploy bot" || created.body["tenant_id"] != acme.ID || created.body["rate_limit"] != float64(120) ||
			created.body["revoked_at"] != nil || created.body["rotated_from"] != nil {
			t.Errorf("created %s", created.raw)
		}
		if got := created.body["scopes"].([]any); len(got) != 2 || got[0] != "read" || got[1] != "write" {
			t.Errorf("scopes %v, want [read write]", got)
		}
		if strings.Contains(strings.ToLower(created.raw), "hash") {
			t.Errorf("the answer shows a hash: %s", created.raw)
		}
		// Stored hashed only.
		if n := countRows(t, db, `SELECT count(*) FROM api_keys WHERE id = $1 AND key_hash = $2`, id, catalog.HashAPIKey(secret)); n != 1 {
			t.Errorf("key row with the secret's hash: %d", n)
		}
		if n := countRows(t, db, `SELECT count(*) FROM api_keys k, audit_log a
			WHERE position(convert_to($1, 'UTF8') IN k.key_hash) > 0 OR position($1 IN a.after::text) > 0`, secret); n != 0 {
			t.Errorf("the secret is stored in the clear")
		}
		// Read back: never the secret.
		for _, path := range []string{"/v1/keys", "/v1/keys/" + id} {
			r := s.do(t, "GET", path, bootstrapKey, "")
			want(t, r, 200, "")
			if strings.Contains(r.raw, secret) || strings.Contains(r.raw, `"secret"`) || strings.Contains(strings.ToLower(r.raw), "hash") {
				t.Errorf("GET %s shows the secret or hash: %s", path, r.raw)
			}
		}
		// The key works, with its scopes and its subtree.
		want(t, s.do(t, "GET", "/v1/tenants/acme", secret, ""), 200, "")
		want(t, s.do(t, "GET", "/v1/keys", secret, ""), 403, "forbidden")
	})

	t.Run("audit row", func(t *testing.T) {
		id := created.body["id"].(string)
		r := s.do(t, "GET", "/v1/audit?action=key.create&actor=bootstrap", bootstrapKey, "")
		want(t, r, 200, "")
		events := r.body["events"].([]any)
		if len(events) != 1 {
			t.Fatalf("key.create rows: %s", r.raw)
		}
		ev := events[0].(map[string]any)
		after := ev["after"].(map[string]any)
		if ev["target"] != "key:"+id || ev["tenant_id"] != acme.ID || after["id"] != id || ev["actor"].(map[string]any)["name"] != "bootstrap" {
			t.Errorf("audit row %v", ev)
		}
		if strings.Contains(r.raw, created.body["secret"].(string)) {
			t.Errorf("audit row holds the secret")
		}
	})

	t.Run("refused", func(t *testing.T) {
		keysBefore := countRows(t, db, `SELECT count(*) FROM api_keys`)
		auditBefore := countRows(t, db, `SELECT count(*) FROM audit_log`)
		tests := []struct {
			name, body string
			status     int
			code       string
		}{
			{"unknown scope", `{"name":"x","scopes":["read","root"]}`, 422, "invalid"},
			{"no scopes", `{"name":"x","scopes":[]}`, 422, "invalid"},
			{"scopes missing", `{"name":"x"}`, 422, "invalid"},
			{"no name", `{"scopes":["read"]}`, 422, "invalid"},
			{"long name", `{"name":"` + strings.Repeat("n", 201) + `","scopes":["read"]}`, 422, "invalid"},
			{"name with NUL", `{"name":"a\u0000b","scopes":["read"]}`, 422, "invalid"},
			{"zero rate limit", `{"name":"x","scopes":["read"],"rate_limit":0}`, 422, "invalid"},
			{"huge rate limit", `{"name":"x","scopes":["read"],"rate_limit":1000000000}`, 422, "invalid"},
			{"rate limit not a number", `{"name":"x","scopes":["read"],"rate_limit":"5"}`, 400, "bad_request"},
			{"tenant not a string", `{"name":"x","scopes":["read"],"tenant":5}`, 400, "bad_request"},
			{"unknown tenant", `{"name":"x","scopes":["read"],"tenant":"nope"}`, 404, "not_found"},
			{"unknown field", `{"name":"x","scopes":["read"],"secret":"stk_mine"}`, 400, "bad_request"},
			{"malformed", `{"name":`, 400, "bad_request"},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				want(t, s.do(t, "POST", "/v1/keys", bootstrapKey, tc.body), tc.status, tc.code)
			})
		}
		if n := countRows(t, db, `SELECT count(*) FROM api_keys`); n != keysBefore {
			t.Errorf("refusals stored keys: %d, want %d", n, keysBefore)
		}
		if n := countRows(t, db, `SELECT count(*) FROM audit_log`); n != auditBefore {
			t.Errorf("refusals wrote audit rows: %d, want %d", n, auditBefore)
		}
	})
}

// TestKeysNoEscalation: no key mints or rotates its way to more scope or a
// wider reach than its own.
func TestKeysNoEscalation(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	db := s.catalogConn(t)
	ctlTenant(t, s, "acmesec", "")
	north := ctlTenant(t, s, "northstar_msp", "acmesec")
	alpha := ctlTenant(t, s, "client_alpha", "northstar_msp")
	apex := ctlTenant(t, s, "apex_partners", "acmesec")

	_, adminOnly := ctlKey(t, s, catalog.NewAPIKey{Name: "admin only", Scopes: []string{"admin"}})
	_, writer := ctlKey(t, s, catalog.NewAPIKey{Name: "writer", Scopes: []string{"write"}})
	_, bound := ctlKey(t, s, catalog.NewAPIKey{Name: "north admin", Scopes: []string{"admin"}, TenantID: &north.ID})
	secretsKey, _ := ctlKey(t, s, catalog.NewAPIKey{Name: "secrets", Scopes: []string{"read", "secrets:read"}})
	apexKey, _ := ctlKey(t, s, catalog.NewAPIKey{Name: "apex", Scopes: []string{"read"}, TenantID: &apex.ID})
	alphaKey, _ := ctlKey(t, s, catalog.NewAPIKey{Name: "alpha", Scopes: []string{"read"}, TenantID: &alpha.ID})

	keysBefore := countRows(t, db, `SELECT count(*) FROM api_keys`)
	refusals := []struct {
		name, key, method, path, body string
		status                        int
	}{
		{"write key cannot manage keys", writer, "POST", "/v1/keys", `{"name":"x","scopes":["read"]}`, 403},
		{"admin without secrets:read cannot grant it", adminOnly, "POST", "/v1/keys", `{"name":"x","scopes":["read","secrets:read"]}`, 403},
		{"admin without secrets:read cannot rotate a key holding it", adminOnly, "POST", "/v1/keys/" + secretsKey.ID + "/rotate", ``, 403},
		{"bound key cannot make an unbound key", bound, "POST", "/v1/keys", `{"name":"x","scopes":["read"],"tenant":null}`, 403},
		{"bound key cannot bind outside", bound, "POST", "/v1/keys", `{"name":"x","scopes":["read"],"tenant":"apex_partners"}`, 404},
		{"bound key cannot bind above", bound, "POST", "/v1/keys", `{"name":"x","scopes":["read"],"tenant":"acmesec"}`, 404},
		{"bound key cannot grant secrets:read", bound, "POST", "/v1/keys", `{"name":"x","scopes":["secrets:read"]}`, 403},
		{"bound key cannot see an outside key", bound, "GET", "/v1/keys/" + apexKey.ID, ``, 404},
		{"bound key cannot see an unbound key", bound, "GET", "/v1/keys/" + secretsKey.ID, ``, 404},
		{"bound key cannot revoke outside", bound, "DELETE", "/v1/keys/" + apexKey.ID, ``, 404},
		{"bound key cannot rotate outside", bound, "POST", "/v1/keys/" + apexKey.ID + "/rotate", ``, 404},
		{"bad key id", bootstrapKey, "GET", "/v1/keys/not-a-key", ``, 404},
		{"unknown key id", bootstrapKey, "DELETE", "/v1/keys/6b0c1d5e-0000-4000-8000-000000000000", ``, 404},
	}
	for _, tc := range refusals {
		t.Run(tc.name, func(t *testing.T) {
			r := s.do(t, tc.method, tc.path, tc.key, tc.body)
			code := map[int]string{403: "forbidden", 404: "not_found"}[tc.status]
			want(t, r, tc.status, code)
			if strings.Contains(tc.name, "secrets:read") && !strings.Contains(r.errMessage(), "secrets:read") {
				t.Errorf("message %q does not name the scope", r.errMessage())
			}
		})
	}
	if n := countRows(t, db, `SELECT count(*) FROM api_keys`); n != keysBefore {
		t.Fatalf("refusals stored keys: %d, want %d", n, keysBefore)
	}
	if n := countRows(t, db, `SELECT count(*) FROM api_keys WHERE revoked_at IS NOT NULL`); n != 0 {
		t.Fatalf("refusals revoked %d keys", n)
	}

	t.Run("bound key works inside", func(t *testing.T) {
		r := s.do(t, "POST", "/v1/keys", bound, `{"name":"default binding","scopes":["read","admin"]}`)
		want(t, r, 201, "")
		if r.body["tenant_id"] != north.ID {
			t.Errorf("default binding %v, want northstar_msp", r.body["tenant_id"])
		}
		r = s.do(t, "POST", "/v1/keys", bound, `{"name":"deeper","scopes":["write"],"tenant":"client_alpha"}`)
		want(t, r, 201, "")
		if r.body["tenant_id"] != alpha.ID {
			t.Errorf("binding %v, want client_alpha", r.body["tenant_id"])
		}
		list := s.do(t, "GET", "/v1/keys", bound, "")
		want(t, list, 200, "")
		ids := ctlIDs(list, "keys")
		if slices.Contains(ids, apexKey.ID) || slices.Contains(ids, secretsKey.ID) || !slices.Contains(ids, alphaKey.ID) || len(ids) != 4 {
			t.Errorf("bound list %v", ids)
		}
		want(t, s.do(t, "GET", "/v1/keys/"+alphaKey.ID, bound, ""), 200, "")
		r = s.do(t, "POST", "/v1/keys/"+alphaKey.ID+"/rotate", bound, "")
		want(t, r, 201, "")
		want(t, s.do(t, "DELETE", "/v1/keys/"+r.body["id"].(string), bound, ""), 200, "")
		// The unbound admin sees every key.
		all := ctlIDs(s.do(t, "GET", "/v1/keys", bootstrapKey, ""), "keys")
		if !slices.Contains(all, apexKey.ID) || !slices.Contains(all, secretsKey.ID) {
			t.Errorf("unbound list %v", all)
		}
	})

	t.Run("admin can grant what it holds", func(t *testing.T) {
		want(t, s.do(t, "POST", "/v1/keys", adminOnly, `{"name":"x","scopes":["read","write","admin"]}`), 201, "")
		want(t, s.do(t, "POST", "/v1/keys", bootstrapKey, `{"name":"y","scopes":["secrets:read"],"tenant":null}`), 201, "")
	})
}

func TestKeysRevokeRotate(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	db := s.catalogConn(t)
	acme := ctlTenant(t, s, "acme", "")
	k, secret := ctlKey(t, s, catalog.NewAPIKey{Name: "ops", Scopes: []string{"read", "write"}, TenantID: &acme.ID, RateLimit: 42})
	want(t, s.do(t, "GET", "/v1/tenants/acme", secret, ""), 200, "")

	var newID, newSecret string
	t.Run("rotate", func(t *testing.T) {
		r := s.do(t, "POST", "/v1/keys/"+k.ID+"/rotate", bootstrapKey, "")
		want(t, r, 201, "")
		newID, _ = r.body["id"].(string)
		newSecret, _ = r.body["secret"].(string)
		if newID == k.ID || !strings.HasPrefix(newSecret, "stk_") || newSecret == secret || r.body["rotated_from"] != k.ID ||
			r.body["name"] != "ops" || r.body["tenant_id"] != acme.ID || r.body["rate_limit"] != float64(42) ||
			!slices.Equal(r.body["scopes"].([]any), []any{"read", "write"}) {
			t.Fatalf("rotated %s", r.raw)
		}
		want(t, s.do(t, "GET", "/v1/tenants/acme", secret, ""), 401, "unauthorized")
		want(t, s.do(t, "GET", "/v1/tenants/acme", newSecret, ""), 200, "")
		old := s.do(t, "GET", "/v1/keys/"+k.ID, bootstrapKey, "")
		want(t, old, 200, "")
		if old.body["revoked_at"] == nil {
			t.Errorf("old key not revoked: %s", old.raw)
		}
		want(t, s.do(t, "POST", "/v1/keys/"+k.ID+"/rotate", bootstrapKey, ""), 409, "conflict")
		ev := s.do(t, "GET", "/v1/audit?action=key.rotate", bootstrapKey, "")
		want(t, ev, 200, "")
		events := ev.body["events"].([]any)
		if len(events) != 1 || events[0].(map[string]any)["target"] != "key:"+k.ID ||
			events[0].(map[string]any)["after"].(map[string]any)["id"] != newID {
			t.Errorf("rotate audit %s", ev.raw)
		}
		if strings.Contains(ev.raw, newSecret) {
			t.Errorf("audit holds the new secret")
		}
	})

	t.Run("revoke", func(t *testing.T) {
		auditBefore := countRows(t, db, `SELECT count(*) FROM audit_log`)
		r := s.do(t, "DELETE", "/v1/keys/"+newID, bootstrapKey, "")
		want(t, r, 200, "")
		if r.body["id"] != newID || r.body["revoked_at"] == nil {
			t.Fatalf("revoked %s", r.raw)
		}
		again := s.do(t, "DELETE", "/v1/keys/"+newID, bootstrapKey, "")
		want(t, again, 200, "")
		if again.body["revoked_at"] != r.body["revoked_at"] {
			t.Errorf("second revoke changed revoked_at: %v, %v", r.body["revoked_at"], again.body["revoked_at"])
		}
		if n := countRows(t, db, `SELECT count(*) FROM audit_log`); n != auditBefore+1 {
			t.Errorf("audit rows %d, want %d (one for the revocation)", n, auditBefore+1)
		}
		if n := countRows(t, db, `SELECT count(*) FROM audit_log WHERE action = 'key.revoke' AND target = $1`, "key:"+newID); n != 1 {
			t.Errorf("key.revoke rows %d", n)
		}
		want(t, s.do(t, "GET", "/v1/tenants/acme", newSecret, ""), 401, "unauthorized")
		live := ctlIDs(s.do(t, "GET", "/v1/keys", bootstrapKey, ""), "keys")
		all := ctlIDs(s.do(t, "GET", "/v1/keys?include_revoked=true", bootstrapKey, ""), "keys")
		if slices.Contains(live, newID) || slices.Contains(live, k.ID) || !slices.Contains(all, newID) || !slices.Contains(all, k.ID) {
			t.Errorf("live %v, all %v", live, all)
		}
		want(t, s.do(t, "GET", "/v1/keys?include_revoked=maybe", bootstrapKey, ""), 400, "bad_request")
		want(t, s.do(t, "GET", "/v1/keys?revoked=true", bootstrapKey, ""), 400, "bad_request")
	})

	t.Run("a key can revoke itself", func(t *testing.T) {
		self, selfSecret := ctlKey(t, s, catalog.NewAPIKey{Name: "self", Scopes: []string{"admin"}})
		want(t, s.do(t, "DELETE", "/v1/keys/"+self.ID, selfSecret, ""), 200, "")
		want(t, s.do(t, "GET", "/v1/keys", selfSecret, ""), 401, "unauthorized")
	})
}

// TestRateLimit: a key gets its budget, then 429 with Retry-After; other keys
// are unaffected; the bootstrap key is limited too.
func TestRateLimit(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	_, limited := ctlKey(t, s, catalog.NewAPIKey{Name: "limited", Scopes: []string{"read"}, RateLimit: 5})
	_, other := ctlKey(t, s, catalog.NewAPIKey{Name: "other", Scopes: []string{"read"}})
	for i := range 5 {
		want(t, s.do(t, "GET", "/v1/tenants", limited, ""), 200, "")
		if i == 2 {
			want(t, s.do(t, "GET", "/v1/tenants", other, ""), 200, "")
		}
	}
	r := s.do(t, "GET", "/v1/tenants", limited, "")
	want(t, r, 429, "rate_limited")
	secs, err := strconv.Atoi(r.header.Get("Retry-After"))
	if err != nil || secs < 1 || secs > 12 {
		t.Errorf("Retry-After %q, want 1..12 whole seconds (5 a minute refill one every 12 s)", r.header.Get("Retry-After"))
	}
	details, _ := r.body["error"].(map[string]any)["details"].(map[string]any)
	if details["limit"] != float64(5) {
		t.Errorf("details %v", details)
	}
	// Any route counts, including ones the key may not use.
	want(t, s.do(t, "POST", "/v1/tenants", limited, `{"slug":"x"}`), 429, "rate_limited")
	for range 10 {
		want(t, s.do(t, "GET", "/v1/tenants", other, ""), 200, "")
	}

	t.Run("default and bootstrap", func(t *testing.T) {
		hs := httptest.NewServer(admin.New(admin.Config{BootstrapKey: bootstrapKey, RateLimit: 3}, s.p))
		defer hs.Close()
		for range 3 {
			want(t, doURL(t, hs.URL, "GET", "/v1/tenants", "Bearer "+bootstrapKey, true, ""), 200, "")
		}
		r := doURL(t, hs.URL, "GET", "/v1/tenants", "Bearer "+bootstrapKey, true, "")
		want(t, r, 429, "rate_limited")
		if secs, err := strconv.Atoi(r.header.Get("Retry-After")); err != nil || secs < 1 || secs > 20 {
			t.Errorf("Retry-After %q", r.header.Get("Retry-After"))
		}
		// A key's own limit beats the default (budgets are per API value,
		// as they are per process).
		for range 5 {
			want(t, doURL(t, hs.URL, "GET", "/v1/tenants", "Bearer "+limited, true, ""), 200, "")
		}
		want(t, doURL(t, hs.URL, "GET", "/v1/tenants", "Bearer "+limited, true, ""), 429, "rate_limited")
		for range 3 {
			want(t, doURL(t, hs.URL, "GET", "/v1/tenants", "Bearer "+other, true, ""), 200, "")
		}
		want(t, doURL(t, hs.URL, "GET", "/v1/tenants", "Bearer "+other, true, ""), 429, "rate_limited")
		// Unauthenticated requests and probes are not counted against anyone.
		want(t, doURL(t, hs.URL, "GET", "/healthz", "", false, ""), 200, "")
	})
}
