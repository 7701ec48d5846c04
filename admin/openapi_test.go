package admin

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/stratum-hq/stratum-proxy/provision"
)

// openapiAPI is an API with every route registered (Metrics set, so /metrics
// is too) over a zero provisioner: enough to list routes and to answer requests
// that fail before touching the catalog.
func openapiAPI() *API {
	return New(Config{Metrics: http.NotFoundHandler()}, new(provision.Provisioner))
}

// openapiDocument is the embedded document, decoded.
type openapiDocument struct {
	OpenAPI    string                                `json:"openapi"`
	Paths      map[string]map[string]json.RawMessage `json:"paths"`
	Components map[string]map[string]json.RawMessage `json:"components"`
	Security   []map[string][]string                 `json:"security"`
}

// openapiOperation is the part of an operation the tests look at.
type openapiOperation struct {
	OperationID string                     `json:"operationId"`
	Parameters  []map[string]any           `json:"parameters"`
	RequestBody map[string]any             `json:"requestBody"`
	Responses   map[string]json.RawMessage `json:"responses"`
	Security    *[]map[string][]string     `json:"security"`
}

// openapiMethods are the operation members of a path item (OpenAPI 3.1).
var openapiMethods = []string{"get", "put", "post", "delete", "options", "head", "patch", "trace"}

func loadOpenAPI(t *testing.T) openapiDocument {
	t.Helper()
	var doc openapiDocument
	if err := json.Unmarshal([]byte(openapiDoc), &doc); err != nil {
		t.Fatalf("admin/openapi.json is not valid JSON: %v", err)
	}
	if doc.OpenAPI != "3.1.0" {
		t.Fatalf("openapi = %q, want 3.1.0", doc.OpenAPI)
	}
	return doc
}

// operations returns every documented operation keyed "METHOD path".
func (d openapiDocument) operations(t *testing.T) map[string]openapiOperation {
	t.Helper()
	ops := map[string]openapiOperation{}
	for path, item := range d.Paths {
		for member, raw := range item {
			if !slices.Contains(openapiMethods, member) {
				continue // "parameters", "summary", ...
			}
			var op openapiOperation
			if err := json.Unmarshal(raw, &op); err != nil {
				t.Fatalf("%s %s: %v", member, path, err)
			}
			ops[strings.ToUpper(member)+" "+path] = op
		}
	}
	return ops
}

// TestOpenAPIInSync fails when a registered route (path and method) is missing
// from admin/openapi.json, or the document describes one that is not
// registered. HEAD is implied by GET and not compared.
func TestOpenAPIInSync(t *testing.T) {
	a := openapiAPI()
	doc := loadOpenAPI(t)
	registered := map[string]bool{}
	for _, rr := range a.registered {
		for m := range rr.methods {
			registered[m+" "+rr.path] = true
		}
	}
	documented := doc.operations(t)
	var missing, extra []string
	for k := range registered {
		if _, ok := documented[k]; !ok {
			missing = append(missing, k)
		}
	}
	for k := range documented {
		if !registered[k] {
			extra = append(extra, k)
		}
	}
	sort.Strings(missing)
	sort.Strings(extra)
	for _, k := range missing {
		t.Errorf("route %s is registered but not in admin/openapi.json", k)
	}
	for _, k := range extra {
		t.Errorf("admin/openapi.json describes %s, which is not a registered route", k)
	}
}

// TestOpenAPIAuthMatches checks that the document says which routes need a
// key the way the API behaves: every registered route is asked without
// credentials, and answers 401 exactly when the document requires bearer.
func TestOpenAPIAuthMatches(t *testing.T) {
	a := openapiAPI()
	ops := loadOpenAPI(t).operations(t)
	paramRE := regexp.MustCompile(`\{[a-z_]+\}`)
	for _, rr := range a.registered {
		for m := range rr.methods {
			op, ok := ops[m+" "+rr.path]
			if !ok {
				continue // reported by TestOpenAPIInSync
			}
			public := op.Security != nil && len(*op.Security) == 0
			if rr.path == "/readyz" {
				// Needs a catalog to answer, and is public by design.
				if !public {
					t.Errorf("GET /readyz must be documented without security")
				}
				continue
			}
			path := paramRE.ReplaceAllString(rr.path, "x")
			rec := httptest.NewRecorder()
			a.ServeHTTP(rec, httptest.NewRequest(m, path, strings.NewReader("{}")))
			if got := rec.Code == http.StatusUnauthorized; got == public {
				t.Errorf("%s %s: answered %d without a key, but the document says public=%v", m, rr.path, rec.Code, public)
			}
		}
	}
}

