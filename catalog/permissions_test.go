package catalog_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/stratum-hq/stratum-proxy/catalog"
	"github.com/stratum-hq/stratum-proxy/internal/pgtest"
)

func TestNarrowerOrEqual(t *testing.T) {
	t.Parallel()
	tests := []struct {
		a, b string
		want bool
	}{
		{`false`, `true`, true},
		{`true`, `true`, true},
		{`false`, `false`, true},
		{`true`, `false`, false},
		{`3`, `5`, true},
		{`5`, `5.0`, true},
		{`5.5`, `5`, false},
		{`-1e3`, `0`, true},
		{`1e400`, `1e399`, false},
		{`1e99999999999999999999`, `1`, false},
		{`[]`, `["a"]`, true},
		{`["a"]`, `["a","b"]`, true},
		{`["b","a","a"]`, `["a","b"]`, true},
		{`["a","c"]`, `["a","b"]`, false},
		{`[1]`, `[1.0, 2]`, true},
		{`[{"x":1}]`, `[{"x":1},{"y":2}]`, true},
		{`"eu"`, `"eu"`, true},
		{`"eu"`, `"us"`, false},
		{`{"a":1,"b":[2]}`, `{"b":[2],"a":1}`, true},
		{`{"a":1}`, `{"a":1,"b":2}`, false},
		{`null`, `null`, true},
		{`null`, `false`, false},
		{`false`, `0`, false},
		{`"1"`, `1`, false},
		{`[1]`, `1`, false},
		{`not json`, `true`, false},
	}
	for _, tc := range tests {
		if got := catalog.NarrowerOrEqual(json.RawMessage(tc.a), json.RawMessage(tc.b)); got != tc.want {
			t.Errorf("NarrowerOrEqual(%s, %s) = %v, want %v", tc.a, tc.b, got, tc.want)
		}
	}
}

// permFixture is a catalog with the tree
//
//	root ─ msp ─ client ─ leaf
//	     └ other
type permFixture struct {
	c                              *catalog.Catalog
	conn                           *pgx.Conn
	root, msp, client, leaf, other *catalog.Tenant
}

func newPermFixture(t *testing.T) *permFixture {
	t.Helper()
	srv := pgtest.Get(t)
	url := srv.URL(srv.NewDatabase(t, "perm"))
	c := open(t, url)
	ctx := context.Background()
	if _, err := c.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	insert := func(slug, parent string) *catalog.Tenant {
		id, short, err := catalog.NewID()
		if err != nil {
			t.Fatal(err)
		}
		tn, err := c.InsertTenant(ctx, catalog.NewTenant{ID: id, ShortID: short, Slug: slug, Name: slug, Parent: parent,
			Isolation: "shared", Backend: "main", Database: "app", Schema: "public", Role: "r_" + short, RolePassword: "pw"})
		if err != nil {
			t.Fatal(err)
		}
		return tn
	}
	f := &permFixture{c: c}
	f.root = insert("root", "")
	f.msp = insert("msp", "root")
	f.client = insert("client", "msp")
	f.leaf = insert("leaf", "client")
	f.other = insert("other", "root")
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	f.conn = conn
	return f
}

// as is a context whose actor is a key bound to tn (nil: the platform).
func as(tn *catalog.Tenant) context.Context {
	a := catalog.Actor{KeyID: "platform-key", Name: "platform", RequestID: "r", SourceIP: "127.0.0.1"}
	if tn != nil {
		a.KeyID, a.Name, a.TenantID = "key-"+tn.Slug, tn.Slug+" key", &tn.ID
	}
	return catalog.WithActor(context.Background(), a)
}

func (f *permFixture) set(ctx context.Context, tn *catalog.Tenant, key, value, mode, rev string) error {
	_, err := f.c.SetPermission(ctx, tn.Slug, catalog.PermissionPolicy{Key: key, Value: json.RawMessage(value),
		Mode: mode, Revocation: rev})
	return err
}

func (f *permFixture) mustSet(t *testing.T, ctx context.Context, tn *catalog.Tenant, key, value, mode, rev string) {
	t.Helper()
	if err := f.set(ctx, tn, key, value, mode, rev); err != nil {
		t.Fatalf("setting %s on %s: %v", key, tn.Slug, err)
	}
}

