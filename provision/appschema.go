package provision

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/stratum-hq/stratum-proxy/catalog"
	"github.com/stratum-hq/stratum-proxy/internal/backends"
	"github.com/stratum-hq/stratum-proxy/internal/sqlquote"
	"github.com/stratum-hq/stratum-proxy/policy"
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
// versions when they are created; a tenant still provisioning is skipped here
// (its placement may not exist yet), and CreateTenant looks for versions
// recorded meanwhile once the tenant is active.
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
// transaction together with what secures it.
//
// Who runs what: in the shared database (no tenant may create anything there)
// the app's DDL runs as the admin user with search_path = public, then the
// grants and row-level security with the pinned search_path. In a schema or
// database tenant's placement, where the tenant may create objects, the whole
// version runs on a connection logged in as the tenant's own role: a trigger,
// overload, operator or index function the tenant planted there runs as its
// author and never with more rights. The tenant's role owns the app's objects
// in its placement (adoptAppObjects hands over older ones first), so it can
// alter them; it needs no grants on them.
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
	var conn *pgx.Conn
	if pl.tenant == nil {
		conn, err = p.cfg.AdminConn(ctx, pl.backend, pl.database)
	} else {
		conn, err = p.tenantConn(ctx, pl.tenant)
	}
	if err != nil {
		return nil, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var applied []int
	for _, v := range todo {
		// Proxies applying at once take turns on the catalog's lock (a lock
		// in the placement's database is one a tenant could take first).
		var did bool
		err := p.cat.WithLock(ctx, "stratum.apply."+pl.name, func(ctx context.Context) error {
			var err error
			did, err = p.applyVersion(ctx, conn, pl, v)
			return err
		})
		if err != nil {
			return applied, err
		}
		if did {
			applied = append(applied, v.Version)
		}
	}
	if pl.tenant != nil {
		// The tenant's role made or changed the objects; the admin gives its
		// _w and _r roles their rights on them (default privileges cover
		// new tables, this also covers those made before).
		admin, err := p.cfg.AdminConn(ctx, pl.backend, pl.database)
		if err != nil {
			return applied, err
		}
		defer admin.Close(context.WithoutCancel(ctx))
		if err := p.grantAccess(ctx, admin, pl.tenant); err != nil {
			return applied, err
		}
	}
	return applied, nil
}

// applyVersion applies one version to the placement in one transaction on
// conn, with what secures it, unless another proxy applied it first. Its
// caller holds the placement's catalog lock.
func (p *Provisioner) applyVersion(ctx context.Context, conn *pgx.Conn, pl appPlacement, v catalog.AppSchema) (applied bool, err error) {
	err = pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		// Another proxy may have applied it while we waited for the lock.
		again, err := p.cat.AppSchemaApplied(ctx, pl.name)
		if err != nil || again[v.Version] {
			return err
		}
		// The app's DDL names its tables unqualified: the placement's
		// schema, for this part only.
		if _, err := tx.Exec(ctx, "SET LOCAL search_path = "+quoteIdent(pl.schema)); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, v.SQL); err != nil {
			return fmt.Errorf("version %d: %w", v.Version, err)
		}
		if _, err := tx.Exec(ctx, "SET LOCAL search_path = "+backends.PinnedSearchPath); err != nil {
			return err
		}
		if err := p.secure(ctx, tx, pl); err != nil {
			return fmt.Errorf("securing version %d: %w", v.Version, err)
		}
		if err := p.cat.MarkAppSchemaApplied(ctx, v.Version, pl.name); err != nil {
			return err
		}
		applied = true
		return nil
	})
	return applied, err
}

// tenantConn hands the app's objects in t's placement to t's role (as the
// admin user) and then opens a connection to the placement logged in as t's
// role, for maintenance with the tenant's rights only.
func (p *Provisioner) tenantConn(ctx context.Context, t *catalog.Tenant) (*pgx.Conn, error) {
	admin, err := p.cfg.AdminConn(ctx, t.Backend, t.Database)
	if err != nil {
		return nil, err
	}
	err = adoptAppObjects(ctx, admin, t)
	admin.Close(context.WithoutCancel(ctx))
	if err != nil {
		return nil, err
	}
	pw, err := p.cat.BackendPassword(ctx, t.ID)
	if err != nil {
		return nil, fmt.Errorf("tenant %q: %w", t.Slug, err)
	}
	return p.cfg.RoleConn(ctx, t.Backend, t.Database, t.RoleName, pw)
}

