package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// How the operator commands print answers without --json: tables of the
// useful columns for lists, "field: value" lines for one object. Values are
// shown as the API returns them (a masked secret stays masked).

// cliValueWidth bounds a VALUE cell in a table; `get TENANT KEY` or --json
// shows the whole value.
const cliValueWidth = 60

// Field orders of the one-object views; other fields follow, sorted.
var (
	tenantOrder      = []string{"id", "slug", "name", "status", "isolation", "parent_id", "path", "depth", "backend", "database", "schema", "role_name", "pool_mode", "short_id", "databases", "created_at", "updated_at"}
	configEntryOrder = []string{"key", "value", "source", "inherited", "locked", "locked_by", "sensitive", "masked"}
	pauseOrder       = []string{"slug", "tenant_id", "reason", "paused_by", "paused_at"}
	permEntryOrder   = []string{"key", "value", "mode", "revocation", "source", "inherited", "granted_by"}
	keyOrder         = []string{"id", "name", "scopes", "tenant_id", "rate_limit", "created_at", "revoked_at", "rotated_from", "secret"}
)

// cliTable writes aligned columns.
type cliTable struct{ tw *tabwriter.Writer }

func newCLITable(w io.Writer, headers ...string) *cliTable {
	t := &cliTable{tw: tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)}
	t.row(headers...)
	return t
}

func (t *cliTable) row(cells ...string) {
	for i, c := range cells {
		cells[i] = cliCell(c)
	}
	fmt.Fprintln(t.tw, strings.Join(cells, "\t"))
}

func (t *cliTable) flush() { t.tw.Flush() }

// cliCell keeps a cell on one line and in its column.
func cliCell(s string) string {
	return strings.NewReplacer("\t", " ", "\n", " ", "\r", " ").Replace(s)
}

// cliStr shows a scalar as text and anything else as compact JSON.
func cliStr(v any) string {
	switch v := v.(type) {
	case nil:
		return ""
	case string:
		return v
	case json.Number:
		return v.String()
	case bool:
		if v {
			return "true"
		}
		return "false"
	}
	return cliJSON(v)
}

// cliJSON is v as compact JSON (a config or permission value, where the type
// matters: "eu" is a string, 1000 a number).
func cliJSON(v any) string {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return fmt.Sprint(v)
	}
	return strings.TrimSuffix(buf.String(), "\n")
}

func cliClip(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}

// cliYes shows a boolean as yes or no.
func cliYes(v any) string {
	if b, _ := v.(bool); b {
		return "yes"
	}
	return "no"
}

// cliTime shortens an RFC 3339 time to seconds; other text is kept, and no
// time is "-".
func cliTime(v any) string {
	if v == nil {
		return "-"
	}
	s := cliStr(v)
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return s
	}
	return t.Format("2006-01-02 15:04:05Z07:00")
}

// cliRef shows a {"id","slug"} tenant reference by its slug.
func cliRef(v any) string {
	m, ok := v.(map[string]any)
	if !ok {
		return cliStr(v)
	}
	if s := cliStr(m["slug"]); s != "" {
		return s
	}
	return cliStr(m["id"])
}

func cliObj(v any) map[string]any {
	m, _ := v.(map[string]any)
	return m
}

// renderVertical prints an object as "field: value" lines, the fields in
// order first, then the others sorted. Nested objects are flattened with
// dotted names, except tenant references, shown as "slug (id)".
func renderVertical(w io.Writer, raw []byte, order []string) {
	obj, err := cliDecodeObject(raw)
	if err != nil {
		fmt.Fprintln(w, strings.TrimSpace(string(raw)))
		return
	}
	t := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	cliWriteFields(t, "", obj, order)
	t.Flush()
}

func cliWriteFields(t io.Writer, prefix string, obj map[string]any, order []string) {
	keys := make([]string, 0, len(obj))
	for k := range obj {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b string) int {
		ia, ib := slices.Index(order, a), slices.Index(order, b)
		switch {
		case ia >= 0 && ib >= 0:
			return ia - ib
		case ia >= 0:
			return -1
		case ib >= 0:
			return 1
		}
		return strings.Compare(a, b)
	})
	for _, k := range keys {
		v := obj[k]
		name := prefix + k
		if m, ok := v.(map[string]any); ok && k != "value" && k != "before" && k != "after" {
			if _, hasSlug := m["slug"]; hasSlug && len(m) <= 2 {
				fmt.Fprintf(t, "%s:\t%s (%s)\n", name, cliCell(cliStr(m["slug"])), cliCell(cliStr(m["id"])))
				continue
			}
			if len(m) > 0 {
				cliWriteFields(t, name+".", m, nil)
				continue
			}
		}
		var s string
		switch {
		case k == "value":
			s = cliJSON(v)
		case v == nil && k == "granted_by":
			s = "platform"
		case v == nil:
			s = "-"
		case strings.HasSuffix(k, "_at") || k == "at":
			s = cliTime(v)
		default:
			if list, ok := v.([]any); ok && cliAllStrings(list) {
				parts := make([]string, len(list))
				for i, e := range list {
					parts[i] = e.(string)
				}
				s = strings.Join(parts, ",")
			} else {
				s = cliStr(v)
			}
		}
		fmt.Fprintf(t, "%s:\t%s\n", name, cliCell(s))
	}
}

