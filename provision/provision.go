package provision

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/stratum-hq/stratum-proxy/catalog"
	"github.com/stratum-hq/stratum-proxy/internal/scramverifier"
	"github.com/stratum-hq/stratum-proxy/internal/sqlquote"
	"github.com/stratum-hq/stratum-proxy/policy"
)

// isCode reports whether err is a PostgreSQL error with SQLSTATE code.
func isCode(err error, code string) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == code
}

// Group roles, per deployment. Members of the shared group may use the shared
// database's app tables (under row-level security), as may those of its _w and
// _r variants (sharedGroupOf, access.go) at their level; members of the schema
// group may only connect to the shared database, where each has its own schema.
func (p *Provisioner) sharedGroup() string { return "stratum_" + p.depID + "_shared" }
func (p *Provisioner) schemaGroup() string { return "stratum_" + p.depID + "_schema" }

func quoteIdent(s string) string { return pgx.Identifier{s}.Sanitize() }

// execAll runs statements in order on conn, stopping at the first error.
func execAll(ctx context.Context, conn *pgx.Conn, stmts ...string) error {
	for _, s := range stmts {
		if _, err := conn.Exec(ctx, s); err != nil {
			return fmt.Errorf("running %.60q: %w", s, err)
		}
	}
	return nil
}

// PrepareShared makes sure the shared database, the deployment's group roles and
// the row-level-security machinery exist. It is idempotent; run it at startup.
func (p *Provisioner) PrepareShared(ctx context.Context) error {
	admin, err := p.cfg.AdminConn(ctx, p.cfg.SharedBackend, p.cfg.Backends[p.cfg.SharedBackend].AdminDatabase)
	if err != nil {
		return err
	}
	defer admin.Close(context.WithoutCancel(ctx))
	for _, g := range p.groups() {
		if err := ensureRole(ctx, admin, g, "NOLOGIN"); err != nil {
			return err
		}
	}
	db := quoteIdent(p.cfg.SharedDatabase)
	if err := ensureDatabase(ctx, admin, p.cfg.SharedDatabase); err != nil {
		return err
	}
	sg := quoteIdent(p.sharedGroup())
	// The shared groups of every level, comma-separated.
	sgs := sg + ", " + quoteIdent(p.sharedGroupOf(policy.AccessWrite)) + ", " + quoteIdent(p.sharedGroupOf(policy.AccessRead))
	if err := execAll(ctx, admin,
		"REVOKE ALL ON DATABASE "+db+" FROM PUBLIC",
		"GRANT CONNECT, TEMPORARY ON DATABASE "+db+" TO "+sgs+", "+quoteIdent(p.schemaGroup()),
	); err != nil {
		return fmt.Errorf("securing shared database: %w", err)
	}
	conn, err := p.cfg.AdminConn(ctx, p.cfg.SharedBackend, p.cfg.SharedDatabase)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	// The lock that serialises proxies starting at once is the catalog's: an
	// advisory lock in the shared database is one any tenant could take first.
	err = p.cat.WithLock(ctx, "stratum.prepare_shared", func(ctx context.Context) error {
		return pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			err := execAll(ctx, tx.Conn(),
				"REVOKE ALL ON SCHEMA public FROM PUBLIC",
				"GRANT USAGE ON SCHEMA public TO "+sgs,
				"CREATE SCHEMA IF NOT EXISTS stratum",
				"REVOKE ALL ON SCHEMA stratum FROM PUBLIC",
				"GRANT USAGE ON SCHEMA stratum TO "+sgs,
				// One row per backend role of a shared or schema tenant
				// (three per tenant, one per access level); older versions
				// had one and made tenant_id UNIQUE.
				`CREATE TABLE IF NOT EXISTS stratum.tenant_roles (
				role_name name PRIMARY KEY,
				tenant_id uuid NOT NULL)`,
				"ALTER TABLE stratum.tenant_roles DROP CONSTRAINT IF EXISTS tenant_roles_tenant_id_key",
				"REVOKE ALL ON stratum.tenant_roles FROM PUBLIC",
				// session_user, not current_user: inside a SECURITY DEFINER function
				// current_user is the owner, and a tenant role cannot change its
				// session user (that takes a superuser).
				`CREATE OR REPLACE FUNCTION stratum.current_tenant_id() RETURNS uuid
				LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog
				AS $$ SELECT tenant_id FROM stratum.tenant_roles WHERE role_name = session_user $$`,
				"REVOKE ALL ON FUNCTION stratum.current_tenant_id() FROM PUBLIC",
				"GRANT EXECUTE ON FUNCTION stratum.current_tenant_id() TO "+sgs,
				"CREATE SCHEMA IF NOT EXISTS stratum_template",
				"REVOKE ALL ON SCHEMA stratum_template FROM PUBLIC",
				hardenCatalogSQL,
				guardSQL,
				loWriteSQL(quoteIdent(p.loWriteGroup())),
			)
			if err == nil {
				err = execAll(ctx, tx.Conn(), advisoryLocksSQL()...)
			}
			if err != nil {
				return err
			}
			// The app tables' grants and policies for every level: tables
			// secured by an older version lack the _w and _r groups.
			return p.secureTables(ctx, tx, p.sharedPlacement(), true)
		})
	})
	if err != nil {
		return fmt.Errorf("preparing shared database: %w", err)
	}
	return p.hardenTenantDatabases(ctx)
}

