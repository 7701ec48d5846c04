package admin_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/stratum-hq/stratum-proxy/admin"
	"github.com/stratum-hq/stratum-proxy/catalog"
	"github.com/stratum-hq/stratum-proxy/internal/backends"
	"github.com/stratum-hq/stratum-proxy/internal/pgtest"
	"github.com/stratum-hq/stratum-proxy/internal/secrets"
	"github.com/stratum-hq/stratum-proxy/internal/stacktest"
	"github.com/stratum-hq/stratum-proxy/provision"
	"github.com/stratum-hq/stratum-proxy/router"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

const bootstrapKey = "test-bootstrap-key-0123456789"

// stack is a catalog, a router and the admin API over them, served by an
// httptest server, all torn down when the test ends.
type stack struct {
	srv       *pgtest.Server
	catdb     string
	cat       *catalog.Catalog
	r         *router.Router
	p         *provision.Provisioner
	hs        *httptest.Server
	catClosed bool
}

func newStack(t *testing.T) *stack {
	t.Helper()
	ctx := context.Background()
	srv := pgtest.Get(t)
	catdb := srv.NewDatabase(t, "cat")
	text, err := secrets.NewKeyText("k1")
	if err != nil {
		t.Fatal(err)
	}
	kr, err := secrets.Parse(text)
	if err != nil {
		t.Fatal(err)
	}
	cat, err := catalog.Open(ctx, catalog.Config{URL: srv.URL(catdb), Keys: kr})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cat.Migrate(ctx); err != nil {
		cat.Close()
		t.Fatal(err)
	}
	set := backends.Set{
		Backends: map[string]backends.Backend{"main": {Host: srv.Host(), Port: srv.Port(),
			AdminUser: srv.SuperUser(), AdminPassword: srv.Password(), SSLMode: "disable"}},
		SharedDatabase: pgtest.UniqueName("app"),
	}
	r, err := router.New(ctx, router.Config{Set: set}, cat)
	if err != nil {
		cat.Close()
		t.Fatal(err)
	}
	p, err := provision.New(ctx, provision.Config{Set: set, Pools: r}, cat)
	if err != nil {
		r.Close()
		cat.Close()
		t.Fatal(err)
	}
	st := &stack{srv: srv, catdb: catdb, cat: cat, r: r, p: p}
	t.Cleanup(func() {
		if !st.catClosed {
			stacktest.DropAll(ctx, t, cat, p)
		} else if err := p.DropShared(ctx); err != nil {
			t.Errorf("cleanup: dropping shared database: %v", err)
		}
		r.Close()
		cat.Close()
	})
	if err := p.PrepareShared(ctx); err != nil {
		t.Fatal(err)
	}
	st.hs = httptest.NewServer(admin.New(admin.Config{BootstrapKey: bootstrapKey}, p))
	t.Cleanup(st.hs.Close) // runs before the teardown above
	return st
}

// closeCatalog closes the catalog under the running API (cleanup then skips
// dropping tenants, which needs it).
func (s *stack) closeCatalog() {
	s.catClosed = true
	s.cat.Close()
}

// response is what do got back.
type response struct {
	status int
	header http.Header
	raw    string
	body   map[string]any
}

// errCode returns the error body's code ("" when there is none).
func (r response) errCode() string {
	e, _ := r.body["error"].(map[string]any)
	c, _ := e["code"].(string)
	return c
}

func (r response) errMessage() string {
	e, _ := r.body["error"].(map[string]any)
	m, _ := e["message"].(string)
	return m
}

// do sends a request with key as bearer token (none when empty) and body as is
// (none when empty). It checks what every response must have: JSON content
// type, a request id, a JSON object body, and for errors the error shape.
func (s *stack) do(t *testing.T, method, path, key, body string) response {
	t.Helper()
	return doURL(t, s.hs.URL, method, path, "Bearer "+key, key != "", body)
}

