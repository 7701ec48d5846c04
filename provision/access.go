package provision

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/stratum-hq/stratum-proxy/catalog"
	"github.com/stratum-hq/stratum-proxy/internal/scramverifier"
	"github.com/stratum-hq/stratum-proxy/internal/sqlquote"
	"github.com/stratum-hq/stratum-proxy/policy"
)

// Access levels on the backends. Every tenant has three LOGIN roles with the
// same password (the catalog's backend password), one per policy.Access
// level: its own role (full: it owns the tenant's objects in its schema or
// database), role_w (read and write data, no DDL) and role_r (read only). The
// router logs a session in as the role of its tenant's level, so that
// PostgreSQL itself refuses what the level does not allow, whatever SQL the
// session manages to send. Neither _w nor _r is ever a member of the full
// role or of anything that owns the tenant's objects.
//
// What each role may do, per placement:
//
//	shared:   full and _w are members of the shared and shared_w groups (SELECT,
//	          INSERT, UPDATE, DELETE on the app tables under row-level
//	          security; USAGE, SELECT on sequences); _r of shared_r (SELECT on
//	          tables and sequences). The policy applies to all three groups.
//	schema:   all three are members of the schema group (CONNECT, TEMPORARY on
//	          the shared database); full owns its schema's objects and may
//	          CREATE there; _w has USAGE on the schema and DML (SELECT, INSERT,
//	          UPDATE, DELETE, TRUNCATE) on its tables, USAGE, SELECT, UPDATE on
//	          its sequences; _r has USAGE and SELECT only. Default privileges of
//	          the full role give the same on what it creates later.
//	database: as schema, in public of the tenant's database, with CONNECT and
//	          TEMPORARY on that database for all three.
//
// Temporary objects stay allowed for _w and _r: they change no tenant data
// and reporting tools use them.

// sharedGroupOf is the shared placement's group of a level.
func (p *Provisioner) sharedGroupOf(a policy.Access) string {
	return a.Role(p.sharedGroup())
}

// loWriteGroup is the group allowed, in the shared database, to create and
// write large objects: the full and _w roles of shared and schema tenants.
func (p *Provisioner) loWriteGroup() string { return "stratum_" + p.depID + "_lo_write" }

// groups are the deployment's group roles.
func (p *Provisioner) groups() []string {
	return []string{p.sharedGroup(), p.sharedGroupOf(policy.AccessWrite), p.sharedGroupOf(policy.AccessRead),
		p.schemaGroup(), p.loWriteGroup()}
}

// accessRoles are a tenant's three backend roles, full first.
func accessRoles(t *catalog.Tenant) []string {
	out := make([]string, len(policy.Accesses))
	for i, a := range policy.Accesses {
		out[i] = a.Role(t.RoleName)
	}
	return out
}

