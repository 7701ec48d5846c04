package provision

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/stratum-hq/stratum-proxy/catalog"
	"github.com/stratum-hq/stratum-proxy/internal/sqlquote"
)

// appPlacement is one place the app's schema is applied to.
type appPlacement struct {
	name     string // "template", "shared" or the tenant's id (as recorded in the catalog)
	label    string // for reports: "template", "shared" or the tenant's slug
	backend  string
	database string
	schema   string
	tenant   *catalog.Tenant // nil for template and shared
}

func tenantPlacement(t *catalog.Tenant) appPlacement {
	return appPlacement{name: t.ID, label: t.Slug, backend: t.Backend, database: t.Database, schema: t.Schema, tenant: t}
}

func (p *Provisioner) sharedPlacement() appPlacement {
	return appPlacement{name: "shared", label: "shared", backend: p.cfg.SharedBackend, database: p.cfg.SharedDatabase, schema: "public"}
}

// PlacementResult says what ApplySchema did in one placement.
type PlacementResult struct {
	Placement string `json:"placement"`
	Applied   []int  `json:"applied"` // versions applied now
	Error     string `json:"error,omitempty"`
}

// ApplyReport is ApplySchema's answer.
type ApplyReport struct {
	Version    int               `json:"version"`
	New        bool              `json:"new"` // false when the same DDL was recorded before
	Placements []PlacementResult `json:"placements"`
}

// Failed counts placements that reported an error.
func (a *ApplyReport) Failed() int {
	n := 0
	for _, p := range a.Placements {
		if p.Error != "" {
			n++
		}
	}
	return n
}

// ApplySchema applies the app's DDL: first to the template schema (so a broken
// script is refused before it touches any tenant), then to the shared database
// (with tenant row-level security on every table that has a tenant_id column),
// then to every tenant schema and database. Each placement gets every recorded
// version it lacks, in order; re-running is a no-op. New tenants replay all
// versions when they are created.
func (p *Provisioner) ApplySchema(ctx context.Context, ddl string) (*ApplyReport, error) {
	if err := p.checkTemplate(ctx, ddl); err != nil {
		return nil, fmt.Errorf("the schema does not apply to an empty template: %w", err)
	}
	version, added, err := p.cat.AddAppSchema(ctx, ddl)
	if err != nil {
		return nil, err
	}
	rep := &ApplyReport{Version: version, New: added}
	places := []appPlacement{p.sharedPlacement()}
	tenants, err := p.cat.ListTenants(ctx)
	if err != nil {
		return nil, err
	}
	for _, t := range tenants {
		if t.Isolation != catalog.IsolationShared && t.Status != catalog.StatusProvisioning {
			places = append(places, tenantPlacement(t))
		}
	}
	for _, pl := range places {
		applied, err := p.applyPendingReport(ctx, pl)
		res := PlacementResult{Placement: pl.label, Applied: applied}
		if err != nil {
			res.Error = err.Error()
		}
		rep.Placements = append(rep.Placements, res)
	}
	return rep, nil
}

// checkTemplate runs ddl, after every recorded version, in the template schema
// inside a transaction that is rolled back: a dry run.
func (p *Provisioner) checkTemplate(ctx context.Context, ddl string) error {
	conn, err := p.cfg.AdminConn(ctx, p.cfg.SharedBackend, p.cfg.SharedDatabase)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	versions, err := p.cat.AppSchemas(ctx)
	if err != nil {
		return err
	}
	for _, v := range versions {
		if v.SQL == ddl {
			return nil // recorded before, so it applied then; a re-run only fills gaps
		}
	}
	tx, err := conn.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	if _, err := tx.Exec(ctx, "DROP SCHEMA IF EXISTS stratum_template CASCADE; CREATE SCHEMA stratum_template; SET LOCAL search_path = stratum_template"); err != nil {
		return err
	}
	for _, v := range versions {
		if _, err := tx.Exec(ctx, v.SQL); err != nil {
			return fmt.Errorf("replaying version %d: %w", v.Version, err)
		}
	}
	if _, err := tx.Exec(ctx, ddl); err != nil {
		return err
	}
	return nil
}

func (p *Provisioner) applyPending(ctx context.Context, pl appPlacement) error {
	_, err := p.applyPendingReport(ctx, pl)
	return err
}