func doURL(t *testing.T, base, method, path, auth string, withAuth bool, body string) response {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, base+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if withAuth {
		req.Header.Set("Authorization", auth)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("%s %s: reading body: %v", method, path, err)
	}
	out := response{status: res.StatusCode, header: res.Header, raw: string(raw)}
	if ct := res.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("%s %s: Content-Type %q, want application/json", method, path, ct)
	}
	if id := res.Header.Get(admin.RequestIDHeader); len(id) < 16 {
		t.Errorf("%s %s: request id %q, want a random id", method, path, id)
	}
	if method == http.MethodHead {
		return out
	}
	if err := json.Unmarshal(raw, &out.body); err != nil {
		t.Fatalf("%s %s: body is not a JSON object: %v: %q", method, path, err, raw)
	}
	if res.StatusCode >= 400 {
		e, ok := out.body["error"].(map[string]any)
		if !ok || len(out.body) != 1 {
			t.Fatalf("%s %s: error body %s, want {\"error\":{…}} only", method, path, raw)
		}
		if out.errCode() == "" || out.errMessage() == "" {
			t.Errorf("%s %s: error body %s lacks code or message", method, path, raw)
		}
		for k := range e {
			if k != "code" && k != "message" && k != "details" {
				t.Errorf("%s %s: error body has unexpected member %q", method, path, k)
			}
		}
	}
	return out
}

// want fails the test unless r has the status and (for errors) the code.
func want(t *testing.T, r response, status int, code string) {
	t.Helper()
	if r.status != status || r.errCode() != code {
		t.Fatalf("got %d %q, want %d %q; body %s", r.status, r.errCode(), status, code, r.raw)
	}
}

