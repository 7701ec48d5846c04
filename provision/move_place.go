package provision

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/stratum-hq/stratum-proxy/catalog"
	"github.com/stratum-hq/stratum-proxy/internal/sqlquote"
	"github.com/stratum-hq/stratum-proxy/policy"
)

// A move's placements. The target is made by placeTenant, as a new tenant's
// placement is (same grants, hardening, event trigger, app schema applied
// as the tenant's role), under the tenant's existing roles; the source is
// dropped at FinalizeMove. Roles are cluster-wide: a move between two
// placements on one server keeps them, with the old placement's group
// memberships revoked at the end; a move to another server makes them there
// and drops them on the old one when the source goes.

// sameServer reports whether two backend names reach the same server.
func (p *Provisioner) sameServer(a, b string) bool {
	return p.cfg.Backends[a].Addr() == p.cfg.Backends[b].Addr()
}

// provisionTarget makes the target placement dst of move m.
func (p *Provisioner) provisionTarget(ctx context.Context, m *catalog.Move, dst *catalog.Tenant) error {
	admin, err := p.cfg.AdminConn(ctx, dst.Backend, p.cfg.Backends[dst.Backend].AdminDatabase)
	if err != nil {
		return err
	}
	defer admin.Close(context.WithoutCancel(ctx))
	pw := func() (string, error) { return p.cat.BackendPassword(ctx, dst.ID) }
	if err := createMissingRoles(ctx, admin, accessRoles(dst), pw); err != nil {
		return err
	}
	return p.placeTenant(ctx, admin, dst, pw, moveAppSchemaName(m), false)
}

// inSharedDB reports whether t's placement is in the shared database.
func (p *Provisioner) inSharedDB(t *catalog.Tenant) bool {
	return t.Isolation != catalog.IsolationDatabase
}