// hardenTenantDatabases brings every tenant provisioned by an older version
// up to date: it re-applies hardenCatalogSQL, the event trigger (guardSQL)
// and the large-object revokes in every database tenant's database, hands the
// app's objects in every schema and database tenant's schema to the tenant's
// role (adoptAppObjects; older versions left them owned by the admin user),
// makes the tenant's _w and _r roles when missing and registers every role
// of a shared or schema tenant in the shared database (ensureAccessRoles), and
// re-grants their rights (grantAccess).
func (p *Provisioner) hardenTenantDatabases(ctx context.Context) error {
	tenants, err := p.cat.ListTenants(ctx)
	if err != nil {
		return err
	}
	var shared *pgx.Conn // the shared database, for shared and schema tenants
	defer func() {
		if shared != nil {
			shared.Close(context.WithoutCancel(ctx))
		}
	}()
	for _, t := range tenants {
		if t.Status == catalog.StatusProvisioning {
			continue
		}
		conn := shared
		inShared := t.Backend == p.cfg.SharedBackend && t.Database == p.cfg.SharedDatabase
		if !inShared || shared == nil {
			if conn, err = p.cfg.AdminConn(ctx, t.Backend, t.Database); err != nil {
				return fmt.Errorf("hardening tenant %q: %w", t.Slug, err)
			}
			if inShared {
				shared = conn
			}
		}
		err := p.hardenTenant(ctx, conn, t)
		if !inShared {
			conn.Close(context.WithoutCancel(ctx))
		}
		if err != nil {
			return fmt.Errorf("hardening tenant %q: %w", t.Slug, err)
		}
	}
	return nil
}

// hardenTenant is hardenTenantDatabases for one tenant, on an admin
// connection to its database.
func (p *Provisioner) hardenTenant(ctx context.Context, conn *pgx.Conn, t *catalog.Tenant) error {
	if t.Isolation == catalog.IsolationDatabase {
		if _, err := conn.Exec(ctx, hardenCatalogSQL); err != nil {
			return err
		}
	}
	if t.Isolation != catalog.IsolationShared {
		if err := adoptAppObjects(ctx, conn, t); err != nil {
			return err
		}
	}
	pw := func() (string, error) { return p.cat.BackendPassword(ctx, t.ID) }
	if err := p.ensureAccessRoles(ctx, conn, t, pw, true); err != nil {
		return err
	}
	return p.grantAccess(ctx, conn, t)
}

