package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/stratum-hq/stratum-proxy/catalog"
	"github.com/stratum-hq/stratum-proxy/internal/stacktest"
)

const cliTestKey = stacktest.AdminKey

// cliStack is a whole stack without the demo tree (the tests create their
// tenants through the CLI): the CLI talks to its admin API, the tests check
// the catalog behind it.
type cliStack struct {
	url string
	cat *catalog.Catalog
}

func newCLIStack(t *testing.T) *cliStack {
	t.Helper()
	ts := stacktest.StartEmpty(t)
	return &cliStack{url: ts.AdminURL, cat: ts.Catalog}
}

// cliResult is what one CLI run printed and returned.
type cliResult struct {
	code           int
	stdout, stderr string
}

// run runs the CLI with the admin URL and key in its environment (as
// STRATUM_ADMIN_URL and STRATUM_ADMIN_KEY), nothing else from the process's.
func (s *cliStack) run(t *testing.T, args ...string) cliResult {
	t.Helper()
	return cliRunEnv(t, map[string]string{"STRATUM_ADMIN_URL": s.url, "STRATUM_ADMIN_KEY": cliTestKey}, args...)
}

func cliRunEnv(t *testing.T, env map[string]string, args ...string) cliResult {
	t.Helper()
	var out, errb bytes.Buffer
	code := Run(args, Env{Stdout: &out, Stderr: &errb, Getenv: func(k string) string { return env[k] }})
	t.Logf("stratum-proxy %s -> %d\n%s%s", strings.Join(args, " "), code, out.String(), errb.String())
	return cliResult{code: code, stdout: out.String(), stderr: errb.String()}
}

func (r cliResult) ok(t *testing.T) cliResult {
	t.Helper()
	if r.code != 0 {
		t.Fatalf("exit status %d, stderr: %s", r.code, r.stderr)
	}
	return r
}

// tableRows returns the table lines of out as whitespace-separated fields,
// header first.
func tableRows(out string) [][]string {
	var rows [][]string
	for line := range strings.SplitSeq(strings.TrimSpace(out), "\n") {
		rows = append(rows, strings.Fields(line))
	}
	return rows
}

func rowFor(rows [][]string, first string) []string {
	for _, r := range rows {
		if len(r) > 0 && r[0] == first {
			return r
		}
	}
	return nil
}

