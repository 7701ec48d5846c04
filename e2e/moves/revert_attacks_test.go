package moves

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/stratum-hq/stratum-proxy/catalog"
	"github.com/stratum-hq/stratum-proxy/internal/stacktest"
	"github.com/stratum-hq/stratum-proxy/provision"
)

// The move back's attack matrix: a tenant tries, while its move back runs,
// to lose or hide its data, or to gain rights, by the means a tenant has:
// its own sessions through the proxy and, where the kept copy is in
// another database, a session of its role that a proxy which missed the
// first switch would give it. It runs on TestMoveBackWithWriter's stack
// (transaction pooling), each lane a tenant of its own whose user has no
// tenant-switch rights. Every attack is sent plain and hidden in dynamic
// SQL (hexHidden); a second app table (notesSchema) lets one move back take
// an attack both ways, plain on orders and hidden on notes, and its failure
// must name both tables. After each failed move back, failedSafely checks
// that nothing was lost, the kept copy is fenced again and the tenant's
// rights did not change.

// notesSchema is the second app table of the attack lanes.
const notesSchema = `CREATE TABLE notes (id bigint PRIMARY KEY, tenant_id uuid NOT NULL, item text NOT NULL);`

// hexHidden is stmt in dynamic SQL: a DO block that EXECUTEs it from hex,
// which the SQL guard cannot read, so only PostgreSQL can stop it.
func hexHidden(stmt string) string {
	return "DO $$ BEGIN EXECUTE convert_from(decode('" + hex.EncodeToString([]byte(stmt)) + "', 'hex'), 'UTF8'); END $$"
}

// wrapping is how an attack's statement is sent, and the app table it
// aims at when one move back takes it both ways.
type wrapping struct {
	name, table string
	wrap        func(string) string
}

var wrappings = []wrapping{{"plain", "orders", func(s string) string { return s }}, {"hidden", "notes", hexHidden}}

// afterVerification is the move back's last step before the switch's pause
// when nothing changed since its verification point: the full verification
// is over (its snapshots closed), and only the switch's checks are left.
const afterVerification = "narrowed:0"

// attackLanes: each lane's tenant (moved from isolation from to to: the
// live placement is to, the kept copy from) and what it tries during its
// move backs.
var attackLanes = []struct {
	name     string
	from, to string
	run      func(t *testing.T, a *attacker)
}{
	{"schema_live_kept_shared", catalog.IsolationShared, catalog.IsolationSchema, attackKillApplier},
	{"schema_live_kept_database", catalog.IsolationDatabase, catalog.IsolationSchema, func(t *testing.T, a *attacker) {
		attackTamper(t, a)
		attackStaleFenceOff(t, a)
	}},
	{"shared_live_kept_schema", catalog.IsolationSchema, catalog.IsolationShared, attackKeptSchemaDDL},
}

// attackMoveBacks runs the lanes at once, in one parallel subtest of t,
// after making their tenants one after the other. The lanes are goroutines,
// not parallel subtests: those would wait for the writer lanes, as go test
// runs as many parallel subtests at a time as there are cores.
func attackMoveBacks(t *testing.T, ts *stacktest.Stack, h *revertHooks) {
	t.Run("attacks", func(t *testing.T) {
		t.Parallel()
		attackers := make([]*attacker, len(attackLanes))
		for i, l := range attackLanes {
			attackers[i] = newAttacker(t, ts, h, "mba_"+strconv.Itoa(i), l.from, int64(100_000*(i+1)))
		}
		var wg sync.WaitGroup
		for i, l := range attackLanes {
			wg.Add(1)
			go func() {
				defer wg.Done()
				t.Run(l.name, func(t *testing.T) {
					attackers[i].start(t, l.to)
					l.run(t, attackers[i])
				})
			}()
		}
		wg.Wait()
	})
}

