package admin_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math"
	"mime"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stratum-hq/stratum-proxy/admin"
	"github.com/stratum-hq/stratum-proxy/catalog"
	"github.com/stratum-hq/stratum-proxy/internal/backends"
	"github.com/stratum-hq/stratum-proxy/internal/pgtest"
	"github.com/stratum-hq/stratum-proxy/internal/secrets"
	"github.com/stratum-hq/stratum-proxy/provision"
)

// This file keeps the schemas of admin/openapi.json true: TestOpenAPISchemas
// calls every documented operation over a real catalog and router, for a
// success and for errors, and checks each answer against the schema the
// document declares for its path, method and status. oasValidator is a
// JSON Schema validator for exactly the subset the document uses; it refuses
// any keyword it does not know, so the document cannot drift out of what is
// checked.

// oasKeywords are the schema keywords oasValidator understands. Annotations
// (description, format, default, ...) are accepted and not checked.
var oasKeywords = map[string]bool{
	"$ref": true, "type": true, "enum": true, "const": true,
	"properties": true, "required": true, "additionalProperties": true, "items": true,
	"oneOf": true, "anyOf": true, "allOf": true,
	"pattern": true, "minimum": true, "maximum": true, "minLength": true, "maxLength": true,
	"description": true, "format": true, "default": true, "title": true, "example": true,
	"examples": true, "deprecated": true, "readOnly": true, "writeOnly": true,
}

// oasValidator checks JSON values (decoded with UseNumber) against schemas
// whose $refs point into components.schemas.
type oasValidator struct {
	schemas map[string]any
	// strict also refuses object members a schema with "properties" does not
	// list, even where additionalProperties allows them: a response member
	// the document does not describe is a gap in the document.
	strict bool
}

// oasProblem is one mismatch: where (a JSON pointer into the value) and what.
type oasProblem struct {
	pointer, msg string
}

func (p oasProblem) String() string {
	ptr := p.pointer
	if ptr == "" {
		ptr = "(root)"
	}
	return "at " + ptr + ": " + p.msg
}

// check validates v against schema.
func (c *oasValidator) check(schema, v any) []oasProblem {
	return c.validate(schema, v, "", nil)
}

// validate checks v (at pointer ptr) against s. extra names object members
// strict mode accepts without s declaring them; holding oasAll, it means an
// enclosing allOf judges the members (against every branch's declarations).
func (c *oasValidator) validate(s, v any, ptr string, extra map[string]bool) []oasProblem {
	var out []oasProblem
	add := func(format string, args ...any) {
		out = append(out, oasProblem{ptr, fmt.Sprintf(format, args...)})
	}
	switch b := s.(type) {
	case bool:
		if !b {
			add("no value is allowed here (schema false)")
		}
		return out
	case map[string]any:
	default:
		add("the schema is %T, not an object or a boolean", s)
		return out
	}
	sm := s.(map[string]any)
	keys := make([]string, 0, len(sm))
	for k := range sm {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if !oasKeywords[k] {
			add("the schema uses keyword %q, which this validator does not check; teach it or drop the keyword", k)
		}
	}

	if ref, ok := sm["$ref"]; ok {
		target, err := c.resolve(ref)
		if err != nil {
			add("%v", err)
			return out
		}
		out = append(out, c.validate(target, v, ptr, extra)...)
	}

	if t, ok := sm["type"]; ok {
		var types []string
		switch t := t.(type) {
		case string:
			types = []string{t}
		case []any:
			for _, e := range t {
				s, _ := e.(string)
				types = append(types, s)
			}
		}
		if !slices.ContainsFunc(types, func(t string) bool { return oasIsType(v, t) }) {
			add("got %s %s, want type %s", oasKind(v), oasShort(v), strings.Join(types, " or "))
			return out // the other keywords would only repeat it
		}
	}
	if enum, ok := sm["enum"].([]any); ok && !slices.ContainsFunc(enum, func(e any) bool { return oasEqual(e, v) }) {
		add("got %s, want one of %s", oasShort(v), oasShort(enum))
	}
	if cv, ok := sm["const"]; ok && !oasEqual(cv, v) {
		add("got %s, want %s", oasShort(v), oasShort(cv))
	}

	switch v := v.(type) {
	case map[string]any:
		out = append(out, c.object(sm, v, ptr, extra)...)
	case []any:
		if items, ok := sm["items"]; ok {
			for i, e := range v {
				out = append(out, c.validate(items, e, ptr+"/"+strconv.Itoa(i), nil)...)
			}
		}
	case string:
		if p, ok := sm["pattern"].(string); ok {
			re, err := regexp.Compile(p)
			if err != nil {
				add("pattern %q does not compile: %v", p, err)
			} else if !re.MatchString(v) {
				add("%q does not match pattern %s", v, p)
			}
		}
		n := float64(len([]rune(v)))
		if m, ok := sm["minLength"].(float64); ok && n < m {
			add("%q is shorter than %v characters", v, m)
		}
		if m, ok := sm["maxLength"].(float64); ok && n > m {
			add("%q is longer than %v characters", v, m)
		}
	case json.Number:
		f, _ := v.Float64()
		if m, ok := sm["minimum"].(float64); ok && f < m {
			add("%s is below the minimum %v", v, m)
		}
		if m, ok := sm["maximum"].(float64); ok && f > m {
			add("%s is above the maximum %v", v, m)
		}
	}

	if all, ok := sm["allOf"].([]any); ok {
		// The branches together declare the members: strict mode judges the
		// members here, against all of them, and not in each branch.
		union := map[string]bool{}
		for _, b := range all {
			for name := range c.declared(b) {
				union[name] = true
			}
		}
		for _, b := range all {
			out = append(out, c.validate(b, v, ptr, oasAnyMember)...)
		}
		if o, ok := v.(map[string]any); ok && c.strict && !extra[oasAll] {
			names := make([]string, 0, len(o))
			for name := range o {
				names = append(names, name)
			}
			sort.Strings(names)
			for _, name := range names {
				if !union[name] && !extra[name] {
					out = append(out, oasProblem{ptr + "/" + oasEscape(name),
						fmt.Sprintf("member %q is not documented (the allOf lists %s)", name, oasSetKeys(union))})
				}
			}
		}
	}
	if anyOf, ok := sm["anyOf"].([]any); ok {
		var why []string
		matched := false
		for i, b := range anyOf {
			ps := c.validate(b, v, ptr, extra)
			if len(ps) == 0 {
				matched = true
				break
			}
			why = append(why, fmt.Sprintf("branch %d: %s", i, oasJoin(ps)))
		}
		if !matched {
			add("matches no anyOf branch (%s)", strings.Join(why, "; "))
		}
	}
	if oneOf, ok := sm["oneOf"].([]any); ok {
		var why []string
		var hits []int
		for i, b := range oneOf {
			ps := c.validate(b, v, ptr, extra)
			if len(ps) == 0 {
				hits = append(hits, i)
			} else {
				why = append(why, fmt.Sprintf("branch %d: %s", i, oasJoin(ps)))
			}
		}
		switch {
		case len(hits) == 0:
			add("matches no oneOf branch (%s)", strings.Join(why, "; "))
		case len(hits) > 1:
			add("matches oneOf branches %v; exactly one must match", hits)
		}
	}
	return out
}