func TestCLITenants(t *testing.T) {
	s := newCLIStack(t)
	ctx := context.Background()

	// create prints the new tenant, field per line; flags may follow the slug.
	res := s.run(t, "tenant", "create", "acmesec", "--name", "AcmeSec").ok(t)
	for _, want := range []string{"slug:", "acmesec", "name:", "AcmeSec", "status:", "active", "isolation:", "shared"} {
		if !strings.Contains(res.stdout, want) {
			t.Errorf("tenant create output lacks %q", want)
		}
	}
	s.run(t, "tenant", "create", "northstar_msp", "--parent", "acmesec", "--name", "Northstar MSP").ok(t)
	parent, err := s.cat.GetTenant(ctx, "acmesec")
	if err != nil {
		t.Fatal(err)
	}
	child, err := s.cat.GetTenant(ctx, "northstar_msp")
	if err != nil {
		t.Fatalf("the CLI's create did not reach the catalog: %v", err)
	}
	if child.ParentID == nil || *child.ParentID != parent.ID || child.Depth != 2 {
		t.Errorf("northstar_msp: parent %v depth %d, want parent %s depth 2", child.ParentID, child.Depth, parent.ID)
	}

	// list: a table with a header and a row per tenant, parents by slug.
	rows := tableRows(s.run(t, "tenant", "list").ok(t).stdout)
	if want := []string{"SLUG", "NAME", "STATUS", "ISOLATION", "DEPTH", "PARENT", "ID"}; !slices.Equal(rows[0], want) {
		t.Errorf("header %v, want %v", rows[0], want)
	}
	if len(rows) != 3 {
		t.Fatalf("want a header and 2 rows, got %d lines", len(rows))
	}
	if r := rowFor(rows, "northstar_msp"); r == nil || !slices.Contains(r, "acmesec") || !slices.Contains(r, child.ID) || !slices.Contains(r, "2") {
		t.Errorf("northstar_msp row %v: want its parent acmesec, depth 2 and id %s", r, child.ID)
	}
	if r := rowFor(rows, "acmesec"); r == nil || !slices.Contains(r, "-") {
		t.Errorf("acmesec row %v: want no parent (-)", r)
	}

	// --json: the API's answer, parseable.
	var list struct {
		Tenants []catalog.Tenant `json:"tenants"`
	}
	out := s.run(t, "tenant", "list", "--json").ok(t).stdout
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Fatalf("tenant list --json is not JSON: %v", err)
	}
	var slugs []string
	for _, tn := range list.Tenants {
		slugs = append(slugs, tn.Slug)
	}
	sort.Strings(slugs)
	if !slices.Equal(slugs, []string{"acmesec", "northstar_msp"}) {
		t.Errorf("tenant list --json tenants %v", slugs)
	}

	// get, by slug and by id.
	out = s.run(t, "tenant", "get", "northstar_msp").ok(t).stdout
	for _, want := range []string{"id:", child.ID, "parent_id:", parent.ID, "depth:"} {
		if !strings.Contains(out, want) {
			t.Errorf("tenant get output lacks %q", want)
		}
	}
	var got catalog.Tenant
	if err := json.Unmarshal([]byte(s.run(t, "tenant", "get", child.ID, "--json").ok(t).stdout), &got); err != nil || got.Slug != "northstar_msp" {
		t.Errorf("tenant get ID --json: %+v, %v", got, err)
	}

	// An API refusal: exit 1, the API's message, code and status, and
	// nothing written.
	res = s.run(t, "tenant", "create", "acmesec")
	if res.code != 1 {
		t.Errorf("duplicate create: exit %d, want 1", res.code)
	}
	if !strings.HasPrefix(res.stderr, "error: ") || !strings.Contains(res.stderr, "(conflict, HTTP 409)") {
		t.Errorf("duplicate create: stderr %q, want \"error: <message> (conflict, HTTP 409)\"", res.stderr)
	}
	if res.stdout != "" {
		t.Errorf("a failed command printed to stdout: %q", res.stdout)
	}
	if all, err := s.cat.ListTenants(ctx); err != nil || len(all) != 2 {
		t.Errorf("after the refused create: %d tenants (%v), want 2", len(all), err)
	}
	res = s.run(t, "tenant", "get", "nope")
	if res.code != 1 || !strings.Contains(res.stderr, `tenant "nope" does not exist (not_found, HTTP 404)`) {
		t.Errorf("get of a missing tenant: exit %d, stderr %q", res.code, res.stderr)
	}

	// The tree commands, where the tree routes exist.
	res = s.run(t, "tenant", "children", "acmesec")
	if r := rowFor(tableRows(res.ok(t).stdout), "northstar_msp"); r == nil {
		t.Errorf("tenant children acmesec lacks northstar_msp")
	}
	if r := rowFor(tableRows(s.run(t, "tenant", "ancestors", "northstar_msp").ok(t).stdout), "acmesec"); r == nil {
		t.Errorf("tenant ancestors northstar_msp lacks acmesec")
	}
	s.run(t, "tenant", "suspend", "northstar_msp").ok(t)
	if tn, _ := s.cat.GetTenant(ctx, "northstar_msp"); tn == nil || tn.Status != catalog.StatusSuspended {
		t.Errorf("after tenant suspend: %+v", tn)
	}
	s.run(t, "tenant", "resume", "northstar_msp").ok(t)
	s.run(t, "tenant", "move", "northstar_msp", "--root").ok(t)
	if tn, _ := s.cat.GetTenant(ctx, "northstar_msp"); tn == nil || tn.ParentID != nil || tn.Depth != 1 {
		t.Errorf("after tenant move --root: %+v", tn)
	}
	s.run(t, "tenant", "rename", "northstar_msp", "northstar", "--name", "Northstar").ok(t)
	if tn, err := s.cat.GetTenant(ctx, child.ID); err != nil || tn.Slug != "northstar" || tn.Name != "Northstar" {
		t.Errorf("after tenant rename: %+v %v", tn, err)
	}
}