func tenantCount(t *testing.T, s *stack) int {
	t.Helper()
	ts, err := s.cat.ListTenants(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return len(ts)
}

func jsonBody(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestProbesAndRouting(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	tests := []struct {
		name, method, path string
		status             int
		code               string
		allow              string
	}{
		{"healthz", "GET", "/healthz", 200, "", ""},
		{"readyz", "GET", "/readyz", 200, "", ""},
		{"healthz head", "HEAD", "/healthz", 200, "", ""},
		{"unknown route", "GET", "/nope", 404, "not_found", ""},
		{"unknown v1 route", "GET", "/v1/nothing/here", 404, "not_found", ""},
		{"tenant path with trailing slash", "GET", "/v1/tenants/", 404, "not_found", ""},
		{"wrong method on collection", "DELETE", "/v1/tenants", 405, "method_not_allowed", "GET, HEAD, POST"},
		{"wrong method on tenant", "PUT", "/v1/tenants/acme", 405, "method_not_allowed", "GET, HEAD, PATCH"},
		{"wrong method on users", "DELETE", "/v1/users", 405, "method_not_allowed", "GET, HEAD, POST"},
		{"wrong method on healthz", "POST", "/healthz", 405, "method_not_allowed", "GET, HEAD"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := s.do(t, tc.method, tc.path, "", "")
			want(t, r, tc.status, tc.code)
			if got := r.header.Get("Allow"); got != tc.allow {
				t.Errorf("Allow %q, want %q", got, tc.allow)
			}
		})
	}
	t.Run("bodies", func(t *testing.T) {
		if r := s.do(t, "GET", "/healthz", "", ""); r.body["status"] != "ok" {
			t.Errorf("healthz body %s", r.raw)
		}
		if r := s.do(t, "GET", "/readyz", "", ""); r.body["status"] != "ready" {
			t.Errorf("readyz body %s", r.raw)
		}
	})
	t.Run("request ids differ", func(t *testing.T) {
		a := s.do(t, "GET", "/healthz", "", "").header.Get(admin.RequestIDHeader)
		b := s.do(t, "GET", "/healthz", "", "").header.Get(admin.RequestIDHeader)
		if a == b {
			t.Errorf("two requests got the same id %q", a)
		}
	})
}

func TestReadyzCatalogDown(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	want(t, s.do(t, "GET", "/readyz", "", ""), 200, "")
	s.closeCatalog()
	r := s.do(t, "GET", "/readyz", "", "")
	want(t, r, 503, "unavailable")
	want(t, s.do(t, "GET", "/healthz", "", ""), 200, "")

	// Unexpected failures are a generic 500 that names the request, not the cause.
	for _, key := range []string{bootstrapKey, "some-catalog-key"} {
		r := s.do(t, "GET", "/v1/tenants", key, "")
		want(t, r, 500, "internal")
		if id := r.header.Get(admin.RequestIDHeader); !strings.Contains(r.errMessage(), id) {
			t.Errorf("message %q does not name request %s", r.errMessage(), id)
		}
		if strings.Contains(r.raw, "pool") || strings.Contains(r.raw, "listing") {
			t.Errorf("internal error leaked: %s", r.raw)
		}
	}
}

type notReady struct{}

func (notReady) Ready(context.Context) error { return fmt.Errorf("listener not up") }

func TestReadyzReadiness(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	hs := httptest.NewServer(admin.New(admin.Config{Readiness: notReady{}}, s.p))
	defer hs.Close()
	r := doURL(t, hs.URL, "GET", "/readyz", "", false, "")
	want(t, r, 503, "unavailable")
	if strings.Contains(r.raw, "listener not up") {
		t.Errorf("readiness error leaked: %s", r.raw)
	}
}

func TestAuth(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	ctx := context.Background()
	key := func(name string, scopes ...string) string {
		if scopes == nil {
			scopes = []string{} // catalog.CreateAPIKey stores a nil slice as NULL, which the column refuses
		}
		_, secret, err := s.cat.CreateAPIKey(ctx, name, scopes, nil)
		if err != nil {
			t.Fatal(err)
		}
		return secret
	}
	readKey, writeKey, adminKey := key("reader", "read"), key("writer", "write"), key("admin", "admin")
	noScopeKey := key("empty")
	root, err := s.p.CreateTenant(ctx, provision.TenantSpec{Slug: "authroot"})
	if err != nil {
		t.Fatal(err)
	}
	_, boundKey, err := s.cat.CreateAPIKey(ctx, "bound", []string{"admin"}, &root.ID)
	if err != nil {
		t.Fatal(err)
	}
	// Runs before the stack's teardown: a key bound to a tenant keeps
	// DropTenant from deleting it, and the catalog has no call to delete keys.
	t.Cleanup(func() { s.srv.Exec(t, s.catdb, `DELETE FROM api_keys WHERE tenant_id = $1`, root.ID) })

	tests := []struct {
		name, method, path string
		auth               string // the whole Authorization header
		withAuth           bool
		body               string
		status             int
		code               string
	}{
		{"no header", "GET", "/v1/tenants", "", false, "", 401, "unauthorized"},
		{"no header on post", "POST", "/v1/tenants", "", false, `{"slug":"x"}`, 401, "unauthorized"},
		{"no header on get one", "GET", "/v1/tenants/authroot", "", false, "", 401, "unauthorized"},
		{"no header on users", "POST", "/v1/users", "", false, `{}`, 401, "unauthorized"},
		{"empty bearer", "GET", "/v1/tenants", "Bearer ", true, "", 401, "unauthorized"},
		{"basic scheme", "GET", "/v1/tenants", "Basic " + bootstrapKey, true, "", 401, "unauthorized"},
		{"wrong key", "GET", "/v1/tenants", "Bearer wrong", true, "", 401, "unauthorized"},
		{"bootstrap key prefix", "GET", "/v1/tenants", "Bearer " + bootstrapKey[:10], true, "", 401, "unauthorized"},
		{"bootstrap key", "GET", "/v1/tenants", "Bearer " + bootstrapKey, true, "", 200, ""},
		{"bootstrap key, lower-case scheme", "GET", "/v1/tenants", "bearer " + bootstrapKey, true, "", 200, ""},
		{"read key get list", "GET", "/v1/tenants", "Bearer " + readKey, true, "", 200, ""},
		{"read key get one", "GET", "/v1/tenants/authroot", "Bearer " + readKey, true, "", 200, ""},
		{"read key post tenant", "POST", "/v1/tenants", "Bearer " + readKey, true, `{"slug":"byreader"}`, 403, "forbidden"},
		{"read key post user", "POST", "/v1/users", "Bearer " + readKey, true, `{"name":"u","password":"secret","tenant":"authroot"}`, 403, "forbidden"},
		{"write key get", "GET", "/v1/tenants", "Bearer " + writeKey, true, "", 200, ""},
		{"write key post", "POST", "/v1/tenants", "Bearer " + writeKey, true, `{"slug":"bywriter"}`, 201, ""},
		{"admin key post", "POST", "/v1/tenants", "Bearer " + adminKey, true, `{"slug":"byadmin","parent":"authroot"}`, 201, ""},
		{"key without scopes", "GET", "/v1/tenants", "Bearer " + noScopeKey, true, "", 403, "forbidden"},
		{"tenant-bound key lists its subtree", "GET", "/v1/tenants", "Bearer " + boundKey, true, "", 200, ""},
		{"tenant-bound key reads its tenant", "GET", "/v1/tenants/authroot", "Bearer " + boundKey, true, "", 200, ""},
		{"tenant-bound key cannot create a root", "POST", "/v1/tenants", "Bearer " + boundKey, true, `{"slug":"byboundroot"}`, 403, "forbidden"},
		{"tenant-bound key cannot see outside", "GET", "/v1/tenants/bywriter", "Bearer " + boundKey, true, "", 404, "not_found"},
		{"probes need no key", "GET", "/healthz", "Bearer wrong", true, "", 200, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := doURL(t, s.hs.URL, tc.method, tc.path, tc.auth, tc.withAuth, tc.body)
			want(t, r, tc.status, tc.code)
			if tc.status == 401 && !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Bearer") {
				t.Errorf("WWW-Authenticate %q, want a Bearer challenge", r.header.Get("WWW-Authenticate"))
			}
		})
	}

	t.Run("no bootstrap key configured", func(t *testing.T) {
		hs := httptest.NewServer(admin.New(admin.Config{}, s.p))
		defer hs.Close()
		want(t, doURL(t, hs.URL, "GET", "/v1/tenants", "Bearer ", true, ""), 401, "unauthorized")
		want(t, doURL(t, hs.URL, "GET", "/v1/tenants", "Bearer "+bootstrapKey, true, ""), 401, "unauthorized")
		want(t, doURL(t, hs.URL, "GET", "/v1/tenants", "Bearer "+readKey, true, ""), 200, "")
	})
}

