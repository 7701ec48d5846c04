package provision

import (
	"context"
	"errors"

	"github.com/stratum-hq/stratum-proxy/catalog"
)

func (p *Provisioner) runMove(ctx context.Context, m *catalog.Move) {}

func (p *Provisioner) cleanupMove(ctx context.Context, m *catalog.Move) error { return nil }

func (p *Provisioner) dropCapture(ctx context.Context, m *catalog.Move, src *catalog.Tenant) error {
	return nil
}

func (p *Provisioner) dropSource(ctx context.Context, src, dst *catalog.Tenant) error {
	return errors.New("not implemented")
}

func (p *Provisioner) checkMovable(ctx context.Context, src, dst *catalog.Tenant) error { return nil }