// attacker is one attack lane's tenant: its user (no tenant-switch
// rights) and session through the proxy, its first move m (switched:
// the tenant lives on m's target, m's source is the kept copy), and what
// the tests expect of it.
type attacker struct {
	ts   *stacktest.Stack
	h    *revertHooks
	slug string
	url  string
	c    *pgx.Conn
	tn   *catalog.Tenant // as after m
	m    *catalog.Move
	// rights is rolePicture after m: no move back, failed or not, may
	// change it.
	rights []string
	// want is every row the tenant wrote on its live placement, by table.
	want map[string]map[int64]int
	next int64 // the next key to write
	// stray is a key the tenant never writes on its live placement (what
	// it tries to write into the kept copy).
	stray int64
}

// newAttacker makes lane slug's tenant (isolation from) and user; its keys
// start at base (the shared tables' keys are every tenant's).
func newAttacker(t *testing.T, ts *stacktest.Stack, h *revertHooks, slug, from string, base int64) *attacker {
	ctx := context.Background()
	tn, err := ts.Provisioner.CreateTenant(ctx, provision.TenantSpec{Slug: slug, Name: slug, Parent: "northstar_msp", Isolation: from})
	if err != nil {
		t.Fatal(err)
	}
	user := slug + "_app"
	if _, err := ts.Catalog.CreateUser(ctx, user, "pw-app", slug, false); err != nil {
		t.Fatal(err)
	}
	h.setFast(tn.ID)
	return &attacker{ts: ts, h: h, slug: slug, url: ts.URL(user, "pw-app", slug, ""),
		want: map[string]map[int64]int{"orders": {}, "notes": {}}, next: base, stray: base + 90_000}
}

// start connects the tenant's user, writes rows to both app tables and
// moves the tenant to isolation to (m).
func (a *attacker) start(t *testing.T, to string) {
	ctx := context.Background()
	a.c = stacktest.Connect(t, a.url)
	if _, err := a.c.Exec(ctx, "SET stratum.tenant = 'client_alpha'"); stacktest.SQLState(err) != "42501" {
		t.Fatalf("the lane's user switching tenant: %v, want 42501 (it has no switch rights)", err)
	}
	for range 5 {
		a.write(t, a.c)
	}
	m, err := a.ts.Provisioner.StartMove(ctx, a.slug, provision.MoveTarget{Isolation: to}, "test")
	if err != nil {
		t.Fatal(err)
	}
	a.m = waitMove(t, a.ts.Catalog, m.ID, catalog.MoveSwitched)
	if a.tn, err = a.ts.Catalog.GetTenant(ctx, a.slug); err != nil {
		t.Fatal(err)
	}
	a.rights = rolePicture(t, a.ts, a.slug)
}

// write writes one row to each app table on c (the tenant's live
// placement) and remembers it; it returns the key.
func (a *attacker) write(t *testing.T, c *pgx.Conn) int64 {
	t.Helper()
	k := a.next
	a.next++
	if err := a.writeErr(c, k); err != nil {
		t.Fatal(err)
	}
	return k
}

func (a *attacker) writeErr(c *pgx.Conn, k int64) error {
	if err := insertRow(context.Background(), c, k); err != nil {
		return err
	}
	a.want["orders"][k], a.want["notes"][k] = 1, 1
	return nil
}

// kept is app table table of the kept copy, qualified.
func (a *attacker) kept(table string) string { return pgx.Identifier{a.m.FromSchema, table}.Sanitize() }

// moveBack starts a move back of m that runs fn (as the tenant) at step
// (none when step is ""), and returns it when it ended (failed or
// switched) with fn's error.
func (a *attacker) moveBack(t *testing.T, step string, fn func(id string) error) (*catalog.Move, error) {
	t.Helper()
	return a.moveBackUntil(t, true, step, fn)
}

// moveBackUntil is moveBack, returning once the move back ended and, when
// cleaned, its cleanup too (not when a transaction of the tenant holds it).
func (a *attacker) moveBackUntil(t *testing.T, cleaned bool, step string, fn func(id string) error) (*catalog.Move, error) {
	t.Helper()
	var done <-chan error
	if step != "" {
		done = a.h.set(a.slug, step, fn)
	}
	back, err := a.ts.Provisioner.RevertMove(context.Background(), a.m.ID, "test")
	if err != nil {
		t.Fatal(err)
	}
	if step != "" {
		err = hookOrFail(t, a.ts.Catalog, back.ID, done)
	}
	return waitMoveUntil(t, a.ts.Catalog, back.ID, cleaned, catalog.MoveFailed, catalog.MoveSwitched), err
}