func TestCLIConfig(t *testing.T) {
	s := newCLIStack(t)
	s.run(t, "tenant", "create", "acmesec").ok(t)
	s.run(t, "tenant", "create", "client_alpha", "--parent", "acmesec").ok(t)

	res := s.run(t, "config", "set", "acmesec", "max_users", "1000")
	res.ok(t)
	s.run(t, "config", "set", "acmesec", "region", "eu", "--locked").ok(t)
	s.run(t, "config", "set", "client_alpha", "max_users", "500").ok(t)

	// The resolved view as a table: the value as JSON, its source, inherited
	// and locked.
	rows := tableRows(s.run(t, "config", "get", "client_alpha").ok(t).stdout)
	if want := []string{"KEY", "VALUE", "SOURCE", "INHERITED", "LOCKED", "SENSITIVE"}; !slices.Equal(rows[0], want) {
		t.Errorf("header %v, want %v", rows[0], want)
	}
	if r := rowFor(rows, "max_users"); !slices.Equal(r, []string{"max_users", "500", "client_alpha", "no", "no", "no"}) {
		t.Errorf("max_users row %v, want own value 500", r)
	}
	if r := strings.Join(rowFor(rows, "region"), " "); r != `region "eu" acmesec yes by acmesec no` && r != `region "eu" acmesec yes yes no` {
		t.Errorf("region row %v, want \"eu\" inherited from acmesec, locked", r)
	}

	// --json parses; VALUE arguments are JSON when they parse as JSON.
	var view struct {
		Config []struct {
			Key    string                `json:"key"`
			Value  json.RawMessage       `json:"value"`
			Source struct{ Slug string } `json:"source"`
		} `json:"config"`
	}
	if err := json.Unmarshal([]byte(s.run(t, "config", "get", "client_alpha", "--json").ok(t).stdout), &view); err != nil {
		t.Fatalf("config get --json: %v", err)
	}
	values := map[string]string{}
	for _, e := range view.Config {
		values[e.Key] = string(e.Value) + "@" + e.Source.Slug
	}
	if values["max_users"] != "500@client_alpha" || values["region"] != `"eu"@acmesec` {
		t.Errorf("config get --json: %v", values)
	}

	// A write under the lock: exit 1, naming the locking tenant.
	res = s.run(t, "config", "set", "client_alpha", "region", "us")
	if res.code != 1 || !strings.Contains(res.stderr, "acmesec") || !strings.Contains(res.stderr, "HTTP 409") {
		t.Errorf("write under a lock: exit %d, stderr %q", res.code, res.stderr)
	}

	// One key, then unset reveals the inherited value.
	out := s.run(t, "config", "get", "client_alpha", "max_users").ok(t).stdout
	if !strings.Contains(out, "500") {
		t.Errorf("config get TENANT KEY: %q", out)
	}
	s.run(t, "config", "unset", "client_alpha", "max_users").ok(t)
	if r := rowFor(tableRows(s.run(t, "config", "get", "client_alpha").ok(t).stdout), "max_users"); len(r) < 4 || r[1] != "1000" || r[2] != "acmesec" || r[3] != "yes" {
		t.Errorf("after unset, max_users row %v, want 1000 inherited from acmesec", r)
	}

	// A negative number after --.
	s.run(t, "config", "set", "acmesec", "offset", "--", "-5").ok(t)
	if r := rowFor(tableRows(s.run(t, "config", "get", "acmesec").ok(t).stdout), "offset"); len(r) < 2 || r[1] != "-5" {
		t.Errorf("offset row %v, want -5", r)
	}

	// A sensitive value, shown as the API returns it: in the clear to the
	// bootstrap key (it holds secrets:read), masked to a key without it.
	s.run(t, "config", "set", "client_alpha", "api_token", "s3cr3t-value", "--sensitive").ok(t)
	if r := strings.Join(rowFor(tableRows(s.run(t, "config", "get", "client_alpha").ok(t).stdout), "api_token"), " "); r != `api_token "s3cr3t-value" client_alpha no no yes` {
		t.Errorf("api_token row for secrets:read %q", r)
	}
	var reader struct{ Secret string }
	if err := json.Unmarshal([]byte(s.run(t, "key", "create", "reader", "--scopes", "read", "--json").ok(t).stdout), &reader); err != nil || reader.Secret == "" {
		t.Fatalf("key create: %v", err)
	}
	out = cliRunEnv(t, map[string]string{"STRATUM_ADMIN_URL": s.url, "STRATUM_ADMIN_KEY": reader.Secret}, "config", "get", "client_alpha").ok(t).stdout
	if r := strings.Join(rowFor(tableRows(out), "api_token"), " "); strings.Contains(out, "s3cr3t") || !strings.HasSuffix(r, "yes (masked)") {
		t.Errorf("api_token row without secrets:read %q: want the value masked", r)
	}

	// diff: the keys that differ, each side with its source.
	rows = tableRows(s.run(t, "config", "diff", "acmesec", "client_alpha").ok(t).stdout)
	if !slices.Equal(rows[0], []string{"KEY", "ACMESEC", "CLIENT_ALPHA"}) {
		t.Errorf("diff header %v", rows[0])
	}
	if r := strings.Join(rowFor(rows, "api_token"), " "); !strings.HasPrefix(r, "api_token (not set)") {
		t.Errorf("diff api_token row %q, want (not set) on acmesec", r)
	}
	if rowFor(rows, "max_users") != nil || rowFor(rows, "region") != nil {
		t.Errorf("diff lists keys that resolve the same: %v", rows)
	}

	res = s.run(t, "config", "rotate-keys").ok(t)
	if !strings.Contains(res.stdout, "active_key_id:") || !strings.Contains(res.stdout, "reencrypted.config:") {
		t.Errorf("config rotate-keys output %q", res.stdout)
	}
}