// createMissingRoles makes those of the tenant roles names that the server
// lacks (LOGIN, roleOptions), with the verifier of the tenant's backend
// password, which is read only when a role is missing.
func createMissingRoles(ctx context.Context, conn *pgx.Conn, names []string, password func() (string, error)) error {
	var verifier string
	for _, name := range names {
		var exists bool
		if err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = $1)`, name).Scan(&exists); err != nil {
			return fmt.Errorf("checking role %s: %w", name, err)
		}
		if exists {
			continue
		}
		if verifier == "" {
			pw, err := password()
			if err != nil {
				return err
			}
			if verifier, err = scramverifier.MakeIterations(pw, backendRoleIterations); err != nil {
				return err
			}
		}
		if err := ensureRole(ctx, conn, name, roleOptions+" PASSWORD "+sqlquote.Literal(verifier)); err != nil {
			return err
		}
	}
	return nil
}

// roleOptions are the attributes of every tenant role: LOGIN and nothing more.
const roleOptions = "LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS"

// ensureAccessRoles makes t's _w and _r roles when they are missing (tenants
// provisioned before they existed), with the tenant's backend password, and
// gives all three roles their groups; in the shared database it registers
// every role of a shared tenant in stratum.tenant_roles and, with setPath,
// sets its search_path there (sharedRoleSQL). conn is an admin
// connection to t's database (the shared database for shared and schema
// tenants); roles are cluster-wide. Idempotent.
func (p *Provisioner) ensureAccessRoles(ctx context.Context, conn *pgx.Conn, t *catalog.Tenant, password func() (string, error), setPath bool) error {
	if err := createMissingRoles(ctx, conn, []string{policy.AccessWrite.Role(t.RoleName), policy.AccessRead.Role(t.RoleName)}, password); err != nil {
		return err
	}
	full, w, r := quoteIdent(t.RoleName), quoteIdent(policy.AccessWrite.Role(t.RoleName)), quoteIdent(policy.AccessRead.Role(t.RoleName))
	var stmts []string
	switch t.Isolation {
	case catalog.IsolationShared:
		stmts = []string{
			"GRANT " + quoteIdent(p.sharedGroup()) + " TO " + full,
			"GRANT " + quoteIdent(p.sharedGroupOf(policy.AccessWrite)) + " TO " + w,
			"GRANT " + quoteIdent(p.sharedGroupOf(policy.AccessRead)) + " TO " + r,
			"GRANT " + quoteIdent(p.loWriteGroup()) + " TO " + full + ", " + w,
		}
	case catalog.IsolationSchema:
		stmts = []string{
			"GRANT " + quoteIdent(p.schemaGroup()) + " TO " + full + ", " + w + ", " + r,
			"GRANT " + quoteIdent(p.loWriteGroup()) + " TO " + full + ", " + w,
		}
	}
	if err := execAll(ctx, conn, stmts...); err != nil {
		return err
	}
	if t.Isolation != catalog.IsolationDatabase {
		// Every role of a tenant in the shared database is registered (row-level
		// security and the per-tenant advisory locks look the tenant up by
		// session user) and gets the search_path that puts the lock wrappers
		// before pg_catalog.
		for _, role := range accessRoles(t) {
			stmts := sharedRoleSQL(role, t, p.cfg.SharedDatabase)
			if !setPath {
				stmts = stmts[:1]
			}
			if err := execAll(ctx, conn, stmts...); err != nil {
				return fmt.Errorf("registering tenant role %s: %w", role, err)
			}
		}
	}
	return nil
}

// grantAccess gives t's _w and _r roles their rights in t's schema or
// database (nothing to do for a shared tenant: its groups hold the rights),
// now and, through the full role's default privileges, on what it creates
// later; in a database tenant's database it also installs the event trigger
// and the large-object revokes. conn is an admin connection to t's database
// with the pinned search_path; everything is qualified. Idempotent: it runs at
// provisioning, after every schema apply and at every start.
func (p *Provisioner) grantAccess(ctx context.Context, conn *pgx.Conn, t *catalog.Tenant) error {
	if t.Isolation == catalog.IsolationShared {
		return nil
	}
	full, w, r := quoteIdent(t.RoleName), quoteIdent(policy.AccessWrite.Role(t.RoleName)), quoteIdent(policy.AccessRead.Role(t.RoleName))
	s := quoteIdent(t.Schema)
	var stmts []string
	if t.Isolation == catalog.IsolationDatabase {
		db := quoteIdent(t.Database)
		stmts = append(stmts,
			"GRANT CONNECT, TEMPORARY ON DATABASE "+db+" TO "+w+", "+r,
			guardSQL,
			loWriteSQL(full+", "+w),
		)
	}
	const (
		tablesW = "SELECT, INSERT, UPDATE, DELETE, TRUNCATE"
		seqsW   = "USAGE, SELECT, UPDATE"
	)
	stmts = append(stmts,
		"GRANT USAGE ON SCHEMA "+s+" TO "+w+", "+r,
		"GRANT "+tablesW+" ON ALL TABLES IN SCHEMA "+s+" TO "+w,
		"GRANT SELECT ON ALL TABLES IN SCHEMA "+s+" TO "+r,
		"GRANT "+seqsW+" ON ALL SEQUENCES IN SCHEMA "+s+" TO "+w,
		"GRANT SELECT ON ALL SEQUENCES IN SCHEMA "+s+" TO "+r,
		"ALTER DEFAULT PRIVILEGES FOR ROLE "+full+" IN SCHEMA "+s+" GRANT "+tablesW+" ON TABLES TO "+w,
		"ALTER DEFAULT PRIVILEGES FOR ROLE "+full+" IN SCHEMA "+s+" GRANT SELECT ON TABLES TO "+r,
		"ALTER DEFAULT PRIVILEGES FOR ROLE "+full+" IN SCHEMA "+s+" GRANT "+seqsW+" ON SEQUENCES TO "+w,
		"ALTER DEFAULT PRIVILEGES FOR ROLE "+full+" IN SCHEMA "+s+" GRANT SELECT ON SEQUENCES TO "+r,
	)
	if err := execAll(ctx, conn, stmts...); err != nil {
		return fmt.Errorf("granting tenant %q its access roles' rights: %w", t.Slug, err)
	}
	return nil
}

// loWriteFunctions are the large-object functions that create, write or
// remove large objects. Large objects need no table privilege, so a read-only
// role could otherwise store data with them. Reading ones (lo_get, loread,
// lo_open, which checks UPDATE on the object for write mode) stay public.
// lo_import and lo_export are superuser-only already.
var loWriteFunctions = []string{"lo_creat", "lo_create", "lo_from_bytea", "lo_put", "lowrite",
	"lo_truncate", "lo_truncate64", "lo_unlink"}

// loWriteSQL revokes EXECUTE on loWriteFunctions from PUBLIC in the current
// database and grants it to grantees (quoted role names, comma-separated).
// Idempotent; runs as a superuser with the pinned search_path.
func loWriteSQL(grantees string) string {
	return `DO $lo$
DECLARE
	f pg_catalog.regprocedure;
BEGIN
	FOR f IN SELECT p.oid::pg_catalog.regprocedure FROM pg_catalog.pg_proc p
		WHERE p.pronamespace = 'pg_catalog'::pg_catalog.regnamespace AND p.proname IN (` + quoteList(loWriteFunctions) + `)
	LOOP
		EXECUTE pg_catalog.format('REVOKE EXECUTE ON FUNCTION %s FROM PUBLIC', f);
		EXECUTE pg_catalog.format('GRANT EXECUTE ON FUNCTION %s TO %s', f, ` + sqlquote.Literal(grantees) + `);
	END LOOP;
END
$lo$`
}

func quoteList(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = sqlquote.Literal(n)
	}
	return strings.Join(q, ", ")
}

// guardSQL installs, in the current database, the event trigger that keeps
// a tenant's full role from preparing a way around its _w and _r roles while
// it has full rights: it refuses, for every role that is not a superuser,
// GRANT and REVOKE (a full role could grant INSERT on its tables to PUBLIC or
// to its own _r role), ALTER DEFAULT PRIVILEGES, and CREATE or ALTER of a
// function or procedure that leaves it SECURITY DEFINER (it would write as
// its owner when _r calls it). The function lives in schema stratum, made
// here if missing, where no tenant may create anything. Idempotent; runs as
// a superuser with the pinned search_path, and the function pins its own.
const guardSQL = `
CREATE SCHEMA IF NOT EXISTS stratum;
REVOKE ALL ON SCHEMA stratum FROM PUBLIC;
CREATE OR REPLACE FUNCTION stratum.refuse_privilege_changes() RETURNS event_trigger
	LANGUAGE plpgsql SET search_path = pg_catalog AS $guard$
DECLARE
	r record;
BEGIN
	IF (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user) THEN
		RETURN;
	END IF;
	IF tg_tag IN ('GRANT', 'REVOKE', 'ALTER DEFAULT PRIVILEGES') THEN
		RAISE EXCEPTION 'permission denied: % is not allowed for tenant roles', tg_tag
			USING ERRCODE = '42501',
			HINT = 'privileges in a tenant''s placement are managed by stratum-proxy';
	END IF;
	FOR r IN SELECT c.objid FROM pg_catalog.pg_event_trigger_ddl_commands() c
		WHERE c.classid = 'pg_catalog.pg_proc'::pg_catalog.regclass
	LOOP
		IF EXISTS (SELECT 1 FROM pg_catalog.pg_proc p WHERE p.oid = r.objid AND p.prosecdef) THEN
			RAISE EXCEPTION 'permission denied: SECURITY DEFINER functions and procedures are not allowed for tenant roles'
				USING ERRCODE = '42501',
				HINT = 'use SECURITY INVOKER (the default)';
		END IF;
	END LOOP;
END
$guard$;
REVOKE ALL ON FUNCTION stratum.refuse_privilege_changes() FROM PUBLIC;
DO $guard$
BEGIN
	IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_event_trigger WHERE evtname = 'stratum_refuse_privilege_changes') THEN
		CREATE EVENT TRIGGER stratum_refuse_privilege_changes ON ddl_command_end
			EXECUTE FUNCTION stratum.refuse_privilege_changes();
	END IF;
END
$guard$;
ALTER EVENT TRIGGER stratum_refuse_privilege_changes ENABLE;`