// failedSafely checks a move back that the tenant's attack made fail:
// failed with a reason holding every part of want, the first move still
// switched, the tenant's sessions (the attacking one and a new one) on
// the live placement with every row it wrote there exactly once and no
// other, the kept copy fenced again (no exception) with none of its
// triggers off, a stale write to it still refused (and one from the
// tenant's own session, when that reaches the copy), the move back's
// capture and its writers' grant gone from the live placement, and the
// tenant's rights (rolePicture) as after the first move.
func (a *attacker) failedSafely(t *testing.T, back *catalog.Move, want ...string) {
	t.Helper()
	ctx := context.Background()
	if back.Phase != catalog.MoveFailed || back.Error == "" {
		t.Fatalf("the attacked move back is %s (%q), want failed with a reason", back.Phase, back.Error)
	}
	t.Logf("the attacked move back failed: %s", back.Error)
	for _, w := range want {
		if !strings.Contains(back.Error, w) {
			t.Errorf("the attacked move back failed with %q, want it to say %q", back.Error, w)
		}
	}
	if rm, err := a.ts.Catalog.GetMove(ctx, a.m.ID); err != nil || rm.Phase != catalog.MoveSwitched {
		t.Fatalf("the first move after a failed move back: %+v %v, want switched", rm, err)
	}
	fresh := stacktest.Connect(t, a.url)
	for _, c := range []*pgx.Conn{a.c, fresh} {
		if db, schema := placementOf(t, c); db != a.m.ToDatabase || schema != a.m.ToSchema {
			t.Fatalf("the tenant's session runs in %s.%s, want the live placement %s.%s", db, schema, a.m.ToDatabase, a.m.ToSchema)
		}
	}
	a.rowsExactly(t, fresh)
	kc := a.ts.SrvConn(t, a.m.FromDatabase)
	eventually(t, "the kept copy fenced again, its triggers on", func() bool {
		fenced, off := keptFence(t, kc, a.m)
		return fenced && off == 0
	})
	staleWriteRefused(t, a.ts, a.tn, a.m.FromDatabase, a.kept("orders"))
	if a.m.FromDatabase == a.m.ToDatabase { // the tenant's own session reaches the kept copy
		if bad := sqlState(a.c, "writing the kept copy", "INSERT INTO "+a.kept("orders")+" (id, tenant_id, item) VALUES ("+
			strconv.FormatInt(a.stray, 10)+", '"+a.tn.ID+"', 'kept')", "40001"); len(bad) > 0 {
			t.Errorf("after the failed move back: %s", strings.Join(bad, "; "))
		}
	}
	live := a.ts.SrvConn(t, a.m.ToDatabase)
	eventually(t, "the failed move back's capture gone from the live placement, with the writers' grant on its log", func() bool {
		// Granted to the tenant's roles directly (in the shared database
		// its groups have USAGE on stratum for reasons of their own).
		return moveCaptureLeft(t, live, back) == 0 && stacktest.Count(t, live, `SELECT count(*)
			FROM pg_namespace n, aclexplode(n.nspacl) g JOIN pg_roles r ON r.oid = g.grantee
			WHERE n.nspname = 'stratum' AND r.rolname LIKE $1`, a.tn.RoleName+"%") == 0
	})
	if got := rolePicture(t, a.ts, a.slug); !slices.Equal(got, a.rights) {
		t.Errorf("the tenant's rights after the failed move back:\n%s\nafter its first move:\n%s", strings.Join(got, "\n"), strings.Join(a.rights, "\n"))
	}
}