// adoptAppObjects makes t's role the owner of the tables, views, sequences,
// functions and types in t's schema (public of its database for a database
// tenant) that someone else owns, except extension members: deployments
// before this ownership model had the admin user create the app's objects
// there. It runs as the admin user on conn (pinned search_path, qualified
// names) and calls nothing a tenant could have made: ALTER … OWNER runs no
// user code.
func adoptAppObjects(ctx context.Context, conn *pgx.Conn, t *catalog.Tenant) error {
	const notExt = `NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d
		WHERE d.classid = '%s'::pg_catalog.regclass AND d.objid = x.oid AND d.deptype = 'e')`
	role := quoteIdent(t.RoleName)
	// Tables first: ALTER TABLE takes their indexes and owned sequences along.
	queries := []string{
		`SELECT x.relkind::text, x.relname FROM pg_catalog.pg_class x
			JOIN pg_catalog.pg_namespace n ON n.oid = x.relnamespace
			WHERE n.nspname = $1 AND x.relkind IN ('r', 'p', 'v', 'm', 'f', 'c')
			AND x.relowner <> (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = $2)
			AND NOT x.relispartition AND ` + fmt.Sprintf(notExt, "pg_catalog.pg_class") + ` ORDER BY 2`,
		`SELECT x.relkind::text, x.relname FROM pg_catalog.pg_class x
			JOIN pg_catalog.pg_namespace n ON n.oid = x.relnamespace
			WHERE n.nspname = $1 AND x.relkind = 'S'
			AND x.relowner <> (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = $2)
			AND ` + fmt.Sprintf(notExt, "pg_catalog.pg_class") + ` ORDER BY 2`,
		`SELECT CASE x.prokind WHEN 'a' THEN 'A' ELSE 'F' END, x.oid::pg_catalog.regprocedure::text FROM pg_catalog.pg_proc x
			JOIN pg_catalog.pg_namespace n ON n.oid = x.pronamespace
			WHERE n.nspname = $1 AND x.prokind IN ('f', 'p', 'a')
			AND x.proowner <> (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = $2)
			AND ` + fmt.Sprintf(notExt, "pg_catalog.pg_proc") + ` ORDER BY 2`,
		`SELECT 'T', x.typname::text FROM pg_catalog.pg_type x
			JOIN pg_catalog.pg_namespace n ON n.oid = x.typnamespace
			WHERE n.nspname = $1 AND x.typtype IN ('d', 'e', 'r')
			AND x.typowner <> (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = $2)
			AND ` + fmt.Sprintf(notExt, "pg_catalog.pg_type") + ` ORDER BY 2`,
	}
	s := quoteIdent(t.Schema)
	for _, q := range queries {
		rows, err := conn.Query(ctx, q, t.Schema, t.RoleName)
		if err != nil {
			return fmt.Errorf("listing objects to hand to the tenant's role: %w", err)
		}
		objs, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) ([2]string, error) {
			var o [2]string
			return o, row.Scan(&o[0], &o[1])
		})
		if err != nil {
			return fmt.Errorf("listing objects to hand to the tenant's role: %w", err)
		}
		for _, o := range objs {
			var stmt string
			switch o[0] {
			case "S":
				stmt = "ALTER SEQUENCE " + s + "." + quoteIdent(o[1])
			case "v":
				stmt = "ALTER VIEW " + s + "." + quoteIdent(o[1])
			case "m":
				stmt = "ALTER MATERIALIZED VIEW " + s + "." + quoteIdent(o[1])
			case "f":
				stmt = "ALTER FOREIGN TABLE " + s + "." + quoteIdent(o[1])
			case "c", "T":
				stmt = "ALTER TYPE " + s + "." + quoteIdent(o[1])
			case "F", "A":
				// regprocedure text, qualified because the schema is not on
				// the pinned search_path.
				stmt = map[string]string{"F": "ALTER ROUTINE ", "A": "ALTER AGGREGATE "}[o[0]] + o[1]
			default:
				stmt = "ALTER TABLE " + s + "." + quoteIdent(o[1])
			}
			if _, err := conn.Exec(ctx, stmt+" OWNER TO "+role); err != nil {
				return fmt.Errorf("%s: %w", stmt, err)
			}
		}
	}
	return nil
}