// object checks an object's members.
func (c *oasValidator) object(sm, v map[string]any, ptr string, extra map[string]bool) []oasProblem {
	var out []oasProblem
	props, hasProps := sm["properties"].(map[string]any)
	for _, r := range oasStrings(sm["required"]) {
		if _, ok := v[r]; !ok {
			out = append(out, oasProblem{ptr, fmt.Sprintf("required member %q is missing", r)})
		}
	}
	names := make([]string, 0, len(v))
	for name := range v {
		names = append(names, name)
	}
	sort.Strings(names)
	ap := sm["additionalProperties"]
	for _, name := range names {
		p := ptr + "/" + oasEscape(name)
		if ps, ok := props[name]; ok {
			out = append(out, c.validate(ps, v[name], p, nil)...)
			continue
		}
		switch ap := ap.(type) {
		case map[string]any:
			out = append(out, c.validate(ap, v[name], p, nil)...)
			continue
		case bool:
			if !ap {
				out = append(out, oasProblem{p, fmt.Sprintf("member %q is not allowed (additionalProperties false)", name)})
				continue
			}
		}
		if c.strict && hasProps && !extra[name] && !extra[oasAll] {
			out = append(out, oasProblem{p, fmt.Sprintf("member %q is not documented (the schema lists %s)", name, oasKeys(props))})
		}
	}
	return out
}

// declared returns the member names a schema (through $ref and allOf)
// declares at its top level.
func (c *oasValidator) declared(s any) map[string]bool {
	out := map[string]bool{}
	sm, ok := s.(map[string]any)
	if !ok {
		return out
	}
	if ref, ok := sm["$ref"]; ok {
		if target, err := c.resolve(ref); err == nil {
			for n := range c.declared(target) {
				out[n] = true
			}
		}
	}
	if props, ok := sm["properties"].(map[string]any); ok {
		for n := range props {
			out[n] = true
		}
	}
	if all, ok := sm["allOf"].([]any); ok {
		for _, b := range all {
			for n := range c.declared(b) {
				out[n] = true
			}
		}
	}
	return out
}

func (c *oasValidator) resolve(ref any) (any, error) {
	r, _ := ref.(string)
	name, ok := strings.CutPrefix(r, "#/components/schemas/")
	if !ok {
		return nil, fmt.Errorf("$ref %q: only #/components/schemas/<name> is supported", r)
	}
	s, ok := c.schemas[name]
	if !ok {
		return nil, fmt.Errorf("$ref %q does not resolve", r)
	}
	return s, nil
}

func oasIsType(v any, t string) bool {
	switch t {
	case "null":
		return v == nil
	case "boolean":
		_, ok := v.(bool)
		return ok
	case "string":
		_, ok := v.(string)
		return ok
	case "object":
		_, ok := v.(map[string]any)
		return ok
	case "array":
		_, ok := v.([]any)
		return ok
	case "number":
		_, ok := v.(json.Number)
		return ok
	case "integer":
		n, ok := v.(json.Number)
		if !ok {
			return false
		}
		if _, err := n.Int64(); err == nil {
			return true
		}
		f, err := n.Float64()
		return err == nil && f == math.Trunc(f) && !math.IsInf(f, 0)
	}
	return false
}

func oasKind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "boolean"
	case string:
		return "string"
	case json.Number:
		return "number"
	case map[string]any:
		return "object"
	case []any:
		return "array"
	}
	return fmt.Sprintf("%T", v)
}

// oasEqual compares two JSON values (numbers by value, whatever their Go type).
func oasEqual(a, b any) bool {
	return oasCanon(a) == oasCanon(b)
}

func oasCanon(v any) string {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if n, ok := v.(json.Number); ok {
		if f, err := n.Float64(); err == nil {
			v = f
		}
	}
	_ = enc.Encode(v)
	// Re-decode numbers nested in arrays and objects the same way.
	var norm any
	_ = json.Unmarshal(buf.Bytes(), &norm)
	b, _ := json.Marshal(norm)
	return string(b)
}

// oasShort renders v as JSON for a message, cut short when long.
func oasShort(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	if len(b) > 120 {
		return string(b[:117]) + "..."
	}
	return string(b)
}

func oasStrings(v any) []string {
	var out []string
	l, _ := v.([]any)
	for _, e := range l {
		if s, ok := e.(string); ok {
			out = append(out, s)
		}
	}
	return out
}

func oasKeys(m map[string]any) string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return strings.Join(ks, ", ")
}

func oasJoin(ps []oasProblem) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
	}
	return strings.Join(s, "; ")
}

// oasEscape escapes a member name for a JSON pointer (RFC 6901).
func oasEscape(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "~", "~0"), "/", "~1")
}

// oasAll, as a member of extra, means an enclosing allOf judges every member.
const oasAll = "\x00all"

var oasAnyMember = map[string]bool{oasAll: true}

func oasSetKeys(m map[string]bool) string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return strings.Join(ks, ", ")
}

// oasDecode decodes JSON with numbers kept as json.Number.
func oasDecode(raw []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if dec.More() {
		return nil, fmt.Errorf("more than one JSON value")
	}
	return v, nil
}