// TestOpenAPIWellFormed checks what a client generator relies on: every $ref
// resolves, operation ids are unique, every path parameter is declared, and
// every operation documents its success and the error statuses it can give.
func TestOpenAPIWellFormed(t *testing.T) {
	doc := loadOpenAPI(t)
	var whole any
	if err := json.Unmarshal([]byte(openapiDoc), &whole); err != nil {
		t.Fatal(err)
	}
	walkRefs(whole, func(ref string) {
		parts := strings.Split(strings.TrimPrefix(ref, "#/"), "/")
		if !strings.HasPrefix(ref, "#/components/") || len(parts) != 3 {
			t.Errorf("$ref %q: only #/components/<kind>/<name> is used here", ref)
			return
		}
		if _, ok := doc.Components[parts[1]][parts[2]]; !ok {
			t.Errorf("$ref %q does not resolve", ref)
		}
	})
	if _, ok := doc.Components["securitySchemes"]["bearer"]; !ok {
		t.Error("components.securitySchemes.bearer is missing")
	}
	if len(doc.Security) != 1 || doc.Security[0]["bearer"] == nil {
		t.Errorf("top-level security = %v, want bearer", doc.Security)
	}
	var errSchema struct {
		Properties struct {
			Error struct {
				Required []string `json:"required"`
			} `json:"error"`
		} `json:"properties"`
	}
	if err := json.Unmarshal(doc.Components["schemas"]["Error"], &errSchema); err != nil ||
		!slices.Contains(errSchema.Properties.Error.Required, "code") || !slices.Contains(errSchema.Properties.Error.Required, "message") {
		t.Errorf("schema Error must describe {\"error\":{\"code\",\"message\",\"details\"}}: %s", doc.Components["schemas"]["Error"])
	}

	ids := map[string]string{}
	paramRE := regexp.MustCompile(`\{([a-z_]+)\}`)
	for name, op := range doc.operations(t) {
		if op.OperationID == "" {
			t.Errorf("%s: no operationId", name)
		} else if prev, dup := ids[op.OperationID]; dup {
			t.Errorf("%s and %s share operationId %q", prev, name, op.OperationID)
		}
		ids[op.OperationID] = name
		path := strings.SplitN(name, " ", 2)[1]
		declared := map[string]bool{}
		for _, p := range op.Parameters {
			if r, ok := p["$ref"].(string); ok {
				var resolved map[string]any
				_ = json.Unmarshal(doc.Components["parameters"][strings.TrimPrefix(r, "#/components/parameters/")], &resolved)
				p = resolved
			}
			if p["in"] == "path" {
				if p["required"] != true {
					t.Errorf("%s: path parameter %v must be required", name, p["name"])
				}
				declared[p["name"].(string)] = true
			}
		}
		for _, m := range paramRE.FindAllStringSubmatch(path, -1) {
			if !declared[m[1]] {
				t.Errorf("%s: path parameter {%s} is not declared", name, m[1])
			}
			delete(declared, m[1])
		}
		for p := range declared {
			t.Errorf("%s: declares path parameter %q that the path does not have", name, p)
		}

		has := func(status string) bool { _, ok := op.Responses[status]; return ok }
		if !slices.ContainsFunc([]string{"200", "201", "202", "204"}, has) {
			t.Errorf("%s: no success response", name)
		}
		public := op.Security != nil && len(*op.Security) == 0
		var want []string
		if !public {
			want = append(want, "401", "403", "429")
		}
		if strings.Contains(path, "{") {
			want = append(want, "404")
		}
		if op.RequestBody != nil {
			want = append(want, "400", "422")
		}
		for _, s := range want {
			if !has(s) {
				t.Errorf("%s: response %s is not documented", name, s)
			}
		}
	}
}

// walkRefs calls fn with every "$ref" value in v.
func walkRefs(v any, fn func(string)) {
	switch v := v.(type) {
	case map[string]any:
		for k, e := range v {
			if s, ok := e.(string); ok && k == "$ref" {
				fn(s)
			}
			walkRefs(e, fn)
		}
	case []any:
		for _, e := range v {
			walkRefs(e, fn)
		}
	}
}

// TestOpenAPIServed checks that GET /v1/openapi.json answers the embedded
// document without a key.
func TestOpenAPIServed(t *testing.T) {
	a := openapiAPI()
	rec := httptest.NewRecorder()
	a.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/v1/openapi.json", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("GET /v1/openapi.json = %d %s", rec.Code, rec.Body)
	}
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("content type %q", ct)
	}
	var got map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
		t.Fatalf("body is not JSON: %v", err)
	}
	if got["openapi"] != "3.1.0" || rec.Body.String() != openapiDoc {
		t.Errorf("served document differs from admin/openapi.json")
	}
}