// rowsExactly checks, on c (a session of the tenant), that its app tables
// hold every row it wrote on its live placement, each once, and no other.
func (a *attacker) rowsExactly(t *testing.T, c *pgx.Conn) {
	t.Helper()
	for _, table := range []string{"orders", "notes"} {
		got := orderKeys(t, c, "SELECT id, 1 FROM "+table)
		sameKeys(t, table, a.want[table], got)
		if len(got) != len(a.want[table]) {
			t.Errorf("%s holds %d rows, the tenant wrote %d on its live placement: %v", table, len(got), len(a.want[table]), got)
		}
	}
}

// sqlState checks that stmt, sent as the tenant on c both ways, fails with
// SQLSTATE code; it returns what went otherwise.
func sqlState(c *pgx.Conn, what, stmt, code string) []string {
	var bad []string
	for _, w := range wrappings {
		if _, err := c.Exec(context.Background(), w.wrap(stmt)); stacktest.SQLState(err) != code {
			bad = append(bad, fmt.Sprintf("%s (%s): %v, want SQLSTATE %s", what, w.name, err, code))
		}
	}
	return bad
}

// captureFunction is a move's capture function (a kept copy's fence).
func captureFunction(moveID string) string {
	return `stratum."move_capture_` + strings.ReplaceAll(moveID, "-", "")[:16] + `"`
}

// backendsOf lists the process ids of role's backends on the test server
// (as its superuser). Hooks call it, off the test's goroutine.
func backendsOf(ctx context.Context, ts *stacktest.Stack, role string) ([]int32, error) {
	c, err := pgx.Connect(ctx, ts.Srv.URL("postgres"))
	if err != nil {
		return nil, err
	}
	defer c.Close(ctx)
	rows, err := c.Query(ctx, "SELECT pid FROM pg_stat_activity WHERE usename = $1 AND pid <> pg_backend_pid() ORDER BY pid", role)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[int32])
}

// applierPID reads, from the kept copy's fence, the process id of the
// backend it lets through (the move back's applier); 0 when none.
func applierPID(ctx context.Context, ts *stacktest.Stack, m *catalog.Move) (int32, error) {
	c, err := pgx.Connect(ctx, ts.Srv.URL(m.FromDatabase))
	if err != nil {
		return 0, err
	}
	defer c.Close(ctx)
	var src string
	if err := c.QueryRow(ctx, "SELECT prosrc FROM pg_proc WHERE oid = $1::regprocedure", captureFunction(m.ID)+"()").Scan(&src); err != nil {
		return 0, err
	}
	if mt := regexp.MustCompile(`pg_backend_pid\(\) = (\d+)`).FindStringSubmatch(src); mt != nil {
		pid, err := strconv.Atoi(mt[1])
		return int32(pid), err
	}
	return 0, nil
}

// pidArray is pids as an SQL int4[] literal.
func pidArray(pids []int32) string {
	s := make([]string, len(pids))
	for i, p := range pids {
		s[i] = strconv.Itoa(int(p))
	}
	return "'{" + strings.Join(s, ",") + "}'::int4[]"
}

