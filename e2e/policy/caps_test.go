package policy

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/stratum-hq/stratum-proxy/internal/stacktest"
)

// testBoundKeyCannotRaiseItsShareAbovePlatformDefault: with no ancestor
// setting proxy.max_connections, a key bound to a tenant may not raise the
// tenant's connection limit above the proxy's per-tenant default
// (pool.max_per_tenant), which would let it take every backend of the
// server; it may lower it. A platform key may set more.
func testBoundKeyCannotRaiseItsShareAbovePlatformDefault(t *testing.T, ts *stacktest.Stack) {
	own := standIns(t, ts, "caps")
	body := ts.AdminWant(t, http.MethodPost, "/v1/keys", map[string]any{
		"name": "northstar", "tenant": own.northstar, "scopes": []string{"read", "write"}}, http.StatusCreated)
	var key struct{ Secret string }
	if err := json.Unmarshal([]byte(body), &key); err != nil || key.Secret == "" {
		t.Fatalf("creating a bound key: %s", body)
	}
	bound := *ts
	bound.AdminKey = key.Secret
	limit := ts.Router.Config().MaxConnsPerTenant
	path := "/v1/tenants/" + own.northstar + "/config/proxy.max_connections"
	for _, v := range []int{10000, limit + 1} {
		st, b, err := bound.Admin(http.MethodPut, path, map[string]any{"value": v})
		if err != nil || st != http.StatusUnprocessableEntity || !strings.Contains(b, "pool.max_per_tenant") {
			t.Errorf("bound key sets max_connections %d: %d %s (%v), want 422 naming pool.max_per_tenant", v, st, b, err)
		}
	}
	if st, b, err := bound.Admin(http.MethodPut, path, map[string]any{"value": limit}); err != nil || st != http.StatusOK {
		t.Errorf("bound key sets max_connections to the default %d: %d %s (%v)", limit, st, b, err)
	}
	ts.AdminWant(t, http.MethodPut, path, map[string]any{"value": 10000}, http.StatusOK)
}