func TestCLIPerm(t *testing.T) {
	s := newCLIStack(t)
	ctx := context.Background()
	s.run(t, "tenant", "create", "acmesec").ok(t)
	s.run(t, "tenant", "create", "northstar_msp", "--parent", "acmesec").ok(t)
	s.run(t, "tenant", "create", "client_alpha", "--parent", "northstar_msp").ok(t)

	res := s.run(t, "perm", "set", "acmesec", "max_rows", "1000", "--mode", "delegated", "--revocation", "cascade")
	res.ok(t)
	s.run(t, "perm", "set", "northstar_msp", "max_rows", "500", "--mode", "DELEGATED", "--revocation", "SOFT").ok(t)

	rows := tableRows(s.run(t, "perm", "get", "client_alpha").ok(t).stdout)
	if want := []string{"KEY", "VALUE", "MODE", "REVOCATION", "SOURCE", "INHERITED", "GRANTED_BY"}; !slices.Equal(rows[0], want) {
		t.Errorf("header %v, want %v", rows[0], want)
	}
	if r := rowFor(rows, "max_rows"); !slices.Equal(r, []string{"max_rows", "500", "DELEGATED", "SOFT", "northstar_msp", "yes", "platform"}) {
		t.Errorf("max_rows row %v, want 500 delegated from northstar_msp", r)
	}
	var one struct {
		Value  json.RawMessage `json:"value"`
		Source struct{ Slug string }
	}
	if err := json.Unmarshal([]byte(s.run(t, "perm", "get", "client_alpha", "max_rows", "--json").ok(t).stdout), &one); err != nil ||
		string(one.Value) != "500" || one.Source.Slug != "northstar_msp" {
		t.Errorf("perm get KEY --json: %+v %v", one, err)
	}

	// Widening a delegated value: the API's 422, exit 1, nothing written.
	res = s.run(t, "perm", "set", "client_alpha", "max_rows", "2000", "--mode", "DELEGATED", "--revocation", "SOFT")
	if res.code != 1 || !strings.Contains(res.stderr, "(widening, HTTP 422)") {
		t.Errorf("widening: exit %d, stderr %q", res.code, res.stderr)
	}
	tn, _ := s.cat.GetTenant(ctx, "client_alpha")
	if es, err := s.cat.ResolvePermissions(ctx, tn.ID); err != nil || len(es) != 1 || es[0].Source.Slug != "northstar_msp" {
		t.Errorf("after the refused widening: %+v %v", es, err)
	}

	// A cascading revoke names what it removed below.
	res = s.run(t, "perm", "revoke", "acmesec", "max_rows").ok(t)
	if !strings.Contains(res.stdout, "revoked max_rows on acmesec") || !strings.Contains(res.stdout, "northstar_msp") {
		t.Errorf("perm revoke output %q", res.stdout)
	}
	if out := s.run(t, "perm", "get", "client_alpha").ok(t).stdout; !strings.Contains(out, "no permission policies") {
		t.Errorf("after the cascade: %q", out)
	}
}