// dropPlacementOf removes placement `gone` of a tenant whose other
// placement `kept` stays: a failed move's target (kept = source) or a
// finalized move's source (kept = target). Shared: the tenant's rows are
// deleted from the shared tables; schema: the schema is dropped; database:
// the database is dropped. The roles lose the group memberships, registration
// and search_path that only `gone` needed; on another server than `kept`
// they are dropped there. It runs as the admin with the pinned search_path
// and runs nothing a tenant made (DELETE on the shared tables runs only the
// app's triggers, which no tenant can change). Idempotent.
func (p *Provisioner) dropPlacementOf(ctx context.Context, gone, kept *catalog.Tenant) error {
	var errs []error
	full, w, r := quoteIdent(gone.RoleName), quoteIdent(policy.AccessWrite.Role(gone.RoleName)), quoteIdent(policy.AccessRead.Role(gone.RoleName))
	all := full + ", " + w + ", " + r
	if p.inSharedDB(gone) {
		conn, err := p.cfg.AdminConn(ctx, gone.Backend, gone.Database)
		if err != nil {
			return err
		}
		defer conn.Close(context.WithoutCancel(ctx))
		var stmts []string
		switch gone.Isolation {
		case catalog.IsolationShared:
			tables, err := sharedTenantTables(ctx, conn)
			if err != nil {
				return err
			}
			for _, t := range tables {
				if err := deleteInBatches(ctx, conn, "public."+quoteIdent(t.name), "tenant_id OPERATOR(pg_catalog.=) "+
					sqlquote.Literal(gone.ID)+"::pg_catalog."+t.typ); err != nil {
					errs = append(errs, fmt.Errorf("deleting the tenant's rows of %s: %w", t.name, err))
				}
			}
			stmts = append(stmts,
				"REVOKE "+quoteIdent(p.sharedGroup())+" FROM "+full,
				"REVOKE "+quoteIdent(p.sharedGroupOf(policy.AccessWrite))+" FROM "+w,
				"REVOKE "+quoteIdent(p.sharedGroupOf(policy.AccessRead))+" FROM "+r)
		case catalog.IsolationSchema:
			stmts = append(stmts, "DROP SCHEMA IF EXISTS "+quoteIdent(gone.Schema)+" CASCADE",
				"REVOKE "+quoteIdent(p.schemaGroup())+" FROM "+all)
		}
		if !p.inSharedDB(kept) {
			// The tenant leaves the shared database altogether.
			stmts = append(stmts, "REVOKE "+quoteIdent(p.loWriteGroup())+" FROM "+full+", "+w,
				"DELETE FROM stratum.tenant_roles WHERE tenant_id = "+sqlquote.Literal(gone.ID)+"::uuid")
			for _, role := range accessRoles(gone) {
				stmts = append(stmts, "ALTER ROLE "+quoteIdent(role)+" IN DATABASE "+quoteIdent(gone.Database)+" RESET search_path")
			}
		}
		for _, s := range stmts {
			if _, err := conn.Exec(ctx, s); err != nil && !isCode(err, "42704") {
				errs = append(errs, fmt.Errorf("%.60s: %w", s, err))
			}
		}
		return errors.Join(errs...)
	}
	admin, err := p.cfg.AdminConn(ctx, gone.Backend, p.cfg.Backends[gone.Backend].AdminDatabase)
	if err != nil {
		return err
	}
	defer admin.Close(context.WithoutCancel(ctx))
	if _, err := admin.Exec(ctx, "DROP DATABASE IF EXISTS "+quoteIdent(gone.Database)+" WITH (FORCE)"); err != nil {
		errs = append(errs, err)
	}
	if !p.sameServer(gone.Backend, kept.Backend) {
		roles := accessRoles(gone)
		for i := len(roles) - 1; i >= 0; i-- {
			if _, err := admin.Exec(ctx, "DROP ROLE IF EXISTS "+quoteIdent(roles[i])); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// deleteBatch is how many rows one transaction of deleteInBatches deletes,
// and deletePace the rest between two: a tenant's rows in a shared table
// (a million, say) deleted in one statement are one burst of WAL that the
// commits of every other tenant of the server queue behind.
const (
	deleteBatch = 5000
	deletePace  = 5 * time.Millisecond
)

// deleteInBatches deletes the rows of table (qualified) that match where,
// deleteBatch at a time, each batch a transaction of its own (found through
// an index on the condition's column: the shared tables have one on
// tenant_id), until none is left.
func deleteInBatches(ctx context.Context, conn *pgx.Conn, table, where string) error {
	sql := "DELETE FROM " + table + " WHERE ctid OPERATOR(pg_catalog.=) ANY (ARRAY(SELECT ctid FROM " + table +
		" WHERE " + where + " LIMIT " + fmt.Sprint(deleteBatch) + "))"
	for {
		tag, err := conn.Exec(ctx, sql)
		if err != nil {
			return err
		}
		if tag.RowsAffected() < deleteBatch {
			return nil
		}
		select {
		case <-time.After(deletePace):
		case <-ctx.Done():
			return context.Cause(ctx)
		}
	}
}

// dropTarget removes a move's half-built target.
func (p *Provisioner) dropTarget(ctx context.Context, m *catalog.Move, src, dst *catalog.Tenant) error {
	err := p.dropPlacementOf(ctx, dst, src)
	if err == nil {
		if _, e := p.cat.MoveProgress(ctx, m.ID, nil, -1); e != nil {
			err = e
		}
	}
	// The target's app schema record.
	return errors.Join(err, p.cat.ForgetAppSchemaPlacement(ctx, moveAppSchemaName(m)))
}

// dropSource removes a switched move's source copy.
func (p *Provisioner) dropSource(ctx context.Context, src, dst *catalog.Tenant) error {
	return p.dropPlacementOf(ctx, src, dst)
}

// sharedTable is a shared table with a tenant_id column.
type sharedTable struct{ name, typ string }

// sharedTenantTables lists the shared database's app tables with a
// tenant_id column and its type (uuid or text).
func sharedTenantTables(ctx context.Context, conn *pgx.Conn) ([]sharedTable, error) {
	rows, err := conn.Query(ctx, `SELECT c.relname::text, CASE WHEN a.atttypid = 'pg_catalog.uuid'::pg_catalog.regtype THEN 'uuid' ELSE 'text' END
		FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
		JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attname = 'tenant_id' AND NOT a.attisdropped
		WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND NOT c.relispartition ORDER BY 1`)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (sharedTable, error) {
		var t sharedTable
		return t, row.Scan(&t.name, &t.typ)
	})
}

// setSharedPath sets the search_path of t's roles in the shared database
// for t's placement there (sharedRoleSQL): a move's cut-over does it while
// the tenant is paused, and undoes it when the cut-over gives up.
func (p *Provisioner) setSharedPath(ctx context.Context, t *catalog.Tenant) error {
	if !p.inSharedDB(t) {
		return nil
	}
	conn, err := p.cfg.AdminConn(ctx, t.Backend, t.Database)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	for _, role := range accessRoles(t) {
		if err := execAll(ctx, conn, sharedRoleSQL(role, t, p.cfg.SharedDatabase)...); err != nil {
			return err
		}
	}
	return nil
}
