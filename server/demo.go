package server

import (
	"context"
	"errors"
	"fmt"

	"go.uber.org/zap"

	"github.com/stratum-hq/stratum-proxy/catalog"
	"github.com/stratum-hq/stratum-proxy/provision"
)

// DemoSchema is the app schema the dev deployment applies to every placement.
const DemoSchema = `CREATE TABLE orders (
    id         bigserial PRIMARY KEY,
    tenant_id  uuid NOT NULL,
    item       text NOT NULL,
    quantity   int NOT NULL DEFAULT 1,
    created_at timestamptz NOT NULL DEFAULT now()
);`

// DemoTree is the seeded tenant tree, parents first: every isolation at
// several depths.
var DemoTree = []provision.TenantSpec{
	{Slug: "acmesec", Name: "AcmeSec", Isolation: "shared"},
	{Slug: "northstar_msp", Name: "Northstar MSP", Parent: "acmesec", Isolation: "shared"},
	{Slug: "client_alpha", Name: "Client Alpha", Parent: "northstar_msp", Isolation: "shared"},
	{Slug: "client_beta", Name: "Client Beta", Parent: "northstar_msp", Isolation: "schema"},
	{Slug: "apex_partners", Name: "Apex Partners", Parent: "acmesec", Isolation: "shared"},
	{Slug: "client_gamma", Name: "Client Gamma", Parent: "apex_partners", Isolation: "database"},
}

// DemoUser and DemoPassword log in as the demo user, who may switch between
// every tenant under acmesec.
const (
	DemoUser     = "demo"
	DemoPassword = "demo"
)

// SeedDemo applies DemoSchema and creates the demo tree and the demo user on
// first run; later runs find them and leave them alone.
func SeedDemo(ctx context.Context, p *provision.Provisioner, log *zap.Logger) error {
	rep, err := p.ApplySchema(ctx, DemoSchema)
	if err != nil {
		return err
	}
	if rep.Failed() > 0 {
		return fmt.Errorf("applying the demo schema failed in %d placements: %+v", rep.Failed(), rep.Placements)
	}
	cat := p.Catalog()
	for _, spec := range DemoTree {
		if _, err := cat.GetTenant(ctx, spec.Slug); err == nil {
			continue
		} else if !errors.Is(err, catalog.ErrNotFound) {
			return err
		}
		t, err := p.CreateTenant(ctx, spec)
		if err != nil {
			return err
		}
		log.Info("created demo tenant", zap.String("tenant", t.Slug), zap.String("isolation", t.Isolation))
	}
	if _, err := cat.GetUser(ctx, DemoUser); errors.Is(err, catalog.ErrNotFound) {
		if _, err := cat.CreateUser(ctx, DemoUser, DemoPassword, "acmesec", true); err != nil {
			return err
		}
	} else if err != nil {
		return err
	}
	return nil
}