func TestCLIKeysAndAudit(t *testing.T) {
	s := newCLIStack(t)
	ctx := context.Background()
	s.run(t, "tenant", "create", "acmesec").ok(t)
	s.run(t, "tenant", "create", "northstar_msp", "--parent", "acmesec").ok(t)

	// create: the key, its secret once, and the reminder.
	res := s.run(t, "key", "create", "ops", "--scopes", "read,write", "--tenant", "northstar_msp", "--json").ok(t)
	var created struct {
		ID       string   `json:"id"`
		Secret   string   `json:"secret"`
		Scopes   []string `json:"scopes"`
		TenantID *string  `json:"tenant_id"`
	}
	if err := json.Unmarshal([]byte(res.stdout), &created); err != nil || created.Secret == "" || created.ID == "" {
		t.Fatalf("key create --json: %+v %v", created, err)
	}
	ns, err := s.cat.GetTenant(ctx, "northstar_msp")
	if err != nil {
		t.Fatal(err)
	}
	if created.TenantID == nil || *created.TenantID != ns.ID || !slices.Equal(created.Scopes, []string{"read", "write"}) {
		t.Errorf("key create: %+v, want bound to northstar_msp with read,write", created)
	}
	res = s.run(t, "key", "create", "viewer", "--scopes", "read").ok(t)
	if !strings.Contains(res.stdout, "secret:") || !strings.Contains(res.stdout, "shown only this once") {
		t.Errorf("key create table output %q: want the secret and the reminder", res.stdout)
	}

	// The new key works as --key, and sees only its subtree.
	env := map[string]string{"STRATUM_ADMIN_URL": s.url}
	rows := tableRows(cliRunEnv(t, env, "tenant", "list", "--key", created.Secret).ok(t).stdout)
	if len(rows) != 2 || rows[1][0] != "northstar_msp" {
		t.Errorf("tenant list with the bound key: %v, want northstar_msp only", rows)
	}

	// list shows both keys.
	rows = tableRows(s.run(t, "key", "list").ok(t).stdout)
	if r := rowFor(rows, created.ID); r == nil || r[1] != "ops" || r[2] != "read,write" || r[3] != "northstar_msp" {
		t.Errorf("key list row %v", r)
	}

	// rotate: a new secret; the old one stops working.
	var rotated struct {
		ID, Secret string
	}
	if err := json.Unmarshal([]byte(s.run(t, "key", "rotate", created.ID, "--json").ok(t).stdout), &rotated); err != nil || rotated.Secret == "" || rotated.ID == created.ID {
		t.Fatalf("key rotate --json: %+v %v", rotated, err)
	}
	if res := cliRunEnv(t, env, "tenant", "list", "--key", created.Secret); res.code != 1 || !strings.Contains(res.stderr, "HTTP 401") {
		t.Errorf("the rotated-away key: exit %d, stderr %q", res.code, res.stderr)
	}
	cliRunEnv(t, env, "tenant", "list", "--key", rotated.Secret).ok(t)
	s.run(t, "key", "revoke", rotated.ID).ok(t)
	if res := cliRunEnv(t, env, "tenant", "list", "--key", rotated.Secret); res.code != 1 {
		t.Errorf("a revoked key still works: %+v", res)
	}

	// audit list: the key mutations, newest first, with the actor.
	rows = tableRows(s.run(t, "audit", "list", "--action", "key.*").ok(t).stdout)
	if want := []string{"SEQ", "AT", "ACTOR", "ACTION", "TARGET", "SOURCE_IP", "REQUEST"}; !slices.Equal(rows[0], want) {
		t.Errorf("audit header %v, want %v", rows[0], want)
	}
	var actions []string
	for _, r := range rows[1:] {
		if len(r) < 6 || r[3] != "bootstrap" {
			t.Errorf("audit row %v: want actor bootstrap", r)
			continue
		}
		actions = append(actions, r[4])
	}
	if !slices.Equal(actions, []string{"key.revoke", "key.rotate", "key.create", "key.create"}) {
		t.Errorf("audit actions %v, want key.revoke key.rotate key.create key.create", actions)
	}
	var page struct {
		Events []map[string]any `json:"events"`
	}
	res = s.run(t, "audit", "list", "--tenant", "acmesec", "--subtree", "--limit", "1", "--json").ok(t)
	if err := json.Unmarshal([]byte(res.stdout), &page); err != nil || len(page.Events) != 1 {
		t.Errorf("audit list --limit 1 --json: %d events, %v", len(page.Events), err)
	}
	res = s.run(t, "audit", "list", "--since", "yesterday")
	if res.code != 1 || !strings.Contains(res.stderr, "HTTP 400") {
		t.Errorf("a bad --since: exit %d, stderr %q", res.code, res.stderr)
	}

	res = s.run(t, "audit", "verify").ok(t)
	if !strings.Contains(res.stdout, "the audit chain holds") {
		t.Errorf("audit verify: %q", res.stdout)
	}
}