// ownIndexes returns, for a tenant's own placement (schema), the CREATE
// INDEX statements of the companion indexes it lacks: for each index of an
// app table whose first key column is tenant_id and which has more key
// columns (PRIMARY KEY (tenant_id, id), say), a plain index on the other
// columns. In the shared tables the isolation policy gives every query a
// tenant_id qual, so such an index serves the app's "WHERE id = $1"; here
// every row is the tenant's and no qual is added, so without the companion
// that query reads the whole table (also right after a placement move out
// of the shared tables). Expression and partial indexes are left alone.
func ownIndexes(ctx context.Context, tx pgx.Tx, schema string) ([]string, error) {
	rows, err := tx.Query(ctx, `
		SELECT c.relname::text, i.relname::text,
		       ARRAY(SELECT a.attname::text FROM pg_catalog.unnest(x.indkey[1:x.indnkeyatts - 1]) WITH ORDINALITY k(attnum, n)
		             JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum ORDER BY k.n)
		FROM pg_catalog.pg_index x
		JOIN pg_catalog.pg_class c ON c.oid = x.indrelid
		JOIN pg_catalog.pg_class i ON i.oid = x.indexrelid
		JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
		JOIN pg_catalog.pg_attribute t ON t.attrelid = c.oid AND t.attnum = x.indkey[0] AND t.attname = 'tenant_id'
		WHERE n.nspname = $1 AND c.relkind = 'r' AND x.indnkeyatts > 1 AND x.indpred IS NULL AND x.indexprs IS NULL
		  AND NOT (0 = ANY (x.indkey::pg_catalog.int2[]))
		ORDER BY 1, 2`, schema)
	if err != nil {
		return nil, err
	}
	type idx struct {
		table, name string
		cols        []string
	}
	all, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (idx, error) {
		var x idx
		return x, row.Scan(&x.table, &x.name, &x.cols)
	})
	if err != nil {
		return nil, fmt.Errorf("listing the indexes that lead with tenant_id: %w", err)
	}
	var stmts []string
	for _, x := range all {
		if strings.HasPrefix(x.name, ownIndexPrefix) || len(x.cols) == 0 {
			continue
		}
		name := ownIndexPrefix + x.name
		if len(name) > 63 {
			name = name[:63]
		}
		stmts = append(stmts, "CREATE INDEX IF NOT EXISTS "+quoteIdent(name)+" ON "+quoteIdent(schema)+"."+quoteIdent(x.table)+
			" ("+columnList(x.cols)+")")
	}
	return stmts, nil
}

// ownIndexPrefix names the companion indexes of ownIndexes.
const ownIndexPrefix = "stratum_own_"

// tableInfo is an app table and what secure needs to know of it.
type tableInfo struct {
	name         string
	tenantIDType string // "" when the table has no tenant_id column
	hasTenantIdx bool
	hasPolicy    bool
	// policyCovers: the policy applies to every role of policyRoles.
	policyCovers bool
}

// listTables lists the app tables of schema; policyRoles are the roles the
// isolation policy must apply to (policyCovers).
func listTables(ctx context.Context, tx pgx.Tx, schema string, policyRoles []string) ([]tableInfo, error) {
	rows, err := tx.Query(ctx, `
		SELECT c.relname,
		       COALESCE(pg_catalog.format_type(a.atttypid, a.atttypmod), ''),
		       EXISTS (SELECT 1 FROM pg_catalog.pg_index i WHERE i.indrelid = c.oid AND i.indkey[0] = a.attnum),
		       EXISTS (SELECT 1 FROM pg_catalog.pg_policy p WHERE p.polrelid = c.oid AND p.polname = 'stratum_tenant_isolation'),
		       EXISTS (SELECT 1 FROM pg_catalog.pg_policy p WHERE p.polrelid = c.oid AND p.polname = 'stratum_tenant_isolation'
		               AND p.polroles OPERATOR(pg_catalog.@>) ARRAY(SELECT r.oid FROM pg_catalog.pg_roles r WHERE r.rolname = ANY($2::text[])))
		FROM pg_catalog.pg_class c
		JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
		LEFT JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attname = 'tenant_id' AND NOT a.attisdropped
		WHERE n.nspname = $1 AND c.relkind IN ('r', 'p')
		ORDER BY c.relname`, schema, policyRoles)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (tableInfo, error) {
		var t tableInfo
		return t, row.Scan(&t.name, &t.tenantIDType, &t.hasTenantIdx, &t.hasPolicy, &t.policyCovers)
	})
}

