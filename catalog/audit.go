package catalog

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
)

// Actor is who makes a change: it is written into the audit row of every
// mutation. The admin API puts one in each request's context (WithActor);
// changes made without one are recorded as the system's.
type Actor struct {
	// KeyID is the API key's id, "bootstrap" for the bootstrap key, or
	// "system" for changes the process makes itself (dev seeding, provisioning).
	KeyID string
	// Name is the key's name.
	Name string
	// TenantID is the tenant the key is bound to; nil for a key bound to no
	// tenant (the platform).
	TenantID *string
	// RequestID and SourceIP locate the request.
	RequestID, SourceIP string
}

// SystemActor is the actor of changes made without a request.
var SystemActor = Actor{KeyID: "system", Name: "system", RequestID: "-", SourceIP: "-"}

type actorKey struct{}

// WithActor returns ctx carrying a as the actor of the changes made with it.
func WithActor(ctx context.Context, a Actor) context.Context {
	return context.WithValue(ctx, actorKey{}, a)
}

// ActorFrom returns the actor ctx carries, or SystemActor.
func ActorFrom(ctx context.Context) Actor {
	if a, ok := ctx.Value(actorKey{}).(Actor); ok {
		return a
	}
	return SystemActor
}

// AuditEvent is one audit row's content. Before and After are the target's
// state (JSON-encodable; secrets already masked), nil where there is none.
type AuditEvent struct {
	Action   string // e.g. "tenant.create", "config.set"
	Target   string // what changed, e.g. "tenant:acmesec", "config:acmesec/region"
	TenantID *string
	Before   any
	After    any
}

// appendAudit writes ev in tx, with the actor from ctx. The audit_chain
// trigger numbers the row and links it into the hash chain.
func appendAudit(ctx context.Context, tx pgx.Tx, ev AuditEvent) error {
	a := ActorFrom(ctx)
	before, err := auditJSON(ev.Before)
	if err != nil {
		return err
	}
	after, err := auditJSON(ev.After)
	if err != nil {
		return err
	}
	_, err = tx.Exec(ctx, `INSERT INTO audit_log
		(actor_key_id, actor_name, action, target, tenant_id, before, after, request_id, source_ip, at, seq, prev_hash, hash)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, now(), 0, '', '')`,
		nonEmpty(a.KeyID, "system"), nonEmpty(a.Name, "system"), ev.Action, ev.Target, ev.TenantID,
		before, after, nonEmpty(a.RequestID, "-"), nonEmpty(a.SourceIP, "-"))
	if err != nil {
		return fmt.Errorf("writing audit row: %w", err)
	}
	return nil
}

// auditJSON encodes v for a jsonb column; nil stays SQL NULL.
func auditJSON(v any) ([]byte, error) {
	if v == nil {
		return nil, nil
	}
	if raw, ok := v.(json.RawMessage); ok {
		return raw, nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encoding audit state: %w", err)
	}
	return b, nil
}

func nonEmpty(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// inTx runs fn in one catalog transaction (committed when fn returns nil).
func (c *Catalog) inTx(ctx context.Context, fn func(pgx.Tx) error) error {
	return pgx.BeginFunc(ctx, c.pool, fn)
}

// reachable reads the tenant named by ref inside tx, like getTenant, and
// refuses it with ErrNotFound when the actor in ctx is bound to a tenant
// whose subtree does not hold it. The admin API checks this before it calls
// the catalog; checking again inside the transaction (where the tree lock or
// the row lock keeps the tenant where it is) closes the gap in which another
// caller could move the tenant out of the subtree between the two.
func reachable(ctx context.Context, tx pgx.Tx, ref, suffix string) (*Tenant, error) {
	t, err := getTenant(ctx, tx, ref, suffix)
	if err != nil {
		return nil, err
	}
	if err := checkReach(ctx, tx, t.Path); err != nil {
		return nil, err
	}
	return t, nil
}

// keyReachable refuses (ErrNotFound) an API key an actor bound to a tenant
// may not manage: an unbound key, or one bound outside the actor's subtree.
func keyReachable(ctx context.Context, tx pgx.Tx, k *APIKey) error {
	if ActorFrom(ctx).TenantID == nil {
		return nil
	}
	if k.TenantID == nil {
		return ErrNotFound
	}
	_, err := reachable(ctx, tx, *k.TenantID, "")
	return err
}

// checkReach refuses (ErrNotFound) a tenant path outside the subtree of the
// actor's bound tenant; nil for an actor bound to no tenant.
func checkReach(ctx context.Context, tx pgx.Tx, path string) error {
	a := ActorFrom(ctx)
	if a.TenantID == nil {
		return nil
	}
	var root string
	err := tx.QueryRow(ctx, `SELECT path::text FROM tenants WHERE id = $1`, *a.TenantID).Scan(&root)
	if errors.Is(err, pgx.ErrNoRows) {
		return ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("reading the caller's tenant: %w", err)
	}
	if path != root && !strings.HasPrefix(path, root+".") {
		return ErrNotFound
	}
	return nil
}