func cliAllStrings(list []any) bool {
	for _, e := range list {
		if _, ok := e.(string); !ok {
			return false
		}
	}
	return true
}

func renderTenant(w io.Writer, raw []byte) { renderVertical(w, raw, tenantOrder) }

// renderTenants prints a tenant list; a parent is shown by slug when it is
// in the list, else by id.
func renderTenants(w io.Writer, items []any) {
	if len(items) == 0 {
		fmt.Fprintln(w, "no tenants")
		return
	}
	slugs := map[string]string{}
	for _, it := range items {
		m := cliObj(it)
		slugs[cliStr(m["id"])] = cliStr(m["slug"])
	}
	t := newCLITable(w, "SLUG", "NAME", "STATUS", "ISOLATION", "DEPTH", "PARENT", "ID")
	for _, it := range items {
		m := cliObj(it)
		parent := cliStr(m["parent_id"])
		if s, ok := slugs[parent]; ok {
			parent = s
		}
		if parent == "" {
			parent = "-"
		}
		t.row(cliStr(m["slug"]), cliStr(m["name"]), cliStr(m["status"]), cliStr(m["isolation"]),
			cliStr(m["depth"]), parent, cliStr(m["id"]))
	}
	t.flush()
}

// renderConfig prints a resolved config view.
func renderConfig(w io.Writer, items []any) {
	if len(items) == 0 {
		fmt.Fprintln(w, "no config keys")
		return
	}
	t := newCLITable(w, "KEY", "VALUE", "SOURCE", "INHERITED", "LOCKED", "SENSITIVE")
	for _, it := range items {
		m := cliObj(it)
		locked := cliYes(m["locked"])
		if by := cliRef(m["locked_by"]); locked == "yes" && by != "" {
			locked = "by " + by
		}
		sensitive := cliYes(m["sensitive"])
		if sensitive == "yes" && cliYes(m["masked"]) == "yes" {
			sensitive += " (masked)"
		}
		t.row(cliStr(m["key"]), cliClip(cliJSON(m["value"]), cliValueWidth), cliRef(m["source"]),
			cliYes(m["inherited"]), locked, sensitive)
	}
	t.flush()
}

// renderDiff prints the keys that differ between tenants a and b.
func renderDiff(w io.Writer, obj map[string]any, a, b string) {
	if s := cliRef(obj["a"]); s != "" {
		a = s
	}
	if s := cliRef(obj["b"]); s != "" {
		b = s
	}
	diffs := cliItems(obj, "differences")
	if len(diffs) == 0 {
		fmt.Fprintf(w, "%s and %s resolve the same config\n", a, b)
		return
	}
	side := func(v any) string {
		m := cliObj(v)
		if m == nil {
			return "(not set)"
		}
		s := cliClip(cliJSON(m["value"]), cliValueWidth)
		if src := cliRef(m["source"]); src != "" {
			s += " (from " + src + ")"
		}
		return s
	}
	t := newCLITable(w, "KEY", strings.ToUpper(a), strings.ToUpper(b))
	for _, d := range diffs {
		m := cliObj(d)
		t.row(cliStr(m["key"]), side(m["a"]), side(m["b"]))
	}
	t.flush()
}

// renderPerms prints a resolved permissions view.
func renderPerms(w io.Writer, items []any) {
	if len(items) == 0 {
		fmt.Fprintln(w, "no permission policies")
		return
	}
	t := newCLITable(w, "KEY", "VALUE", "MODE", "REVOCATION", "SOURCE", "INHERITED", "GRANTED_BY")
	for _, it := range items {
		m := cliObj(it)
		by := cliRef(m["granted_by"])
		if by == "" {
			by = "platform"
		}
		t.row(cliStr(m["key"]), cliClip(cliJSON(m["value"]), cliValueWidth), cliStr(m["mode"]), cliStr(m["revocation"]),
			cliRef(m["source"]), cliYes(m["inherited"]), by)
	}
	t.flush()
}

