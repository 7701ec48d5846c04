package privileges

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
)

// This file reads the privilege picture off the server, as the admin (a
// superuser), in lines that are sorted, free of per-run names and only say
// what is there: an effective-privilege line is written only when the role
// has at least one of the privileges it lists, so a privilege gained adds a
// line and one lost removes or changes one.

// rn renders the role with oid e: PUBLIC for 0, <admin> for the user the
// picture is read as, else the role's name (normalised later).
func rn(e string) string {
	return fmt.Sprintf(`(CASE WHEN %[1]s = 0 THEN 'PUBLIC' WHEN %[1]s = (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = current_user) THEN '<admin>' ELSE %[1]s::pg_catalog.regrole::text END)`, e)
}

// aclText renders the aclitem[] e as sorted grantee=PRIVILEGE/grantor items
// (PRIVILEGE* when grantable); "default" for NULL (the built-in defaults),
// "none" for an empty list.
func aclText(e string) string {
	return fmt.Sprintf(`(CASE WHEN %[1]s IS NULL THEN 'default' ELSE COALESCE((SELECT pg_catalog.string_agg(item, ' ' ORDER BY item)
		FROM (SELECT %[2]s || '=' || ae.privilege_type || CASE WHEN ae.is_grantable THEN '*' ELSE '' END || '/' || %[3]s AS item
		FROM pg_catalog.aclexplode(%[1]s) ae) s), 'none') END)`, e, rn("ae.grantee"), rn("ae.grantor"))
}

// rname renders an audited role r.name, PUBLIC for public.
const rname = `(CASE WHEN r.name = 'public' THEN 'PUBLIC' ELSE r.name END)`

// reachable is true when role r.name may connect to the current database
// and use schema n: effective privileges on objects there are written only
// then (the raw ACLs are written always).
const reachable = `pg_catalog.has_database_privilege(r.name, pg_catalog.current_database(), 'CONNECT')
	AND pg_catalog.has_schema_privilege(r.name, n.oid, 'USAGE')`

// connects is reachable for database-wide lines.
const connects = `pg_catalog.has_database_privilege(r.name, pg_catalog.current_database(), 'CONNECT')`

// userSchema is true for a schema of pg_namespace n that is not a system one.
const userSchema = `n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_(toast|temp_)'`

// privs renders the privileges of list for which check holds, with %[1]s (or
// %s) in check standing for each privilege, e.g.
// privs("has_table_privilege(r.name, c.oid, %s)", "SELECT", "INSERT").
func privs(check string, list ...string) string {
	q := make([]string, len(list))
	for i, p := range list {
		q[i] = "'" + p + "'"
	}
	return fmt.Sprintf(`pg_catalog.array_to_string(ARRAY(SELECT p FROM pg_catalog.unnest(ARRAY[%s]) WITH ORDINALITY AS x(p, i)
		WHERE pg_catalog.%s ORDER BY i), ' ')`, strings.Join(q, ", "), fmt.Sprintf(check, "p"))
}

// tablePrivs and the like are the privileges each kind of object has.
var (
	tablePrivs = []string{"SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER"}
	seqPrivs   = []string{"USAGE", "SELECT", "UPDATE"}
	dbPrivs    = []string{"CONNECT", "TEMPORARY", "CREATE"}
	nspPrivs   = []string{"USAGE", "CREATE"}
	colPrivs   = []string{"SELECT", "INSERT", "UPDATE", "REFERENCES"}
)

// countingFunctions are the pg_catalog functions hardening closes: the
// statistics collector's counters and the size functions.
const countingFunctions = `(p.proname LIKE 'pg\_stat\_get\_%' OR p.proname IN ('pg_relation_size', 'pg_table_size',
	'pg_total_relation_size', 'pg_indexes_size', 'pg_database_size', 'pg_tablespace_size', 'pg_relation_filenode',
	'pg_relation_filepath'))`