func TestCLIErrors(t *testing.T) {
	s := newCLIStack(t)

	// A wrong key: 401, the API's message, exit 1.
	res := cliRunEnv(t, map[string]string{"STRATUM_ADMIN_URL": s.url}, "tenant", "list", "--key", "wrong")
	if res.code != 1 || !strings.Contains(res.stderr, "(unauthorized, HTTP 401)") {
		t.Errorf("wrong key: exit %d, stderr %q", res.code, res.stderr)
	}
	// No key at all: the same, with a hint where keys come from.
	res = cliRunEnv(t, map[string]string{"STRATUM_ADMIN_URL": s.url}, "tenant", "list", "--data-dir", t.TempDir())
	if res.code != 1 || !strings.Contains(res.stderr, "HTTP 401") || !strings.Contains(res.stderr, "STRATUM_ADMIN_KEY") {
		t.Errorf("no key: exit %d, stderr %q", res.code, res.stderr)
	}

	// The dev deployment's key, from its state file, when no key is given.
	dir := t.TempDir()
	b, _ := json.Marshal(cliDevState{AdminKey: cliTestKey})
	if err := os.WriteFile(filepath.Join(dir, "state.json"), b, 0o600); err != nil {
		t.Fatal(err)
	}
	cliRunEnv(t, map[string]string{}, "tenant", "list", "--admin-url", s.url, "--data-dir", dir).ok(t)

	// A dev deployment started with another --admin-listen: its state file
	// names the URL, so neither --admin-url nor the environment is needed;
	// the environment, then the flag, still win over it.
	b, _ = json.Marshal(cliDevState{AdminKey: cliTestKey, AdminURL: s.url})
	if err := os.WriteFile(filepath.Join(dir, "state.json"), b, 0o600); err != nil {
		t.Fatal(err)
	}
	cliRunEnv(t, map[string]string{}, "tenant", "list", "--data-dir", dir).ok(t)
	res = cliRunEnv(t, map[string]string{"STRATUM_ADMIN_URL": "http://127.0.0.1:1"}, "tenant", "list", "--data-dir", dir)
	if res.code != 1 || !strings.Contains(res.stderr, "cannot reach the admin API at http://127.0.0.1:1") {
		t.Errorf("STRATUM_ADMIN_URL must win over the dev state's URL: exit %d, stderr %q", res.code, res.stderr)
	}
	cliRunEnv(t, map[string]string{"STRATUM_ADMIN_URL": "http://127.0.0.1:1"}, "tenant", "list", "--data-dir", dir, "--admin-url", s.url).ok(t)

	// An unreachable API: exit 1 and what to check.
	res = cliRunEnv(t, map[string]string{}, "tenant", "list", "--admin-url", "http://127.0.0.1:1", "--key", "k")
	if res.code != 1 || !strings.Contains(res.stderr, "cannot reach the admin API") {
		t.Errorf("unreachable API: exit %d, stderr %q", res.code, res.stderr)
	}

	// Usage errors: exit 2 with usage text on stderr, nothing sent.
	for _, args := range [][]string{
		{"tenant"},
		{"tenant", "frobnicate"},
		{"tenant", "get"},
		{"tenant", "get", "a", "b"},
		{"tenant", "list", "--bogus"},
		{"tenant", "list", "--limit", "9999"},
		{"tenant", "move", "a"},
		{"config", "set", "acmesec", "k"},
		{"perm", "set", "acmesec", "sql.write", "true"},
		{"key", "create", "ops"},
		{"audit", "list", "--subtree"},
		{"tenant", "list", "--admin-url", "ftp://x"},
	} {
		res := s.run(t, args...)
		if res.code != 2 || !strings.HasPrefix(res.stderr, "error: ") || !strings.Contains(res.stderr, "Usage") || res.stdout != "" {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want 2 with usage on stderr", args, res.code, res.stdout, res.stderr)
		}
	}
	// --help: usage on stdout, exit 0.
	for _, args := range [][]string{{"tenant", "--help"}, {"config", "set", "--help"}, {"key", "help"}} {
		res := s.run(t, args...)
		if res.code != 0 || !strings.Contains(res.stdout, "Usage") {
			t.Errorf("%v: exit %d, stdout %q", args, res.code, res.stdout)
		}
	}
}