// refused tries, as the tenant on its session through the proxy (a.c)
// during move back id, each plain and hidden, what its rights must refuse:
// reading pg_stat_activity (to find the move's backends), writing its rows
// of the kept copy (the shared tables, in the live schema's database: the
// fence answers 40001), turning the kept copy's fence off, dropping or
// replacing the move back's capture function or the kept copy's fence, and
// cancelling or terminating a backend of the admin. It returns what was
// not refused.
func (a *attacker) refused(ctx context.Context, id string) error {
	admins, err := backendsOf(ctx, a.ts, a.ts.Srv.SuperUser())
	if err != nil || len(admins) == 0 {
		return fmt.Errorf("no backend of the admin to try: %v", err)
	}
	if pid, err := applierPID(ctx, a.ts, a.m); err != nil || pid == 0 {
		return fmt.Errorf("the kept copy's fence lets no applier through during the move back: %v", err)
	}
	tid := a.tn.ID
	var bad []string
	bad = append(bad, sqlState(a.c, "reading pg_stat_activity", "SELECT pid FROM pg_stat_activity", "42501")...)
	for _, table := range []string{"orders", "notes"} {
		kept := a.kept(table)
		bad = append(bad, sqlState(a.c, "inserting into the kept copy's "+table,
			"INSERT INTO "+kept+" (id, tenant_id, item) VALUES ("+strconv.FormatInt(a.stray, 10)+", '"+tid+"', 'kept')", "40001")...)
		bad = append(bad, sqlState(a.c, "updating the kept copy's "+table,
			"UPDATE "+kept+" SET item = 'kept' WHERE tenant_id = '"+tid+"'", "40001")...)
		bad = append(bad, sqlState(a.c, "deleting from the kept copy's "+table,
			"DELETE FROM "+kept+" WHERE tenant_id = '"+tid+"'", "40001")...)
		bad = append(bad, sqlState(a.c, "turning the kept copy's fence off on "+table,
			"ALTER TABLE "+kept+" DISABLE TRIGGER "+captureTrigger(a.m.ID), "42501")...)
	}
	for _, fn := range []string{captureFunction(id), captureFunction(a.m.ID)} {
		bad = append(bad, sqlState(a.c, "dropping "+fn, "DROP FUNCTION "+fn+"()", "42501")...)
		bad = append(bad, sqlState(a.c, "replacing "+fn, "CREATE OR REPLACE FUNCTION "+fn+
			"() RETURNS trigger LANGUAGE plpgsql AS $f$BEGIN RETURN NULL; END$f$", "42501")...)
	}
	for _, f := range []string{"pg_cancel_backend", "pg_terminate_backend"} {
		bad = append(bad, sqlState(a.c, f+" of the admin's backend", fmt.Sprintf("SELECT %s(%d)", f, admins[0]), "42501")...)
	}
	if len(bad) > 0 {
		return fmt.Errorf("not refused: %s", strings.Join(bad, "; "))
	}
	return nil
}

