package admin_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/stratum-hq/stratum-proxy/admin"
	"github.com/stratum-hq/stratum-proxy/catalog"
)

// hostileSeedEnv names the environment variable that replays the hostile walk
// with another seed; the seed in use is always logged.
const hostileSeedEnv = "STRATUM_HOSTILE_SEED"

// hostileDefaultSeed keeps the walk the same from run to run unless
// hostileSeedEnv says otherwise.
const hostileDefaultSeed = 20240917

// hostileOutcome says which answers a hostile request may get. Every answer
// must be JSON; 1xx, 3xx and 5xx are never right, and neither are 401, 403
// and 429 (the walk uses the unbound bootstrap key with rate limiting off).
type hostileOutcome struct {
	// pass: the input is valid (or the route ignores the hostile part), so a
	// 2xx is right too, and may change the catalog.
	pass bool
	// errs lists the error statuses that are right; nil: any other 4xx.
	errs []int
}

func refused(statuses ...int) hostileOutcome { return hostileOutcome{errs: statuses} }

// mayPass accepts a 2xx, or one of statuses (any 4xx when none are given).
func mayPass(statuses ...int) hostileOutcome { return hostileOutcome{pass: true, errs: statuses} }

// hostileCase is one request of the walk.
type hostileCase struct {
	op     string // "METHOD /registered/pattern"
	label  string
	method string
	path   string // the raw path, sent byte for byte
	query  string // the raw query string, sent byte for byte
	body   []byte
	ctype  string // the Content-Type header; "" sends none
	want   hostileOutcome
	// check, when set, judges a 2xx answer further ("" when it is right).
	check func(body map[string]any) string
}

// hostileField is one member of a route's request body.
type hostileField struct {
	name  string
	valid string // a valid value, as JSON text
	// kinds lists the JSON kinds the handler's decoding takes (null always
	// is): s string, b boolean, i integer, a array of strings, * anything.
	// Any other kind must be refused with 400.
	kinds string
}

// hostileBody describes a route's request body: a valid object, member by
// member, and which kinds each member takes.
type hostileBody struct {
	fields []hostileField
	// specific are the route's own bad (and some good) bodies.
	specific []hostileBodyCase
	// batch marks PATCH .../config: a malformed member is reported per key in
	// a 200, not refused with a 400.
	batch bool
}

type hostileBodyCase struct {
	label string
	body  string
	want  hostileOutcome
	// notApplied: for a batch, the key a 2xx must report as not applied.
	notApplied string
}

// object is the valid body with the members in over replaced (or added, in
// the order of extra).
func (b hostileBody) object(over map[string]string, extra ...[2]string) string {
	var sb strings.Builder
	sb.WriteByte('{')
	n := 0
	add := func(name, value string) {
		if n > 0 {
			sb.WriteByte(',')
		}
		n++
		sb.WriteString(hostileQuote(name))
		sb.WriteByte(':')
		sb.WriteString(value)
	}
	for _, f := range b.fields {
		v := f.valid
		if o, ok := over[f.name]; ok {
			if o == "" {
				continue // left out
			}
			v = o
		}
		add(f.name, v)
	}
	for _, e := range extra {
		add(e[0], e[1])
	}
	sb.WriteByte('}')
	return sb.String()
}

// hostileQuote is s as a JSON string (without HTML escaping).
func hostileQuote(s string) string {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(s); err != nil {
		panic(err)
	}
	return strings.TrimSuffix(buf.String(), "\n")
}

// hostileKinds are the values swapped into every member, with their kind.
var hostileKinds = []struct{ raw, kind string }{
	{`1`, "int"}, {`-1`, "int"}, {`0`, "int"}, {`1.5`, "float"}, {`1e400`, "float"}, {`-1e400`, "float"},
	{`9223372036854775808`, "bigint"}, {`true`, "bool"}, {`false`, "bool"}, {`"s"`, "string"}, {`""`, "string"},
	{`"\u0000"`, "string"}, {`"\ud800"`, "string"}, {`[]`, "strings"}, {`["read"]`, "strings"}, {`[1]`, "array"},
	{`[[]]`, "array"}, {`{}`, "object"}, {`{"a":1}`, "object"}, {`null`, "null"},
}

// accepts reports whether a member of kinds decodes a value of kind.
func (f hostileField) accepts(kind string) bool {
	switch {
	case kind == "null" || f.kinds == "*":
		return true
	case kind == "string":
		return strings.Contains(f.kinds, "s")
	case kind == "bool":
		return strings.Contains(f.kinds, "b")
	case kind == "int":
		return strings.Contains(f.kinds, "i")
	case kind == "strings":
		return strings.Contains(f.kinds, "a")
	}
	return false
}

// hostileSnapshot is the catalog state a refused request must leave alone:
// a digest of every row of each table the API writes, and the audit log's
// length.
func hostileSnapshot(t *testing.T, db *pgx.Conn) []string {
	t.Helper()
	tables := []string{"tenants", "config_values", "permission_policies", "api_keys", "proxy_users", "database_map", "backend_credentials"}
	var parts []string
	for _, tb := range tables {
		parts = append(parts, `(SELECT '`+tb+` ' || md5(coalesce(string_agg(to_jsonb(x)::text, ',' ORDER BY to_jsonb(x)::text), '')) FROM `+
			pgx.Identifier{tb}.Sanitize()+` x)`)
	}
	parts = append(parts, `(SELECT 'audit_log rows ' || count(*) FROM audit_log)`)
	var out []string
	if err := db.QueryRow(context.Background(), `SELECT ARRAY[`+strings.Join(parts, ", ")+`]`).Scan(&out); err != nil {
		t.Fatalf("catalog snapshot: %v", err)
	}
	return out
}

// hostileAnswer is what the server said.
type hostileAnswer struct {
	status int
	header http.Header
	raw    []byte
	body   map[string]any
}