// TestCLIFollowsCursor checks pagination against a scripted API: list
// commands follow next_cursor to the end, --limit reads one page and says how
// to get the next.
func TestCLIFollowsCursor(t *testing.T) {
	pages := map[string]string{
		"":   `{"tenants":[{"id":"1","slug":"a","depth":1,"parent_id":null},{"id":"2","slug":"b","depth":2,"parent_id":"1"}],"next_cursor":"c1"}`,
		"c1": `{"tenants":[{"id":"3","slug":"c","depth":2,"parent_id":"1"}],"next_cursor":"c2"}`,
		"c2": `{"tenants":[{"id":"4","slug":"d","depth":1,"parent_id":null}],"next_cursor":null}`,
	}
	var limits []string
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/tenants" || r.Header.Get("Authorization") != "Bearer k" {
			w.WriteHeader(http.StatusNotFound)
			w.Write([]byte(`{"error":{"code":"not_found","message":"no"}}`))
			return
		}
		limits = append(limits, r.URL.Query().Get("limit"))
		w.Write([]byte(pages[r.URL.Query().Get("cursor")]))
	}))
	defer hs.Close()
	env := map[string]string{"STRATUM_ADMIN_URL": hs.URL, "STRATUM_ADMIN_KEY": "k"}

	rows := tableRows(cliRunEnv(t, env, "tenant", "list").ok(t).stdout)
	var slugs []string
	for _, r := range rows[1:] {
		slugs = append(slugs, r[0])
	}
	if !slices.Equal(slugs, []string{"a", "b", "c", "d"}) {
		t.Errorf("followed pages: %v, want a b c d", slugs)
	}
	if !slices.Equal(limits, []string{"500", "500", "500"}) {
		t.Errorf("page sizes asked %v, want 500 three times", limits)
	}
	if r := rowFor(rows, "c"); r == nil || r[len(r)-2] != "a" {
		t.Errorf("row c %v: want parent a (resolved across pages)", r)
	}
	var all struct {
		Tenants    []map[string]any `json:"tenants"`
		NextCursor *string          `json:"next_cursor"`
	}
	if err := json.Unmarshal([]byte(cliRunEnv(t, env, "tenant", "list", "--json").ok(t).stdout), &all); err != nil || len(all.Tenants) != 4 || all.NextCursor != nil {
		t.Errorf("tenant list --json over pages: %d tenants, next %v, err %v", len(all.Tenants), all.NextCursor, err)
	}

	limits = nil
	res := cliRunEnv(t, env, "tenant", "list", "--limit", "2").ok(t)
	if n := len(tableRows(res.stdout)); n != 3 || !strings.Contains(res.stderr, "--cursor c1") {
		t.Errorf("--limit 2: %d lines, stderr %q; want one page and a hint with the next cursor", n, res.stderr)
	}
	res = cliRunEnv(t, env, "tenant", "list", "--limit", "2", "--cursor", "c2").ok(t)
	if r := tableRows(res.stdout); len(r) != 2 || r[1][0] != "d" || res.stderr != "" {
		t.Errorf("--cursor c2: %v, stderr %q", r, res.stderr)
	}
	if !slices.Equal(limits, []string{"2", "2"}) {
		t.Errorf("page sizes asked %v, want 2 twice", limits)
	}
}