// attackTamper: after the move back's full verification the tenant turns
// the move back's capture off on its live placement and writes (plain on
// orders, left off; hidden on notes, turned on again after the write):
// only the switch's capture check can see that now, and the move back
// must fail naming both tables, with nothing lost.
func attackTamper(t *testing.T, a *attacker) {
	ctx := context.Background()
	k := a.next
	a.next++
	back, err := a.moveBack(t, afterVerification, func(id string) error {
		for _, w := range wrappings {
			if _, err := a.c.Exec(ctx, w.wrap(`ALTER TABLE `+w.table+` DISABLE TRIGGER "`+captureTrigger(id)+`"`)); err != nil {
				return fmt.Errorf("turning the move back's capture off (%s): %w", w.name, err)
			}
		}
		if err := insertRow(ctx, a.c, k); err != nil {
			return err
		}
		// notes' trigger on again, as installed but for its pg_trigger row.
		w := wrappings[1]
		if _, err := a.c.Exec(ctx, w.wrap(`ALTER TABLE `+w.table+` ENABLE TRIGGER "`+captureTrigger(id)+`"`)); err != nil {
			return fmt.Errorf("turning the move back's capture on again (%s): %w", w.name, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	a.want["orders"][k], a.want["notes"][k] = 1, 1
	want := []string{"tampered"}
	for _, w := range wrappings {
		want = append(want, "trigger "+captureTrigger(back.ID)+" on table "+w.table)
	}
	a.failedSafely(t, back, want...)
}

// attackKillApplier: the live placement is a schema, the kept copy the
// shared tables. During a move back the tenant first tries what its
// rights must refuse (refused), then writes a row and, in a transaction that has written another and stays open, cancels and
// terminates every backend of its own role but its own (pg_stat_activity
// is closed to it, so it is given their process ids, as if it had guessed
// them), the move back's applier among them. The move back fails; while
// the open transaction holds the live tables (the cleanup, which drops the
// capture there, waits for it) the kept copy is already fenced again,
// without the exception for the dead applier, and no new move back starts
// (refused while the cleanup is pending). Once the transaction commits the
// cleanup ends, and the tenant kills the next move back in the same way
// (hidden this time).
func attackKillApplier(t *testing.T, a *attacker) {
	ctx := context.Background()
	type killed struct {
		w       wrapping
		k, held int64 // written before the kill, and in its transaction
		tx      pgx.Tx
		victim  int32
		back    *catalog.Move
		hook    <-chan error
	}
	kills := make([]*killed, len(wrappings))
	for i, w := range wrappings {
		kills[i] = &killed{w: w, k: a.next, held: a.next + 1}
		a.next += 2
	}
	// kill is the hook of kill v's move back.
	kill := func(v *killed) func(string) error {
		return func(id string) error {
			if v == kills[0] {
				if err := a.refused(ctx, id); err != nil {
					return err
				}
			}
			if err := insertRow(ctx, a.c, v.k); err != nil {
				return err
			}
			var err error
			if v.victim, err = applierPID(ctx, a.ts, a.m); err != nil {
				return err
			}
			pids, err := backendsOf(ctx, a.ts, a.tn.RoleName)
			if err != nil || v.victim == 0 || !slices.Contains(pids, v.victim) {
				return fmt.Errorf("the applier's backend %d is not among the role's %v (%v)", v.victim, pids, err)
			}
			if v.tx, err = a.c.Begin(ctx); err != nil {
				return err
			}
			if err := insertRow(ctx, v.tx, v.held); err != nil {
				return err
			}
			for _, f := range []string{"pg_cancel_backend", "pg_terminate_backend"} {
				sql := "SELECT " + f + "(p) FROM unnest(" + pidArray(pids) + ") p WHERE p <> pg_backend_pid()"
				if _, err := v.tx.Exec(ctx, v.w.wrap(sql)); err != nil {
					return fmt.Errorf("%s (%s): %w", f, v.w.name, err)
				}
			}
			return nil
		}
	}
	// failedHeld checks that kill v's move back failed and, its cleanup
	// waiting for v's transaction, the kept copy is fenced without exception.
	failedHeld := func(v *killed) {
		t.Helper()
		if v.back.Phase != catalog.MoveFailed {
			t.Fatalf("the killed move back is %s (%s), want failed", v.back.Phase, v.back.Error)
		}
		fenced, _ := keptFence(t, a.ts.SrvConn(t, a.m.FromDatabase), a.m)
		if left := moveCaptureLeft(t, a.ts.SrvConn(t, a.m.ToDatabase), v.back); !fenced || left == 0 {
			t.Errorf("the killed move back failed, its cleanup waiting for the tenant's transaction (%d capture objects left, want some): "+
				"the kept copy is fenced without exception: %v, want true", left, fenced)
		}
	}
	commit := func(v *killed) {
		t.Helper()
		if err := v.tx.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		for _, table := range []string{"orders", "notes"} {
			a.want[table][v.k], a.want[table][v.held] = 1, 1
		}
	}

	// Each move back is killed in turn (plain, then hidden). While the
	// killed one's cleanup waits for the tenant's open transaction, no other
	// move back starts (its cleanup would otherwise run under it and take
	// its fence exception away): the catalog refuses it until the cleanup
	// ended.
	for _, v := range kills {
		var err error
		v.back, err = a.moveBackUntil(t, false, catalog.MoveCatchingUp, kill(v))
		if err != nil {
			t.Fatal(err)
		}
		failedHeld(v)
		if nb, err := a.ts.Provisioner.RevertMove(ctx, a.m.ID, "test"); !errors.Is(err, catalog.ErrMoveRunning) || !strings.Contains(err.Error(), "cleanup") {
			t.Fatalf("a move back while the killed one's cleanup waits: %+v %v, want ErrMoveRunning (cleanup)", nb, err)
		}
		commit(v)
		v.back = waitMove(t, a.ts.Catalog, v.back.ID, catalog.MoveFailed)
		a.failedSafely(t, v.back)
		if pids, err := backendsOf(ctx, a.ts, a.tn.RoleName); err != nil || slices.Contains(pids, v.victim) {
			t.Errorf("the applier's backend %d outlived its move back (%v)", v.victim, err)
		}
	}
	a.write(t, a.c)
}

// insertRow writes key k to both app tables on q, as the tenant.
func insertRow(ctx context.Context, q interface {
	Exec(context.Context, string, ...any) (pgconn.CommandTag, error)
}, k int64) error {
	for _, table := range []string{"orders", "notes"} {
		if _, err := q.Exec(ctx, "INSERT INTO "+table+" (id, item) VALUES ($1, 'live')", k); err != nil {
			return fmt.Errorf("writing %s %d: %w", table, k, err)
		}
	}
	return nil
}

// attackStaleFenceOff: the live placement is a schema, the kept copy a
// database, which the tenant reaches through a session its proxy did not
// move (logged in as its role, straight to the server). After the move
// back's full verification it writes the kept copy (refused by the
// fence), then turns the fence off, writes and turns it on again: plain on
// orders, hidden on notes. The move back must fail naming both tables
// rather than switch to a copy the verification never saw.
func attackStaleFenceOff(t *testing.T, a *attacker) {
	stale := tenantRoleConn(t, a.ts, a.tn, a.m.FromDatabase)
	back, err := a.moveBack(t, afterVerification, func(string) error {
		var bad []string
		for _, w := range wrappings {
			bad = append(bad, sqlState(stale, "writing the kept copy's "+w.table,
				"INSERT INTO "+w.table+" (id, tenant_id, item) VALUES ("+strconv.FormatInt(a.stray, 10)+", '"+a.tn.ID+"', 'kept')", "40001")...)
		}
		if len(bad) > 0 {
			return fmt.Errorf("not refused: %s", strings.Join(bad, "; "))
		}
		for _, w := range wrappings {
			for _, s := range []string{"ALTER TABLE " + w.table + " DISABLE TRIGGER USER",
				"INSERT INTO " + w.table + " (id, tenant_id, item) VALUES (" + strconv.FormatInt(a.stray+1, 10) + ", '" + a.tn.ID + "', 'stray')",
				"ALTER TABLE " + w.table + " ENABLE TRIGGER USER"} {
				if _, err := stale.Exec(context.Background(), w.wrap(s)); err != nil {
					return fmt.Errorf("%s (%s): %w", s, w.name, err)
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"kept copy"}
	for _, w := range wrappings {
		want = append(want, "trigger "+captureTrigger(a.m.ID)+" on table "+w.table+" altered")
	}
	a.failedSafely(t, back, want...)
}

// attackKeptSchemaDDL: the live placement is the shared tables, the kept
// copy a schema in the same database, which the tenant's role still owns,
// so its own session reaches it. After the move back's full verification
// it writes the kept copy (refused by the fence), then takes each table
// two ways, by DDL that no fence (a row trigger) stops: it turns the
// fence off and writes, and it rewrites the rows (ALTER … TYPE … USING,
// which fires no trigger): plain on orders and hidden on notes for the
// one, the other way round for the other. The move back must fail naming
// each attack on each table.
func attackKeptSchemaDDL(t *testing.T, a *attacker) {
	// Before the move back: the fence turned off (plain on orders, hidden
	// on notes) and left off. The move back refuses to start on it.
	for _, w := range wrappings {
		if _, err := a.c.Exec(context.Background(), w.wrap("ALTER TABLE "+a.kept(w.table)+" DISABLE TRIGGER USER")); err != nil {
			t.Fatalf("turning the kept copy's fence off (%s): %v", w.name, err)
		}
	}
	back, _ := a.moveBack(t, "", nil)
	want := []string{"not fenced"}
	for _, w := range wrappings {
		want = append(want, "trigger "+captureTrigger(a.m.ID)+" on table "+w.table+" is off")
	}
	a.failedSafely(t, back, want...)

	stray := strconv.FormatInt(a.stray+1, 10)
	fenceOff := func(table string) []string {
		return []string{"ALTER TABLE " + table + " DISABLE TRIGGER USER",
			"INSERT INTO " + table + " (id, tenant_id, item) VALUES (" + stray + ", '" + a.tn.ID + "', 'stray')"}
	}
	rewrite := func(table string) []string {
		return []string{"ALTER TABLE " + table + " ALTER COLUMN item TYPE text USING item || ' (rewritten)'"}
	}
	back, err := a.moveBack(t, afterVerification, func(string) error {
		var bad []string
		for _, w := range wrappings {
			bad = append(bad, sqlState(a.c, "writing the kept copy's "+w.table,
				"INSERT INTO "+a.kept(w.table)+" (id, tenant_id, item) VALUES ("+strconv.FormatInt(a.stray, 10)+", '"+a.tn.ID+"', 'kept')", "40001")...)
		}
		if len(bad) > 0 {
			return fmt.Errorf("not refused: %s", strings.Join(bad, "; "))
		}
		for i, w := range wrappings {
			other := wrappings[1-i] // the other wrapping, on the same table
			for _, s := range fenceOff(a.kept(w.table)) {
				if _, err := a.c.Exec(context.Background(), w.wrap(s)); err != nil {
					return fmt.Errorf("%s (%s): %w", s, w.name, err)
				}
			}
			for _, s := range rewrite(a.kept(w.table)) {
				if _, err := a.c.Exec(context.Background(), other.wrap(s)); err != nil {
					return fmt.Errorf("%s (%s): %w", s, other.name, err)
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want = []string{"kept copy"}
	for _, w := range wrappings {
		want = append(want, "trigger "+captureTrigger(a.m.ID)+" on table "+w.table+" altered", "column item of table "+w.table+" altered")
	}
	a.failedSafely(t, back, want...)
}

// TestMoveBackPlantedCodeWritesPastTheFence: the kept copy's fence lets
// the move back's applier backend through, and that backend runs, as the
// tenant, whatever of the tenant's a write to the copy runs: here a CHECK
// constraint calling a function of its own, planted in the kept schema
// while the first move was switched (before the move back; its catalog
// rows then do not change, so the switch's check of the copy's catalog
// sees nothing). After the move back's verification point the tenant
// writes the key that wakes the function; applying that change, the
// applier runs it, and it writes a row of its own into the kept copy past
// the fence, which the switch's keyed check does not look at. The move
// back must fail rather than switch to a copy holding a row the tenant
// never had on its live placement.
func TestMoveBackPlantedCodeWritesPastTheFence(t *testing.T) {
	t.Skip("open hole: code the tenant planted in its kept copy (a constraint's, index expression's or policy's function) runs in the move back's applier backend, which the fence lets through; see docs/security.md, Open")
	ts := stacktest.Start(t)
	stopMoves(t, ts)
	ctx := context.Background()
	if rep, err := ts.Provisioner.ApplySchema(ctx, notesSchema); err != nil || rep.Failed() > 0 {
		t.Fatalf("applying the schema: %+v %v", rep, err)
	}
	h := newRevertHooks(ts)
	a := newAttacker(t, ts, h, "planter", catalog.IsolationSchema, 100_000)
	a.start(t, catalog.IsolationShared)
	wake, planted := a.next, a.stray
	fn := pgx.Identifier{a.m.FromSchema, "plant"}.Sanitize()
	for _, q := range []string{
		"CREATE FUNCTION " + fn + "(k bigint) RETURNS boolean LANGUAGE plpgsql AS $$ BEGIN IF k = " + strconv.FormatInt(wake, 10) +
			" THEN INSERT INTO " + a.kept("orders") + " (id, tenant_id, item) VALUES (" + strconv.FormatInt(planted, 10) + ", '" + a.tn.ID +
			"', 'planted'); END IF; RETURN true; END $$",
		"ALTER TABLE " + a.kept("orders") + " ADD CONSTRAINT planted CHECK (" + fn + "(id))",
	} {
		if _, err := a.c.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	a.next++
	back, err := a.moveBack(t, afterVerification, func(string) error { return insertRow(ctx, a.c, wake) })
	if err != nil {
		t.Fatal(err)
	}
	a.want["orders"][wake], a.want["notes"][wake] = 1, 1
	if back.Phase == catalog.MoveSwitched {
		a.rowsExactly(t, a.c)
		t.Fatal("the move back switched to a kept copy its applier wrote past the fence")
	}
}