func ensureRole(ctx context.Context, conn *pgx.Conn, name, options string) error {
	// CREATE ROLE has no IF NOT EXISTS; a concurrent creator makes ours fail
	// with 42710, which is as good as success.
	var exists bool
	if err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)`, name).Scan(&exists); err != nil {
		return fmt.Errorf("checking role %s: %w", name, err)
	}
	if exists {
		return nil
	}
	if _, err := conn.Exec(ctx, "CREATE ROLE "+quoteIdent(name)+" "+options); err != nil && !isCode(err, "42710") {
		return fmt.Errorf("creating role %s: %w", name, err)
	}
	return nil
}

func ensureDatabase(ctx context.Context, conn *pgx.Conn, name string) error {
	var exists bool
	if err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)`, name).Scan(&exists); err != nil {
		return fmt.Errorf("checking database %s: %w", name, err)
	}
	if exists {
		return nil
	}
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+quoteIdent(name)); err != nil && !isCode(err, "42P04") {
		return fmt.Errorf("creating database %s: %w", name, err)
	}
	return nil
}

// backendRoleIterations is the SCRAM iteration count of tenant roles' verifiers.
const backendRoleIterations = 64

// TenantSpec is what CreateTenant needs from an operator.
type TenantSpec struct {
	Slug      string `json:"slug"`
	Name      string `json:"name"`
	Parent    string `json:"parent,omitempty"`
	Isolation string `json:"isolation"`
	// Backend for database isolation; default Config.DefaultBackend. Shared and
	// schema tenants always live on the shared backend.
	Backend string `json:"backend,omitempty"`
	// PoolMode overrides the proxy's pool mode: "session" or "transaction";
	// empty keeps the proxy's.
	PoolMode string `json:"pool_mode,omitempty"`
}

// ErrInvalidSpec wraps what is wrong with a TenantSpec.
var ErrInvalidSpec = errors.New("invalid tenant")

// CreateTenant records a tenant in the catalog and provisions it: its backend
// role, its placement and the current app schema, including a version
// recorded while it was being made. On failure the half-made tenant is
// removed again, except when only that last step fails: the tenant is then
// returned, active, with the error.
func (p *Provisioner) CreateTenant(ctx context.Context, spec TenantSpec) (*catalog.Tenant, error) {
	if spec.Name == "" {
		spec.Name = spec.Slug
	}
	if spec.Isolation == "" {
		spec.Isolation = catalog.IsolationShared
	}
	backend := p.cfg.SharedBackend
	switch spec.Isolation {
	case catalog.IsolationShared, catalog.IsolationSchema:
		if spec.Backend != "" && spec.Backend != p.cfg.SharedBackend {
			return nil, fmt.Errorf("%w: %s tenants live on the shared backend %q; only database tenants may name another", ErrInvalidSpec, spec.Isolation, p.cfg.SharedBackend)
		}
	case catalog.IsolationDatabase:
		backend = p.cfg.DefaultBackend
		if spec.Backend != "" {
			backend = spec.Backend
		}
		if _, ok := p.cfg.Backends[backend]; !ok {
			return nil, fmt.Errorf("%w: backend %q is not configured", ErrInvalidSpec, backend)
		}
	default:
		return nil, fmt.Errorf("%w: isolation %q: use shared, schema or database", ErrInvalidSpec, spec.Isolation)
	}
	switch spec.PoolMode {
	case "", "session", "transaction":
	default:
		return nil, fmt.Errorf("%w: pool_mode %q: use session or transaction", ErrInvalidSpec, spec.PoolMode)
	}
	id, short, err := catalog.NewID()
	if err != nil {
		return nil, err
	}
	nt := catalog.NewTenant{PoolMode: spec.PoolMode,
		ID: id, ShortID: short, Slug: spec.Slug, Name: spec.Name, Parent: spec.Parent,
		Isolation: spec.Isolation, Backend: backend, Database: p.cfg.SharedDatabase, Schema: "public",
		Role: "stratum_t_" + short, RolePassword: randomPassword(),
	}
	switch spec.Isolation {
	case catalog.IsolationSchema:
		nt.Schema = "t_" + short
	case catalog.IsolationDatabase:
		nt.Database = "t_" + short
	}
	t, err := p.cat.InsertTenant(ctx, nt)
	if err != nil {
		return nil, err
	}
	if err := p.provision(ctx, t, nt.RolePassword); err != nil {
		cleanup := context.WithoutCancel(ctx)
		p.dropPlacement(cleanup, t)
		p.cat.DeleteTenant(cleanup, t.ID)
		return nil, fmt.Errorf("provisioning tenant %q: %w", t.Slug, err)
	}
	if err := p.cat.SetTenantStatus(ctx, t.ID, catalog.StatusActive); err != nil {
		return nil, err
	}
	t.Status = catalog.StatusActive
	if t.Isolation != catalog.IsolationShared {
		// A version ApplySchema recorded after provision read the versions
		// reached neither: ApplySchema skips tenants still provisioning.
		// Each side writes, then reads what the other wrote (ApplySchema
		// records its version, then lists tenants; this activates, then
		// reads the versions), so one of them sees the other: a version
		// recorded before this read is applied here, one recorded after
		// it is listed with the tenant active. (applyVersion keeps both
		// from applying the same version twice.)
		if err := p.applyPending(ctx, tenantPlacement(t)); err != nil {
			return t, fmt.Errorf("tenant %q is active, but applying the app schema recorded while it was provisioned failed (schema apply again fills the gap): %w", t.Slug, err)
		}
	}
	return t, nil
}