// serverQueries are read once, in any database; $1 is the audited roles'
// names.
var serverQueries = []string{
	// Role attributes.
	`SELECT 'role ' || rolname || ' attributes: super=' || rolsuper || ' inherit=' || rolinherit ||
		' createrole=' || rolcreaterole || ' createdb=' || rolcreatedb || ' login=' || rolcanlogin ||
		' replication=' || rolreplication || ' bypassrls=' || rolbypassrls || ' connlimit=' || rolconnlimit ||
		' password=' || (rolpassword IS NOT NULL) || ' validuntil=' || COALESCE(rolvaliduntil::text, 'never')
	FROM pg_catalog.pg_authid WHERE rolname = ANY($1)`,
	// Direct memberships, in either direction.
	`SELECT 'membership ' || ` + rn("m.member") + ` || ' in ' || ` + rn("m.roleid") + ` || ' admin_option=' || m.admin_option ||
		' grantor=' || ` + rn("m.grantor") + `
	FROM pg_catalog.pg_auth_members m
	WHERE m.member IN (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = ANY($1))
	   OR m.roleid IN (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = ANY($1))`,
	// Effective memberships: every role whose rights each audited role has
	// (USAGE: inherited) or can take with SET ROLE (MEMBER).
	`SELECT 'role ' || r.rolname || ' is member of: ' || COALESCE((SELECT pg_catalog.string_agg(s, ' ' ORDER BY s) FROM (SELECT ` + rn("o.oid") + ` ||
		CASE WHEN pg_catalog.pg_has_role(r.oid, o.oid, 'USAGE') THEN '(inherits)' ELSE '(set role only)' END AS s
		FROM pg_catalog.pg_roles o WHERE o.oid <> r.oid AND pg_catalog.pg_has_role(r.oid, o.oid, 'MEMBER')) z), 'nothing')
	FROM pg_catalog.pg_roles r WHERE r.rolname = ANY($1)`,
	// Settings per role and database.
	`SELECT 'role ' || ` + rn("s.setrole") + ` || ' setting in db ' || COALESCE(d.datname, '*') || ': ' ||
		pg_catalog.array_to_string(s.setconfig, ' ')
	FROM pg_catalog.pg_db_role_setting s LEFT JOIN pg_catalog.pg_database d ON d.oid = s.setdatabase
	WHERE s.setrole IN (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = ANY($1))`,
	// Every database: owner, ACL, and what each audited role and PUBLIC may do.
	`SELECT 'db ' || datname || ' owner=' || ` + rn("datdba") + ` || ' allowconn=' || datallowconn ||
		' template=' || datistemplate || ' acl=' || ` + aclText("datacl") + `
	FROM pg_catalog.pg_database`,
	`SELECT 'db ' || d.datname || ' role ' || ` + rname + ` || ': ' || ` + privs("has_database_privilege(r.name, d.oid, %s)", dbPrivs...) + `
	FROM pg_catalog.unnest($1::text[] || ARRAY['public']) r(name), pg_catalog.pg_database d`,
	// Objects the audited roles own anywhere, or hold privileges on, by
	// database (pg_shdepend): a summary that catches what the
	// per-database sections do not list.
	`SELECT 'role ' || ` + rn("s.refobjid") + ` || ' ' || CASE s.deptype WHEN 'o' THEN 'owns' WHEN 'a' THEN 'is in the ACL of' WHEN 'r' THEN 'is named in' ELSE s.deptype::text END ||
		' ' || pg_catalog.count(*) || ' ' || s.classid::pg_catalog.regclass::text || ' objects in db ' || COALESCE(d.datname, '*')
	FROM pg_catalog.pg_shdepend s LEFT JOIN pg_catalog.pg_database d ON d.oid = s.dbid
	WHERE s.refclassid = 'pg_catalog.pg_authid'::pg_catalog.regclass
	  AND s.refobjid IN (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = ANY($1))
	GROUP BY s.refobjid, s.deptype, s.classid, d.datname`,
}