// TestOpenAPIValidator checks the validator itself: it must find each kind
// of mismatch, and say where.
func TestOpenAPIValidator(t *testing.T) {
	schemas := map[string]any{}
	if err := json.Unmarshal([]byte(`{
		"Ref": {"type": "object", "properties": {"id": {"type": "string"}, "slug": {"type": "string", "pattern": "^[a-z]+$"}}, "required": ["id", "slug"], "additionalProperties": true},
		"Thing": {
			"type": "object",
			"properties": {
				"n": {"type": "integer", "minimum": 1, "maximum": 20},
				"s": {"type": ["string", "null"]},
				"mode": {"type": "string", "enum": ["A", "B"]},
				"ref": {"$ref": "#/components/schemas/Ref"},
				"list": {"type": "array", "items": {"$ref": "#/components/schemas/Ref"}},
				"maybe": {"oneOf": [{"$ref": "#/components/schemas/Ref"}, {"type": "null"}]},
				"any": {"description": "any JSON value"},
				"map": {"type": "object", "additionalProperties": {"type": "boolean"}}
			},
			"required": ["n", "s"],
			"additionalProperties": true
		},
		"Closed": {"type": "object", "properties": {"a": {"type": "string"}}, "additionalProperties": false},
		"Both": {"allOf": [{"$ref": "#/components/schemas/Ref"}, {"type": "object", "properties": {"secret": {"type": "string"}}, "required": ["secret"]}]},
		"Odd": {"type": "string", "maxItems": 3}
	}`), &schemas); err != nil {
		t.Fatal(err)
	}
	ref := func(name string) any { return map[string]any{"$ref": "#/components/schemas/" + name} }
	tests := []struct {
		name, schema, value string
		strict              bool
		want                []string // "pointer|substring of the message"; none: valid
	}{
		{"valid", "Thing", `{"n":3,"s":null,"mode":"A","ref":{"id":"x","slug":"ab"},"list":[],"maybe":null,"any":[1,{"x":null}],"map":{"a":true}}`, true, nil},
		{"type", "Thing", `{"n":"3","s":"x"}`, false, []string{`/n|got string "3", want type integer`}},
		{"integer not a fraction", "Thing", `{"n":1.5,"s":"x"}`, false, []string{"/n|want type integer"}},
		{"whole float is an integer", "Thing", `{"n":2.0,"s":"x"}`, false, nil},
		{"range", "Thing", `{"n":21,"s":null}`, false, []string{"/n|above the maximum 20"}},
		{"type array", "Thing", `{"n":1,"s":5}`, false, []string{"/s|want type string or null"}},
		{"required", "Thing", `{"n":1}`, false, []string{`|required member "s" is missing`}},
		{"enum", "Thing", `{"n":1,"s":null,"mode":"C"}`, false, []string{`/mode|want one of ["A","B"]`}},
		{"ref and pattern", "Thing", `{"n":1,"s":null,"ref":{"id":"x","slug":"A"}}`, false, []string{`/ref/slug|does not match pattern`}},
		{"items", "Thing", `{"n":1,"s":null,"list":[{"id":"x","slug":"a"},{"id":"y"}]}`, false, []string{`/list/1|required member "slug"`}},
		{"oneOf none", "Thing", `{"n":1,"s":null,"maybe":{"id":1,"slug":"a"}}`, false, []string{"/maybe|matches no oneOf branch"}},
		{"additionalProperties schema", "Thing", `{"n":1,"s":null,"map":{"a/b":1}}`, false, []string{"/map/a~1b|want type boolean"}},
		{"additionalProperties false", "Closed", `{"a":"x","b":1}`, false, []string{`/b|member "b" is not allowed`}},
		{"open object, lax", "Thing", `{"n":1,"s":null,"extra":1}`, false, nil},
		{"open object, strict", "Thing", `{"n":1,"s":null,"extra":1}`, true, []string{`/extra|member "extra" is not documented`}},
		{"strict reaches nested refs", "Thing", `{"n":1,"s":null,"ref":{"id":"x","slug":"a","x":1}}`, true, []string{`/ref/x|not documented`}},
		{"allOf, strict sees siblings", "Both", `{"id":"x","slug":"a","secret":"s"}`, true, nil},
		{"allOf, each branch", "Both", `{"id":"x","slug":"a"}`, true, []string{`|required member "secret"`}},
		{"allOf, strict still refuses", "Both", `{"id":"x","slug":"a","secret":"s","other":1}`, true, []string{`/other|not documented`}},
		{"unknown keyword", "Odd", `"x"`, false, []string{`|keyword "maxItems"`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v, err := oasDecode([]byte(tc.value))
			if err != nil {
				t.Fatal(err)
			}
			c := &oasValidator{schemas: schemas, strict: tc.strict}
			got := c.check(ref(tc.schema), v)
			if len(got) != len(tc.want) {
				t.Fatalf("got %d problems (%s), want %d %v", len(got), oasJoin(got), len(tc.want), tc.want)
			}
			for i, w := range tc.want {
				ptr, msg, _ := strings.Cut(w, "|")
				if got[i].pointer != ptr || !strings.Contains(got[i].msg, msg) {
					t.Errorf("problem %d is %q at %q, want %q at %q", i, got[i].msg, got[i].pointer, msg, ptr)
				}
			}
		})
	}
}

// oasChecker sends requests to admin APIs and checks each answer against
// the document; it records which statuses of which operations were checked.
type oasChecker struct {
	doc       map[string]any
	responses map[string]any // components.responses
	lax       *oasValidator  // for request bodies
	strict    *oasValidator  // for response bodies
	checked   map[string]map[int]bool
}

func newOASChecker(t *testing.T, doc []byte) *oasChecker {
	t.Helper()
	var d map[string]any
	if err := json.Unmarshal(doc, &d); err != nil {
		t.Fatalf("the OpenAPI document is not JSON: %v", err)
	}
	comp, _ := d["components"].(map[string]any)
	schemas, _ := comp["schemas"].(map[string]any)
	responses, _ := comp["responses"].(map[string]any)
	return &oasChecker{doc: d, responses: responses,
		lax:     &oasValidator{schemas: schemas},
		strict:  &oasValidator{schemas: schemas, strict: true},
		checked: map[string]map[int]bool{}}
}

// operations lists the documented operations as "METHOD template".
func (c *oasChecker) operations() []string {
	var out []string
	paths, _ := c.doc["paths"].(map[string]any)
	for p, item := range paths {
		for m := range item.(map[string]any) {
			if slices.Contains([]string{"get", "put", "post", "delete", "patch", "head", "options", "trace"}, m) {
				out = append(out, strings.ToUpper(m)+" "+p)
			}
		}
	}
	sort.Strings(out)
	return out
}

func (c *oasChecker) operation(method, tmpl string) map[string]any {
	paths, _ := c.doc["paths"].(map[string]any)
	item, _ := paths[tmpl].(map[string]any)
	op, _ := item[strings.ToLower(method)].(map[string]any)
	return op
}

var oasParam = regexp.MustCompile(`\{[a-z_]+\}`)