// TestHostileInputEveryRoute walks every registered route and method with
// the bootstrap key and hostile input: path values, query parameters,
// bodies, content types and methods. Every answer must be JSON with the JSON
// content type; bad input must get a 4xx with a {"error":{code,message}} body
// (the right status where the walk can tell), never a 5xx, a redirect or a
// panic; and a request that is not answered 2xx must leave the catalog
// exactly as it was (checked after every request). The walk is generated
// from a seed (logged; set STRATUM_HOSTILE_SEED to replay another) that
// picks the random values and the order of the requests.
func TestHostileInputEveryRoute(t *testing.T) {
	t.Parallel()
	seed := uint64(hostileDefaultSeed)
	if v := os.Getenv(hostileSeedEnv); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("%s=%q: %v", hostileSeedEnv, v, err)
		}
		seed = n
	}
	t.Logf("hostile walk seed %d (replay with %s=%d)", seed, hostileSeedEnv, seed)
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))

	s := newStack(t)
	ctx := context.Background()
	db := s.catalogConn(t)
	// The tree:  hz_root ─┬─ hz_a ── hz_a1
	//                     ├─ hz_b
	//                     ├─ hz_c
	//                     ├─ hz_life  (lifecycle routes churn its status)
	//                     └─ hz_mover ── hz_mover1  (the move route moves hz_mover)
	root := ctlTenant(t, s, "hz_root", "")
	ta := ctlTenant(t, s, "hz_a", "hz_root")
	ctlTenant(t, s, "hz_a1", "hz_a")
	ctlTenant(t, s, "hz_b", "hz_root")
	ctlTenant(t, s, "hz_c", "hz_root")
	life := ctlTenant(t, s, "hz_life", "hz_root")
	mover := ctlTenant(t, s, "hz_mover", "hz_root")
	mover1 := ctlTenant(t, s, "hz_mover1", "hz_mover")
	t.Cleanup(func() { s.srv.Exec(t, s.catdb, `DELETE FROM api_keys WHERE tenant_id IS NOT NULL`) })
	for _, c := range []struct {
		tenant, key string
		v           catalog.ConfigValue
	}{
		{root.ID, "region", catalog.ConfigValue{Value: json.RawMessage(`"eu"`), Locked: true}},
		{root.ID, "hz.secret", catalog.ConfigValue{Value: json.RawMessage(`"hunter2"`), Sensitive: true}},
		{ta.ID, "hz.key", catalog.ConfigValue{Value: json.RawMessage(`{"n":1}`)}},
		{life.ID, "hz.key", catalog.ConfigValue{Value: json.RawMessage(`2`)}},
	} {
		if err := s.cat.SetConfig(ctx, c.tenant, c.key, c.v); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range []struct{ tenant, key, value string }{
		{root.ID, "hz.perm", `true`}, {ta.ID, "hz.perm", `true`}, {root.ID, "sql.write", `true`},
	} {
		if _, err := s.cat.SetPermission(ctx, p.tenant, catalog.PermissionPolicy{Key: p.key, Value: json.RawMessage(p.value),
			Mode: catalog.PolicyDelegated, Revocation: catalog.RevokeSoft}); err != nil {
			t.Fatal(err)
		}
	}
	idKey, _ := ctlKey(t, s, catalog.NewAPIKey{Name: "hz reader", Scopes: []string{"read"}, TenantID: &ta.ID})
	rotKey, _ := ctlKey(t, s, catalog.NewAPIKey{Name: "hz rotated", Scopes: []string{"read"}, TenantID: &life.ID})
	if _, err := s.cat.CreateUser(ctx, "hz_user", "hz-password", ta.ID, false); err != nil {
		t.Fatal(err)
	}

	api := admin.New(admin.Config{BootstrapKey: bootstrapKey, RateLimit: -1}, s.p)
	hs := httptest.NewServer(api)
	t.Cleanup(hs.Close)
	client := &http.Client{
		Timeout:       2 * time.Minute,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	send := func(c hostileCase) (hostileAnswer, error) {
		var rd io.Reader
		if c.body != nil {
			rd = bytes.NewReader(c.body)
		}
		req, err := http.NewRequest(c.method, hs.URL, rd)
		if err != nil {
			return hostileAnswer{}, err
		}
		req.URL.Opaque = c.path // sent as is: no cleaning, no re-escaping
		req.URL.RawQuery = c.query
		req.Header.Set("Authorization", "Bearer "+bootstrapKey)
		if c.ctype != "" {
			req.Header.Set("Content-Type", c.ctype)
		}
		res, err := client.Do(req)
		if err != nil {
			return hostileAnswer{}, err
		}
		defer res.Body.Close()
		raw, err := io.ReadAll(res.Body)
		if err != nil {
			return hostileAnswer{}, err
		}
		return hostileAnswer{status: res.StatusCode, header: res.Header, raw: raw}, nil
	}
	// Real cursors of three listings, to hand each to the others.
	cursorOf := func(path, query string) string {
		t.Helper()
		a, err := send(hostileCase{method: "GET", path: path, query: query})
		if err != nil || a.status != 200 {
			t.Fatalf("GET %s?%s: %v %d %s", path, query, err, a.status, a.raw)
		}
		var body struct {
			NextCursor *string `json:"next_cursor"`
		}
		if err := json.Unmarshal(a.raw, &body); err != nil || body.NextCursor == nil {
			t.Fatalf("GET %s?%s: no next cursor in %s", path, query, a.raw)
		}
		return *body.NextCursor
	}
	cursors := map[string]string{
		"path":     cursorOf("/v1/tenants", "limit=1"),
		"children": cursorOf("/v1/tenants/"+root.ID+"/children", "limit=1"),
		"audit":    cursorOf("/v1/audit", "limit=1"),
	}

	// The random parts, all drawn from rng.
	randUUID := func() string {
		var b [16]byte
		for i := range b {
			b[i] = byte(rng.UintN(256))
		}
		b[6] = b[6]&0x0f | 0x40
		b[8] = b[8]&0x3f | 0x80
		h := fmt.Sprintf("%x", b[:])
		return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
	}
	runeRanges := [][2]rune{{0x20, 0x7e}, {0xa0, 0x24f}, {0x300, 0x36f}, {0x400, 0x4ff}, {0x590, 0x6ff},
		{0x200b, 0x200f}, {0x202a, 0x202e}, {0x3040, 0x30ff}, {0x4e00, 0x4fff}, {0xfe00, 0xfe0f}, {0x1f600, 0x1f64f}}
	randText := func(n int) string {
		var sb strings.Builder
		for range n {
			r := runeRanges[rng.IntN(len(runeRanges))]
			sb.WriteRune(r[0] + rune(rng.IntN(int(r[1]-r[0]+1))))
		}
		return sb.String()
	}
	randBytes := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.UintN(256))
		}
		return b
	}
	b64 := base64.RawURLEncoding.EncodeToString

	const jsonType = "application/json"
	unknownUpper := strings.ToUpper(randUUID())
	tenK := strings.Repeat("a", 10<<10)
	deep := func(n int) string { return strings.Repeat("[", n) + strings.Repeat("]", n) }
	deepObj := func(n int) string { return strings.Repeat(`{"a":`, n) + "1" + strings.Repeat("}", n) }

	// Hostile path segments, raw (as they appear in the request line).
	// dotty ones are not canonical paths: refused before routing.
	type segment struct {
		raw   string
		dotty bool
	}
	segments := []segment{
		{raw: "nope_unknown"}, {raw: "00000000-0000-4000-8000-00000000000g"}, {raw: "0000000-0000-4000-8000-000000000000"},
		{raw: "%7B" + randUUID() + "%7D"}, {raw: unknownUpper}, {raw: randUUID()}, {raw: strings.ReplaceAll(randUUID(), "-", "")},
		{raw: tenK}, {raw: url.PathEscape(randText(2000))}, {raw: url.PathEscape("tenänt")}, {raw: url.PathEscape("テナント🙂")},
		{raw: url.PathEscape("\u202eevil")}, {raw: "%00"}, {raw: "a%00b"}, {raw: "%2e%2e"}, {raw: "%2E"}, {raw: "..", dotty: true},
		{raw: ".", dotty: true}, {raw: "", dotty: true}, {raw: "%20"}, {raw: "a%20b"}, {raw: "+"}, {raw: "a;b"},
		{raw: url.PathEscape("'; DROP TABLE tenants; --")}, {raw: url.PathEscape("1' OR '1'='1")}, {raw: "%22"}, {raw: "%5C"},
		{raw: "%2F"}, {raw: "a%2Fb"}, {raw: "%FF"}, {raw: "%C0%AE"}, {raw: "%25"}, {raw: "%2500"}, {raw: "HZ_A"},
		{raw: url.PathEscape(randText(12))}, {raw: url.PathEscape(randText(40))},
	}
	keySegments := []segment{
		{raw: "Region"}, {raw: "region."}, {raw: ".region"}, {raw: "a..b"}, {raw: "a.b.c.d.e.f.g.h.i"}, {raw: "1abc"},
		{raw: "a-b"}, {raw: "_a"}, {raw: strings.Repeat("a", 64)}, {raw: strings.TrimSuffix(strings.Repeat("abcdefghij.", 20), ".")},
		{raw: url.PathEscape("ключ")}, {raw: "region%00"}, {raw: "re%0Agion"}, {raw: "REGION"}, {raw: "proxy..read_only"},
	}
	unescape := func(raw string) string {
		if v, err := url.PathUnescape(raw); err == nil {
			return v
		}
		return raw
	}

	// What each route takes in its query string: reads lists the parameters
	// it reads; strict routes refuse malformed query strings and parameters
	// they do not read, with 400; the others ignore them. cursor is the kind
	// of cursor a listing hands out.
	type querySpec struct {
		reads  []string
		strict bool
		cursor string
	}
	querySpecs := map[string]querySpec{
		"/v1/tenants":                   {reads: []string{"limit", "cursor"}, strict: true, cursor: "path"},
		"/v1/tenants/{ref}/children":    {reads: []string{"limit", "cursor"}, strict: true, cursor: "children"},
		"/v1/tenants/{ref}/descendants": {reads: []string{"limit", "cursor"}, strict: true, cursor: "path"},
		"/v1/config/diff":               {reads: []string{"a", "b"}, strict: true},
		"/v1/keys":                      {reads: []string{"include_revoked"}, strict: true},
		"/v1/audit":                     {reads: []string{"tenant", "subtree", "action", "actor", "since", "until", "limit", "cursor"}, strict: true, cursor: "audit"},
		"/v1/audit/verify":              {strict: true},
		"/v1/moves":                     {reads: []string{"tenant", "limit"}, strict: true},
	}
	// The query every route needs to answer 2xx (added to the hostile ones).
	baseQuery := map[string]string{"/v1/config/diff": "a=" + ta.ID + "&b=" + root.ID}

	// The request bodies of the routes that take one.
	taID, rootID := hostileQuote(ta.ID), hostileQuote(root.ID)
	bodies := map[string]hostileBody{
		"POST /v1/tenants": {
			fields: []hostileField{{"slug", `"hz_made"`, "s"}, {"name", `"Made"`, "s"}, {"parent", rootID, "s"},
				{"isolation", `"shared"`, "s"}, {"backend", `""`, "s"}, {"pool_mode", `""`, "s"}},
		},
		"PATCH /v1/tenants/{ref}": {
			fields: []hostileField{{"slug", `"hz_a"`, "s"}, {"name", `"Renamed"`, "s"}},
		},
		"POST /v1/tenants/{ref}/move": {
			fields: []hostileField{{"parent", rootID, "s"}},
		},
		"POST /v1/tenants/{ref}/pause": {
			fields: []hostileField{{"reason", `"hz"`, "s"}},
		},
		// hz_a is shared already: the valid body is refused with 409
		// (no move starts in the walk); the engine is e2e/moves' to test.
		"POST /v1/tenants/{ref}/placement": {
			fields: []hostileField{{"isolation", `"shared"`, "s"}, {"backend", `""`, "s"}},
		},
		"PATCH /v1/tenants/{ref}/config": {
			batch:  true,
			fields: []hostileField{{"hz.batch", `{"value":"v"}`, "*"}},
		},
		"PUT /v1/tenants/{ref}/config/{key}": {
			fields: []hostileField{{"value", `"v"`, "*"}, {"locked", `false`, "b"}, {"sensitive", `false`, "b"}},
		},
		"PUT /v1/tenants/{ref}/permissions/{key}": {
			fields: []hostileField{{"value", `true`, "*"}, {"mode", `"DELEGATED"`, "s"}, {"revocation", `"SOFT"`, "s"}},
		},
		"POST /v1/users": {
			fields: []hostileField{{"name", `"hz_made_user"`, "s"}, {"password", `"hostile-password"`, "s"},
				{"tenant", taID, "s"}, {"can_switch", `false`, "b"}},
		},
		"PATCH /v1/users/{name}": {
			fields: []hostileField{{"password", `"hostile-password-2"`, "s"}, {"can_switch", `false`, "b"}},
		},
		"POST /v1/keys": {
			fields: []hostileField{{"name", `"hz made"`, "s"}, {"scopes", `["read"]`, "a"}, {"tenant", taID, "s"},
				{"rate_limit", `100`, "i"}},
		},
	}
	with := func(op string, over map[string]string, extra ...[2]string) string {
		return bodies[op].object(over, extra...)
	}
	big := strings.Repeat("x", 70<<10)
	{
		op := "POST /v1/tenants"
		b := bodies[op]
		for _, c := range []struct {
			field, value string
			want         hostileOutcome
		}{
			{"slug", `"Bad_Slug"`, refused(422)}, {"slug", `"a b"`, refused(422)}, {"slug", hostileQuote(tenK), refused(422)},
			{"slug", hostileQuote("'; DROP TABLE tenants; --"), refused(422)}, {"slug", `"tenänt"`, refused(422)},
			{"slug", `""`, refused(422)}, {"slug", `"hz_root"`, refused(409)}, {"slug", `"hz\u0000"`, refused(422)},
			{"slug", "", refused(422)}, {"name", hostileQuote(strings.Repeat("n", 201)), refused(422)},
			{"name", hostileQuote(randText(5000)), refused(422)}, {"name", `"a\u0000b"`, refused(422)},
			{"parent", `"nope_unknown"`, refused(404)}, {"parent", `"00000000-0000-4000-8000-00000000000g"`, refused(404)},
			{"parent", hostileQuote(unknownUpper), refused(404)}, {"parent", `"\u0000"`, refused(422)},
			{"parent", hostileQuote(tenK), refused(404)}, {"isolation", `"galaxy"`, refused(422)},
			{"isolation", `"SHARED"`, refused(422)}, {"pool_mode", `"x"`, refused(422)}, {"backend", `"mars"`, refused(422)},
		} {
			b.specific = append(b.specific, hostileBodyCase{label: c.field + "=" + hostileClip(c.value), body: with(op, map[string]string{c.field: c.value}), want: c.want})
		}
		bodies[op] = b
	}
	{
		op := "PATCH /v1/tenants/{ref}"
		b := bodies[op]
		for _, c := range []struct {
			body string
			want hostileOutcome
		}{
			{`{"slug":"hz_root"}`, refused(409)}, {`{"slug":"Bad"}`, refused(422)}, {`{"slug":""}`, refused(422)},
			{`{"slug":` + hostileQuote(tenK) + `}`, refused(422)}, {`{"name":""}`, refused(422)},
			{`{"name":` + hostileQuote(strings.Repeat("n", 201)) + `}`, refused(422)}, {`{"name":"a\u0000"}`, refused(422)},
			{`{"slug":null,"name":null}`, refused(422)}, {`{"slug":"'; DROP TABLE tenants; --"}`, refused(422)},
		} {
			b.specific = append(b.specific, hostileBodyCase{label: hostileClip(c.body), body: c.body, want: c.want})
		}
		bodies[op] = b
	}
	{
		op := "POST /v1/tenants/{ref}/move"
		b := bodies[op]
		for _, c := range []struct {
			body string
			want hostileOutcome
		}{
			{`{"parent":` + hostileQuote(mover.ID) + `}`, refused(409)}, {`{"parent":` + hostileQuote(mover1.ID) + `}`, refused(409)},
			{`{"parent":"hz_mover1"}`, refused(409)}, {`{"parent":"nope_unknown"}`, refused(404)}, {`{"parent":""}`, refused(422)},
			{`{"parent":` + hostileQuote(unknownUpper) + `}`, refused(404)}, {`{"parent":"\u0000"}`, refused(404)},
			{`{"parent":` + hostileQuote(tenK) + `}`, refused(404)}, {`{}`, refused(422)},
		} {
			b.specific = append(b.specific, hostileBodyCase{label: hostileClip(c.body), body: c.body, want: c.want})
		}
		bodies[op] = b
	}
	// Config values: some PostgreSQL's jsonb refuses, some it takes.
	jsonbRefused := []string{`1e1000000`, `-1e1000000`, `1e-1000000`, `"\ud800"`, `"a\udc00b"`, `{"\ud800":1}`,
		`"\u0000"`, `{"a\u0000":1}`, `["\u0000"]`, hostileQuote(big)}
	jsonbTaken := []string{`1e400`, `-5`, `0.1e-300`, `"ünïcödé 🙂 \u202e"`, `"\ud83d\ude00"`, deep(catalog.MaxValueDepth),
		deepObj(catalog.MaxValueDepth), `{"a":{"b":[1,2,{"c":null}]}}`, `[]`, `{}`, `""`, `false`,
		hostileQuote(strings.Repeat("y", 60<<10)), `"` + strings.Repeat(`[{\"`, 5000) + `"`}
	// Values nested deeper than the catalog takes (PostgreSQL and encoding/json
	// would take them, but answers showing them would be too deep to decode).
	tooDeep := []string{deep(catalog.MaxValueDepth + 1), deepObj(catalog.MaxValueDepth + 1), deep(9990), deepObj(5000),
		`{"a":[` + deep(catalog.MaxValueDepth) + `]}`}
	jsonbRefused = append(jsonbRefused, tooDeep...)
	{
		op := "PUT /v1/tenants/{ref}/config/{key}"
		b := bodies[op]
		for _, v := range jsonbRefused {
			b.specific = append(b.specific, hostileBodyCase{label: "value " + hostileClip(v), body: with(op, map[string]string{"value": v}), want: refused(422)})
		}
		for _, v := range jsonbTaken {
			b.specific = append(b.specific, hostileBodyCase{label: "value " + hostileClip(v), body: with(op, map[string]string{"value": v}), want: mayPass()})
		}
		for _, c := range []struct {
			body string
			want hostileOutcome
		}{
			{`{"value":null}`, refused(422)}, {`{"locked":true}`, refused(422)}, {`{"value":{"a":1,"a":2}}`, refused(400)},
			{`{"value":` + deep(9999) + `}`, refused(422)}, {`{"value":` + deep(10000) + `}`, refused(400)},
			{`{"value":"v","locked":"true"}`, refused(400)}, {`{"value":"v","sensitive":1}`, refused(400)},
		} {
			b.specific = append(b.specific, hostileBodyCase{label: hostileClip(c.body), body: c.body, want: c.want})
		}
		bodies[op] = b
	}
	{
		op := "PATCH /v1/tenants/{ref}/config"
		b := bodies[op]
		many := make([]string, 1001)
		for i := range many {
			many[i] = fmt.Sprintf(`"k%d":null`, i)
		}
		b.specific = append(b.specific,
			hostileBodyCase{label: "empty batch", body: `{}`, want: refused(422)},
			hostileBodyCase{label: "1001 keys", body: "{" + strings.Join(many, ",") + "}", want: refused(422)},
			hostileBodyCase{label: "delete unset", body: `{"hz.unset":null}`, want: mayPass(), notApplied: "hz.unset"},
			hostileBodyCase{label: "bad key", body: `{"Bad.Key":{"value":1}}`, want: mayPass(), notApplied: "Bad.Key"},
			hostileBodyCase{label: "NUL key", body: `{"a\u0000":{"value":1}}`, want: mayPass(), notApplied: "a\x00"},
			hostileBodyCase{label: "10 KB key", body: `{` + hostileQuote(tenK) + `:{"value":1}}`, want: mayPass(), notApplied: tenK},
			hostileBodyCase{label: "unknown member", body: `{"hz.batch":{"value":1,"zzz":1}}`, want: mayPass(), notApplied: "hz.batch"},
			hostileBodyCase{label: "locked as string", body: `{"hz.batch":{"value":1,"locked":"yes"}}`, want: mayPass(), notApplied: "hz.batch"},
			hostileBodyCase{label: "locked region", body: `{"region":{"value":"us"}}`, want: mayPass(), notApplied: "region"},
			hostileBodyCase{label: "duplicate keys", body: `{"hz.batch":{"value":1},"hz.batch":null}`, want: refused(400)},
			hostileBodyCase{label: "proxy key", body: `{"proxy.max_connections":{"value":"abc"}}`, want: mayPass(), notApplied: "proxy.max_connections"},
		)
		for _, v := range jsonbRefused {
			b.specific = append(b.specific, hostileBodyCase{label: "value " + hostileClip(v), body: `{"hz.batch":{"value":` + v + `}}`,
				want: mayPass(), notApplied: "hz.batch"})
		}
		for _, v := range jsonbTaken {
			b.specific = append(b.specific, hostileBodyCase{label: "value " + hostileClip(v), body: `{"hz.batch":{"value":` + v + `}}`, want: mayPass()})
		}
		for _, k := range hostileKinds {
			if k.kind != "object" && k.kind != "null" {
				b.specific = append(b.specific, hostileBodyCase{label: "member " + k.raw, body: `{"hz.batch":` + k.raw + `}`,
					want: mayPass(), notApplied: "hz.batch"})
			}
		}
		bodies[op] = b
	}
	{
		op := "PUT /v1/tenants/{ref}/permissions/{key}"
		b := bodies[op]
		for _, c := range []struct {
			field, value string
			want         hostileOutcome
		}{
			{"mode", `"locked"`, refused(422)}, {"mode", `""`, refused(422)}, {"mode", `"LOCKED "`, refused(422)},
			{"revocation", `"NEVER"`, refused(422)}, {"revocation", `"\u0000"`, refused(422)}, {"value", "", refused(422)},
			{"value", `1`, refused(422)}, {"value", `"true"`, refused(422)}, {"value", `{"a":1,"a":2}`, refused(400)},
		} {
			b.specific = append(b.specific, hostileBodyCase{label: c.field + "=" + hostileClip(c.value), body: with(op, map[string]string{c.field: c.value}), want: c.want})
		}
		for _, v := range jsonbRefused {
			// Refused as invalid, or as a widening of the delegated true.
			b.specific = append(b.specific, hostileBodyCase{label: "value " + hostileClip(v), body: with(op, map[string]string{"value": v}), want: refused(422)})
		}
		bodies[op] = b
	}
	{
		op := "POST /v1/users"
		b := bodies[op]
		for _, c := range []struct {
			field, value string
			want         hostileOutcome
		}{
			{"name", `""`, refused(422)}, {"name", hostileQuote(strings.Repeat("u", 64)), refused(422)},
			{"name", `"u\u0000"`, refused(422)}, {"name", `"hz_user"`, refused(409)}, {"password", `"abc"`, refused(422)},
			{"password", `"pass\u0007word"`, refused(422)}, {"password", `"pass\u0000word"`, refused(422)},
			{"tenant", `"nope_unknown"`, refused(404)}, {"tenant", `""`, refused(422)}, {"tenant", "", refused(422)},
			{"tenant", hostileQuote(unknownUpper), refused(404)}, {"tenant", hostileQuote(tenK), refused(404)},
		} {
			b.specific = append(b.specific, hostileBodyCase{label: c.field + "=" + hostileClip(c.value), body: with(op, map[string]string{c.field: c.value}), want: c.want})
		}
		bodies[op] = b
	}
	{
		op := "POST /v1/keys"
		b := bodies[op]
		for _, c := range []struct {
			field, value string
			want         hostileOutcome
		}{
			{"name", `""`, refused(422)}, {"name", hostileQuote(tenK), refused(422)}, {"name", `"k\u0000"`, refused(422)},
			{"scopes", `[]`, refused(422)}, {"scopes", `["root"]`, refused(422)}, {"scopes", `["READ"]`, refused(422)},
			{"scopes", `["read",1]`, refused(400)}, {"scopes", "", refused(422)}, {"rate_limit", `0`, refused(422)},
			{"rate_limit", `-1`, refused(422)}, {"rate_limit", `1000001`, refused(422)}, {"rate_limit", `1e400`, refused(400)},
			{"rate_limit", `1.5`, refused(400)}, {"rate_limit", `9223372036854775808`, refused(400)},
			{"tenant", `"nope_unknown"`, refused(404)}, {"tenant", `1`, refused(400)}, {"tenant", `"\u0000"`, refused(422)},
			{"tenant", hostileQuote(unknownUpper), refused(404)},
		} {
			b.specific = append(b.specific, hostileBodyCase{label: c.field + "=" + hostileClip(c.value), body: with(op, map[string]string{c.field: c.value}), want: c.want})
		}
		bodies[op] = b
	}

	// Where each placeholder points when it is not the hostile part.
	validFill := func(op string) map[string]string {
		f := map[string]string{"{ref}": ta.ID, "{id}": idKey.ID, "{key}": "hz.key", "{name}": "hz_user"}
		switch {
		case strings.Contains(op, "/databases/"):
			f["{name}"] = "hz_db"
		case strings.HasPrefix(op, "DELETE /v1/users/"):
			f["{name}"] = "hz_no_such_user"
		case strings.Contains(op, "/suspend"), strings.Contains(op, "/resume"), strings.Contains(op, "/archive"):
			f["{ref}"] = life.ID
		case strings.Contains(op, "/move"):
			f["{ref}"] = mover.ID
		case strings.Contains(op, "/permissions/"):
			f["{key}"] = "hz.perm"
		case strings.HasSuffix(op, "/rotate"), strings.HasPrefix(op, "DELETE /v1/keys/"):
			f["{id}"] = rotKey.ID
		}
		return f
	}
	placeholder := regexp.MustCompile(`\{[a-z_]+\}`)
	fill := func(pattern string, f map[string]string) string {
		return placeholder.ReplaceAllStringFunc(pattern, func(m string) string {
			v, ok := f[m]
			if !ok {
				t.Errorf("route %s: the walk does not know placeholder %s; teach it", pattern, m)
			}
			return v
		})
	}

	var cases []hostileCase
	add := func(c hostileCase) {
		if c.ctype == "" && c.body != nil {
			c.ctype = jsonType
		}
		cases = append(cases, c)
	}
	knownNoBody := map[string]bool{}
	for _, op := range []string{
		"GET /healthz", "GET /readyz", "GET /metrics", "GET /v1/openapi.json", "GET /v1/tenants", "GET /v1/tenants/{ref}",
		"POST /v1/tenants/{ref}/suspend", "POST /v1/tenants/{ref}/resume", "POST /v1/tenants/{ref}/archive",
		"POST /v1/tenants/{ref}/unpause", "GET /v1/tenants/{ref}/children", "GET /v1/tenants/{ref}/ancestors", "GET /v1/tenants/{ref}/descendants",
		"GET /v1/tenants/{ref}/config", "GET /v1/tenants/{ref}/config/{key}", "DELETE /v1/tenants/{ref}/config/{key}",
		"GET /v1/config/diff", "POST /v1/config/rotate-keys", "GET /v1/tenants/{ref}/permissions",
		"GET /v1/tenants/{ref}/permissions/{key}", "DELETE /v1/tenants/{ref}/permissions/{key}", "GET /v1/keys",
		"GET /v1/keys/{id}", "DELETE /v1/keys/{id}", "POST /v1/keys/{id}/rotate", "GET /v1/audit", "GET /v1/audit/verify",
		"GET /v1/users", "GET /v1/users/{name}", "DELETE /v1/users/{name}",
		"PUT /v1/tenants/{ref}/databases/{name}", "DELETE /v1/tenants/{ref}/databases/{name}",
		"GET /v1/moves", "GET /v1/moves/{id}", "POST /v1/moves/{id}/cancel", "POST /v1/moves/{id}/finalize", "POST /v1/moves/{id}/revert",
	} {
		knownNoBody[op] = true
	}

	routes := api.Routes()
	ops := map[string]bool{}
	for _, route := range routes {
		for _, method := range route.Methods {
			op := method + " " + route.Path
			ops[op] = true
			spec, hasBody := bodies[op]
			if !hasBody && !knownNoBody[op] {
				t.Errorf("route %s is new to the hostile walk: add its body (or no body) to the tables", op)
				continue
			}
			valid := validFill(op)
			path := fill(route.Path, valid)
			q := baseQuery[route.Path]
			var validBody []byte
			if hasBody {
				validBody = []byte(spec.object(nil))
			}

			// Path values.
			for _, slot := range placeholder.FindAllString(route.Path, -1) {
				list := segments
				if slot == "{key}" {
					list = append(slices.Clone(segments), keySegments...)
				}
				for _, seg := range list {
					f := hostileCopy(valid)
					f[slot] = seg.raw
					want := refused(404)
					switch {
					case seg.dotty:
						want = refused(400, 404)
					case slot == "{key}" && strings.Contains(unescape(seg.raw), "/"):
						want = refused(404, 422) // an escaped slash: no such route, or a bad key
					case slot == "{key}" && strings.Contains(route.Path, "/permissions/"):
						want = refused(422)
						if catalog.ValidPermissionKey(unescape(seg.raw)) {
							want = mayPass(404)
						}
					case slot == "{name}" && strings.Contains(route.Path, "/databases/"):
						want = mayPass(404, 422) // any name up to 63 bytes may be mapped
					case slot == "{key}":
						want = refused(422)
						if catalog.ValidConfigKey(unescape(seg.raw)) {
							want = mayPass(404)
						}
					}
					add(hostileCase{op: op, label: slot + "=" + hostileClip(seg.raw), method: method, path: fill(route.Path, f),
						query: q, body: validBody, want: want})
				}
			}

			// Query parameters (GET routes).
			if method == http.MethodGet {
				qs := querySpecs[route.Path]
				join := func(extra string) string {
					if q == "" {
						return extra
					}
					return q + "&" + extra
				}
				// outcome of a query naming params with values that are bad
				// for a route reading them (or good, when bad is false).
				outcome := func(params []string, bad, malformed bool) hostileOutcome {
					if malformed {
						if qs.strict {
							return refused(400)
						}
						return mayPass()
					}
					for _, p := range params {
						if !slices.Contains(qs.reads, p) {
							if qs.strict {
								return refused(400)
							}
							if !bad {
								return mayPass()
							}
						}
					}
					if bad && slices.ContainsFunc(params, func(p string) bool { return slices.Contains(qs.reads, p) }) {
						return refused(400)
					}
					return mayPass()
				}
				type qc struct {
					q         string
					params    []string
					bad       bool
					malformed bool
				}
				var qcs []qc
				for _, v := range []string{"-1", "0", "1e9", "abc", "501", "1.5", "%00", "99999999999999999999999", "%201", "0x10", "1%2C2"} {
					qcs = append(qcs, qc{q: "limit=" + v, params: []string{"limit"}, bad: true})
				}
				qcs = append(qcs, qc{q: "limit=", params: []string{"limit"}}, qc{q: "limit=2", params: []string{"limit"}})
				garbage := []string{b64(randBytes(1 + rng.IntN(64))), b64(randBytes(1 + rng.IntN(64))), b64(randBytes(200)),
					b64([]byte(`{}`)), b64([]byte(`{"p":1}`)), b64([]byte(`{"p":"../.."}`)), b64([]byte(`[]`)), b64([]byte(`null`)),
					b64([]byte(`{"s":"Zz","i":"x"}`)), b64([]byte(`{"p":"` + strings.Repeat("0", 16) + `","s":"a"}`)),
					b64([]byte("audit:-5")), b64([]byte("audit:abc")), b64([]byte("audit:99999999999999999999")),
					b64([]byte(`{"p":"zz` + strings.Repeat("0", 14) + `"}`)), base64.StdEncoding.EncodeToString([]byte(`{"p":"x"}`)),
					"!!!", "%00", "%FF", tenK, url.QueryEscape(randText(30))}
				for _, c := range garbage {
					qcs = append(qcs, qc{q: "cursor=" + c, params: []string{"cursor"}, bad: true})
				}
				qcs = append(qcs, qc{q: "cursor=", params: []string{"cursor"}})
				for kind, c := range cursors {
					qcs = append(qcs, qc{q: "cursor=" + url.QueryEscape(c), params: []string{"cursor"}, bad: kind != qs.cursor})
				}
				for _, v := range []string{"yesterday", "2025-13-01T00:00:00Z", "2025-01-01", "0000-01-01T00:00:00Z",
					"10000-01-01T00:00:00Z", "2025-01-01T00:00:00%2B25:00", "1e9", "%00", "2025-02-30T00:00:00Z", "2025-01-01T24:00:00Z"} {
					qcs = append(qcs, qc{q: "since=" + v, params: []string{"since"}, bad: true}, qc{q: "until=" + v, params: []string{"until"}, bad: true})
				}
				qcs = append(qcs,
					qc{q: "since=2025-06-01T00:00:00Z&until=2025-01-01T00:00:00Z", params: []string{"since", "until"}, bad: true},
					qc{q: "since=2025-01-01T00:00:00+00:00", params: []string{"since"}},
					qc{q: "limit=5&limit=abc", params: []string{"limit"}, bad: true},
					qc{q: "limit=5&limit=5", params: []string{"limit"}, bad: true},
					qc{q: "cursor=&cursor=x", params: []string{"cursor"}, bad: true},
					qc{q: "zzz=1", params: []string{"zzz"}},
					qc{q: "LIMIT=5", params: []string{"LIMIT"}},
					qc{q: "limit%5B%5D=5", params: []string{"limit[]"}},
					qc{q: "%00=1", params: []string{"\x00"}},
					qc{q: "=1", params: []string{""}},
					qc{q: tenK + "=1", params: []string{tenK}},
					qc{q: "limit=%zz", malformed: true},
					qc{q: "%zz=1", malformed: true},
					qc{q: "limit=1;cursor=x", malformed: true},
				)
				for _, c := range qcs {
					add(hostileCase{op: op, label: "?" + hostileClip(c.q), method: method, path: path, query: join(c.q),
						want: outcome(c.params, c.bad, c.malformed)})
				}
				// The routes' own parameters.
				var own []hostileCase
				switch route.Path {
				case "/v1/audit":
					for _, c := range []struct {
						q    string
						want hostileOutcome
					}{
						{"tenant=nope_unknown", refused(404)}, {"tenant=%00", refused(404)}, {"tenant=" + unknownUpper, mayPass()},
						{"tenant=", refused(400)}, {"tenant=" + tenK, refused(404)}, {"tenant=hz_a&tenant=hz_b", refused(400)},
						{"tenant=" + url.QueryEscape("'; DROP TABLE audit_log; --"), refused(404)},
						{"subtree=maybe&tenant=hz_a", refused(400)}, {"subtree=true", refused(400)}, {"subtree=1&tenant=hz_a", mayPass()},
						{"action=" + url.QueryEscape("DROP TABLE"), refused(400)}, {"action=" + url.QueryEscape("config.*"), mayPass()},
						{"action=*", refused(400)}, {"action=" + strings.Repeat("a", 201), refused(400)}, {"action=", refused(400)},
						{"actor=%FF", refused(400)}, {"actor=%C3%28", refused(400)}, {"actor=a%00b", refused(400)},
						{"actor=" + tenK, refused(400)}, {"actor=", refused(400)}, {"actor=bootstrap", mayPass()},
						{"actor=" + url.QueryEscape("'; DROP TABLE audit_log; --"), mayPass()},
						{"actor=" + url.QueryEscape(randText(20)), mayPass()},
					} {
						own = append(own, hostileCase{label: "?" + hostileClip(c.q), query: c.q, want: c.want})
					}
				case "/v1/config/diff":
					for _, c := range []struct {
						q    string
						want hostileOutcome
					}{
						{"", refused(400)}, {"a=" + ta.ID, refused(400)}, {"b=" + ta.ID, refused(400)}, {"a=&b=", refused(400)},
						{"a=nope_unknown&b=" + ta.ID, refused(404)}, {"a=" + ta.ID + "&b=" + unknownUpper, refused(404)},
						{"a=%00&b=%00", refused(404)}, {"a=" + tenK + "&b=" + tenK, refused(404)},
						{"a=" + ta.ID + "&b=" + ta.ID, mayPass()}, {"a=hz_a&b=HZ_A", refused(404)},
						{"a=hz_a&b=hz_b&a=hz_c", refused(400)}, {"a=hz_a&b=hz_b&zzz=1", refused(400)},
						{"a=" + url.QueryEscape("'; DROP TABLE tenants; --") + "&b=hz_a", refused(404)},
					} {
						own = append(own, hostileCase{label: "own ?" + hostileClip(c.q), query: c.q, want: c.want})
					}
				case "/v1/keys":
					for _, c := range []struct {
						q    string
						want hostileOutcome
					}{
						{"include_revoked=maybe", refused(400)}, {"include_revoked=", refused(400)}, {"include_revoked=1", mayPass()},
						{"include_revoked=true&include_revoked=false", refused(400)}, {"include_revoked=%00", refused(400)},
					} {
						own = append(own, hostileCase{label: "?" + hostileClip(c.q), query: c.q, want: c.want})
					}
				}
				for _, c := range own {
					c.op, c.method, c.path = op, method, path
					add(c)
				}
			}

			// Bodies.
			if hasBody {
				for _, c := range spec.specific {
					hc := hostileCase{op: op, label: "body " + c.label, method: method, path: path, query: q, body: []byte(c.body), want: c.want}
					if key := c.notApplied; key != "" {
						hc.check = func(body map[string]any) string {
							applied, _ := body["applied"].([]any)
							errs, _ := body["errors"].(map[string]any)
							if slices.Contains(applied, any(key)) || errs[key] == nil {
								return fmt.Sprintf("key %q should be refused in the batch", hostileClip(key))
							}
							return ""
						}
					}
					add(hc)
				}
				// Wrong kinds in every member.
				for _, f := range spec.fields {
					for _, k := range hostileKinds {
						want := refused(400)
						if f.accepts(k.kind) {
							want = mayPass()
						}
						if spec.batch {
							want = mayPass() // per-key errors, in a 200
						}
						add(hostileCase{op: op, label: "member " + f.name + "=" + k.raw, method: method, path: path, query: q,
							body: []byte(spec.object(map[string]string{f.name: k.raw})), want: want})
					}
				}
				first := spec.fields[0]
				nullWant, emptyWant := refused(400, 422), refused(400, 422)
				for _, c := range []struct {
					label string
					body  []byte
					want  hostileOutcome
				}{
					{"empty", []byte{}, refused(400)},
					{"null", []byte("null"), nullWant},
					{"{}", []byte("{}"), emptyWant},
					{"[]", []byte("[]"), refused(400)},
					{`"str"`, []byte(`"str"`), refused(400)},
					{"1", []byte("1"), refused(400)},
					{"true", []byte("true"), refused(400)},
					{"whitespace", []byte(" \n\t "), refused(400)},
					{"10000 nested arrays", []byte(deep(10000)), refused(400)},
					{"10000 nested objects", []byte(deepObj(10000)), refused(400)},
					{"member nested 10000 deep", []byte(spec.object(map[string]string{first.name: deep(10000)})), refused(400)},
					{"2 MB member", []byte(spec.object(map[string]string{first.name: hostileQuote(strings.Repeat("x", 2<<20))})), refused(400)},
					{"2 MB of spaces first", append(bytes.Repeat([]byte(" "), 2<<20), validBody...), refused(400)},
					{"invalid UTF-8 outside strings", []byte("{\xff}"), refused(400)},
					{"invalid UTF-8 in a string", []byte(spec.object(map[string]string{first.name: "\"\xff\xfe\xc0\xaf\""})), refused(400)},
					{"overlong UTF-8 NUL in a string", []byte(spec.object(map[string]string{first.name: "\"a\xc0\x80b\""})), refused(400)},
					{"UTF-16 surrogate in UTF-8", []byte(spec.object(map[string]string{first.name: "\"\xed\xa0\x80\""})), refused(400)},
					{"byte order mark", append([]byte("\xef\xbb\xbf"), validBody...), refused(400)},
					{"two objects", append(slices.Clone(validBody), validBody...), refused(400)},
					{"trailing garbage", append(slices.Clone(validBody), 'x'), refused(400)},
					{"raw NUL in a string", []byte(spec.object(map[string]string{first.name: "\"a\x00b\""})), refused(400)},
					{"raw newline in a string", []byte(spec.object(map[string]string{first.name: "\"a\nb\""})), refused(400)},
					{"comment", append([]byte("/* hi */"), validBody...), refused(400)},
					{"single quotes", []byte("{'" + first.name + "':1}"), refused(400)},
					{"NaN", []byte(spec.object(map[string]string{first.name: "NaN"})), refused(400)},
					{"Infinity", []byte(spec.object(map[string]string{first.name: "-Infinity"})), refused(400)},
					{"hex number", []byte(spec.object(map[string]string{first.name: "0x10"})), refused(400)},
					{"leading zero", []byte(spec.object(map[string]string{first.name: "01"})), refused(400)},
					{"unknown member", []byte(spec.object(nil, [2]string{"hz_unknown", "1"})), refused(400)},
					{"10 KB member name", []byte(spec.object(nil, [2]string{tenK, "1"})), refused(400)},
					{"duplicate member", []byte(spec.object(nil, [2]string{first.name, first.valid})), refused(400)},
					{"duplicate member, case folded", []byte(spec.object(nil, [2]string{strings.ToUpper(first.name), first.valid})), refused(400)},
				} {
					want := c.want
					if spec.batch {
						switch c.label {
						case "null", "{}":
							want = refused(422)
						case "unknown member", "10 KB member name", "duplicate member, case folded", "10000 nested objects":
							// A batch names keys: another member is another key,
							// refused (or applied) in a 200.
							want = mayPass()
						}
					}
					add(hostileCase{op: op, label: "body " + c.label, method: method, path: path, query: q, body: c.body, want: want})
				}
				// Truncations of the valid body are never valid JSON.
				for range 4 {
					n := rng.IntN(len(validBody))
					add(hostileCase{op: op, label: fmt.Sprintf("body truncated to %d bytes", n), method: method, path: path,
						query: q, body: slices.Clone(validBody[:n]), want: refused(400)})
				}
				// Content types.
				for _, c := range []struct {
					ctype string
					body  []byte
					want  hostileOutcome
				}{
					{"application/x-www-form-urlencoded", []byte("slug=x&name=y"), refused(400)},
					{"multipart/form-data; boundary=zz", []byte("--zz\r\nContent-Disposition: form-data; name=\"slug\"\r\n\r\nx\r\n--zz--\r\n"), refused(400)},
					{"application/xml", []byte("<tenant><slug>x</slug></tenant>"), refused(400)},
					{"application/json; charset=iso-8859-1", []byte(spec.object(map[string]string{first.name: "\"caf\xe9\""})), refused(400)},
					{"application/json; charset=utf-16", []byte("\xff\xfe{\x00}\x00"), refused(400)},
					{"text/plain", validBody, mayPass()},
					{"", validBody, mayPass()},
				} {
					hc := hostileCase{op: op, label: "Content-Type " + c.ctype, method: method, path: path, query: q, body: c.body, ctype: c.ctype, want: c.want}
					if c.ctype == "" {
						hc.ctype = "-" // none
					}
					add(hc)
				}
			} else {
				// A route that takes no body ignores one.
				for _, c := range []struct {
					label string
					body  []byte
					ctype string
				}{
					{"body null", []byte("null"), jsonType}, {"body []", []byte("[]"), jsonType}, {"body malformed", []byte(`{"a":`), jsonType},
					{"body 10000 deep", []byte(deep(10000)), jsonType}, {"body 2 MB", bytes.Repeat([]byte("x"), 2<<20), jsonType},
					{"body invalid UTF-8", []byte("\xff\xfe"), "text/plain"}, {"form body", []byte("a=b"), "application/x-www-form-urlencoded"},
				} {
					add(hostileCase{op: op, label: c.label, method: method, path: path, query: q, body: c.body, ctype: c.ctype, want: mayPass()})
				}
			}
		}

		// Methods the route does not take.
		path := fill(route.Path, validFill("GET "+route.Path))
		for _, m := range []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "BREW", "get"} {
			if slices.Contains(route.Methods, m) || m == "HEAD" && slices.Contains(route.Methods, "GET") {
				continue
			}
			add(hostileCase{op: "* " + route.Path, label: "method " + m, method: m, path: path, query: baseQuery[route.Path],
				body: []byte(`{}`), want: refused(405)})
		}
	}
	for _, op := range slices.Sorted(func(yield func(string) bool) {
		for op := range knownNoBody {
			if !yield(op) {
				return
			}
		}
	}) {
		if !ops[op] && op != "GET /metrics" {
			t.Errorf("route %s is in the walk's tables but not registered", op)
		}
	}
	for op := range bodies {
		if !ops[op] {
			t.Errorf("route %s is in the walk's tables but not registered", op)
		}
	}

	rng.Shuffle(len(cases), func(i, j int) { cases[i], cases[j] = cases[j], cases[i] })
	t.Logf("%d hostile requests over %d routes", len(cases), len(routes))

	before := hostileSnapshot(t, db)
	statuses := map[int]int{}
	perOp := map[string]int{}
	failures := 0
	fail := func(c hostileCase, a hostileAnswer, format string, args ...any) {
		t.Helper()
		failures++
		if failures > 200 {
			return
		}
		t.Errorf("%s %s [%s] (%s): %s; answered %d %s", c.method, hostileClip(c.path)+hostileQueryString(c.query), c.label, c.op,
			fmt.Sprintf(format, args...), a.status, hostileClip(string(a.raw)))
	}
	for _, c := range cases {
		if c.ctype == "-" {
			c.ctype = ""
		}
		perOp[c.op]++
		a, err := send(c)
		if err != nil {
			failures++
			t.Errorf("%s %s [%s]: %v", c.method, hostileClip(c.path), c.label, err)
			continue
		}
		statuses[a.status]++
		ok2xx := a.status >= 200 && a.status < 300
		switch {
		case a.status >= 500:
			fail(c, a, "a server error")
		case a.status < 200 || a.status >= 300 && a.status < 400:
			fail(c, a, "neither a success nor a client error")
		case ok2xx && !c.want.pass:
			fail(c, a, "accepted input it must refuse (want %v)", c.want.errs)
		case a.status == 401 || a.status == 403 || a.status == 429:
			fail(c, a, "the bootstrap key was refused")
		case a.status >= 400 && c.want.errs != nil && !slices.Contains(c.want.errs, a.status):
			fail(c, a, "want status %v", c.want.errs)
		}
		if ct := a.header.Get("Content-Type"); ct != jsonType {
			fail(c, a, "Content-Type %q", ct)
		}
		if a.status == 405 && a.header.Get("Allow") == "" {
			fail(c, a, "405 without Allow")
		}
		if c.method != "HEAD" {
			dec := json.NewDecoder(bytes.NewReader(a.raw))
			dec.UseNumber() // error details may echo numbers no float64 holds
			if err := dec.Decode(&a.body); err != nil || dec.More() {
				fail(c, a, "the body is not a JSON object: %v", err)
			} else if a.status >= 400 {
				e, _ := a.body["error"].(map[string]any)
				code, _ := e["code"].(string)
				msg, _ := e["message"].(string)
				extra := false
				for k := range e {
					extra = extra || k != "code" && k != "message" && k != "details"
				}
				if len(a.body) != 1 || code == "" || msg == "" || extra {
					fail(c, a, `the error body is not {"error":{"code","message","details"}}`)
				}
			} else if ok2xx && c.check != nil {
				if msg := c.check(a.body); msg != "" {
					fail(c, a, "%s", msg)
				}
			}
		}
		after := hostileSnapshot(t, db)
		changed := !slices.Equal(before, after)
		switch {
		case changed && !ok2xx:
			fail(c, a, "a refused request changed the catalog: %v", hostileDiff(before, after))
		case changed && (c.method == "GET" || c.method == "HEAD"):
			fail(c, a, "a read changed the catalog: %v", hostileDiff(before, after))
		case changed && c.check != nil:
			if applied, _ := a.body["applied"].([]any); len(applied) == 0 {
				fail(c, a, "a batch that applied nothing changed the catalog: %v", hostileDiff(before, after))
			}
		}
		before = after
	}
	if failures > 200 {
		t.Errorf("… and %d more failures", failures-200)
	}
	for _, route := range routes {
		for _, m := range route.Methods {
			if op := m + " " + route.Path; perOp[op] < 5 {
				t.Errorf("route %s got only %d hostile requests", op, perOp[op])
			}
		}
	}
	var hist []string
	for _, st := range slices.Sorted(func(yield func(int) bool) {
		for st := range statuses {
			if !yield(st) {
				return
			}
		}
	}) {
		hist = append(hist, fmt.Sprintf("%d×%d", st, statuses[st]))
	}
	t.Logf("answers: %s", strings.Join(hist, " "))

	// Nothing hostile broke the audit chain.
	v, err := send(hostileCase{method: "GET", path: "/v1/audit/verify"})
	if err != nil || v.status != 200 || !bytes.Contains(v.raw, []byte(`"ok":true`)) {
		t.Errorf("audit chain after the walk: %v %d %s", err, v.status, v.raw)
	}
}

// hostileCopy returns a copy of m.
func hostileCopy(m map[string]string) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// hostileDiff names the parts of two snapshots that differ.
func hostileDiff(before, after []string) []string {
	var out []string
	for i := range before {
		if i < len(after) && before[i] != after[i] {
			out = append(out, strings.Fields(before[i])[0])
		}
	}
	sort.Strings(out)
	return out
}

// hostileClip shortens s for a message, and shows control bytes.
func hostileClip(s string) string {
	if len(s) > 120 {
		s = fmt.Sprintf("%s…(%d bytes)", s[:100], len(s))
	}
	return strconv.QuoteToGraphic(s)[1 : len(strconv.QuoteToGraphic(s))-1]
}

func hostileQueryString(q string) string {
	if q == "" {
		return ""
	}
	return "?" + hostileClip(q)
}