// stored returns the policies for key as "slug=value/mode/revocation/granter",
// in tree order, straight from the table.
func (f *permFixture) stored(t *testing.T, key string) []string {
	t.Helper()
	rows, err := f.conn.Query(context.Background(), `SELECT t.slug || '=' || p.value::text || '/' || p.mode || '/' ||
			p.revocation || '/' || coalesce(g.slug, 'platform')
		FROM permission_policies p JOIN tenants t ON t.id = p.tenant_id LEFT JOIN tenants g ON g.id = p.granted_by
		WHERE p.key = $1 ORDER BY t.path`, key)
	if err != nil {
		t.Fatal(err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func (f *permFixture) wantStored(t *testing.T, key string, want ...string) {
	t.Helper()
	got := f.stored(t, key)
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("stored %s: %q, want %q", key, got, want)
	}
}

// resolved returns tn's entry for key, nil when none.
func (f *permFixture) resolved(t *testing.T, tn *catalog.Tenant, key string) *catalog.PermissionEntry {
	t.Helper()
	all, err := f.c.ResolvePermissions(context.Background(), tn.ID)
	if err != nil {
		t.Fatal(err)
	}
	for i := range all {
		if all[i].Key == key {
			return &all[i]
		}
	}
	return nil
}

// wantResolved checks tn's entry for key: its value, source slug and mode.
func (f *permFixture) wantResolved(t *testing.T, tn *catalog.Tenant, key, value, source, mode string) {
	t.Helper()
	e := f.resolved(t, tn, key)
	if e == nil {
		t.Fatalf("%s resolves no %s, want %s from %s", tn.Slug, key, value, source)
	}
	var got, want any
	if err := json.Unmarshal(e.Value, &got); err != nil {
		t.Fatalf("%s resolves %s to %q, not JSON: %v", tn.Slug, key, e.Value, err)
	}
	if err := json.Unmarshal([]byte(value), &want); err != nil {
		t.Fatalf("the wanted value %q is not JSON: %v", value, err)
	}
	gb, err := json.Marshal(got)
	if err != nil {
		t.Fatal(err)
	}
	wb, err := json.Marshal(want)
	if err != nil {
		t.Fatal(err)
	}
	if string(gb) != string(wb) || e.Source.Slug != source || e.Mode != mode || e.Inherited != (source != tn.Slug) {
		t.Fatalf("%s resolves %s = %s from %s (%s, inherited %v), want %s from %s (%s)",
			tn.Slug, key, e.Value, e.Source.Slug, e.Mode, e.Inherited, value, source, mode)
	}
}

// wantRefused checks err is a *PermissionError with reason, naming holder.
func wantRefused(t *testing.T, err error, reason string, holder *catalog.Tenant) *catalog.PermissionError {
	t.Helper()
	var pe *catalog.PermissionError
	if !errors.As(err, &pe) || pe.Reason != reason || pe.Holder.ID != holder.ID {
		t.Fatalf("got %v, want a %s refusal naming %s", err, reason, holder.Slug)
	}
	if !strings.Contains(pe.Error(), `"`+holder.Slug+`"`) {
		t.Errorf("message %q does not name %s", pe.Error(), holder.Slug)
	}
	switch reason {
	case catalog.ReasonWidening:
		if !errors.Is(err, catalog.ErrWidening) || !errors.Is(err, catalog.ErrInvalid) {
			t.Errorf("widening error %v does not match ErrWidening and ErrInvalid", err)
		}
	default:
		if !errors.Is(err, catalog.ErrLocked) {
			t.Errorf("%s error %v does not match ErrLocked", reason, err)
		}
	}
	return pe
}

func TestPermissionLocked(t *testing.T) {
	t.Parallel()
	f := newPermFixture(t)
	platform := as(nil)

	// The platform locks sql.ddl on msp.
	f.mustSet(t, platform, f.msp, "sql.ddl", "false", catalog.PolicyLocked, catalog.RevokeCascade)
	for _, tn := range []*catalog.Tenant{f.msp, f.client, f.leaf} {
		f.wantResolved(t, tn, "sql.ddl", "false", "msp", catalog.PolicyLocked)
	}
	if e := f.resolved(t, f.other, "sql.ddl"); e != nil {
		t.Fatalf("other resolves %+v, want nothing", e)
	}
	if e := f.resolved(t, f.leaf, "sql.ddl"); e.GrantedBy != nil {
		t.Errorf("granted by %v, want the platform", e.GrantedBy)
	}

	// It binds msp itself: msp's own key and its ancestor root (not above the
	// platform) can neither change nor revoke it.
	for _, actor := range []*catalog.Tenant{f.msp, f.root} {
		err := f.set(as(actor), f.msp, "sql.ddl", "true", catalog.PolicyLocked, catalog.RevokeCascade)
		pe := wantRefused(t, err, catalog.ReasonLocked, f.msp)
		if pe.GrantedBy != nil {
			t.Errorf("refusal names granter %v, want the platform", pe.GrantedBy)
		}
		if !strings.Contains(err.Error(), "the platform") {
			t.Errorf("message %q does not name the granter", err)
		}
		_, err = f.c.RevokePermission(as(actor), f.msp.Slug, "sql.ddl")
		wantRefused(t, err, catalog.ReasonLocked, f.msp)
	}
	// No descendant may set it at all, whoever asks (the platform included).
	for _, actor := range []*catalog.Tenant{f.client, f.msp, nil} {
		for _, target := range []*catalog.Tenant{f.client, f.leaf} {
			err := f.set(as(actor), target, "sql.ddl", "false", catalog.PolicyDelegated, catalog.RevokeSoft)
			wantRefused(t, err, catalog.ReasonLocked, f.msp)
		}
	}
	f.wantStored(t, "sql.ddl", "msp=false/LOCKED/CASCADE/platform")

	// The platform may change it.
	f.mustSet(t, platform, f.msp, "sql.ddl", "true", catalog.PolicyLocked, catalog.RevokeCascade)
	f.wantResolved(t, f.leaf, "sql.ddl", "true", "msp", catalog.PolicyLocked)

	// A lock granted by root on msp: root and the platform may change it, msp
	// may not.
	f.mustSet(t, as(f.root), f.msp, "feature.x", `"on"`, catalog.PolicyLocked, catalog.RevokeSoft)
	wantRefused(t, f.set(as(f.msp), f.msp, "feature.x", `"off"`, catalog.PolicyLocked, catalog.RevokeSoft),
		catalog.ReasonLocked, f.msp)
	f.mustSet(t, as(f.root), f.msp, "feature.x", `"off"`, catalog.PolicyLocked, catalog.RevokeSoft)
	f.mustSet(t, platform, f.msp, "feature.x", `"auto"`, catalog.PolicyLocked, catalog.RevokeSoft)
	// Now the platform granted it: root is no longer above the granter.
	wantRefused(t, f.set(as(f.root), f.msp, "feature.x", `"off"`, catalog.PolicyLocked, catalog.RevokeSoft),
		catalog.ReasonLocked, f.msp)
	f.wantStored(t, "feature.x", "msp=\"auto\"/LOCKED/SOFT/platform")

	// A tenant's own lock (granted by itself) it may change and revoke.
	f.mustSet(t, as(f.client), f.client, "feature.y", "1", catalog.PolicyLocked, catalog.RevokeSoft)
	f.mustSet(t, as(f.client), f.client, "feature.y", "2", catalog.PolicyLocked, catalog.RevokeSoft)
	if _, err := f.c.RevokePermission(as(f.client), f.client.Slug, "feature.y"); err != nil {
		t.Fatal(err)
	}
	f.wantStored(t, "feature.y")
}

func TestPermissionInherited(t *testing.T) {
	t.Parallel()
	f := newPermFixture(t)
	f.mustSet(t, as(f.root), f.msp, "sql.write", "true", catalog.PolicyInherited, catalog.RevokeCascade)
	f.wantResolved(t, f.leaf, "sql.write", "true", "msp", catalog.PolicyInherited)

	// The holder may change it.
	f.mustSet(t, as(f.msp), f.msp, "sql.write", "false", catalog.PolicyInherited, catalog.RevokeCascade)
	f.wantResolved(t, f.client, "sql.write", "false", "msp", catalog.PolicyInherited)
	f.wantStored(t, "sql.write", "msp=false/INHERITED/CASCADE/msp")

	// No descendant may change or re-grant it, not even narrower, whoever asks.
	for _, actor := range []*catalog.Tenant{f.client, f.msp, f.root, nil} {
		for _, target := range []*catalog.Tenant{f.client, f.leaf} {
			for _, mode := range []string{catalog.PolicyDelegated, catalog.PolicyLocked, catalog.PolicyInherited} {
				err := f.set(as(actor), target, "sql.write", "false", mode, catalog.RevokeSoft)
				wantRefused(t, err, catalog.ReasonInherited, f.msp)
			}
		}
	}
	f.wantStored(t, "sql.write", "msp=false/INHERITED/CASCADE/msp")

	// The holder may revoke it.
	if _, err := f.c.RevokePermission(as(f.msp), f.msp.Slug, "sql.write"); err != nil {
		t.Fatal(err)
	}
	f.wantStored(t, "sql.write")
	if e := f.resolved(t, f.leaf, "sql.write"); e != nil {
		t.Fatalf("leaf still resolves %+v", e)
	}
}

func TestPermissionDelegated(t *testing.T) {
	t.Parallel()
	f := newPermFixture(t)
	tests := []struct {
		key, top, narrower, wider, narrowest string
		overTop                              string // wider than top; "" when nothing is
	}{
		{"limits.bool", "true", "false", "true", "false", ""},
		{"limits.rows", "100", "50", "60", "10", "101"},
		{"limits.regions", `["eu","us","ap"]`, `["eu","us"]`, `["eu","ap"]`, `["eu"]`, `["eu","sa"]`},
	}
	for _, tc := range tests {
		t.Run(tc.key, func(t *testing.T) {
			f.mustSet(t, as(f.root), f.msp, tc.key, tc.top, catalog.PolicyDelegated, catalog.RevokeCascade)
			// Equal and narrower re-grants are allowed and become effective.
			f.mustSet(t, as(f.msp), f.client, tc.key, tc.top, catalog.PolicyDelegated, catalog.RevokeSoft)
			f.mustSet(t, as(f.msp), f.client, tc.key, tc.narrower, catalog.PolicyDelegated, catalog.RevokeSoft)
			f.wantResolved(t, f.client, tc.key, tc.narrower, "client", catalog.PolicyDelegated)
			f.wantResolved(t, f.leaf, tc.key, tc.narrower, "client", catalog.PolicyDelegated)

			// Wider than the effective value above is refused, naming the
			// delegating tenant and both values.
			err := f.set(as(f.client), f.leaf, tc.key, tc.wider, catalog.PolicyDelegated, catalog.RevokeSoft)
			pe := wantRefused(t, err, catalog.ReasonWidening, f.client)
			if !catalog.NarrowerOrEqual(pe.Limit, json.RawMessage(tc.narrower)) ||
				!catalog.NarrowerOrEqual(json.RawMessage(tc.narrower), pe.Limit) || string(pe.Value) != tc.wider {
				t.Errorf("widening names values %s and %s", pe.Value, pe.Limit)
			}
			if tc.overTop != "" {
				err = f.set(as(f.msp), f.client, tc.key, tc.overTop, catalog.PolicyDelegated, catalog.RevokeSoft)
				wantRefused(t, err, catalog.ReasonWidening, f.msp)
			}
			f.wantResolved(t, f.leaf, tc.key, tc.narrower, "client", catalog.PolicyDelegated)

			// A narrower re-grant may take any mode; a LOCKED one then binds
			// below it.
			f.mustSet(t, as(f.client), f.leaf, tc.key, tc.narrowest, catalog.PolicyLocked, catalog.RevokeSoft)
			f.wantResolved(t, f.leaf, tc.key, tc.narrowest, "leaf", catalog.PolicyLocked)
			f.wantResolved(t, f.client, tc.key, tc.narrower, "client", catalog.PolicyDelegated)
		})
	}

	// A copy that became wider (its delegator narrowed later) no longer
	// counts: the tenant resolves the narrower value from above.
	f.mustSet(t, as(f.root), f.msp, "limits.conns", "10", catalog.PolicyDelegated, catalog.RevokeSoft)
	f.mustSet(t, as(f.msp), f.client, "limits.conns", "8", catalog.PolicyInherited, catalog.RevokeSoft)
	f.wantResolved(t, f.leaf, "limits.conns", "8", "client", catalog.PolicyInherited)
	f.mustSet(t, as(f.root), f.msp, "limits.conns", "5", catalog.PolicyDelegated, catalog.RevokeSoft)
	f.wantResolved(t, f.client, "limits.conns", "5", "msp", catalog.PolicyDelegated)
	f.wantResolved(t, f.leaf, "limits.conns", "5", "msp", catalog.PolicyDelegated)

	// Without a policy above, anything goes.
	f.mustSet(t, as(f.client), f.client, "limits.other", `{"any":"thing"}`, catalog.PolicyDelegated, catalog.RevokeSoft)
	f.wantResolved(t, f.leaf, "limits.other", `{"any":"thing"}`, "client", catalog.PolicyDelegated)
}

func TestPermissionRevocation(t *testing.T) {
	t.Parallel()
	f := newPermFixture(t)
	ctx := as(f.root)
	for _, rev := range []string{catalog.RevokeSoft, catalog.RevokeCascade} {
		key := "rev." + strings.ToLower(rev)
		f.mustSet(t, ctx, f.msp, key, `["a","b","c"]`, catalog.PolicyDelegated, rev)
		f.mustSet(t, ctx, f.client, key, `["a","b"]`, catalog.PolicyDelegated, catalog.RevokeSoft)
		f.mustSet(t, ctx, f.leaf, key, `["a"]`, catalog.PolicyDelegated, catalog.RevokeSoft)
	}
	// SOFT: only msp's policy goes; the copies stay and resolve on their own.
	r, err := f.c.RevokePermission(ctx, f.msp.Slug, "rev.soft")
	if err != nil {
		t.Fatal(err)
	}
	if r.Revoked.Tenant.Slug != "msp" || len(r.Removed) != 0 {
		t.Fatalf("soft revocation %+v", r)
	}
	f.wantStored(t, "rev.soft", `client=["a", "b"]/DELEGATED/SOFT/root`, `leaf=["a"]/DELEGATED/SOFT/root`)
	f.wantResolved(t, f.client, "rev.soft", `["a","b"]`, "client", catalog.PolicyDelegated)
	if e := f.resolved(t, f.msp, "rev.soft"); e != nil {
		t.Fatalf("msp still resolves %+v", e)
	}
	// CASCADE: the whole subtree's copies go, each with an audit row.
	r, err = f.c.RevokePermission(ctx, f.msp.Slug, "rev.cascade")
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Removed) != 2 || r.Removed[0].Tenant.Slug != "client" || r.Removed[1].Tenant.Slug != "leaf" {
		t.Fatalf("cascade removed %+v", r.Removed)
	}
	f.wantStored(t, "rev.cascade")
	for _, tn := range []*catalog.Tenant{f.msp, f.client, f.leaf} {
		if e := f.resolved(t, tn, "rev.cascade"); e != nil {
			t.Fatalf("%s still resolves %+v", tn.Slug, e)
		}
		var n int
		if err := f.conn.QueryRow(context.Background(), `SELECT count(*) FROM audit_log
			WHERE action = 'permission.revoke' AND target = $1 AND tenant_id = $2 AND actor_key_id = 'key-root'
			AND before->>'key' = 'rev.cascade' AND after IS NULL`,
			"permission:"+tn.Slug+"/rev.cascade", tn.ID).Scan(&n); err != nil || n != 1 {
			t.Fatalf("revoke audit rows of %s: %d (%v)", tn.Slug, n, err)
		}
	}
	// Revoking what the tenant does not hold itself is not found.
	if _, err := f.c.RevokePermission(ctx, f.leaf.Slug, "rev.cascade"); !errors.Is(err, catalog.ErrNotFound) {
		t.Fatalf("revoking a missing policy: %v", err)
	}
	if _, err := f.c.RevokePermission(ctx, f.leaf.Slug, "rev.soft"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.c.RevokePermission(ctx, f.leaf.Slug, "rev.soft"); !errors.Is(err, catalog.ErrNotFound) {
		t.Fatalf("revoking twice: %v", err)
	}
}

func TestPermissionPermanent(t *testing.T) {
	t.Parallel()
	f := newPermFixture(t)
	// root grants client a PERMANENT policy.
	f.mustSet(t, as(f.root), f.client, "quota.rows", "100", catalog.PolicyDelegated, catalog.RevokePermanent)

	// Neither the holder nor its parent (below the granter) may downgrade it...
	downgrades := []struct{ value, mode, rev string }{
		{"50", catalog.PolicyDelegated, catalog.RevokePermanent},    // narrower
		{"100", catalog.PolicyInherited, catalog.RevokePermanent},   // other mode
		{"100", catalog.PolicyDelegated, catalog.RevokeCascade},     // other revocation
		{"200", catalog.PolicyDelegated, catalog.RevokeSoft},        // wider, but other revocation
		{`"100"`, catalog.PolicyDelegated, catalog.RevokePermanent}, // not comparable
	}
	for _, actor := range []*catalog.Tenant{f.client, f.msp} {
		for _, d := range downgrades {
			err := f.set(as(actor), f.client, "quota.rows", d.value, d.mode, d.rev)
			pe := wantRefused(t, err, catalog.ReasonPermanent, f.client)
			if pe.GrantedBy == nil || pe.GrantedBy.Slug != "root" || !strings.Contains(err.Error(), `"root"`) {
				t.Errorf("refusal %v does not name the granter root", err)
			}
		}
		// ...nor revoke it.
		_, err := f.c.RevokePermission(as(actor), f.client.Slug, "quota.rows")
		wantRefused(t, err, catalog.ReasonPermanent, f.client)
	}
	f.wantStored(t, "quota.rows", "client=100/DELEGATED/PERMANENT/root")

	// Widening it is no downgrade, and the grant stays root's.
	f.mustSet(t, as(f.client), f.client, "quota.rows", "150", catalog.PolicyDelegated, catalog.RevokePermanent)
	f.wantStored(t, "quota.rows", "client=150/DELEGATED/PERMANENT/root")
	_, err := f.c.RevokePermission(as(f.client), f.client.Slug, "quota.rows")
	wantRefused(t, err, catalog.ReasonPermanent, f.client)

	// A cascading revocation from above that would remove it is refused, and
	// removes nothing.
	f.mustSet(t, as(f.msp), f.msp, "quota.rows", "1000", catalog.PolicyDelegated, catalog.RevokeCascade)
	f.mustSet(t, as(f.msp), f.leaf, "quota.rows", "10", catalog.PolicyDelegated, catalog.RevokeSoft)
	_, err = f.c.RevokePermission(as(f.msp), f.msp.Slug, "quota.rows")
	wantRefused(t, err, catalog.ReasonPermanent, f.client)
	want := []string{"msp=1000/DELEGATED/CASCADE/msp", "client=150/DELEGATED/PERMANENT/root", "leaf=10/DELEGATED/SOFT/msp"}
	f.wantStored(t, "quota.rows", want...)

	// The granter may downgrade it.
	f.mustSet(t, as(f.root), f.client, "quota.rows", "120", catalog.PolicyDelegated, catalog.RevokePermanent)
	// The granter's cascade from above passes it.
	if _, err := f.c.RevokePermission(as(f.root), f.msp.Slug, "quota.rows"); err != nil {
		t.Fatal(err)
	}
	f.wantStored(t, "quota.rows")

	// Revoked by the granter, a PERMANENT policy goes like CASCADE.
	f.mustSet(t, as(f.root), f.client, "quota.conns", "5", catalog.PolicyDelegated, catalog.RevokePermanent)
	f.mustSet(t, as(f.client), f.leaf, "quota.conns", "3", catalog.PolicyDelegated, catalog.RevokeSoft)
	r, err := f.c.RevokePermission(as(f.root), f.client.Slug, "quota.conns")
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Removed) != 1 || r.Removed[0].Tenant.Slug != "leaf" {
		t.Fatalf("removed %+v", r.Removed)
	}
	f.wantStored(t, "quota.conns")

	// The platform is above every granter: it may revoke any PERMANENT
	// policy, audited as itself.
	f.mustSet(t, as(f.msp), f.client, "quota.mem", "7", catalog.PolicyDelegated, catalog.RevokePermanent)
	if _, err := f.c.RevokePermission(as(nil), f.client.Slug, "quota.mem"); err != nil {
		t.Fatalf("the platform may revoke a PERMANENT policy: %v", err)
	}
	// A tenant above the granter may revoke one set in its subtree.
	f.mustSet(t, as(f.client), f.leaf, "quota.mem", "3", catalog.PolicyDelegated, catalog.RevokePermanent)
	_, err = f.c.RevokePermission(as(f.leaf), f.leaf.Slug, "quota.mem")
	wantRefused(t, err, catalog.ReasonPermanent, f.leaf)
	if _, err := f.c.RevokePermission(as(f.msp), f.leaf.Slug, "quota.mem"); err != nil {
		t.Fatalf("a tenant above the granter may revoke its PERMANENT policy: %v", err)
	}
	f.wantStored(t, "quota.mem")

	// A platform grant is the platform's alone.
	f.mustSet(t, as(nil), f.msp, "quota.dbs", "2", catalog.PolicyInherited, catalog.RevokePermanent)
	for _, actor := range []*catalog.Tenant{f.root, f.msp} {
		_, err := f.c.RevokePermission(as(actor), f.msp.Slug, "quota.dbs")
		wantRefused(t, err, catalog.ReasonPermanent, f.msp)
	}
	if _, err := f.c.RevokePermission(as(nil), f.msp.Slug, "quota.dbs"); err != nil {
		t.Fatal(err)
	}
	f.wantStored(t, "quota.dbs")

	// A cascade also stops at a LOCKED copy it may not revoke.
	f.mustSet(t, as(f.msp), f.msp, "quota.ips", "[1,2]", catalog.PolicyDelegated, catalog.RevokeCascade)
	f.mustSet(t, as(nil), f.client, "quota.ips", "[1]", catalog.PolicyLocked, catalog.RevokeSoft)
	_, err = f.c.RevokePermission(as(f.msp), f.msp.Slug, "quota.ips")
	wantRefused(t, err, catalog.ReasonLocked, f.client)
	f.wantStored(t, "quota.ips", "msp=[1, 2]/DELEGATED/CASCADE/msp", "client=[1]/LOCKED/SOFT/platform")
}

func TestPermissionActorsAndAudit(t *testing.T) {
	t.Parallel()
	f := newPermFixture(t)
	bg := context.Background()

	// A bound actor reaches only its subtree: outside it, tenants are missing.
	for _, target := range []*catalog.Tenant{f.root, f.other, f.msp} {
		err := f.set(as(f.client), target, "a.b", "1", catalog.PolicyDelegated, catalog.RevokeSoft)
		if !errors.Is(err, catalog.ErrNotFound) {
			t.Fatalf("client key on %s: %v, want ErrNotFound", target.Slug, err)
		}
	}
	f.mustSet(t, as(f.root), f.other, "a.b", "1", catalog.PolicyDelegated, catalog.RevokeSoft)
	if _, err := f.c.RevokePermission(as(f.msp), f.other.Slug, "a.b"); !errors.Is(err, catalog.ErrNotFound) {
		t.Fatalf("msp key revoking on other: %v", err)
	}
	f.wantStored(t, "a.b", "other=1/DELEGATED/SOFT/root")

	// Malformed policies are invalid and write nothing.
	bad := []catalog.PermissionPolicy{
		{Key: "Bad-Key", Value: json.RawMessage(`1`), Mode: "LOCKED", Revocation: "SOFT"},
		{Key: "a.b", Value: json.RawMessage(`1`), Mode: "locked", Revocation: "SOFT"},
		{Key: "a.b", Value: json.RawMessage(`1`), Mode: "LOCKED", Revocation: "soft"},
		{Key: "a.b", Value: nil, Mode: "LOCKED", Revocation: "SOFT"},
		{Key: "a.b", Value: json.RawMessage(`{`), Mode: "LOCKED", Revocation: "SOFT"},
		{Key: "a.b", Value: json.RawMessage(`"x\u0000y"`), Mode: "LOCKED", Revocation: "SOFT"},
		{Key: "a.b", Value: json.RawMessage(`1e99999999`), Mode: "LOCKED", Revocation: "SOFT"},
		{Key: "sql.write", Value: json.RawMessage(`"yes"`), Mode: "LOCKED", Revocation: "SOFT"},
		{Key: "sql.ddl", Value: json.RawMessage(`1`), Mode: "LOCKED", Revocation: "SOFT"},
	}
	for _, p := range bad {
		if _, err := f.c.SetPermission(as(nil), f.root.Slug, p); !errors.Is(err, catalog.ErrInvalid) {
			t.Errorf("%+v: %v, want ErrInvalid", p, err)
		}
	}
	var n int
	if err := f.conn.QueryRow(bg, `SELECT count(*) FROM permission_policies WHERE tenant_id = $1`, f.root.ID).Scan(&n); err != nil || n != 0 {
		t.Fatalf("%d policies on root after refusals (%v)", n, err)
	}
	if _, err := f.c.SetPermission(as(nil), "nobody", catalog.PermissionPolicy{Key: "a.b", Value: json.RawMessage(`1`),
		Mode: "LOCKED", Revocation: "SOFT"}); !errors.Is(err, catalog.ErrNotFound) {
		t.Fatalf("unknown tenant: %v", err)
	}
	for _, id := range []string{"nope", "00000000-0000-4000-8000-000000000000"} {
		if _, err := f.c.ResolvePermissions(bg, id); !errors.Is(err, catalog.ErrNotFound) {
			t.Fatalf("resolving %s: %v", id, err)
		}
	}
	if got, err := f.c.ResolvePermissions(bg, f.leaf.ID); err != nil || got == nil || len(got) != 0 {
		t.Fatalf("leaf resolves %v (%v), want an empty list", got, err)
	}

	// Every set has one audit row with before and after; a set that changes
	// nothing writes none.
	countAudit := func() int {
		var n int
		if err := f.conn.QueryRow(bg, `SELECT count(*) FROM audit_log WHERE action LIKE 'permission.%'`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	base := countAudit()
	f.mustSet(t, as(f.msp), f.client, "a.c", "true", catalog.PolicyDelegated, catalog.RevokeSoft)
	f.mustSet(t, as(f.msp), f.client, "a.c", "false", catalog.PolicyDelegated, catalog.RevokeSoft)
	f.mustSet(t, as(f.msp), f.client, "a.c", "false", catalog.PolicyDelegated, catalog.RevokeSoft)
	if got := countAudit(); got != base+2 {
		t.Fatalf("%d audit rows after two changes and a no-op, want %d", got, base+2)
	}
	var before, after []byte
	var actor string
	var tenantID *string
	if err := f.conn.QueryRow(bg, `SELECT before, after, actor_key_id, tenant_id FROM audit_log
		WHERE action = 'permission.set' AND target = 'permission:client/a.c' ORDER BY seq DESC LIMIT 1`).
		Scan(&before, &after, &actor, &tenantID); err != nil {
		t.Fatal(err)
	}
	var b, a catalog.PermissionGrant
	if err := json.Unmarshal(before, &b); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(after, &a); err != nil {
		t.Fatal(err)
	}
	if string(b.Value) != "true" || string(a.Value) != "false" || a.Mode != "DELEGATED" || a.Tenant.Slug != "client" ||
		a.GrantedBy == nil || a.GrantedBy.Slug != "msp" || actor != "key-msp" || tenantID == nil || *tenantID != f.client.ID {
		t.Fatalf("audit row before %s after %s actor %s tenant %v", before, after, actor, tenantID)
	}
	// A refused change writes no audit row either.
	base = countAudit()
	// client holds a.c = false: granting its leaf true would widen it.
	if err := f.set(as(f.client), f.leaf, "a.c", "true", catalog.PolicyDelegated, catalog.RevokeSoft); !errors.Is(err, catalog.ErrWidening) {
		t.Fatalf("client granting its leaf a.c = true over its own false: %v, want ErrWidening", err)
	}
	if got := countAudit(); got != base {
		t.Fatalf("a refused change wrote %d audit rows", got-base)
	}
}