// call sends method path (a concrete path of template tmpl, with any query)
// to base with key as bearer (none when empty) and body (none when empty),
// wants status, and checks the answer against the document. It returns the
// decoded body (nil when it is not JSON).
func (c *oasChecker) call(t *testing.T, base, method, tmpl, path, key, body string, status int) map[string]any {
	t.Helper()
	what := method + " " + tmpl
	bare, _, _ := strings.Cut(path, "?")
	pattern := strings.ReplaceAll(regexp.QuoteMeta(oasParam.ReplaceAllString(tmpl, "\x00")), "\x00", `[^/]+`)
	if !regexp.MustCompile("^" + pattern + "$").MatchString(bare) {
		t.Fatalf("%s: path %q does not fit the template", what, path)
	}
	op := c.operation(method, tmpl)
	if op == nil {
		t.Fatalf("%s is not documented", what)
	}

	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, base+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	raw, err := io.ReadAll(res.Body)
	res.Body.Close()
	if err != nil {
		t.Fatalf("%s %s: reading the body: %v", method, path, err)
	}
	where := fmt.Sprintf("%s %s (%s) answered %d", method, path, tmpl, res.StatusCode)
	if res.StatusCode != status {
		t.Errorf("%s, want %d; body %s", where, status, oasCut(raw))
	}
	var out map[string]any
	_ = json.Unmarshal(raw, &out)

	responses, _ := op["responses"].(map[string]any)
	resp, ok := responses[strconv.Itoa(res.StatusCode)]
	if !ok && res.StatusCode >= 500 {
		resp, ok = responses["default"] // "default" stands for unexpected 5xx only
	}
	if !ok {
		var ds []string
		for s := range responses {
			ds = append(ds, s)
		}
		sort.Strings(ds)
		t.Errorf("%s: status %d is not documented for %s (documented: %s); body %s",
			where, res.StatusCode, what, strings.Join(ds, ", "), oasCut(raw))
		return out
	}
	rm, _ := resp.(map[string]any)
	if ref, ok := rm["$ref"].(string); ok {
		name, _ := strings.CutPrefix(ref, "#/components/responses/")
		rm, _ = c.responses[name].(map[string]any)
		if rm == nil {
			t.Fatalf("%s: response $ref %q does not resolve", what, ref)
		}
	}
	headers, _ := rm["headers"].(map[string]any)
	for _, name := range slices.Sorted(maps.Keys(headers)) {
		h, _ := headers[name].(map[string]any)
		val := res.Header.Get(name)
		if val == "" {
			t.Errorf("%s: documented header %s is missing", where, name)
			continue
		}
		var v any = val
		if hs, _ := h["schema"].(map[string]any); hs["type"] == "integer" || hs["type"] == "number" {
			if v, err = oasDecode([]byte(val)); err != nil {
				t.Errorf("%s: header %s: %q is not a number", where, name, val)
				continue
			}
		}
		for _, p := range c.lax.check(h["schema"], v) {
			t.Errorf("%s: header %s does not match its documented schema: %s", where, name, p)
		}
	}
	content, _ := rm["content"].(map[string]any)
	if len(content) == 0 {
		if len(raw) != 0 {
			t.Errorf("%s: the document declares no body for %d, got %s", where, res.StatusCode, oasCut(raw))
		}
		c.record(what, res.StatusCode)
		return out
	}
	mt, _, err := mime.ParseMediaType(res.Header.Get("Content-Type"))
	if err != nil {
		t.Errorf("%s: Content-Type %q: %v", where, res.Header.Get("Content-Type"), err)
		return out
	}
	media, ok := content[mt].(map[string]any)
	if !ok {
		t.Errorf("%s: content type %s is not documented for %d (documented: %s)", where, mt, res.StatusCode, oasKeys(content))
		return out
	}
	schema, ok := media["schema"]
	if !ok {
		t.Errorf("%s: the document gives %s no schema", where, mt)
		return out
	}
	var value any = string(raw)
	if mt == "application/json" {
		value, err = oasDecode(raw)
		if err != nil {
			t.Errorf("%s: body is not JSON: %v: %s", where, err, oasCut(raw))
			return out
		}
	}
	for _, p := range c.strict.check(schema, value) {
		t.Errorf("%s: body does not match the documented schema %s: %s\nbody: %s", where, oasSchemaName(schema), p, oasCut(raw))
	}

	// What the API accepted must be what the document says it accepts (a
	// batch that answers per-key errors accepted only part of it).
	perKey, _ := out["errors"].(map[string]any)
	if rb, ok := op["requestBody"].(map[string]any); ok && body != "" && res.StatusCode < 300 && len(perKey) == 0 {
		content, _ := rb["content"].(map[string]any)
		media, _ := content["application/json"].(map[string]any)
		v, err := oasDecode([]byte(body))
		if media == nil || err != nil {
			t.Errorf("%s: request body %s: no documented JSON schema, or not JSON (%v)", where, body, err)
		} else {
			for _, p := range c.lax.check(media["schema"], v) {
				t.Errorf("%s: the accepted request body does not match the documented request schema %s: %s\nrequest: %s",
					where, oasSchemaName(media["schema"]), p, body)
			}
		}
	}
	c.record(what, res.StatusCode)
	return out
}

func (c *oasChecker) record(what string, status int) {
	if c.checked[what] == nil {
		c.checked[what] = map[int]bool{}
	}
	c.checked[what][status] = true
}

func oasSchemaName(s any) string {
	if m, ok := s.(map[string]any); ok {
		if r, ok := m["$ref"].(string); ok {
			return strings.TrimPrefix(r, "#/components/schemas/")
		}
	}
	return "(inline)"
}

func oasCut(raw []byte) string {
	if len(raw) > 600 {
		return string(raw[:600]) + "..."
	}
	return string(raw)
}

// oasNoErrors are operations with no error a client can provoke (a wrong
// method's 405 aside).
var oasNoErrors = []string{"GET /healthz", "GET /metrics", "GET /v1/openapi.json"}