func TestTenants(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	k := bootstrapKey

	created := map[string]map[string]any{}
	t.Run("create", func(t *testing.T) {
		tests := []struct {
			name, slug, parent, isolation string
			wantIsolation                 string
			depth                         float64
		}{
			{"root default isolation", "acme", "", "", "shared", 1},
			{"root schema", "globex", "", "schema", "schema", 1},
			{"root database", "initech", "", "database", "database", 1},
			{"child shared", "acme_eu", "acme", "shared", "shared", 2},
			{"child schema", "acme_us", "acme", "schema", "schema", 2},
			{"child database by parent id", "acme_db", "", "database", "database", 2},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				parent := tc.parent
				if tc.slug == "acme_db" {
					parent = created["acme"]["id"].(string) // a parent named by id
				}
				body := jsonBody(t, map[string]string{"slug": tc.slug, "name": "Tenant " + tc.slug,
					"parent": parent, "isolation": tc.isolation})
				r := s.do(t, "POST", "/v1/tenants", k, body)
				want(t, r, 201, "")
				if r.body["slug"] != tc.slug || r.body["isolation"] != tc.wantIsolation ||
					r.body["depth"] != tc.depth || r.body["status"] != "active" || r.body["name"] != "Tenant "+tc.slug {
					t.Errorf("created %s", r.raw)
				}
				if loc := r.header.Get("Location"); loc != "/v1/tenants/"+r.body["id"].(string) {
					t.Errorf("Location %q", loc)
				}
				if (tc.depth == 1) != (r.body["parent_id"] == nil) {
					t.Errorf("parent_id %v at depth %v", r.body["parent_id"], tc.depth)
				}
				created[tc.slug] = r.body
			})
		}
	})
	if len(created) != 6 {
		t.Fatalf("created %d tenants, want 6", len(created))
	}

	t.Run("list", func(t *testing.T) {
		r := s.do(t, "GET", "/v1/tenants", k, "")
		want(t, r, 200, "")
		list, _ := r.body["tenants"].([]any)
		var slugs []string
		for _, x := range list {
			slugs = append(slugs, x.(map[string]any)["slug"].(string))
		}
		if len(slugs) != len(created) {
			t.Fatalf("listed %v, want %d tenants", slugs, len(created))
		}
		for slug := range created {
			if !slices.Contains(slugs, slug) {
				t.Errorf("list %v lacks %s", slugs, slug)
			}
		}
	})

	t.Run("get", func(t *testing.T) {
		id := created["acme_us"]["id"].(string)
		for _, ref := range []string{"acme_us", id, strings.ToUpper(id)} {
			r := s.do(t, "GET", "/v1/tenants/"+ref, k, "")
			want(t, r, 200, "")
			if r.body["id"] != id || r.body["slug"] != "acme_us" {
				t.Errorf("get %s: %s", ref, r.raw)
			}
		}
	})

	t.Run("get unknown", func(t *testing.T) {
		for _, ref := range []string{"nope", "00000000-0000-4000-8000-000000000000", "Not%20A%20Slug", "%00"} {
			r := s.do(t, "GET", "/v1/tenants/"+ref, k, "")
			want(t, r, 404, "not_found")
			if !strings.Contains(r.errMessage(), "does not exist") {
				t.Errorf("message %q", r.errMessage())
			}
		}
		if r := s.do(t, "GET", "/v1/tenants/nope", k, ""); r.errMessage() != `tenant "nope" does not exist` {
			t.Errorf("message %q", r.errMessage())
		}
	})

	t.Run("errors", func(t *testing.T) {
		before := tenantCount(t, s)
		huge := `{"slug":"big","name":"` + strings.Repeat("x", 1<<20) + `"}`
		tests := []struct {
			name, body string
			status     int
			code       string
		}{
			{"duplicate slug", `{"slug":"acme"}`, 409, "conflict"},
			{"duplicate slug under a parent", `{"slug":"acme_eu","parent":"globex"}`, 409, "conflict"},
			{"unknown parent", `{"slug":"orphan","parent":"nobody"}`, 404, "not_found"},
			{"unknown parent id", `{"slug":"orphan","parent":"00000000-0000-4000-8000-000000000000"}`, 404, "not_found"},
			{"malformed json", `{"slug":`, 400, "bad_request"},
			{"syntax error", `{"slug" "x"}`, 400, "bad_request"},
			{"unknown field", `{"slug":"x","colour":"red"}`, 400, "bad_request"},
			{"wrong type", `{"slug":42}`, 400, "bad_request"},
			{"array body", `[]`, 400, "bad_request"},
			{"two objects", `{"slug":"two1"}{"slug":"two2"}`, 400, "bad_request"},
			{"empty body", ``, 400, "bad_request"},
			{"body over 1 MiB", huge, 400, "bad_request"},
			{"bad isolation", `{"slug":"iso","isolation":"galaxy"}`, 422, "invalid"},
			{"bad slug", `{"slug":"Bad-Slug"}`, 422, "invalid"},
			{"missing slug", `{"name":"No slug"}`, 422, "invalid"},
			{"slug too long", `{"slug":"` + strings.Repeat("a", 64) + `"}`, 422, "invalid"},
			{"name too long", `{"slug":"longname","name":"` + strings.Repeat("n", 201) + `"}`, 422, "invalid"},
			{"name with NUL", `{"slug":"nul","name":"a\u0000b"}`, 422, "invalid"},
			{"unknown backend", `{"slug":"faraway","isolation":"database","backend":"mars"}`, 422, "invalid"},
			{"backend on a schema tenant", `{"slug":"misplaced","isolation":"schema","backend":"mars"}`, 422, "invalid"},
			{"null body", `null`, 422, "invalid"},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				want(t, s.do(t, "POST", "/v1/tenants", k, tc.body), tc.status, tc.code)
			})
		}
		if after := tenantCount(t, s); after != before {
			t.Errorf("failed creations changed the tenant count from %d to %d", before, after)
		}
	})

	t.Run("unknown field named", func(t *testing.T) {
		r := s.do(t, "POST", "/v1/tenants", k, `{"slug":"x","colour":"red"}`)
		if !strings.Contains(r.errMessage(), "colour") {
			t.Errorf("message %q does not name the field", r.errMessage())
		}
	})
}