// dbQueries are read in each tenant-facing database; $1 is the audited
// roles' names, and each line is prefixed with the database's name.
var dbQueries = []string{
	// Schemas (system ones too, but not toast or temporary schemas).
	`SELECT 'schema ' || n.nspname || ' owner=' || ` + rn("n.nspowner") + ` || ' acl=' || ` + aclText("n.nspacl") + `
	FROM pg_catalog.pg_namespace n WHERE n.nspname !~ '^pg_(toast|temp_)'`,
	`SELECT 'schema ' || n.nspname || ' role ' || ` + rname + ` || ': ' || ` + privs("has_schema_privilege(r.name, n.oid, %s)", nspPrivs...) + `
	FROM pg_catalog.unnest($1::text[] || ARRAY['public']) r(name), pg_catalog.pg_namespace n
	WHERE n.nspname !~ '^pg_(toast|temp_)' AND ` + connects,
	// Relations outside the system schemas: kind, owner, RLS, raw ACL.
	`SELECT 'rel ' || n.nspname || '.' || c.relname || ' kind=' || c.relkind::text || ' owner=' || ` + rn("c.relowner") + ` ||
		' rls=' || c.relrowsecurity || ' force_rls=' || c.relforcerowsecurity || ' acl=' || ` + aclText("c.relacl") + `
	FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE ` + userSchema,
	// Effective privileges on tables, views and the like, and on sequences.
	`SELECT 'rel ' || n.nspname || '.' || c.relname || ' role ' || ` + rname + ` || ': ' || ` + privs("has_table_privilege(r.name, c.oid, %s)", tablePrivs...) + `
	FROM pg_catalog.unnest($1::text[] || ARRAY['public']) r(name), pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
	WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f') AND ` + userSchema + ` AND ` + reachable,
	`SELECT 'rel ' || n.nspname || '.' || c.relname || ' role ' || ` + rname + ` || ': ' || ` + privs("has_sequence_privilege(r.name, c.oid, %s)", seqPrivs...) + `
	FROM pg_catalog.unnest($1::text[] || ARRAY['public']) r(name), pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
	WHERE c.relkind = 'S' AND ` + userSchema + ` AND ` + reachable,
	// Column grants (raw), and column privileges a role has without having
	// them on the whole table.
	`SELECT 'column ' || n.nspname || '.' || c.relname || '.' || a.attname || ' acl=' || ` + aclText("a.attacl") + `
	FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_class c ON c.oid = a.attrelid JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
	WHERE a.attacl IS NOT NULL AND ` + userSchema,
	`SELECT 'column ' || n.nspname || '.' || c.relname || '.' || a.attname || ' role ' || ` + rname + ` || ' (not table-wide): ' ||
		` + privs("has_column_privilege(r.name, c.oid, a.attnum, %[1]s) AND NOT pg_catalog.has_table_privilege(r.name, c.oid, %[1]s)", colPrivs...) + `
	FROM pg_catalog.unnest($1::text[] || ARRAY['public']) r(name), pg_catalog.pg_attribute a
	JOIN pg_catalog.pg_class c ON c.oid = a.attrelid JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
	WHERE a.attnum > 0 AND NOT a.attisdropped AND c.relkind IN ('r', 'p', 'v', 'm', 'f') AND ` + userSchema + ` AND ` + reachable,
	// Row-level security policies.
	`SELECT 'policy ' || n.nspname || '.' || c.relname || ' ' || p.polname || ' cmd=' || p.polcmd::text || ' permissive=' || p.polpermissive ||
		' to=' || (SELECT pg_catalog.string_agg(s, ',' ORDER BY s) FROM (SELECT ` + rn("x") + ` AS s FROM pg_catalog.unnest(p.polroles) x) z) ||
		' using=' || COALESCE(pg_catalog.pg_get_expr(p.polqual, p.polrelid), '-') ||
		' check=' || COALESCE(pg_catalog.pg_get_expr(p.polwithcheck, p.polrelid), '-')
	FROM pg_catalog.pg_policy p JOIN pg_catalog.pg_class c ON c.oid = p.polrelid JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace`,
	// Functions and procedures outside the system schemas.
	`SELECT 'function ' || n.nspname || '.' || p.proname || '(' || pg_catalog.pg_get_function_identity_arguments(p.oid) || ') kind=' || p.prokind::text ||
		' owner=' || ` + rn("p.proowner") + ` || ' security_definer=' || p.prosecdef ||
		' config=' || COALESCE(pg_catalog.array_to_string(p.proconfig, ','), '-') || ' acl=' || ` + aclText("p.proacl") + `
	FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace WHERE ` + userSchema,
	`SELECT 'function ' || n.nspname || '.' || p.proname || '(' || pg_catalog.pg_get_function_identity_arguments(p.oid) || ') role ' || r.name || ': ' ||
		` + privs("has_function_privilege(r.name, p.oid, %s)", "EXECUTE") + `
	FROM pg_catalog.unnest($1::text[] || ARRAY['public']) r(name), pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
	WHERE ` + userSchema + ` AND ` + reachable,
	// Types of their own (not a table's row type or an array) outside the
	// system schemas.
	`SELECT 'type ' || n.nspname || '.' || t.typname || ' kind=' || t.typtype::text || ' owner=' || ` + rn("t.typowner") + ` || ' acl=' || ` + aclText("t.typacl") + `
	FROM pg_catalog.pg_type t JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace
	WHERE ` + userSchema + ` AND t.typtype IN ('d', 'e', 'r', 'c', 'm')
	  AND (t.typrelid = 0 OR (SELECT relkind FROM pg_catalog.pg_class WHERE oid = t.typrelid) = 'c')`,
	// Default privileges and event triggers.
	`SELECT 'default privileges for ' || ` + rn("d.defaclrole") + ` || ' in schema ' || COALESCE(n.nspname, '*') ||
		' on ' || d.defaclobjtype::text || ': ' || ` + aclText("d.defaclacl") + `
	FROM pg_catalog.pg_default_acl d LEFT JOIN pg_catalog.pg_namespace n ON n.oid = d.defaclnamespace`,
	`SELECT 'event trigger ' || e.evtname || ' on ' || e.evtevent || ' owner=' || ` + rn("e.evtowner") + ` ||
		' function=' || e.evtfoid::pg_catalog.regprocedure::text || ' enabled=' || e.evtenabled::text ||
		' tags=' || COALESCE(pg_catalog.array_to_string(e.evttags, ','), '*')
	FROM pg_catalog.pg_event_trigger e`,
	// Installed extensions and languages (their members are no one's app).
	`SELECT 'extension ' || x.extname || ' owner=' || ` + rn("x.extowner") + ` FROM pg_catalog.pg_extension x`,
	`SELECT 'language ' || l.lanname || ' trusted=' || l.lanpltrusted || ' owner=' || ` + rn("l.lanowner") + ` || ' acl=' || ` + aclText("l.lanacl") + `
	FROM pg_catalog.pg_language l`,
	// What each role may still read or call to count rows it cannot see.
	`SELECT 'counting role ' || ` + rname + ` || ': readable=' ||
		COALESCE((SELECT pg_catalog.string_agg(x, ',' ORDER BY x) FROM pg_catalog.unnest(ARRAY['pg_catalog.pg_stats', 'pg_catalog.pg_stats_ext',
			'pg_catalog.pg_stats_ext_exprs', 'pg_catalog.pg_statistic', 'pg_catalog.pg_statistic_ext_data']) x
			WHERE pg_catalog.has_table_privilege(r.name, x, 'SELECT')), '-') ||
		' pg_class_hidden_columns=' || COALESCE((SELECT pg_catalog.string_agg(a.attname, ',' ORDER BY a.attname) FROM pg_catalog.pg_attribute a
			WHERE a.attrelid = 'pg_catalog.pg_class'::pg_catalog.regclass AND a.attnum > 0 AND NOT a.attisdropped
			AND NOT pg_catalog.has_column_privilege(r.name, a.attrelid, a.attnum, 'SELECT')), '-') ||
		' executable_counting_functions=' || (SELECT pg_catalog.count(*) FROM pg_catalog.pg_proc p
			WHERE p.pronamespace = 'pg_catalog'::pg_catalog.regnamespace AND ` + countingFunctions + `
			AND pg_catalog.has_function_privilege(r.name, p.oid, 'EXECUTE'))
	FROM pg_catalog.unnest($1::text[] || ARRAY['public']) r(name) WHERE ` + connects,
}

