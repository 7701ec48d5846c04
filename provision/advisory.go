package provision

import (
	"github.com/stratum-hq/stratum-proxy/catalog"
	"github.com/stratum-hq/stratum-proxy/internal/backends"
	"github.com/stratum-hq/stratum-proxy/internal/sqlquote"
)

// Advisory locks are per database, and shared and schema tenants share one:
// with pg_catalog's functions, tenant A's pg_try_advisory_lock(42) would fail
// while tenant B held lock 42, and A could stall anything of B's (or, before
// the proxy's own locks moved to the catalog, the proxy) that waits for a
// key. In the shared database, therefore, tenants may not execute
// pg_catalog's advisory-lock functions, and call same-named wrappers in
// backends.AdvisorySchema instead (their search_path names that schema before
// pg_catalog, so unqualified calls reach the wrappers). A wrapper maps the key
// to one of the calling tenant's own: the first 64 bits of
// sha256(tenant id || ':' || key), so no tenant can aim at another's key
// without knowing its tenant id and finding a 64-bit preimage. The two-int
// forms map (k1, k2) to "k1,k2", distinct from every bigint key. A call of
// pg_catalog's functions, qualified or by OID (FunctionCall), fails with
// 42501. pg_advisory_unlock_all stays open: it releases only the calling
// session's own locks.

// advisoryFuncs are pg_catalog's advisory-lock functions that take a key,
// with their result types; each has a (bigint) and an (integer, integer) form.
var advisoryFuncs = []struct {
	name, result string
	session      bool // takes a session-level lock
}{
	{"pg_advisory_lock", "void", true},
	{"pg_advisory_lock_shared", "void", true},
	{"pg_try_advisory_lock", "boolean", true},
	{"pg_try_advisory_lock_shared", "boolean", true},
	{"pg_advisory_xact_lock", "void", false},
	{"pg_advisory_xact_lock_shared", "void", false},
	{"pg_try_advisory_xact_lock", "boolean", false},
	{"pg_try_advisory_xact_lock_shared", "boolean", false},
	{"pg_advisory_unlock", "boolean", false},
	{"pg_advisory_unlock_shared", "boolean", false},
}

// advisoryLocksSQL makes the per-tenant advisory-lock wrappers in the shared
// database and closes pg_catalog's functions to tenants there. It is
// idempotent and runs as the admin user (a superuser, who keeps pg_catalog's
// functions and owns the wrappers) with the pinned search_path, in
// PrepareShared after stratum.tenant_roles exists. Everything it names is
// qualified. The wrappers are SECURITY DEFINER with search_path pg_catalog,
// and EXECUTE stays with PUBLIC: only the deployment's groups may connect to
// the shared database, and a session user that is not a tenant's role gets
// 42501 (fail closed), so no grant needs to follow new groups or roles.
func advisoryLocksSQL() []string {
	s := backends.AdvisorySchema
	stmts := []string{
		"CREATE SCHEMA IF NOT EXISTS " + s,
		"REVOKE ALL ON SCHEMA " + s + " FROM PUBLIC",
		"GRANT USAGE ON SCHEMA " + s + " TO PUBLIC",
		// The tenant's key for a caller's key, or 42501 when the session user
		// is no tenant's role. session_user: a tenant cannot change it, and
		// in a SECURITY DEFINER function current_user is the owner.
		`CREATE OR REPLACE FUNCTION stratum.advisory_key(k text) RETURNS bigint
			LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog AS $f$
			DECLARE t uuid;
			BEGIN
				SELECT r.tenant_id INTO t FROM stratum.tenant_roles r WHERE r.role_name = pg_catalog."session_user"();
				IF t IS NULL THEN
					RAISE EXCEPTION 'advisory locks are for tenant sessions; % is no tenant''s role', pg_catalog."session_user"()
						USING ERRCODE = '42501';
				END IF;
				RETURN pg_catalog.concat('x', pg_catalog."left"(pg_catalog.encode(pg_catalog.sha256(
					pg_catalog.convert_to(pg_catalog.concat(t::text, ':', k), 'UTF8')), 'hex'), 16))::bit(64)::bigint;
			END $f$`,
		"REVOKE ALL ON FUNCTION stratum.advisory_key(text) FROM PUBLIC",
	}
	for _, f := range advisoryFuncs {
		for _, form := range []struct{ args, key string }{
			{"bigint", "$1::text"},
			{"integer, integer", "pg_catalog.concat($1, ',', $2)"},
		} {
			call := "pg_catalog." + f.name + "(stratum.advisory_key(" + form.key + "))"
			body := " LANGUAGE sql VOLATILE STRICT SECURITY DEFINER SET search_path = pg_catalog AS $f$ SELECT " + call + " $f$"
			if f.session {
				// A session-level lock outlives the transaction: tell the
				// proxy (backends.SessionLockNotice), whatever the
				// client's client_min_messages.
				ret := "PERFORM " + call + "; RAISE NOTICE 'session advisory lock taken' USING ERRCODE = '" + backends.SessionLockNotice + "';"
				if f.result == "boolean" {
					ret = "r := " + call + "; IF r THEN RAISE NOTICE 'session advisory lock taken' USING ERRCODE = '" +
						backends.SessionLockNotice + "'; END IF; RETURN r;"
				}
				body = " LANGUAGE plpgsql VOLATILE STRICT SECURITY DEFINER SET search_path = pg_catalog SET client_min_messages = notice" +
					" AS $f$ DECLARE r boolean; BEGIN " + ret + " END $f$"
			}
			stmts = append(stmts,
				"CREATE OR REPLACE FUNCTION "+s+"."+f.name+"("+form.args+") RETURNS "+f.result+body,
				"GRANT EXECUTE ON FUNCTION "+s+"."+f.name+"("+form.args+") TO PUBLIC",
				"REVOKE EXECUTE ON FUNCTION pg_catalog."+f.name+"("+form.args+") FROM PUBLIC",
			)
		}
	}
	return stmts
}

// sharedRoleSQL is what a login role of a shared or schema tenant needs in the
// shared database, run there as the admin user: its row in
// stratum.tenant_roles (which names its tenant to row-level security and to
// the advisory-lock wrappers) and its default search_path
// (backends.SharedSearchPath). It is idempotent. Call it for every login
// role a tenant gets there, when the role is made and at every start.
func sharedRoleSQL(role string, t *catalog.Tenant, database string) []string {
	return []string{
		"INSERT INTO stratum.tenant_roles (role_name, tenant_id) VALUES (" +
			sqlquote.Literal(role) + ", " + sqlquote.Literal(t.ID) + ") ON CONFLICT (role_name) DO NOTHING",
		"ALTER ROLE " + quoteIdent(role) + " IN DATABASE " + quoteIdent(database) +
			" SET search_path = " + backends.SharedSearchPath(t.Schema),
	}
}