func randomPassword() string {
	b := make([]byte, 24)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// provision creates the tenant's role and placement and applies the app schema.
func (p *Provisioner) provision(ctx context.Context, t *catalog.Tenant, password string) error {
	// The password is 192 random bits, so PBKDF2 iterations add nothing
	// against guessing; a low count makes each backend connection cheaper.
	verifier, err := scramverifier.MakeIterations(password, backendRoleIterations)
	if err != nil {
		return err
	}
	admin, err := p.cfg.AdminConn(ctx, t.Backend, p.cfg.Backends[t.Backend].AdminDatabase)
	if err != nil {
		return err
	}
	defer admin.Close(context.WithoutCancel(ctx))
	// The roles get nothing but LOGIN: no superuser, no role or database
	// creation, no replication, no RLS bypass, no inheritance from anything
	// except the groups ensureAccessRoles grants. One per access level
	// (access.go), all with the same password.
	for _, name := range accessRoles(t) {
		if _, err := admin.Exec(ctx, "CREATE ROLE "+quoteIdent(name)+" "+roleOptions+" PASSWORD "+sqlquote.Literal(verifier)); err != nil {
			return fmt.Errorf("creating role %s: %w", name, err)
		}
	}
	return p.placeTenant(ctx, admin, t, func() (string, error) { return password, nil }, t.ID, true)
}

// placeTenant makes t's placement for its existing roles and applies the app
// schema there: what provisioning does after making the roles, and what a
// placement move does to make its target, so that a moved tenant is set up
// exactly as one created there. admin is an admin connection to t's
// backend's maintenance database. apName is the name the placement's app
// schema versions are recorded under (the tenant's id; a move's target
// uses its own until the switch). setPath false leaves out the roles'
// search_path in the shared database (a move sets it at its cut-over:
// before, the tenant's sessions still use the source).
func (p *Provisioner) placeTenant(ctx context.Context, admin *pgx.Conn, t *catalog.Tenant, password func() (string, error), apName string, setPath bool) error {
	role := quoteIdent(t.RoleName)
	switch t.Isolation {
	case catalog.IsolationShared, catalog.IsolationSchema:
		conn, err := p.cfg.AdminConn(ctx, t.Backend, t.Database)
		if err != nil {
			return err
		}
		defer conn.Close(context.WithoutCancel(ctx))
		if err := p.ensureAccessRoles(ctx, conn, t, password, setPath); err != nil {
			return err
		}
		if t.Isolation == catalog.IsolationShared {
			break
		}
		s := quoteIdent(t.Schema)
		if err := execAll(ctx, conn,
			"CREATE SCHEMA "+s,
			"REVOKE ALL ON SCHEMA "+s+" FROM PUBLIC",
			// CREATE too: the schema is the tenant's own, and tools such as
			// pgbench -i make their tables themselves.
			"GRANT USAGE, CREATE ON SCHEMA "+s+" TO "+role,
		); err != nil {
			return err
		}
		if err := p.grantAccess(ctx, conn, t); err != nil {
			return err
		}
	case catalog.IsolationDatabase:
		db := quoteIdent(t.Database)
		if err := execAll(ctx, admin,
			"CREATE DATABASE "+db,
			"REVOKE ALL ON DATABASE "+db+" FROM PUBLIC",
			"GRANT CONNECT, TEMPORARY ON DATABASE "+db+" TO "+role,
		); err != nil {
			return err
		}
		conn, err := p.cfg.AdminConn(ctx, t.Backend, t.Database)
		if err != nil {
			return err
		}
		defer conn.Close(context.WithoutCancel(ctx))
		if err := execAll(ctx, conn,
			"REVOKE ALL ON SCHEMA public FROM PUBLIC",
			"GRANT USAGE, CREATE ON SCHEMA public TO "+role,
			hardenCatalogSQL,
		); err != nil {
			return err
		}
		if err := p.grantAccess(ctx, conn, t); err != nil {
			return err
		}
	}
	if t.Isolation == catalog.IsolationShared {
		// Shared tenants use the shared tables; make sure those are current.
		return p.applyPending(ctx, p.sharedPlacement())
	}
	pl := tenantPlacement(t)
	pl.name = apName
	return p.applyPending(ctx, pl)
}

// dropPlacement removes a tenant's role and placement from its backend, as far
// as they exist. Used to undo a failed provisioning and by DropTenant.
func (p *Provisioner) dropPlacement(ctx context.Context, t *catalog.Tenant) error {
	var errs []error
	switch t.Isolation {
	case catalog.IsolationShared, catalog.IsolationSchema:
		if conn, err := p.cfg.AdminConn(ctx, t.Backend, t.Database); err != nil {
			errs = append(errs, err)
		} else {
			stmts := []string{"DELETE FROM stratum.tenant_roles WHERE tenant_id = " + sqlquote.Literal(t.ID) + "::uuid"}
			if t.Isolation == catalog.IsolationSchema {
				stmts = append(stmts, "DROP SCHEMA IF EXISTS "+quoteIdent(t.Schema)+" CASCADE")
			}
			for _, name := range accessRoles(t) {
				stmts = append(stmts, "DROP OWNED BY "+quoteIdent(name))
			}
			for _, s := range stmts {
				if _, err := conn.Exec(ctx, s); err != nil && !isCode(err, "42704") {
					errs = append(errs, err)
				}
			}
			conn.Close(ctx)
		}
	}
	admin, err := p.cfg.AdminConn(ctx, t.Backend, p.cfg.Backends[t.Backend].AdminDatabase)
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	defer admin.Close(ctx)
	if t.Isolation == catalog.IsolationDatabase {
		if _, err := admin.Exec(ctx, "DROP DATABASE IF EXISTS "+quoteIdent(t.Database)+" WITH (FORCE)"); err != nil {
			errs = append(errs, err)
		}
	}
	roles := accessRoles(t)
	for i := len(roles) - 1; i >= 0; i-- {
		if _, err := admin.Exec(ctx, "DROP ROLE IF EXISTS "+quoteIdent(roles[i])); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// DropTenant removes a tenant's data, role and catalog rows. It refuses a tenant
// with children. Tests use it to leave nothing behind.
func (p *Provisioner) DropTenant(ctx context.Context, ref string) error {
	t, err := p.cat.GetTenant(ctx, ref)
	if err != nil {
		return err
	}
	if err := p.closeMovesOf(ctx, t); err != nil {
		return fmt.Errorf("ending the placement moves of %q: %w", t.Slug, err)
	}
	if t, err = p.cat.GetTenant(ctx, t.ID); err != nil { // a move may have switched it
		return err
	}
	if p.cfg.Pools != nil {
		p.cfg.Pools.CloseTenant(t.ID)
	}
	if err := p.dropPlacement(ctx, t); err != nil {
		return fmt.Errorf("dropping placement of %q: %w", t.Slug, err)
	}
	if err := p.cat.DeleteTenant(ctx, t.ID); err != nil {
		return err
	}
	if p.cfg.Pools != nil {
		p.cfg.Pools.Invalidate()
	}
	return nil
}

// DropShared removes the deployment's shared database and group roles (after all
// tenants were dropped). Tests use it to leave nothing behind.
func (p *Provisioner) DropShared(ctx context.Context) error {
	admin, err := p.cfg.AdminConn(ctx, p.cfg.SharedBackend, p.cfg.Backends[p.cfg.SharedBackend].AdminDatabase)
	if err != nil {
		return err
	}
	defer admin.Close(ctx)
	stmts := []string{"DROP DATABASE IF EXISTS " + quoteIdent(p.cfg.SharedDatabase) + " WITH (FORCE)"}
	for _, g := range p.groups() {
		stmts = append(stmts, "DROP ROLE IF EXISTS "+quoteIdent(g))
	}
	return execAll(ctx, admin, stmts...)
}

// hardenCatalogSQL closes, in one database, the catalog views and functions
// through which a tenant could count or sample rows it cannot read: planner
// statistics (pg_stats: most common values of every column, row-level
// security notwithstanding), row and page counts in pg_class, the statistics
// collector's per-table and per-database counters (pg_stat_activity among
// them: other sessions' queries), and relation sizes; and the lock views and
// functions through which it could watch other tenants' sessions lock and
// wait (pg_locks, pg_lock_status, pg_blocking_pids,
// pg_safe_snapshot_blocking_pids, pg_isolation_test_session_is_blocked).
// Tenants keep every other pg_class column, so drivers and ORMs introspect as
// before. It is idempotent and runs as a superuser, in a session whose
// search_path is pinned (backends.PinnedSearchPath); every function and
// relation it names is qualified as well, so that a tenant's overload in a
// schema it may create in (public of its database) is never called.
// f regprocedure and cols text are type names, resolved in pg_catalog.
const hardenCatalogSQL = `
REVOKE SELECT ON pg_catalog.pg_stats, pg_catalog.pg_stats_ext, pg_catalog.pg_stats_ext_exprs FROM PUBLIC;
REVOKE SELECT ON pg_catalog.pg_locks FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION pg_catalog.pg_lock_status(), pg_catalog.pg_blocking_pids(integer),
	pg_catalog.pg_safe_snapshot_blocking_pids(integer),
	pg_catalog.pg_isolation_test_session_is_blocked(integer, integer[]) FROM PUBLIC;
DO $harden$
DECLARE
	f regprocedure;
	cols text;
BEGIN
	FOR f IN SELECT p.oid::pg_catalog.regprocedure FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
		WHERE n.nspname = 'pg_catalog' AND (p.proname LIKE 'pg_stat_get_%' OR p.proname IN
			('pg_relation_size', 'pg_table_size', 'pg_total_relation_size', 'pg_indexes_size',
			 'pg_database_size', 'pg_tablespace_size', 'pg_relation_filenode', 'pg_relation_filepath'))
	LOOP
		EXECUTE pg_catalog.format('REVOKE EXECUTE ON FUNCTION %s FROM PUBLIC', f);
	END LOOP;
	SELECT pg_catalog.string_agg(pg_catalog.quote_ident(attname), ', ' ORDER BY attnum) INTO cols FROM pg_catalog.pg_attribute
		WHERE attrelid = 'pg_catalog.pg_class'::pg_catalog.regclass AND attnum > 0 AND NOT attisdropped
		AND attname NOT IN ('reltuples', 'relpages', 'relallvisible');
	REVOKE SELECT ON pg_catalog.pg_class FROM PUBLIC;
	EXECUTE pg_catalog.format('GRANT SELECT (%s) ON pg_catalog.pg_class TO PUBLIC', cols);
END
$harden$;`

// AdminUsers returns the admin role names of the configured backends: the
// admin API refuses them as proxy user names.
func (p *Provisioner) AdminUsers() []string {
	var out []string
	for _, b := range p.cfg.Backends {
		out = append(out, b.AdminUser)
	}
	return out
}

// ReservedDatabases returns the database names a client must not map to a
// tenant: the shared database and the backends' admin databases.
func (p *Provisioner) ReservedDatabases() []string {
	out := []string{p.cfg.SharedDatabase}
	for _, b := range p.cfg.Backends {
		out = append(out, b.AdminDatabase)
	}
	return out
}