// TestOpenAPISchemas calls every documented operation over a real catalog and
// router, at least once for a success and once for an error (401 and 403 for
// every authenticated one, and the errors particular to it), and checks every
// answer against admin/openapi.json: the status must be documented for the
// operation, the content type too, and the body must match the schema
// (strictly: members the schema does not list are reported). Request bodies
// the API accepted must match the documented request schema.
func TestOpenAPISchemas(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	ctx := context.Background()
	// Keys bound to a tenant keep the stack's teardown from dropping it.
	t.Cleanup(func() { s.srv.Exec(t, s.catdb, `DELETE FROM api_keys WHERE tenant_id IS NOT NULL`) })
	metrics := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		_, _ = io.WriteString(w, "# HELP stratum_up 1\n# TYPE stratum_up gauge\nstratum_up 1\n")
	})
	// The default rate limit is off: one key with a limit of its own tests 429.
	hs := httptest.NewServer(admin.New(admin.Config{BootstrapKey: bootstrapKey, Metrics: metrics, RateLimit: -1}, s.p))
	t.Cleanup(hs.Close)
	base, boot := hs.URL, bootstrapKey

	res, err := http.Get(base + "/v1/openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	doc, err := io.ReadAll(res.Body)
	res.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	c := newOASChecker(t, doc)
	call := func(method, tmpl, path, key, body string, status int) map[string]any {
		t.Helper()
		return c.call(t, base, method, tmpl, path, key, body, status)
	}
	str := func(m map[string]any, k string) string {
		v, _ := m[k].(string)
		return v
	}

	// Probes and the document.
	call("GET", "/healthz", "/healthz", "", "", 200)
	call("GET", "/readyz", "/readyz", "", "", 200)
	call("GET", "/metrics", "/metrics", "", "", 200)
	call("GET", "/v1/openapi.json", "/v1/openapi.json", "", "", 200)
	func() {
		hs := httptest.NewServer(admin.New(admin.Config{Readiness: notReady{}}, s.p))
		defer hs.Close()
		c.call(t, hs.URL, "GET", "/readyz", "/readyz", "", "", 503)
	}()

	// Keys: one for reading, one with only secrets:read (403 everywhere
	// else), one limited to a request a minute, one to rotate.
	const keys, key1 = "/v1/keys", "/v1/keys/{id}"
	reader := call("POST", keys, keys, boot, `{"name":"reader","scopes":["read"]}`, 201)
	noScope := call("POST", keys, keys, boot, `{"name":"secrets only","scopes":["secrets:read"],"tenant":null}`, 201)
	limited := call("POST", keys, keys, boot, `{"name":"limited","scopes":["read"],"rate_limit":1}`, 201)
	rotatee := call("POST", keys, keys, boot, `{"name":"rotatee","scopes":["read","write"]}`, 201)
	call("POST", keys, keys, boot, `{"name":"x","scopes":["root"]}`, 422)
	call("POST", keys, keys, boot, `{"name":"x","scopes":["read"],"tenant":"nobody"}`, 404)
	call("POST", keys, keys, boot, `{"name":1}`, 400)
	call("GET", keys, keys, boot, "", 200)
	call("GET", keys, keys+"?include_revoked=true", boot, "", 200)
	call("GET", keys, keys+"?colour=red", boot, "", 400)
	call("GET", "/v1/tenants", "/v1/tenants", str(limited, "secret"), "", 200)
	call("GET", "/v1/tenants", "/v1/tenants", str(limited, "secret"), "", 429)

	// Tenants and the tree.
	const tenants, tenant = "/v1/tenants", "/v1/tenants/{ref}"
	for _, b := range []string{
		`{"slug":"acme","name":"Acme"}`,
		`{"slug":"acme_eu","parent":"acme","isolation":"shared"}`,
		`{"slug":"acme_eu_x","parent":"acme_eu"}`,
		`{"slug":"globex","isolation":"schema","pool_mode":"transaction"}`,
		`{"slug":"initech"}`,
	} {
		call("POST", tenants, tenants, boot, b, 201)
	}
	call("POST", tenants, tenants, boot, `{"slug":"acme"}`, 409)
	call("POST", tenants, tenants, boot, `{"slug":"Bad-Slug"}`, 422)
	call("POST", tenants, tenants, boot, `{"slug":"orphan","parent":"nobody"}`, 404)
	call("POST", tenants, tenants, boot, `{"slug":`, 400)
	page := call("GET", tenants, tenants+"?limit=2", boot, "", 200)
	call("GET", tenants, tenants+"?cursor="+str(page, "next_cursor"), boot, "", 200)
	call("GET", tenants, tenants+"?limit=0", boot, "", 400)
	call("GET", tenants, tenants+"?cursor=garbage", boot, "", 400)
	call("GET", tenant, "/v1/tenants/acme", boot, "", 200)
	call("GET", tenant, "/v1/tenants/nobody", boot, "", 404)
	const dbmap = "/v1/tenants/{ref}/databases/{name}"
	call("PUT", dbmap, "/v1/tenants/acme/databases/acme_db", boot, "", 200)
	call("PUT", dbmap, "/v1/tenants/globex/databases/acme_db", boot, "", 409)
	call("PUT", dbmap, "/v1/tenants/acme/databases/postgres", boot, "", 422)
	call("PUT", dbmap, "/v1/tenants/nobody/databases/x_db", boot, "", 404)
	call("GET", tenant, "/v1/tenants/acme", boot, "", 200)
	call("DELETE", dbmap, "/v1/tenants/acme/databases/acme_db", boot, "", 200)
	call("DELETE", dbmap, "/v1/tenants/acme/databases/acme_db", boot, "", 404)
	call("PATCH", tenant, "/v1/tenants/globex", boot, `{"name":"Globex Corporation"}`, 200)
	call("PATCH", tenant, "/v1/tenants/globex", boot, `{"slug":"acme"}`, 409)
	call("PATCH", tenant, "/v1/tenants/globex", boot, `{}`, 422)
	call("PATCH", tenant, "/v1/tenants/globex", boot, `{"colour":"red"}`, 400)
	call("PATCH", tenant, "/v1/tenants/nobody", boot, `{"name":"x"}`, 404)
	const move = "/v1/tenants/{ref}/move"
	call("POST", move, "/v1/tenants/acme_eu_x/move", boot, `{"parent":"globex"}`, 200)
	call("POST", move, "/v1/tenants/acme_eu_x/move", boot, `{"parent":null}`, 200)
	call("POST", move, "/v1/tenants/acme/move", boot, `{"parent":"acme_eu"}`, 409)
	call("POST", move, "/v1/tenants/acme/move", boot, `{"parent":""}`, 422)
	call("POST", move, "/v1/tenants/acme/move", boot, `{"parent":"nobody"}`, 404)
	call("POST", move, "/v1/tenants/acme/move", boot, `{"parent":5}`, 400)
	for _, lc := range []string{"suspend", "resume", "archive"} {
		tmpl := "/v1/tenants/{ref}/" + lc
		call("POST", tmpl, "/v1/tenants/initech/"+lc, boot, "", 200)
		call("POST", tmpl, "/v1/tenants/nobody/"+lc, boot, "", 404)
	}
	call("POST", "/v1/tenants/{ref}/suspend", "/v1/tenants/initech/suspend", boot, "", 409) // archived
	call("POST", "/v1/tenants/{ref}/resume", "/v1/tenants/initech/resume", boot, "", 409)
	const pause, unpause = "/v1/tenants/{ref}/pause", "/v1/tenants/{ref}/unpause"
	call("POST", pause, "/v1/tenants/globex/pause", boot, `{"reason":"maintenance"}`, 200)
	call("POST", pause, "/v1/tenants/globex/pause", boot, `{"reason":"again"}`, 409)
	call("POST", pause, "/v1/tenants/globex/pause", boot, `{}`, 422)
	call("POST", pause, "/v1/tenants/nobody/pause", boot, `{"reason":"x"}`, 404)
	call("POST", unpause, "/v1/tenants/globex/unpause", boot, "", 200)
	call("POST", unpause, "/v1/tenants/globex/unpause", boot, "", 200) // not paused: unpaused false
	call("POST", unpause, "/v1/tenants/nobody/unpause", boot, "", 404)
	// Placement moves: one real move of a shared tenant without rows to a
	// schema of its own, followed to its switch and finalized.
	const placement, moves, move1 = "/v1/tenants/{ref}/placement", "/v1/moves", "/v1/moves/{id}"
	call("POST", placement, "/v1/tenants/globex/placement", boot, `{"isolation":"schema"}`, 409) // there already
	call("POST", placement, "/v1/tenants/globex/placement", boot, `{"isolation":"nowhere"}`, 422)
	call("POST", placement, "/v1/tenants/globex/placement", boot, `{}`, 400)
	call("POST", placement, "/v1/tenants/globex/placement", boot, `{"isolation":5}`, 400)
	call("POST", placement, "/v1/tenants/nobody/placement", boot, `{"isolation":"schema"}`, 404)
	mv := call("POST", placement, "/v1/tenants/acme_eu_x/placement", boot, `{"isolation":"schema"}`, 202)
	call("POST", placement, "/v1/tenants/acme_eu_x/placement", boot, `{"isolation":"database"}`, 409) // one at a time
	mvPath := "/v1/moves/" + str(mv, "id")
	call("GET", moves, moves, boot, "", 200)
	call("GET", moves, moves+"?tenant=acme_eu_x&limit=5", boot, "", 200)
	call("GET", moves, moves+"?tenant=nobody", boot, "", 404)
	call("GET", moves, moves+"?limit=0", boot, "", 400)
	call("GET", move1, "/v1/moves/00000000-0000-4000-8000-000000000000", boot, "", 404)
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(100 * time.Millisecond) {
		m := call("GET", move1, mvPath, boot, "", 200)
		if p := str(m, "phase"); p == "switched" {
			break
		} else if p == "failed" || p == "cancelled" || time.Now().After(deadline) {
			t.Fatalf("the move of acme_eu_x did not switch: %v", m)
		}
	}
	call("POST", "/v1/moves/{id}/cancel", mvPath+"/cancel", boot, "", 409) // switched: finalize or move back
	// Moved back to its kept copy in the shared tables, then finalized.
	const revert = "/v1/moves/{id}/revert"
	rv := call("POST", revert, mvPath+"/revert", boot, "", 202)
	call("POST", revert, mvPath+"/revert", boot, "", 409)                      // reverting already
	call("POST", "/v1/moves/{id}/finalize", mvPath+"/finalize", boot, "", 409) // reverting: not finalizable
	call("POST", revert, "/v1/moves/00000000-0000-4000-8000-000000000000/revert", boot, "", 404)
	rvPath := "/v1/moves/" + str(rv, "id")
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(100 * time.Millisecond) {
		m := call("GET", move1, rvPath, boot, "", 200)
		if p := str(m, "phase"); p == "switched" {
			break
		} else if p == "failed" || p == "cancelled" || time.Now().After(deadline) {
			t.Fatalf("the move back of acme_eu_x did not switch: %v", m)
		}
	}
	call("GET", move1, mvPath, boot, "", 200) // reverted
	call("POST", "/v1/moves/{id}/finalize", mvPath+"/finalize", boot, "", 409)
	call("POST", "/v1/moves/{id}/finalize", rvPath+"/finalize", boot, "", 200)
	call("POST", "/v1/moves/{id}/finalize", rvPath+"/finalize", boot, "", 409)
	call("POST", "/v1/moves/{id}/cancel", "/v1/moves/00000000-0000-4000-8000-000000000000/cancel", boot, "", 404)
	// A move a dead proxy left mid-copy (its row alone): cancel ends it.
	acme, err := s.cat.GetTenant(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	orphan, _, _ := catalog.NewID()
	s.srv.Exec(t, s.catdb, `INSERT INTO tenant_moves (id, tenant_id, from_isolation, from_backend, from_database, from_schema,
		to_isolation, to_backend, to_database, to_schema, phase, created_by, owner, updated_at)
		VALUES ($1, $2, $3, $4, $5, $6, 'schema', $4, $5, 't_orphan_move', 'copying', 'test', 'a dead proxy', now() - interval '1 hour')`,
		orphan, acme.ID, acme.Isolation, acme.Backend, acme.Database, acme.Schema)
	call("POST", "/v1/moves/{id}/cancel", "/v1/moves/"+orphan+"/cancel", boot, "", 200)
	call("POST", "/v1/moves/{id}/cancel", "/v1/moves/"+orphan+"/cancel", boot, "", 409)
	for _, l := range []string{"children", "descendants"} {
		tmpl := "/v1/tenants/{ref}/" + l
		call("GET", tmpl, "/v1/tenants/acme/"+l, boot, "", 200)
		call("GET", tmpl, "/v1/tenants/acme/"+l+"?limit=1", boot, "", 200)
		call("GET", tmpl, "/v1/tenants/acme/"+l+"?limit=x", boot, "", 400)
		call("GET", tmpl, "/v1/tenants/nobody/"+l, boot, "", 404)
	}
	const ancestors = "/v1/tenants/{ref}/ancestors"
	call("GET", ancestors, "/v1/tenants/acme_eu/ancestors", boot, "", 200)
	call("GET", ancestors, "/v1/tenants/acme/ancestors", boot, "", 200)
	call("GET", ancestors, "/v1/tenants/nobody/ancestors", boot, "", 404)

	// Users.
	const users = "/v1/users"
	call("POST", users, users, boot, `{"name":"alice","password":"correct horse","tenant":"acme","can_switch":true}`, 201)
	call("POST", users, users, boot, `{"name":"alice","password":"correct horse","tenant":"acme"}`, 409)
	call("POST", users, users, boot, `{"name":"bob","password":"correct horse","tenant":"nobody"}`, 404)
	call("POST", users, users, boot, `{"name":"bob","password":"abc","tenant":"acme"}`, 422)
	call("POST", users, users, boot, `{"name":"bob","verifier":"x"}`, 400)
	call("POST", users, users, boot, `{"name":"bob.acme","password":"correct horse","tenant":"acme"}`, 422)
	call("POST", users, users, boot, `{"name":"bob","password":"correct horse","tenant":"acme"}`, 201)
	call("GET", users, users, boot, "", 200)
	call("GET", users, users+"?colour=red", boot, "", 400)
	const user1 = "/v1/users/{name}"
	call("GET", user1, "/v1/users/alice", boot, "", 200)
	call("GET", user1, "/v1/users/nobody", boot, "", 404)
	call("PATCH", user1, "/v1/users/alice", boot, `{"password":"new horse","tenant":"acme_eu","can_switch":false}`, 200)
	call("PATCH", user1, "/v1/users/alice", boot, `{}`, 422)
	call("PATCH", user1, "/v1/users/alice", boot, `{"colour":"red"}`, 400)
	call("PATCH", user1, "/v1/users/nobody", boot, `{"can_switch":true}`, 404)
	call("DELETE", user1, "/v1/users/bob", boot, "", 200)
	call("DELETE", user1, "/v1/users/bob", boot, "", 404)

	// Config.
	const cfg, cfgKey = "/v1/tenants/{ref}/config", "/v1/tenants/{ref}/config/{key}"
	call("PUT", cfgKey, "/v1/tenants/acme/config/region", boot, `{"value":"eu","locked":true}`, 200)
	call("PUT", cfgKey, "/v1/tenants/acme_eu/config/region", boot, `{"value":"us"}`, 409)
	call("PUT", cfgKey, "/v1/tenants/acme/config/max_users", boot, `{"value":1000}`, 200)
	call("PUT", cfgKey, "/v1/tenants/acme_eu/config/max_users", boot, `{"value":500,"locked":false,"sensitive":false}`, 200)
	call("PUT", cfgKey, "/v1/tenants/acme/config/db.password", boot, `{"value":{"user":"app","password":"s3cret"},"sensitive":true}`, 200)
	call("PUT", cfgKey, "/v1/tenants/acme/config/nothing", boot, `{"value":null}`, 422)
	call("PUT", cfgKey, "/v1/tenants/acme/config/Bad-Key", boot, `{"value":1}`, 422)
	call("PUT", cfgKey, "/v1/tenants/acme/config/x", boot, `{"value":1,"colour":"red"}`, 400)
	call("PUT", cfgKey, "/v1/tenants/nobody/config/x", boot, `{"value":1}`, 404)
	call("GET", cfg, "/v1/tenants/acme_eu/config", str(reader, "secret"), "", 200) // masked
	call("GET", cfg, "/v1/tenants/acme_eu/config", boot, "", 200)
	call("GET", cfg, "/v1/tenants/globex/config", boot, "", 200) // empty
	call("GET", cfg, "/v1/tenants/nobody/config", boot, "", 404)
	call("GET", cfgKey, "/v1/tenants/acme_eu/config/region", boot, "", 200)
	call("GET", cfgKey, "/v1/tenants/acme_eu/config/db.password", str(reader, "secret"), "", 200)
	call("GET", cfgKey, "/v1/tenants/acme_eu/config/no.such", boot, "", 404)
	call("GET", cfgKey, "/v1/tenants/acme_eu/config/Bad-Key", boot, "", 422)
	call("DELETE", cfgKey, "/v1/tenants/acme_eu/config/max_users", boot, "", 200) // reveals acme's
	call("DELETE", cfgKey, "/v1/tenants/acme/config/max_users", boot, "", 200)    // nothing left
	call("DELETE", cfgKey, "/v1/tenants/acme/config/max_users", boot, "", 404)
	call("DELETE", cfgKey, "/v1/tenants/acme/config/Bad-Key", boot, "", 422)
	// A value set below before an ancestor locked the key stays, locked.
	call("PUT", cfgKey, "/v1/tenants/acme_eu/config/tier", boot, `{"value":"silver"}`, 200)
	call("PUT", cfgKey, "/v1/tenants/acme/config/tier", boot, `{"value":"gold","locked":true}`, 200)
	call("DELETE", cfgKey, "/v1/tenants/acme_eu/config/tier", boot, "", 409)
	call("PATCH", cfg, "/v1/tenants/acme_eu/config", boot,
		`{"feature.beta":{"value":true},"plan":{"value":"gold","sensitive":true},"gone":null,"region":{"value":"us"},"bad":5,"worse":{"value":1,"x":2}}`, 200)
	call("PATCH", cfg, "/v1/tenants/acme_eu/config", boot, `{"region":{"value":"us"}}`, 200) // every key refused
	call("PATCH", cfg, "/v1/tenants/acme_eu/config", boot, `{}`, 422)
	call("PATCH", cfg, "/v1/tenants/acme_eu/config", boot, `[`, 400)
	call("PATCH", cfg, "/v1/tenants/nobody/config", boot, `{"a":null}`, 404)
	const diff = "/v1/config/diff"
	call("GET", diff, diff+"?a=acme&b=acme_eu", boot, "", 200)
	call("GET", diff, diff+"?a=acme&b=acme_eu", str(reader, "secret"), "", 200)
	call("GET", diff, diff+"?a=acme", boot, "", 400)
	call("GET", diff, diff+"?a=acme&b=nobody", boot, "", 404)
	const rotate = "/v1/config/rotate-keys"
	call("POST", rotate, rotate, boot, "", 200)
	func() {
		// A catalog whose keyring lacks the key the values are sealed under.
		text, err := secrets.NewKeyText("k2")
		if err != nil {
			t.Fatal(err)
		}
		kr, err := secrets.Parse(text)
		if err != nil {
			t.Fatal(err)
		}
		cat2, err := catalog.Open(ctx, catalog.Config{URL: s.srv.URL(s.catdb), Keys: kr})
		if err != nil {
			t.Fatal(err)
		}
		defer cat2.Close()
		p2, err := provision.New(ctx, provision.Config{Set: backends.Set{
			Backends: map[string]backends.Backend{"main": {Host: s.srv.Host(), Port: s.srv.Port(),
				AdminUser: s.srv.SuperUser(), AdminPassword: s.srv.Password(), SSLMode: "disable"}},
			SharedDatabase: pgtest.UniqueName("app"),
		}}, cat2)
		if err != nil {
			t.Fatal(err)
		}
		hs2 := httptest.NewServer(admin.New(admin.Config{BootstrapKey: boot}, p2))
		defer hs2.Close()
		c.call(t, hs2.URL, "POST", rotate, rotate, boot, "", 409)
	}()

	// Permissions.
	const perms, perm = "/v1/tenants/{ref}/permissions", "/v1/tenants/{ref}/permissions/{key}"
	acmeWriter := call("POST", keys, keys, boot, `{"name":"acme writer","scopes":["write"],"tenant":"acme"}`, 201)
	call("PUT", perm, "/v1/tenants/acme/permissions/sql.ddl", boot, `{"value":false,"mode":"LOCKED","revocation":"CASCADE"}`, 200)
	call("PUT", perm, "/v1/tenants/acme_eu/permissions/sql.ddl", boot, `{"value":false,"mode":"DELEGATED","revocation":"SOFT"}`, 409)
	call("PUT", perm, "/v1/tenants/acme/permissions/limits.regions", boot, `{"value":["eu","us"],"mode":"DELEGATED","revocation":"SOFT"}`, 200)
	call("PUT", perm, "/v1/tenants/acme_eu/permissions/limits.regions", str(acmeWriter, "secret"), `{"value":["eu","ap"],"mode":"DELEGATED","revocation":"SOFT"}`, 422)
	call("PUT", perm, "/v1/tenants/acme_eu/permissions/limits.regions", str(acmeWriter, "secret"), `{"value":["eu"],"mode":"DELEGATED","revocation":"SOFT"}`, 200)
	call("PUT", perm, "/v1/tenants/acme/permissions/a.b", boot, `{"value":1}`, 422)
	call("PUT", perm, "/v1/tenants/acme/permissions/a.b", boot, `{"value":`, 400)
	call("PUT", perm, "/v1/tenants/nobody/permissions/a.b", boot, `{"value":1,"mode":"LOCKED","revocation":"SOFT"}`, 404)
	call("GET", perms, "/v1/tenants/acme_eu/permissions", boot, "", 200)
	call("GET", perms, "/v1/tenants/globex/permissions", boot, "", 200) // none
	call("GET", perms, "/v1/tenants/nobody/permissions", boot, "", 404)
	call("GET", perm, "/v1/tenants/acme_eu/permissions/sql.ddl", boot, "", 200)
	call("GET", perm, "/v1/tenants/acme_eu/permissions/limits.regions", boot, "", 200)
	call("GET", perm, "/v1/tenants/acme_eu/permissions/no.such", boot, "", 404)
	call("GET", perm, "/v1/tenants/acme_eu/permissions/Bad-Key", boot, "", 422)
	call("DELETE", perm, "/v1/tenants/acme/permissions/limits.regions", boot, "", 200) // SOFT: nothing else removed
	call("PUT", perm, "/v1/tenants/acme/permissions/quota.rows", boot, `{"value":10,"mode":"DELEGATED","revocation":"CASCADE"}`, 200)
	call("PUT", perm, "/v1/tenants/acme_eu/permissions/quota.rows", boot, `{"value":5,"mode":"DELEGATED","revocation":"SOFT"}`, 200)
	call("DELETE", perm, "/v1/tenants/acme/permissions/quota.rows", boot, "", 200) // CASCADE: acme_eu's copy too
	call("DELETE", perm, "/v1/tenants/acme/permissions/sql.ddl", str(acmeWriter, "secret"), "", 409)
	call("DELETE", perm, "/v1/tenants/acme/permissions/no.such", boot, "", 404)
	call("DELETE", perm, "/v1/tenants/acme/permissions/Bad-Key", boot, "", 422)

	// Keys by id (after the reader has done its reading).
	rid := str(rotatee, "id")
	call("GET", key1, "/v1/keys/"+rid, boot, "", 200)
	call("GET", key1, "/v1/keys/00000000-0000-4000-8000-000000000000", boot, "", 404)
	call("GET", key1, "/v1/keys/not-an-id", boot, "", 404)
	const rotateKey = "/v1/keys/{id}/rotate"
	rotated := call("POST", rotateKey, "/v1/keys/"+rid+"/rotate", boot, "", 201)
	call("POST", rotateKey, "/v1/keys/"+rid+"/rotate", boot, "", 409)
	call("POST", rotateKey, "/v1/keys/00000000-0000-4000-8000-000000000000/rotate", boot, "", 404)
	call("DELETE", key1, "/v1/keys/"+str(rotated, "id"), boot, "", 200)
	call("DELETE", key1, "/v1/keys/"+str(rotated, "id"), boot, "", 200) // idempotent
	call("DELETE", key1, "/v1/keys/00000000-0000-4000-8000-000000000000", boot, "", 404)
	call("GET", keys, keys+"?include_revoked=true", boot, "", 200) // revoked and rotated keys

	// Audit.
	const audit, verify = "/v1/audit", "/v1/audit/verify"
	page = call("GET", audit, audit+"?limit=3", boot, "", 200)
	call("GET", audit, audit+"?cursor="+str(page, "next_cursor"), boot, "", 200)
	call("GET", audit, audit+"?tenant=acme&subtree=true&action=config.*", boot, "", 200)
	call("GET", audit, audit+"?action=no.such.action", boot, "", 200) // none
	call("GET", audit, audit+"?limit=0", boot, "", 400)
	call("GET", audit, audit+"?tenant=nobody", boot, "", 404)
	call("GET", verify, verify, boot, "", 200)
	call("GET", verify, verify+"?x=1", boot, "", 400)
	call("GET", verify, verify, str(acmeWriter, "secret"), "", 403)

	// Every authenticated operation: 401 without a key, 403 with a key
	// that holds none of the scopes a route takes.
	concrete := strings.NewReplacer("{ref}", "acme", "{key}", "a.b", "{id}", rid)
	for _, what := range c.operations() {
		method, tmpl, _ := strings.Cut(what, " ")
		op := c.operation(method, tmpl)
		if sec, ok := op["security"].([]any); ok && len(sec) == 0 {
			continue // public
		}
		body := ""
		if op["requestBody"] != nil {
			body = "{}"
		}
		path := concrete.Replace(tmpl)
		call(method, tmpl, path, "", body, 401)
		call(method, tmpl, path, str(noScope, "secret"), body, 403)
	}

	// Coverage: every operation answered a success and an error.
	for _, what := range c.operations() {
		var ok, bad bool
		var seen []int
		for st := range c.checked[what] {
			seen = append(seen, st)
			ok = ok || st < 300
			bad = bad || st >= 400
		}
		sort.Ints(seen)
		if !ok {
			t.Errorf("%s: no success answer was checked (checked %v)", what, seen)
		}
		if !bad && !slices.Contains(oasNoErrors, what) {
			t.Errorf("%s: no error answer was checked (checked %v)", what, seen)
		}
		t.Logf("%-45s %v", what, seen)
	}
}