// applyPendingReport applies the versions the placement lacks, each in its own
// transaction together with the grants and policies that secure it.
func (p *Provisioner) applyPendingReport(ctx context.Context, pl appPlacement) ([]int, error) {
	versions, err := p.cat.AppSchemas(ctx)
	if err != nil {
		return nil, err
	}
	done, err := p.cat.AppSchemaApplied(ctx, pl.name)
	if err != nil {
		return nil, err
	}
	var todo []catalog.AppSchema
	for _, v := range versions {
		if !done[v.Version] {
			todo = append(todo, v)
		}
	}
	if len(todo) == 0 {
		return nil, nil
	}
	conn, err := p.cfg.AdminConn(ctx, pl.backend, pl.database)
	if err != nil {
		return nil, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var applied []int
	for _, v := range todo {
		err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtext('stratum.apply.' || $1::text))`, pl.name); err != nil {
				return err
			}
			// Another proxy may have applied it while we waited for the lock.
			again, err := p.cat.AppSchemaApplied(ctx, pl.name)
			if err != nil || again[v.Version] {
				return err
			}
			if _, err := tx.Exec(ctx, "SET LOCAL search_path = "+quoteIdent(pl.schema)); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, v.SQL); err != nil {
				return fmt.Errorf("version %d: %w", v.Version, err)
			}
			if err := p.secure(ctx, tx, pl); err != nil {
				return fmt.Errorf("securing version %d: %w", v.Version, err)
			}
			if err := p.cat.MarkAppSchemaApplied(ctx, v.Version, pl.name); err != nil {
				return err
			}
			applied = append(applied, v.Version)
			return nil
		})
		if err != nil {
			return applied, err
		}
	}
	return applied, nil
}

// tableInfo is an app table and what secure needs to know of it.
type tableInfo struct {
	name         string
	tenantIDType string // "" when the table has no tenant_id column
	hasTenantIdx bool
	hasPolicy    bool
}

func listTables(ctx context.Context, tx pgx.Tx, schema string) ([]tableInfo, error) {
	rows, err := tx.Query(ctx, `
		SELECT c.relname,
		       coalesce(format_type(a.atttypid, a.atttypmod), ''),
		       EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indkey[0] = a.attnum),
		       EXISTS (SELECT 1 FROM pg_policy p WHERE p.polrelid = c.oid AND p.polname = 'stratum_tenant_isolation')
		FROM pg_class c
		JOIN pg_namespace n ON n.oid = c.relnamespace
		LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'tenant_id' AND NOT a.attisdropped
		WHERE n.nspname = $1 AND c.relkind IN ('r', 'p')
		ORDER BY c.relname`, schema)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (tableInfo, error) {
		var t tableInfo
		return t, row.Scan(&t.name, &t.tenantIDType, &t.hasTenantIdx, &t.hasPolicy)
	})
}

// secure grants the placement's role(s) what they need on the app tables, and
// in the shared database puts every table with a tenant_id column under
// row-level security keyed on the session's backend role.
func (p *Provisioner) secure(ctx context.Context, tx pgx.Tx, pl appPlacement) error {
	tables, err := listTables(ctx, tx, pl.schema)
	if err != nil {
		return err
	}
	s := quoteIdent(pl.schema)
	var stmts []string
	if pl.tenant == nil { // the shared database
		g := quoteIdent(p.sharedGroup())
		stmts = append(stmts, "GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA "+s+" TO "+g)
		for _, t := range tables {
			tn := s + "." + quoteIdent(t.name)
			if t.tenantIDType == "" {
				// Tables without tenant_id are reference data every tenant reads.
				stmts = append(stmts, "GRANT SELECT ON "+tn+" TO "+g)
				continue
			}
			current := "stratum.current_tenant_id()"
			switch t.tenantIDType {
			case "uuid":
			case "text", "character varying":
				current += "::text"
			default:
				return fmt.Errorf("table %s: tenant_id is %s; use uuid or text", t.name, t.tenantIDType)
			}
			stmts = append(stmts,
				"GRANT SELECT, INSERT, UPDATE, DELETE ON "+tn+" TO "+g,
				"ALTER TABLE "+tn+" ENABLE ROW LEVEL SECURITY",
				"ALTER TABLE "+tn+" FORCE ROW LEVEL SECURITY",
				"ALTER TABLE "+tn+" ALTER COLUMN tenant_id SET DEFAULT "+current)
			if !t.hasPolicy {
				// (SELECT …) makes the lookup an init plan: once per statement, not per row.
				cond := "tenant_id = (SELECT " + current + ")"
				stmts = append(stmts, "CREATE POLICY stratum_tenant_isolation ON "+tn+" TO "+g+
					" USING ("+cond+") WITH CHECK ("+cond+")")
			}
			if !t.hasTenantIdx {
				stmts = append(stmts, "CREATE INDEX ON "+tn+" (tenant_id)")
			}
		}
	} else {
		role := quoteIdent(pl.tenant.RoleName)
		stmts = append(stmts,
			"GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER ON ALL TABLES IN SCHEMA "+s+" TO "+role,
			"GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA "+s+" TO "+role)
		for _, t := range tables {
			if t.tenantIDType == "" {
				continue
			}
			tn := s + "." + quoteIdent(t.name)
			stmts = append(stmts, "ALTER TABLE "+tn+" ALTER COLUMN tenant_id SET DEFAULT "+sqlquote.Literal(pl.tenant.ID))
		}
	}
	for _, st := range stmts {
		if _, err := tx.Exec(ctx, st); err != nil {
			return fmt.Errorf("%s: %w", st, err)
		}
	}
	return nil
}
