package catalog_test

import (
	"context"
	"errors"
	"testing"

	"github.com/stratum-hq/stratum-proxy/catalog"
)

// TestActorReach: the catalog itself refuses changes by an actor bound to a
// tenant to anything outside that tenant's subtree, inside the transaction,
// whatever the caller checked before.
func TestActorReach(t *testing.T) {
	e := newTreeEnv(t)
	ctx := context.Background()
	msp := e.mustInsert("msp", "")
	e.mustInsert("inside", "msp")
	other := e.mustInsert("other", "")
	for _, tn := range []string{"msp", "inside", "other"} {
		if err := e.c.SetTenantStatus(ctx, e.get(tn).ID, catalog.StatusActive); err != nil {
			t.Fatal(err)
		}
	}
	outsideKey, _, err := e.c.CreateAPIKey(ctx, "outside", []string{"read"}, &other.ID)
	if err != nil {
		t.Fatal(err)
	}
	bound := catalog.WithActor(ctx, catalog.Actor{KeyID: "k", Name: "bound", TenantID: &msp.ID})
	const rows = `SELECT (SELECT count(*) FROM config_values) + (SELECT count(*) FROM permission_policies) +
		(SELECT count(*) FROM api_keys WHERE revoked_at IS NULL)`
	before, beforeRows := e.snapshot(), e.scalar(rows)
	refused := map[string]error{}
	_, refused["move outside"] = e.c.MoveTenant(bound, "other", "msp")
	_, refused["move under outside"] = e.c.MoveTenant(bound, "inside", "other")
	_, refused["suspend outside"] = e.c.SuspendTenant(bound, "other")
	refused["config outside"] = e.c.SetConfig(bound, other.ID, "x", catalog.ConfigValue{Value: []byte("1")})
	_, refused["permission outside"] = e.c.SetPermission(bound, "other", catalog.PermissionPolicy{Key: "sql.write",
		Value: []byte("false"), Mode: catalog.PolicyLocked, Revocation: catalog.RevokeCascade})
	_, refused["revoke outside key"] = e.c.RevokeAPIKey(bound, outsideKey.ID)
	_, _, refused["mint unbound key"] = e.c.InsertAPIKey(bound, catalog.NewAPIKey{Name: "x", Scopes: []string{"read"}})
	_, _, refused["mint key outside"] = e.c.InsertAPIKey(bound, catalog.NewAPIKey{Name: "x", Scopes: []string{"read"}, TenantID: &other.ID})
	for name, err := range refused {
		if !errors.Is(err, catalog.ErrNotFound) {
			t.Errorf("%s by a key bound to msp: %v, want ErrNotFound", name, err)
		}
	}
	if after, afterRows := e.snapshot(), e.scalar(rows); after != before || afterRows != beforeRows {
		t.Errorf("refused changes wrote something:\n%s (%d rows)\nthen\n%s (%d rows)", before, beforeRows, after, afterRows)
	}
	// Inside its subtree the same actor works.
	if err := e.c.SetConfig(bound, e.get("inside").ID, "x", catalog.ConfigValue{Value: []byte("1")}); err != nil {
		t.Errorf("config inside: %v", err)
	}
	if _, err := e.c.SuspendTenant(bound, "inside"); err != nil {
		t.Errorf("suspend inside: %v", err)
	}
}