// TestCLIArgs covers the command-line reading that needs no server.
func TestCLIArgs(t *testing.T) {
	for in, want := range map[string]string{
		"1000": "1000", "true": "true", `"eu"`: `"eu"`, "eu": `"eu"`, "[1,2]": "[1,2]",
		`{"a":1}`: `{"a":1}`, "-5": "-5", "hello world": `"hello world"`, "": `""`,
	} {
		if got := string(cliValue(in)); got != want {
			t.Errorf("cliValue(%q) = %s, want %s", in, got, want)
		}
	}

	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	fs.Bool("locked", false, "")
	fs.String("parent", "", "")
	flags, pos := cliSplitArgs(fs, []string{"t", "--locked", "k", "--parent", "p", "-3", "--parent=q", "--", "--v"})
	if !slices.Equal(flags, []string{"--locked", "--parent", "p", "--parent=q"}) || !slices.Equal(pos, []string{"t", "k", "-3", "--v"}) {
		t.Errorf("cliSplitArgs: flags %v, positional %v", flags, pos)
	}

	// The dev key is read only for an admin API on this machine.
	dir := t.TempDir()
	b, _ := json.Marshal(cliDevState{AdminKey: "devkey"})
	if err := os.WriteFile(filepath.Join(dir, "state.json"), b, 0o600); err != nil {
		t.Fatal(err)
	}
	none := Env{Getenv: func(string) string { return "" }}
	for url, want := range map[string]string{"http://127.0.0.1:8080": "devkey", "localhost:8080": "devkey",
		"http://[::1]:8080": "devkey", "https://admin.example.com": ""} {
		c, err := newCLIClient(cliCommon{adminURL: url, dataDir: dir}, none)
		if err != nil {
			t.Errorf("admin url %s: %v", url, err)
		} else if c.key != want {
			t.Errorf("admin url %s: key %q, want %q", url, c.key, want)
		}
	}
	c, err := newCLIClient(cliCommon{adminURL: "http://127.0.0.1:8080", dataDir: dir, key: "flag"}, Env{Getenv: func(k string) string {
		return map[string]string{"STRATUM_ADMIN_KEY": "env"}[k]
	}})
	if err != nil || c.key != "flag" {
		t.Errorf("--key must win over the environment: %+v %v", c, err)
	}
	var ue *cliUsageError
	if _, err := newCLIClient(cliCommon{adminURL: "ftp://x"}, none); !errors.As(err, &ue) {
		t.Errorf("ftp admin url: %v, want a usage error", err)
	}
}

// TestCLIScriptedAnswers covers answers a healthy test server does not give:
// a broken audit chain, a rate limit, a non-JSON error.
func TestCLIScriptedAnswers(t *testing.T) {
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/v1/audit/verify":
			w.Write([]byte(`{"ok":false,"rows":5,"head":{"seq":5,"hash":"ab"},"break":{"seq":3,"reason":"hash mismatch"}}`))
		case "/v1/tenants":
			w.Header().Set("Retry-After", "7")
			w.WriteHeader(http.StatusTooManyRequests)
			w.Write([]byte(`{"error":{"code":"rate_limited","message":"the api key is over its rate limit"}}`))
		default:
			w.WriteHeader(http.StatusBadGateway)
			w.Write([]byte("<html>bad gateway</html>"))
		}
	}))
	defer hs.Close()
	env := map[string]string{"STRATUM_ADMIN_URL": hs.URL, "STRATUM_ADMIN_KEY": "k"}

	res := cliRunEnv(t, env, "audit", "verify")
	if res.code != 1 || !strings.Contains(res.stdout, "BROKEN at seq 3 (hash mismatch)") || !strings.Contains(res.stderr, "broken at seq 3") {
		t.Errorf("broken chain: exit %d, stdout %q, stderr %q", res.code, res.stdout, res.stderr)
	}
	res = cliRunEnv(t, env, "audit", "verify", "--json")
	if res.code != 1 || !json.Valid([]byte(res.stdout)) {
		t.Errorf("broken chain --json: exit %d, stdout %q", res.code, res.stdout)
	}
	res = cliRunEnv(t, env, "tenant", "list")
	if res.code != 1 || res.stderr != "error: the api key is over its rate limit; retry after 7s (rate_limited, HTTP 429)\n" {
		t.Errorf("rate limited: exit %d, stderr %q", res.code, res.stderr)
	}
	res = cliRunEnv(t, env, "tenant", "get", "x")
	if res.code != 1 || !strings.Contains(res.stderr, "HTTP 502") || !strings.Contains(res.stderr, "bad gateway") {
		t.Errorf("non-JSON error: exit %d, stderr %q", res.code, res.stderr)
	}
}