// secure, in the shared database (as the admin user), grants the shared
// groups of every access level what they need on the app tables and puts
// every table with a tenant_id column under row-level security keyed on the
// session's backend role; in a tenant's placement (as the tenant's role) it
// sets the tenant_id defaults (the admin re-grants the tenant's _w and _r
// roles their rights afterwards: grantAccess). It runs with the pinned
// search_path and names everything qualified.
func (p *Provisioner) secure(ctx context.Context, tx pgx.Tx, pl appPlacement) error {
	return p.secureTables(ctx, tx, pl, false)
}

// secureTables is secure; grantsOnly (the shared database at start-up) keeps
// to the grants and to policies that miss a group, leaving out what takes an
// ACCESS EXCLUSIVE lock on every app table (row-level security switches,
// column defaults, new indexes), which a schema apply made already.
func (p *Provisioner) secureTables(ctx context.Context, tx pgx.Tx, pl appPlacement, grantsOnly bool) error {
	var groups []string
	if pl.tenant == nil {
		groups = []string{p.sharedGroup(), p.sharedGroupOf(policy.AccessWrite), p.sharedGroupOf(policy.AccessRead)}
	}
	tables, err := listTables(ctx, tx, pl.schema, groups)
	if err != nil {
		return err
	}
	s := quoteIdent(pl.schema)
	var stmts []string
	if pl.tenant == nil { // the shared database
		// Writers: the full and _w groups (shared tenants have no DDL here,
		// so they hold the same); readers: the _r group, SELECT only (USAGE
		// on a sequence would allow nextval).
		wg := quoteIdent(p.sharedGroup()) + ", " + quoteIdent(p.sharedGroupOf(policy.AccessWrite))
		rg := quoteIdent(p.sharedGroupOf(policy.AccessRead))
		all := wg + ", " + rg
		stmts = append(stmts,
			"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA "+s+" TO "+wg,
			"GRANT SELECT ON ALL SEQUENCES IN SCHEMA "+s+" TO "+rg)
		for _, t := range tables {
			tn := s + "." + quoteIdent(t.name)
			if t.tenantIDType == "" {
				// Tables without tenant_id are reference data every tenant reads.
				stmts = append(stmts, "GRANT SELECT ON "+tn+" TO "+all)
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
				"GRANT SELECT, INSERT, UPDATE, DELETE ON "+tn+" TO "+wg,
				"GRANT SELECT ON "+tn+" TO "+rg)
			if t.hasPolicy && !t.policyCovers {
				// Policies made by older versions name the full group only.
				stmts = append(stmts, "ALTER POLICY stratum_tenant_isolation ON "+tn+" TO "+all)
			}
			if grantsOnly {
				continue
			}
			stmts = append(stmts,
				"ALTER TABLE "+tn+" ENABLE ROW LEVEL SECURITY",
				"ALTER TABLE "+tn+" FORCE ROW LEVEL SECURITY",
				"ALTER TABLE "+tn+" ALTER COLUMN tenant_id SET DEFAULT "+current)
			if !t.hasPolicy {
				// (SELECT …) makes the lookup an init plan: once per statement, not per row.
				cond := "tenant_id = (SELECT " + current + ")"
				stmts = append(stmts, "CREATE POLICY stratum_tenant_isolation ON "+tn+" TO "+all+
					" USING ("+cond+") WITH CHECK ("+cond+")")
			}
			if !t.hasTenantIdx {
				stmts = append(stmts, "CREATE INDEX ON "+tn+" (tenant_id)")
			}
		}
	} else {
		// Run as the tenant's role, which owns the app's tables here and so
		// needs no grants on them.
		for _, t := range tables {
			if t.tenantIDType == "" {
				continue
			}
			tn := s + "." + quoteIdent(t.name)
			stmts = append(stmts, "ALTER TABLE "+tn+" ALTER COLUMN tenant_id SET DEFAULT "+sqlquote.Literal(pl.tenant.ID))
		}
		more, err := ownIndexes(ctx, tx, pl.schema)
		if err != nil {
			return err
		}
		stmts = append(stmts, more...)
	}
	for _, st := range stmts {
		if _, err := tx.Exec(ctx, st); err != nil {
			return fmt.Errorf("%s: %w", st, err)
		}
	}
	return nil
}
