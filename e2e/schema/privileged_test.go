package schema

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/stratum-hq/stratum-proxy/internal/stacktest"
)

// dyn is a PL/pgSQL statement that EXECUTEs stmt from base64 and ignores its failure.
func dyn(stmt string) string {
	b := base64.StdEncoding.EncodeToString([]byte(stmt))
	return "BEGIN EXECUTE pg_catalog.convert_from(pg_catalog.decode('" + b + "', 'base64'), 'UTF8'); EXCEPTION WHEN OTHERS THEN NULL; END;"
}

// TestPlantedObjectsRunOnlyAsTheirAuthor plants, as a schema tenant and a
// database tenant (through the proxy, as users without switch rights),
// overloads of functions the privileged code calls, an index-expression
// function, triggers and an operator on the app tables, each trying to make
// the tenant a superuser and to create a superuser role, and each recording
// current_user and session_user. Then a schema apply that touches the app
// tables and the start-up hardening run. Nothing may have run with more than
// the tenant's rights.
func TestPlantedObjectsRunOnlyAsTheirAuthor(t *testing.T) {
	ts := stacktest.Start(t)
	ctx := context.Background()
	su := ts.SrvConn(t, "postgres")
	var rnd [4]byte
	rand.Read(rnd[:])
	evil := "stratum_evil_" + hex.EncodeToString(rnd[:])
	supers := stacktest.Count(t, su, `SELECT count(*) FROM pg_roles WHERE rolsuper`)

	v1 := `CREATE TABLE notes (id serial PRIMARY KEY, tenant_id text NOT NULL, label varchar(40));
CREATE TABLE countries (code text PRIMARY KEY, name varchar(40));`
	if rep, err := ts.Provisioner.ApplySchema(ctx, v1); err != nil || rep.Failed() != 0 {
		t.Fatalf("v1: %+v %v", rep, err)
	}

	type victim struct {
		slug, role, schema, database string
		c                            *pgx.Conn
	}
	var victims []*victim
	for _, slug := range []string{"client_beta", "client_gamma"} {
		tn, err := ts.Catalog.GetTenant(ctx, slug)
		if err != nil {
			t.Fatal(err)
		}
		user := "planter_" + slug
		if _, err := ts.Catalog.CreateUser(ctx, user, "planter-pw", slug, false); err != nil {
			t.Fatal(err)
		}
		v := &victim{slug: slug, role: tn.RoleName, schema: tn.Schema, database: tn.Database,
			c: stacktest.Connect(t, ts.URL(user, "planter-pw", slug, ""))}
		victims = append(victims, v)
		t.Cleanup(func() {
			c := ts.SrvConn(t, "postgres")
			c.Exec(ctx, "ALTER ROLE "+pgx.Identifier{v.role}.Sanitize()+" NOSUPERUSER")
		})
	}
	t.Cleanup(func() { ts.SrvConn(t, "postgres").Exec(ctx, "DROP ROLE IF EXISTS "+evil) })

	for _, v := range victims {
		var cu string
		if err := v.c.QueryRow(ctx, "SELECT current_user").Scan(&cu); err != nil || cu != v.role {
			t.Fatalf("%s: connected as %q (%v), want %q", v.slug, cu, err, v.role)
		}
		s := pgx.Identifier{v.schema}.Sanitize()
		// RESET ROLE first: code run by a superuser's session after SET ROLE
		// could go back to the superuser that way; as the session user it
		// changes nothing.
		esc := dyn("RESET ROLE") + " " + dyn("ALTER ROLE "+pgx.Identifier{v.role}.Sanitize()+" SUPERUSER") + " " +
			dyn("CREATE ROLE "+evil+" SUPERUSER LOGIN")
		plants := []struct{ name, sql string }{
			{"log", "CREATE TABLE " + s + ".pwn_log (what text, cu text, su text)"},
			{"escalate", "CREATE FUNCTION " + s + ".pwn_escalate(what text) RETURNS void LANGUAGE plpgsql VOLATILE AS $f$ BEGIN " +
				"INSERT INTO " + s + ".pwn_log VALUES (what, current_user, session_user); " + esc + " END $f$"},
			{"quote_ident(name)", "CREATE FUNCTION " + s + ".quote_ident(name) RETURNS text LANGUAGE plpgsql VOLATILE AS $f$ BEGIN " +
				"PERFORM " + s + ".pwn_escalate('quote_ident(name)'); RETURN pg_catalog.quote_ident($1::text); END $f$"},
			{"quote_ident(text)", "CREATE FUNCTION " + s + ".quote_ident(text) RETURNS text LANGUAGE plpgsql VOLATILE AS $f$ BEGIN " +
				"PERFORM " + s + ".pwn_escalate('quote_ident(text)'); RETURN pg_catalog.quote_ident($1); END $f$"},
			{"pg_advisory_xact_lock(integer)", "CREATE FUNCTION " + s + ".pg_advisory_xact_lock(integer) RETURNS void LANGUAGE plpgsql VOLATILE AS $f$ BEGIN " +
				"PERFORM " + s + ".pwn_escalate('pg_advisory_xact_lock(integer)'); PERFORM pg_catalog.pg_advisory_xact_lock($1::bigint); END $f$"},
			{"format(text,regprocedure)", "CREATE FUNCTION " + s + ".format(text, regprocedure) RETURNS text LANGUAGE plpgsql VOLATILE AS $f$ BEGIN " +
				"PERFORM " + s + ".pwn_escalate('format'); RETURN pg_catalog.format($1, $2); END $f$"},
			// Immutable, as an index expression needs; the volatile call
			// still runs (the classic index-function escalation).
			{"lower(varchar)", "CREATE FUNCTION " + s + ".lower(varchar) RETURNS text LANGUAGE plpgsql IMMUTABLE AS $f$ BEGIN " +
				"PERFORM " + s + ".pwn_escalate('lower(varchar)'); RETURN pg_catalog.lower($1::text); END $f$"},
			{"eq function", "CREATE FUNCTION " + s + ".pwn_eq(varchar, varchar) RETURNS boolean LANGUAGE plpgsql VOLATILE AS $f$ BEGIN " +
				"PERFORM " + s + ".pwn_escalate('operator ='); RETURN $1::text OPERATOR(pg_catalog.=) $2::text; END $f$"},
			{"operator =(varchar,varchar)", "CREATE OPERATOR " + s + ".= (LEFTARG = varchar, RIGHTARG = varchar, FUNCTION = " + s + ".pwn_eq)"},
			{"trigger function", "CREATE FUNCTION " + s + ".pwn_trigger() RETURNS trigger LANGUAGE plpgsql VOLATILE AS $f$ BEGIN " +
				"PERFORM " + s + ".pwn_escalate('trigger on ' || TG_TABLE_NAME || ' ' || TG_OP); RETURN NEW; END $f$"},
			{"trigger on countries", "CREATE TRIGGER pwn_countries BEFORE INSERT OR UPDATE ON " + s + ".countries FOR EACH ROW EXECUTE FUNCTION " + s + ".pwn_trigger()"},
			{"trigger on notes", "CREATE TRIGGER pwn_notes BEFORE INSERT OR UPDATE ON " + s + ".notes FOR EACH ROW EXECUTE FUNCTION " + s + ".pwn_trigger()"},
		}
		for _, p := range plants {
			// Wrapped first: that one the guard cannot read, so it is
			// the one that must land; the plain one then finds it exists.
			_, wrapErr := v.c.Exec(ctx, stacktest.Hidden(p.sql))
			_, plainErr := v.c.Exec(ctx, p.sql)
			if plainErr != nil && wrapErr != nil {
				t.Fatalf("%s: planting %s failed both plainly (%v) and wrapped (%v)", v.slug, p.name, plainErr, wrapErr)
			}
			t.Logf("%s: planted %s (plain: %v, wrapped: %v)", v.slug, p.name, plainErr, wrapErr)
		}
		// Rows for the index build and the UPDATE below to go through.
		if _, err := v.c.Exec(ctx, "INSERT INTO "+s+".notes (label) VALUES ('a'), ('b')"); err != nil {
			t.Fatalf("%s: %v", v.slug, err)
		}
		if _, err := v.c.Exec(ctx, "TRUNCATE "+s+".pwn_log"); err != nil {
			t.Fatalf("%s: %v", v.slug, err)
		}
	}

	// The shared database: no tenant may create anything there, so nothing
	// planted can be on the privileged code's way in it.
	shared := ts.SrvConn(t, victims[0].database)
	alpha, err := ts.Catalog.GetTenant(ctx, "client_alpha")
	if err != nil {
		t.Fatal(err)
	}
	for _, role := range []string{alpha.RoleName, victims[0].role} {
		if n := stacktest.Count(t, shared, `SELECT count(*) FROM pg_namespace n
			WHERE n.nspname <> $2 AND n.nspname NOT LIKE 'pg_temp_%' AND n.nspname NOT LIKE 'pg_toast_temp_%'
			AND has_schema_privilege($1, n.oid, 'CREATE')`, role, victims[0].schema); n != 0 {
			t.Errorf("role %s may create in %d schemas of the shared database", role, n)
		}
		if n := stacktest.Count(t, shared, `SELECT count(*) FROM pg_database WHERE datname = current_database() AND has_database_privilege($1, oid, 'CREATE')`, role); n != 0 {
			t.Errorf("role %s may create schemas in the shared database", role)
		}
	}

	v2 := `ALTER TABLE notes ADD COLUMN extra text;
CREATE INDEX notes_label_lower ON notes (lower(label));
INSERT INTO countries VALUES ('fr', 'France');
UPDATE notes SET extra = 'x' WHERE label = 'a';`
	rep, err := ts.Provisioner.ApplySchema(ctx, v2)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range rep.Placements {
		if p.Error != "" {
			t.Errorf("v2 in %s: %s", p.Placement, p.Error)
		}
	}
	if err := ts.Provisioner.PrepareShared(ctx); err != nil {
		t.Errorf("start-up hardening: %v", err)
	}

	// Every admin session the provisioner opens has the pinned search_path.
	pcfg := ts.Provisioner.Config()
	admin, err := pcfg.AdminConn(ctx, pcfg.SharedBackend, victims[1].database)
	if err != nil {
		t.Fatal(err)
	}
	var path string
	if err := admin.QueryRow(ctx, "SHOW search_path").Scan(&path); err != nil || path != "pg_catalog, pg_temp" {
		t.Errorf("admin session search_path %q (%v), want pg_catalog, pg_temp", path, err)
	}
	admin.Close(ctx)

	if n := stacktest.Count(t, su, `SELECT count(*) FROM pg_roles WHERE rolsuper`); n != supers {
		t.Errorf("superuser roles: %d before, %d after", supers, n)
	}
	if n := stacktest.Count(t, su, `SELECT count(*) FROM pg_roles WHERE rolname = $1`, evil); n != 0 {
		t.Errorf("a planted object created role %s", evil)
	}
	for _, v := range victims {
		if n := stacktest.Count(t, su, `SELECT count(*) FROM pg_roles WHERE rolname = $1 AND rolsuper`, v.role); n != 0 {
			t.Errorf("%s: its role %s became a superuser", v.slug, v.role)
		}
		db := ts.SrvConn(t, v.database)
		rows, err := db.Query(ctx, "SELECT what, cu, su FROM "+pgx.Identifier{v.schema}.Sanitize()+".pwn_log")
		if err != nil {
			t.Fatal(err)
		}
		seen := map[string]bool{}
		reported := map[string]bool{}
		var log []string
		for rows.Next() {
			var what, cu, su string
			if err := rows.Scan(&what, &cu, &su); err != nil {
				t.Fatal(err)
			}
			entry := fmt.Sprintf("%s as %s (session %s)", what, cu, su)
			if reported[entry] {
				continue
			}
			reported[entry] = true
			log = append(log, entry)
			if cu != v.role || su != v.role {
				t.Errorf("%s: planted %s ran as current_user %s, session_user %s; want %s", v.slug, what, cu, su, v.role)
			}
			seen[strings.Fields(what)[0]] = true
		}
		if rows.Err() != nil {
			t.Fatal(rows.Err())
		}
		t.Logf("%s: planted code ran: %q", v.slug, log)
		// The app's DDL does reach the tenant's own objects (that is the
		// point: they run, but as their author); the test must see them run.
		for _, want := range []string{"trigger", "lower(varchar)", "operator"} {
			if !seen[want] {
				t.Errorf("%s: planted %s never ran; the test did not exercise it", v.slug, want)
			}
		}
	}
}