// aclDiff renders what ACL now (of an object of kind, for
// acldefault, owned by owner) grants or lacks compared with ACL was, NULL
// ACLs standing for the defaults.
func aclDiff(was, now, kind, owner string) string {
	item := func(acl string) string {
		return fmt.Sprintf(`SELECT %s || '=' || ae.privilege_type || CASE WHEN ae.is_grantable THEN '*' ELSE '' END AS item
			FROM pg_catalog.aclexplode(COALESCE(%s, pg_catalog.acldefault('%s', %s))) ae`, rn("ae.grantee"), acl, kind, owner)
	}
	return fmt.Sprintf(`COALESCE('revoked ' || (SELECT pg_catalog.string_agg(item, ' ' ORDER BY item) FROM (%[1]s EXCEPT %[2]s) x), '') ||
		COALESCE(' granted ' || (SELECT pg_catalog.string_agg(item, ' ' ORDER BY item) FROM (%[2]s EXCEPT %[1]s) x), '')`, item(was), item(now))
}

// catalogChangeQueries list the privileges on pg_catalog objects that
// differ from initdb's (pg_init_privs): hardening's revokes and grants, and
// any other. Their lines are merged across databases.
var catalogChangeQueries = []string{
	`SELECT 'system schema pg_catalog: ' || ` + aclDiff("i.initprivs", "n.nspacl", "n", "n.nspowner") + `
	FROM pg_catalog.pg_namespace n LEFT JOIN pg_catalog.pg_init_privs i
		ON i.objoid = n.oid AND i.classoid = 'pg_catalog.pg_namespace'::pg_catalog.regclass AND i.objsubid = 0
	WHERE n.nspname = 'pg_catalog' AND n.nspacl IS DISTINCT FROM i.initprivs`,
	`SELECT 'system rel pg_catalog.' || c.relname || ': ' || ` + aclDiff("i.initprivs", "c.relacl", "r", "c.relowner") + `
	FROM pg_catalog.pg_class c LEFT JOIN pg_catalog.pg_init_privs i
		ON i.objoid = c.oid AND i.classoid = 'pg_catalog.pg_class'::pg_catalog.regclass AND i.objsubid = 0
	WHERE c.relnamespace = 'pg_catalog'::pg_catalog.regnamespace AND c.relacl IS DISTINCT FROM i.initprivs`,
	`SELECT 'system columns pg_catalog.' || rel || '(' || pg_catalog.string_agg(att, ',' ORDER BY attnum) || '): ' || change
	FROM (SELECT c.relname AS rel, a.attname AS att, a.attnum,
		` + aclDiff("i.initprivs", "a.attacl", "c", "c.relowner") + ` AS change
		FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
		LEFT JOIN pg_catalog.pg_init_privs i
			ON i.objoid = c.oid AND i.classoid = 'pg_catalog.pg_class'::pg_catalog.regclass AND i.objsubid = a.attnum
		WHERE c.relnamespace = 'pg_catalog'::pg_catalog.regnamespace AND a.attacl IS DISTINCT FROM i.initprivs) x
	GROUP BY rel, change`,
	`SELECT 'system function pg_catalog.' || p.proname || '(' || pg_catalog.pg_get_function_identity_arguments(p.oid) || '): ' ||
		` + aclDiff("i.initprivs", "p.proacl", "f", "p.proowner") + `
	FROM pg_catalog.pg_proc p LEFT JOIN pg_catalog.pg_init_privs i
		ON i.objoid = p.oid AND i.classoid = 'pg_catalog.pg_proc'::pg_catalog.regclass AND i.objsubid = 0
	WHERE p.pronamespace = 'pg_catalog'::pg_catalog.regnamespace AND p.proacl IS DISTINCT FROM i.initprivs`,
}