// renderRevoke prints what a permission revocation removed.
func renderRevoke(w io.Writer, obj map[string]any, tenant, key string) {
	rev := cliObj(obj["revoked"])
	if rev == nil {
		fmt.Fprintf(w, "revoked %s on %s\n", key, tenant)
		return
	}
	fmt.Fprintf(w, "revoked %s on %s (was %s, %s, %s)\n", cliStr(rev["key"]), cliRef(rev["tenant"]),
		cliJSON(rev["value"]), cliStr(rev["mode"]), cliStr(rev["revocation"]))
	removed, _ := obj["removed"].([]any)
	if len(removed) == 0 {
		return
	}
	var slugs []string
	for _, r := range removed {
		slugs = append(slugs, cliRef(cliObj(r)["tenant"]))
	}
	fmt.Fprintf(w, "also removed below it from: %s\n", strings.Join(slugs, ", "))
}

// renderAudit prints audit rows.
func renderAudit(w io.Writer, items []any) {
	if len(items) == 0 {
		fmt.Fprintln(w, "no audit rows")
		return
	}
	t := newCLITable(w, "SEQ", "AT", "ACTOR", "ACTION", "TARGET", "SOURCE_IP", "REQUEST")
	for _, it := range items {
		m := cliObj(it)
		actor := cliObj(m["actor"])
		who := cliStr(actor["name"])
		if id := cliStr(actor["key_id"]); id != "" && id != who {
			who += " (" + cliClip(id, 9) + ")"
		}
		t.row(cliStr(m["seq"]), cliTime(m["at"]), who, cliStr(m["action"]), cliStr(m["target"]),
			cliStr(m["source_ip"]), cliStr(m["request_id"]))
	}
	t.flush()
}

// renderVerify prints the outcome of an audit chain check.
func renderVerify(w io.Writer, obj map[string]any) {
	rows := cliStr(obj["rows"])
	if ok, _ := obj["ok"].(bool); ok {
		head := cliObj(obj["head"])
		if head == nil {
			fmt.Fprintf(w, "the audit chain holds (%s rows)\n", rows)
			return
		}
		fmt.Fprintf(w, "the audit chain holds: %s rows, head seq %s hash %s\n", rows, cliStr(head["seq"]), cliStr(head["hash"]))
		return
	}
	fmt.Fprintf(w, "the audit chain is BROKEN%s; %s rows checked\n", verifyWhere(obj), rows)
}

// verifyWhere says where a broken chain breaks, " at seq N (reason)".
func verifyWhere(obj map[string]any) string {
	br := cliObj(obj["break"])
	if br == nil {
		return ""
	}
	return fmt.Sprintf(" at seq %s (%s)", cliStr(br["seq"]), cliStr(br["reason"]))
}

// renderKey prints one API key; a secret comes with a reminder that it is
// shown once.
func renderKey(w io.Writer, obj map[string]any, raw []byte) {
	renderVertical(w, raw, keyOrder)
	if cliStr(obj["secret"]) != "" {
		fmt.Fprintln(w, "\nThe secret is shown only this once: store it now (use it as --key or STRATUM_ADMIN_KEY).")
	}
}

// renderKeys prints a key list; slugs maps tenant ids to slugs where known.
func renderKeys(w io.Writer, items []any, slugs map[string]string) {
	if len(items) == 0 {
		fmt.Fprintln(w, "no api keys")
		return
	}
	t := newCLITable(w, "ID", "NAME", "SCOPES", "TENANT", "RATE_LIMIT", "CREATED", "REVOKED")
	for _, it := range items {
		m := cliObj(it)
		var scopes []string
		if list, ok := m["scopes"].([]any); ok {
			for _, s := range list {
				scopes = append(scopes, cliStr(s))
			}
		}
		tenant := cliStr(m["tenant_id"])
		if s, ok := slugs[tenant]; ok {
			tenant = s
		}
		if tenant == "" {
			tenant = "-"
		}
		rate := cliStr(m["rate_limit"])
		if rate == "" || rate == "0" {
			rate = "default"
		}
		t.row(cliStr(m["id"]), cliStr(m["name"]), strings.Join(scopes, ","), tenant, rate,
			cliTime(m["created_at"]), cliTime(m["revoked_at"]))
	}
	t.flush()
}

// userOrder is the field order of a proxy user shown vertically.
var userOrder = []string{"name", "tenant_id", "can_switch", "created_at"}

// renderUsers prints a user list; slugs maps tenant ids to slugs where known.
func renderUsers(w io.Writer, items []any, slugs map[string]string) {
	if len(items) == 0 {
		fmt.Fprintln(w, "no users")
		return
	}
	t := newCLITable(w, "NAME", "TENANT", "CAN_SWITCH", "CREATED")
	for _, it := range items {
		m := cliObj(it)
		tenant := cliStr(m["tenant_id"])
		if s, ok := slugs[tenant]; ok {
			tenant = s
		}
		t.row(cliStr(m["name"]), tenant, cliStr(m["can_switch"]), cliTime(m["created_at"]))
	}
	t.flush()
}