func TestDepthLimit(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	parent := ""
	for level := 1; level <= catalog.MaxDepth; level++ {
		slug := fmt.Sprintf("l%02d", level)
		r := s.do(t, "POST", "/v1/tenants", bootstrapKey, jsonBody(t, map[string]string{"slug": slug, "parent": parent}))
		want(t, r, 201, "")
		if r.body["depth"] != float64(level) {
			t.Fatalf("level %d: depth %v", level, r.body["depth"])
		}
		parent = slug
	}
	before := tenantCount(t, s)
	r := s.do(t, "POST", "/v1/tenants", bootstrapKey, jsonBody(t, map[string]string{"slug": "l21", "parent": parent}))
	want(t, r, 422, "depth_exceeded")
	t.Logf("refused: %s", r.errMessage())
	if !strings.Contains(r.errMessage(), "level 21") {
		t.Errorf("message %q does not say level 21 is refused", r.errMessage())
	}
	if after := tenantCount(t, s); after != before || after != catalog.MaxDepth {
		t.Errorf("tenant count went from %d to %d, want %d both", before, after, catalog.MaxDepth)
	}
	want(t, s.do(t, "GET", "/v1/tenants/l21", bootstrapKey, ""), 404, "not_found")
}

func TestUsers(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	ctx := context.Background()
	tenant, err := s.p.CreateTenant(ctx, provision.TenantSpec{Slug: "acme"})
	if err != nil {
		t.Fatal(err)
	}
	const password = "correct horse battery staple"

	t.Run("create", func(t *testing.T) {
		body := jsonBody(t, map[string]any{"name": "alice", "password": password, "tenant": "acme", "can_switch": true})
		r := s.do(t, "POST", "/v1/users", bootstrapKey, body)
		want(t, r, 201, "")
		var keys []string
		for k := range r.body {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		if !slices.Equal(keys, []string{"can_switch", "created_at", "name", "tenant_id"}) {
			t.Errorf("user fields %v", keys)
		}
		if r.body["name"] != "alice" || r.body["tenant_id"] != tenant.ID || r.body["can_switch"] != true {
			t.Errorf("user %s", r.raw)
		}
		if strings.Contains(r.raw, password) || strings.Contains(strings.ToLower(r.raw), "scram") ||
			strings.Contains(strings.ToLower(r.raw), "verifier") || strings.Contains(strings.ToLower(r.raw), "password") {
			t.Errorf("response leaks the credential: %s", r.raw)
		}
		u, err := s.cat.GetUser(ctx, "alice")
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(u.Verifier, "SCRAM-SHA-256$") || !u.CanSwitch {
			t.Errorf("stored user %+v", u)
		}
	})

	t.Run("create by tenant id", func(t *testing.T) {
		body := jsonBody(t, map[string]any{"name": "bob", "password": password, "tenant": tenant.ID})
		r := s.do(t, "POST", "/v1/users", bootstrapKey, body)
		want(t, r, 201, "")
		if r.body["can_switch"] != false {
			t.Errorf("user %s", r.raw)
		}
	})

	tests := []struct {
		name, body string
		status     int
		code       string
	}{
		{"duplicate", `{"name":"alice","password":"another","tenant":"acme"}`, 409, "conflict"},
		{"unknown tenant", `{"name":"carol","password":"secret","tenant":"nope"}`, 404, "not_found"},
		{"missing tenant", `{"name":"carol","password":"secret"}`, 422, "invalid"},
		{"short password", `{"name":"carol","password":"abc","tenant":"acme"}`, 422, "invalid"},
		{"empty name", `{"name":"","password":"secret","tenant":"acme"}`, 422, "invalid"},
		{"long name", `{"name":"` + strings.Repeat("c", 64) + `","password":"secret","tenant":"acme"}`, 422, "invalid"},
		{"name with NUL", `{"name":"ca\u0000rol","password":"secret","tenant":"acme"}`, 422, "invalid"},
		{"password with control character", `{"name":"carol","password":"sec\u0007ret","tenant":"acme"}`, 422, "invalid"},
		{"verifier field", `{"name":"carol","password":"secret","tenant":"acme","verifier":"x"}`, 400, "bad_request"},
		{"can_switch not a boolean", `{"name":"carol","password":"secret","tenant":"acme","can_switch":"yes"}`, 400, "bad_request"},
		{"malformed", `{"name":"carol",`, 400, "bad_request"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := s.do(t, "POST", "/v1/users", bootstrapKey, tc.body)
			want(t, r, tc.status, tc.code)
			if tc.code == "not_found" && r.errMessage() != `tenant "nope" does not exist` {
				t.Errorf("message %q", r.errMessage())
			}
		})
	}
	if _, err := s.cat.GetUser(ctx, "carol"); err != catalog.ErrNotFound {
		t.Errorf("a failed request stored carol: %v", err)
	}
}

// catalogConn is a superuser connection to the stack's catalog database, for
// checking what was (or was not) written; closed when the test ends.
func (s *stack) catalogConn(t *testing.T) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), s.srv.URL(s.catdb))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// countRows runs a query that answers one integer, e.g. a count.
func countRows(t *testing.T, db *pgx.Conn, sql string, args ...any) int {
	t.Helper()
	var n int
	if err := db.QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return n
}