// queryLines runs q (with args when it has parameters) and returns its one text column, skipping
// lines that end in ": " (an effective-privilege line with no privilege).
func queryLines(ctx context.Context, t *testing.T, c *pgx.Conn, q string, args ...any) []string {
	t.Helper()
	if !strings.Contains(q, "$1") {
		args = nil
	}
	rows, err := c.Query(ctx, q, args...)
	if err != nil {
		t.Fatalf("reading the picture: %v\n%s", err, q)
	}
	lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatalf("reading the picture: %v\n%s", err, q)
	}
	out := lines[:0]
	for _, l := range lines {
		if !strings.HasSuffix(l, ": ") {
			out = append(out, l)
		}
	}
	return out
}

// picture is what the audit reads: the lines, and how to normalise them.
type picture struct {
	roles []string // the audited roles' real names
	// tenantDBs are the tenant-facing databases (real names).
	tenantDBs []string
	norm      *strings.Replacer
}

// read returns the sorted, normalised, de-duplicated picture. conn opens an
// admin connection to a database.
func (p *picture) read(ctx context.Context, t *testing.T, conn func(db string) *pgx.Conn) []string {
	t.Helper()
	var lines []string
	any := conn("postgres")
	for _, q := range serverQueries {
		lines = append(lines, queryLines(ctx, t, any, q, p.roles)...)
	}
	inDBs := map[string][]string{} // catalog change line -> databases
	for _, db := range p.tenantDBs {
		c := conn(db)
		for _, q := range dbQueries {
			for _, l := range queryLines(ctx, t, c, q, p.roles) {
				lines = append(lines, "in db "+db+": "+l)
			}
		}
		for _, q := range catalogChangeQueries {
			for _, l := range queryLines(ctx, t, c, q) {
				inDBs[l] = append(inDBs[l], p.norm.Replace(db))
			}
		}
	}
	for l, dbs := range inDBs {
		sort.Strings(dbs)
		lines = append(lines, l+" in dbs "+strings.Join(dbs, ","))
	}
	seen := map[string]bool{}
	var out []string
	for _, l := range lines {
		l = p.norm.Replace(l)
		if !seen[l] {
			seen[l] = true
			out = append(out, l)
		}
	}
	sort.Strings(out)
	return out
}
