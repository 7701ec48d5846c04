package policy

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/stratum-hq/stratum-proxy/internal/stacktest"
	"github.com/stratum-hq/stratum-proxy/provision"
)

// Ways out of read-only mode (and around sql.ddl) that the proxy's text check
// and PostgreSQL's read-only default must both close, and the protocol
// corners (switches, suspension, pipelining, COPY, policy churn) where a
// policy must still reach the session and keep its answers in order.

const preparedInsertSQL = "INSERT INTO orders (item) VALUES ($1)"

// makeReadOnly makes the tenant parent read-only, and with it its child
// whose session c is, and waits until c sees that.
func makeReadOnly(t *testing.T, ts *stacktest.Stack, parent string, c *pgx.Conn) {
	t.Helper()
	ts.AdminWant(t, http.MethodPut, "/v1/tenants/"+parent+"/config/proxy.read_only",
		map[string]any{"value": true}, http.StatusOK)
	waitSQL(t, c, "INSERT INTO orders (item) VALUES ('x')", "25006")
}

// prepareInsert prepares the named statement "ins" (an INSERT) on c while
// the tenant may still write.
func prepareInsert(t *testing.T, c *pgx.Conn) {
	t.Helper()
	if _, err := c.Prepare(context.Background(), "ins", preparedInsertSQL); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Exec(context.Background(), "ins", "before"); err != nil {
		t.Fatal(err)
	}
}

// wantPreparedInsertRefused checks that the statement prepared before the tenant
// became read-only is refused now (by PostgreSQL: the proxy sees only Bind).
func wantPreparedInsertRefused(t *testing.T, c *pgx.Conn, after string) {
	t.Helper()
	_, err := c.Exec(context.Background(), "ins", "escaped")
	if stacktest.SQLState(err) != "25006" {
		t.Errorf("after %s, a prepared INSERT of a read-only tenant: %v, want 25006", after, err)
	}
	if got := scalar(t, c, "SHOW default_transaction_read_only"); got != "on" {
		t.Errorf("after %s, default_transaction_read_only = %s, want on", after, got)
	}
}

// testReadOnlySurvivesEscapedSettingNames: setting names spelled with Unicode or
// backslash escapes are the same settings to PostgreSQL.
func testReadOnlySurvivesEscapedSettingNames(t *testing.T, ts *stacktest.Stack) {
	ctx := context.Background()
	own := standIns(t, ts, "escnames", "alpha")
	c := stacktest.Connect(t, ts.URL("demo", "demo", own.alpha, ""))
	prepareInsert(t, c)
	makeReadOnly(t, ts, own.northstar, c)
	for _, q := range []string{
		`SET U&"default_transaction\005fread_only" = off`,
		`SET U&"default!005ftransaction!005fread!005fonly" UESCAPE '!' = off`,
		`SELECT set_config(E'default_transaction\137read_only', 'off', false)`,
		`SELECT set_config(U&'default\005ftransaction\005fread\005fonly', 'off', false)`,
	} {
		if _, err := c.Exec(ctx, q, pgx.QueryExecModeSimpleProtocol); stacktest.SQLState(err) != "25006" {
			t.Errorf("%s on a read-only tenant: %v, want 25006", q, err)
		}
		wantPreparedInsertRefused(t, c, q)
	}
	// In a transaction: read-write must be chosen before any query.
	if _, err := c.Exec(ctx, "BEGIN", pgx.QueryExecModeSimpleProtocol); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Exec(ctx, `SET U&"transaction\005fread_only" = off`, pgx.QueryExecModeSimpleProtocol); stacktest.SQLState(err) != "25006" {
		t.Errorf("SET U&\"transaction\\005fread_only\" = off: %v, want 25006", err)
	}
	c.Exec(ctx, "ROLLBACK", pgx.QueryExecModeSimpleProtocol)
}

// testReadOnlySurvivesResetThroughExtendedProtocol: RESET ALL sent as Parse/Bind/Execute (pgx's
// default) is not seen by the proxy's settings tracking, so the read-only
// default it undoes would not be applied again.
func testReadOnlySurvivesResetThroughExtendedProtocol(t *testing.T, ts *stacktest.Stack) {
	own := standIns(t, ts, "extreset", "alpha")
	c := stacktest.Connect(t, ts.URL("demo", "demo", own.alpha, ""))
	prepareInsert(t, c)
	makeReadOnly(t, ts, own.northstar, c)
	for _, q := range []string{"RESET default_transaction_read_only", "RESET ALL", "DISCARD ALL"} {
		codes, tags := sendPipeline(t, c, 1,
			&pgproto3.Parse{Query: q}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Sync{})
		if len(codes) != 1 || codes[0] != "25006" {
			t.Errorf("%s (extended protocol) on a read-only tenant: errors %v, tags %v; want 25006", q, codes, tags)
		}
		if q != "DISCARD ALL" { // DISCARD ALL would drop the prepared INSERT too
			wantPreparedInsertRefused(t, c, q+" (extended protocol)")
		}
	}
}

// sendPipeline sends msgs at once on c's connection and collects the
// SQLSTATEs of errors and the command tags until n ReadyForQuery.
func sendPipeline(t *testing.T, c *pgx.Conn, n int, msgs ...pgproto3.FrontendMessage) (codes, tags []string) {
	t.Helper()
	errs, tags := sendPipelineErrors(t, c, n, msgs...)
	for _, e := range errs {
		codes = append(codes, e.Code)
	}
	return codes, tags
}

// sendPipelineErrors is sendPipeline with the whole errors, for tests that
// tell the proxy's refusal from PostgreSQL's by the message.
func sendPipelineErrors(t *testing.T, c *pgx.Conn, n int, msgs ...pgproto3.FrontendMessage) (errs []pgproto3.ErrorResponse, tags []string) {
	t.Helper()
	pc := c.PgConn()
	fe := pc.Frontend()
	for _, m := range msgs {
		fe.Send(m)
	}
	if err := fe.Flush(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for n > 0 {
		m, err := pc.ReceiveMessage(ctx)
		if err != nil {
			t.Fatalf("reading the pipeline's replies: %v", err)
		}
		switch m := m.(type) {
		case *pgproto3.ErrorResponse:
			errs = append(errs, *m) // a copy: the next message may reuse m
		case *pgproto3.CommandComplete:
			tags = append(tags, string(m.CommandTag))
		case *pgproto3.ReadyForQuery:
			n--
		}
	}
	return errs, tags
}

// testReadOnlyReappliedBeforeStatementPipelinedAfterReset: a simple RESET ALL followed at once (before
// its reply) by the Bind/Execute of a prepared INSERT: the proxy must apply the
// read-only default again before the INSERT runs.
func testReadOnlyReappliedBeforeStatementPipelinedAfterReset(t *testing.T, ts *stacktest.Stack) {
	own := standIns(t, ts, "pipereset", "alpha")
	c := stacktest.Connect(t, ts.URL("demo", "demo", own.alpha, ""))
	prepareInsert(t, c)
	makeReadOnly(t, ts, own.northstar, c)
	codes, tags := sendPipeline(t, c, 2,
		&pgproto3.Query{String: "RESET ALL"},
		&pgproto3.Bind{PreparedStatement: "ins", Parameters: [][]byte{[]byte("pipelined")}},
		&pgproto3.Execute{},
		&pgproto3.Sync{})
	if len(codes) != 1 || codes[0] != "25006" {
		t.Errorf("RESET ALL then a pipelined prepared INSERT: errors %v, tags %v; want the INSERT refused with 25006", codes, tags)
	}
	wantPreparedInsertRefused(t, c, "a pipelined RESET ALL")
}

// testReadOnlyCheckedAtExecuteOfStatementsPreparedEarlier: statements prepared while the tenant could
// write are checked again when executed under the new policy (the proxy saw
// their text only at Parse).
func testReadOnlyCheckedAtExecuteOfStatementsPreparedEarlier(t *testing.T, ts *stacktest.Stack) {
	ctx := context.Background()
	own := standIns(t, ts, "execearly", "alpha")
	c := stacktest.Connect(t, ts.URL("demo", "demo", own.alpha, ""))
	prepareInsert(t, c)
	for name, q := range map[string]string{
		"esc": "SET default_transaction_read_only = off",
		"rst": "RESET ALL",
		"rw":  "BEGIN READ WRITE",
	} {
		if _, err := c.Prepare(ctx, name, q); err != nil {
			t.Fatalf("preparing %s: %v", q, err)
		}
	}
	makeReadOnly(t, ts, own.northstar, c)
	for _, name := range []string{"esc", "rst"} {
		if _, err := c.Exec(ctx, name); stacktest.SQLState(err) != "25006" {
			t.Errorf("executing %q prepared before read-only: %v, want 25006", name, err)
		}
		wantPreparedInsertRefused(t, c, "executing "+name)
	}
	if _, err := c.Exec(ctx, "rw"); stacktest.SQLState(err) != "25006" {
		t.Errorf("BEGIN READ WRITE prepared before read-only: %v, want 25006", err)
		c.Exec(ctx, "ROLLBACK", pgx.QueryExecModeSimpleProtocol)
	}
}

// testNoDDLCheckedAtBindOfStatementsPreparedEarlier: a DDL statement prepared
// before sql.ddl was denied is checked again when it is bound after
// (bindPolicyError): the proxy saw its text only at Parse, under the old
// policy. PostgreSQL refuses it as well, with the same SQLSTATE (the session
// now runs as the _w role, testNoDDLEnforcedByPostgres), so the proxy's
// refusal is told apart by its message.
func testNoDDLCheckedAtBindOfStatementsPreparedEarlier(t *testing.T, ts *stacktest.Stack) {
	ctx := context.Background()
	own := standIns(t, ts, "bindddl", "beta")
	c := stacktest.Connect(t, ts.URL("demo", "demo", own.beta, ""))
	if _, err := c.Prepare(ctx, "mk", "CREATE TABLE prepared_ddl (x int)"); err != nil {
		t.Fatal(err)
	}
	ts.AdminWant(t, http.MethodPut, "/v1/tenants/"+own.northstar+"/permissions/sql.ddl",
		map[string]any{"value": false, "mode": "LOCKED", "revocation": "CASCADE"}, http.StatusOK)
	waitSQL(t, c, "CREATE TABLE ddl_refused (x int)", "42501")
	_, err := c.Exec(ctx, "mk")
	wantNoDDLRefusedByProxy(t, "DDL prepared before sql.ddl was denied, bound after", own.beta, err)
}

// wantNoDDLRefusedByProxy fails unless err is the proxy's refusal of DDL for
// tenant (42501 with the policy's reason, policy.Policy.NoDDL), not
// PostgreSQL's refusal by the _w role (42501 "permission denied for schema").
func wantNoDDLRefusedByProxy(t *testing.T, what, tenant string, err error) {
	t.Helper()
	want := fmt.Sprintf("tenant %q may not change the schema: permission sql.ddl is false", tenant)
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "42501" || !strings.HasPrefix(pe.Message, want) {
		t.Errorf("%s: %v; want the proxy's refusal: 42501 %s …", what, err, want)
	}
}

// testReadOnlyNotUndoneByReplayedClientSetting: a SET of default_transaction_read_only
// the session made while it could write must not be replayed over the
// read-only default once the tenant is read-only.
func testReadOnlyNotUndoneByReplayedClientSetting(t *testing.T, ts *stacktest.Stack) {
	ctx := context.Background()
	own := standIns(t, ts, "replayset", "alpha")
	c := stacktest.Connect(t, ts.URL("demo", "demo", own.alpha, ""))
	prepareInsert(t, c)
	if _, err := c.Exec(ctx, "SET default_transaction_read_only = off", pgx.QueryExecModeSimpleProtocol); err != nil {
		t.Fatal(err)
	}
	makeReadOnly(t, ts, own.northstar, c)
	wantPreparedInsertRefused(t, c, "a SET made before read-only")
}

// testReadOnlyRefusesSetConfigFunctionCall: the function-call protocol message calls
// set_config (OID 2078) without any SQL text for the proxy to check.
func testReadOnlyRefusesSetConfigFunctionCall(t *testing.T, ts *stacktest.Stack) {
	own := standIns(t, ts, "fncall", "alpha")
	c := stacktest.Connect(t, ts.URL("demo", "demo", own.alpha, ""))
	prepareInsert(t, c)
	makeReadOnly(t, ts, own.northstar, c)
	codes, _ := sendPipeline(t, c, 1, &pgproto3.FunctionCall{
		Function:       2078, // pg_catalog.set_config(text, text, boolean)
		ArgFormatCodes: []uint16{0},
		Arguments:      [][]byte{[]byte("default_transaction_read_only"), []byte("off"), []byte("false")},
	})
	// The proxy refuses it: it cannot see which setting it changes.
	if len(codes) != 1 || codes[0] != "42501" {
		t.Errorf("set_config through FunctionCall: errors %v, want it refused with 42501", codes)
	}
	wantPreparedInsertRefused(t, c, "set_config through FunctionCall")
}

// testPolicyChurnLosesNoAnswerAndReachesEverySession: policy changes land between (and during) the
// sessions' transactions, pipelines and resets, in both pool modes, while
// the sessions keep working: every answer is the statement's own (no reply
// of an injected query reaches a client, none is lost), the only refusals
// are read-only ones, and the last policy reaches every session.
func testPolicyChurnLosesNoAnswerAndReachesEverySession(t *testing.T, ts *stacktest.Stack) {
	ctx := context.Background()
	own := standIns(t, ts, "churn", "alpha", "beta")
	stop := make(chan struct{})
	errs := make(chan error, 64)
	var wg sync.WaitGroup
	tenants := []string{own.alpha, own.beta, own.alpha, own.beta}
	conns := make([]*pgx.Conn, len(tenants))
	for i, slug := range tenants {
		conns[i] = stacktest.Connect(t, ts.URL("demo", "demo", slug, ""))
	}
	allowed := func(err error) bool { return err == nil || stacktest.SQLState(err) == "25006" }
	for i, c := range conns {
		wg.Add(1)
		go func(i int, c *pgx.Conn) {
			defer wg.Done()
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				var err error
				switch n % 5 {
				case 0:
					var s *string
					err = c.QueryRow(ctx, "SELECT current_setting('stratum.config.churn', true)", pgx.QueryExecModeSimpleProtocol).Scan(&s)
				case 1:
					var one int
					err = c.QueryRow(ctx, "SELECT $1::int", 1).Scan(&one)
					if err == nil && one != 1 {
						err = fmt.Errorf("SELECT $1 answered %d", one)
					}
				case 2:
					var tx pgx.Tx
					if tx, err = c.Begin(ctx); err == nil {
						_, err = tx.Exec(ctx, "INSERT INTO orders (item) VALUES ($1)", "churn")
						if err == nil {
							err = tx.Commit(ctx)
						} else if rerr := tx.Rollback(ctx); rerr != nil {
							err = rerr
						}
					}
				case 3:
					b := &pgx.Batch{}
					b.Queue("SELECT 1")
					b.Queue("SELECT current_setting('statement_timeout')")
					b.Queue("SELECT 3")
					br := c.SendBatch(ctx, b)
					for k := 0; k < 3 && err == nil; k++ {
						var v string
						err = br.QueryRow().Scan(&v)
						if err == nil && k != 1 && v != strconv.Itoa(k+1) {
							err = fmt.Errorf("batch answer %d is %q", k, v)
						}
					}
					if cerr := br.Close(); err == nil {
						err = cerr
					}
				case 4:
					_, err = c.Exec(ctx, "RESET ALL", pgx.QueryExecModeSimpleProtocol)
				}
				if !allowed(err) {
					errs <- fmt.Errorf("session %d (%s), step %d: %w", i, tenants[i], n%5, err)
					return
				}
			}
		}(i, c)
	}
	deadline := time.Now().Add(3 * time.Second)
	for n := 0; time.Now().Before(deadline); n++ {
		st, b, err := ts.Admin(http.MethodPatch, "/v1/tenants/"+own.northstar+"/config", map[string]any{
			"churn":                   map[string]any{"value": n},
			"proxy.read_only":         map[string]any{"value": n%2 == 0},
			"proxy.statement_timeout": map[string]any{"value": strconv.Itoa(1000+n) + "ms"},
		})
		if err != nil || st != http.StatusOK {
			t.Errorf("PATCH config: %d %s %v", st, b, err)
			break
		}
	}
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	ts.AdminWant(t, http.MethodPut, "/v1/tenants/"+own.northstar+"/config/proxy.read_only", map[string]any{"value": false}, http.StatusOK)
	ts.AdminWant(t, http.MethodPut, "/v1/tenants/"+own.northstar+"/config/churn", map[string]any{"value": "final"}, http.StatusOK)
	for _, c := range conns {
		waitSetting(t, c, "stratum.config.churn", "final")
		waitSQL(t, c, "INSERT INTO orders (item) VALUES ('after churn')", "")
		if got := scalar(t, c, "SHOW default_transaction_read_only"); got != "off" {
			t.Errorf("after the churn, default_transaction_read_only = %s, want off", got)
		}
	}
}

// testResetAllThenCopyInOneQueryKeepsRelaying: a tenant with a policy (not read-only) sends RESET
// ALL and COPY FROM STDIN in one Query: the proxy must keep relaying the
// client's data rather than wait for the Query's end.
func testResetAllThenCopyInOneQueryKeepsRelaying(t *testing.T, ts *stacktest.Stack) {
	own := standIns(t, ts, "copyreset", "beta")
	c := stacktest.Connect(t, ts.URL("demo", "demo", own.beta, ""))
	ts.AdminWant(t, http.MethodPut, "/v1/tenants/"+own.northstar+"/config/proxy.statement_timeout",
		map[string]any{"value": "5s"}, http.StatusOK)
	waitSetting(t, c, "statement_timeout", "5s")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	tag, err := c.PgConn().CopyFrom(ctx, strings.NewReader("copied\n"), "RESET ALL; COPY orders (item) FROM STDIN")
	if err != nil {
		t.Fatalf("RESET ALL; COPY FROM STDIN: %v", err)
	}
	if tag.RowsAffected() != 1 {
		t.Errorf("COPY: %s", tag)
	}
	if got := scalar(t, c, "SHOW statement_timeout"); got != "5s" {
		t.Errorf("after RESET ALL, statement_timeout = %s, want 5s", got)
	}
}

// testNoDDLDropsUnnamedStatementParsedEarlier: the unnamed statement parsed before sql.ddl
// was denied must not run after: the change reaches the backend as a Query,
// which drops it, even though sql.ddl sets nothing on the backend.
func testNoDDLDropsUnnamedStatementParsedEarlier(t *testing.T, ts *stacktest.Stack) {
	own := standIns(t, ts, "unnamedddl", "beta")
	c := stacktest.Connect(t, ts.URL("demo", "demo", own.beta, ""))
	watcher := stacktest.Connect(t, ts.URL("demo", "demo", own.beta, ""))
	if codes, _ := sendPipeline(t, c, 1, &pgproto3.Parse{Query: "CREATE TABLE unnamed_ddl (x int)"}, &pgproto3.Sync{}); len(codes) != 0 {
		t.Fatalf("Parse: %v", codes)
	}
	ts.AdminWant(t, http.MethodPut, "/v1/tenants/"+own.northstar+"/permissions/sql.ddl",
		map[string]any{"value": false, "mode": "LOCKED", "revocation": "CASCADE"}, http.StatusOK)
	waitSQL(t, watcher, "CREATE TABLE ddl_refused (x int)", "42501") // the proxy knows
	codes, tags := sendPipeline(t, c, 1, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Sync{})
	// PostgreSQL no longer knows the unnamed statement (26000).
	if len(codes) != 1 || codes[0] != "26000" || len(tags) != 0 {
		t.Errorf("the unnamed CREATE TABLE parsed before sql.ddl was denied, bound after: errors %v, tags %v; want 26000 (dropped) and no tag", codes, tags)
	}
}

// testNoDDLCheckedOnStatementsBroughtBySwitch: a DDL statement prepared on a
// tenant that may change its schema, brought along by SET stratum.tenant to
// one that may not (replayed on its backend, or prepared there on demand in
// transaction pooling), is checked against the new tenant's policy when it
// is bound there. PostgreSQL refuses it as well (the new tenant's backend
// runs as its _w role), with the same SQLSTATE; the proxy's refusal is told
// apart by its message.
func testNoDDLCheckedOnStatementsBroughtBySwitch(t *testing.T, ts *stacktest.Stack) {
	ctx := context.Background()
	own := standIns(t, ts, "switchddl", "beta", "gamma")
	ts.AdminWant(t, http.MethodPut, "/v1/tenants/"+own.beta+"/permissions/sql.ddl",
		map[string]any{"value": false, "mode": "LOCKED", "revocation": "CASCADE"}, http.StatusOK)
	c := stacktest.Connect(t, ts.URL("demo", "demo", own.gamma, ""))
	if _, err := c.Prepare(ctx, "mk", "CREATE TABLE switched_ddl (x int)"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Exec(ctx, "SET stratum.tenant = "+own.beta, pgx.QueryExecModeSimpleProtocol); err != nil {
		t.Fatal(err)
	}
	waitSQL(t, c, "CREATE TABLE ddl_refused (x int)", "42501")
	_, err := c.Exec(ctx, "mk")
	wantNoDDLRefusedByProxy(t, fmt.Sprintf("DDL prepared on %s, bound after switching to %s (sql.ddl false)", own.gamma, own.beta), own.beta, err)
}

// testSwitchAppliesNewTenantsPolicy: SET stratum.tenant to a tenant whose
// policy sets something on its backends answers (the policy's queries reach
// the new backend) and the policy holds there.
func testSwitchAppliesNewTenantsPolicy(t *testing.T, ts *stacktest.Stack) {
	own := standIns(t, ts, "switchpol", "beta", "gamma")
	ts.AdminWant(t, http.MethodPut, "/v1/tenants/"+own.beta+"/config/proxy.statement_timeout",
		map[string]any{"value": "7s"}, http.StatusOK)
	ts.AdminWant(t, http.MethodPut, "/v1/tenants/"+own.beta+"/config/proxy.read_only",
		map[string]any{"value": true}, http.StatusOK)
	c := stacktest.Connect(t, ts.URL("demo", "demo", own.gamma, ""))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.Exec(ctx, "SET stratum.tenant = "+own.beta, pgx.QueryExecModeSimpleProtocol); err != nil {
		t.Fatalf("switching to a tenant with a policy: %v", err)
	}
	if got := scalar(t, c, "SHOW statement_timeout"); got != "7s" {
		t.Errorf("after the switch, statement_timeout = %s, want 7s", got)
	}
	if got := scalar(t, c, "SHOW default_transaction_read_only"); got != "on" {
		t.Errorf("after the switch, default_transaction_read_only = %s, want on", got)
	}
}

// testSuspendWaitsForOpenBatchSync: an extended-protocol batch sent without its
// Sync yet is an open (implicit) transaction: a suspension ends the session
// after the Sync, with the batch committed, not in the middle of it.
func testSuspendWaitsForOpenBatchSync(t *testing.T, ts *stacktest.Stack) {
	ctx := context.Background()
	own := standIns(t, ts, "suspbatch", "alpha", "beta")
	c := stacktest.Connect(t, ts.URL("demo", "demo", own.beta, ""))
	waitSQL(t, c, "SELECT 1", "")
	pc := c.PgConn()
	fe := pc.Frontend()
	fe.Send(&pgproto3.Parse{Query: "INSERT INTO orders (item) VALUES ('batched')"})
	fe.Send(&pgproto3.Bind{})
	fe.Send(&pgproto3.Execute{})
	if err := fe.Flush(); err != nil {
		t.Fatal(err)
	}
	ts.AdminWant(t, http.MethodPost, "/v1/tenants/"+own.northstar+"/suspend", nil, http.StatusOK)
	deadline := time.Now().Add(15 * time.Second)
	for {
		_, err := pgx.Connect(ctx, ts.URL("demo", "demo", own.alpha, ""))
		if stacktest.SQLState(err) == "55000" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("still connecting after the suspension: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond) // the proxy's sweep of open sessions
	fe.Send(&pgproto3.Sync{})
	if err := fe.Flush(); err != nil {
		t.Fatalf("the session ended before its batch's Sync: %v", err)
	}
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var tags []string
	for {
		m, err := pc.ReceiveMessage(rctx)
		if err != nil {
			break
		}
		if cc, ok := m.(*pgproto3.CommandComplete); ok {
			tags = append(tags, string(cc.CommandTag))
		}
		if er, ok := m.(*pgproto3.ErrorResponse); ok {
			t.Logf("then: %s %s", er.Code, er.Message)
			break
		}
	}
	if len(tags) != 1 || tags[0] != "INSERT 0 1" {
		t.Errorf("the batch open at the suspension got %v, want its INSERT to complete", tags)
	}
}

// testReadOnlyRefusesBindOfAnotherSessionsStatement: in transaction pooling,
// statements live on backends under names derived from their text and
// shared by the tenant's sessions; a session that binds such a name directly
// must not run a statement another session prepared, which the proxy never
// checked against its policy (bindPolicyError refuses names the session did
// not prepare, with a 26000 of its own).
//
// The statement must be on the read-only tenant's backend for the Bind to
// reach anything: the policy change moves the sessions to backends of the
// _r role, which start with no statements. The first session puts it there
// with a Describe of its own statement (the proxy prepares it on demand, and
// a Describe runs nothing, so it is not checked), and the tenant has one
// backend only, so the second session's Bind meets it.
//
// The tenant is in transaction pooling by its own pool mode, whatever the
// stack's (on the session-pooling stack, a tenant that overrides it).
func testReadOnlyRefusesBindOfAnotherSessionsStatement(t *testing.T, ts *stacktest.Stack) {
	ctx := context.Background()
	northstar := newTenant(t, ts, "otherbind_northstar", "acmesec", "shared")
	alpha := newTenantSpec(t, ts, provision.TenantSpec{Slug: "otherbind_alpha", Parent: northstar,
		Isolation: "shared", PoolMode: "transaction"})
	// One backend for the tenant, so both sessions meet on it.
	ts.AdminWant(t, http.MethodPut, "/v1/tenants/"+alpha+"/config/proxy.max_connections", map[string]any{"value": 1}, http.StatusOK)
	first := stacktest.Connect(t, ts.URL("demo", "demo", alpha, ""))
	waitSQL(t, first, "SELECT 1", "")
	const q = "SET default_transaction_read_only = off"
	if _, err := first.Prepare(ctx, "esc", q); err != nil {
		t.Fatal(err)
	}
	second := stacktest.Connect(t, ts.URL("demo", "demo", alpha, ""))
	prepareInsert(t, second)
	makeReadOnly(t, ts, northstar, second)
	waitSQL(t, first, "INSERT INTO orders (item) VALUES ('x')", "25006")
	if codes, _ := sendPipeline(t, first, 1,
		&pgproto3.Describe{ObjectType: 'S', Name: "esc"}, &pgproto3.Sync{}); len(codes) != 0 {
		t.Fatalf("describing the statement prepared before read-only: errors %v", codes)
	}
	rest := append([]byte(q), 0, 0, 0) // the Parse body after the name: query, no parameter types
	sum := sha256.Sum256(rest)
	shared := "stratum_" + hex.EncodeToString(sum[:12])
	errs, tags := sendPipelineErrors(t, second, 1,
		&pgproto3.Bind{PreparedStatement: shared}, &pgproto3.Execute{}, &pgproto3.Sync{})
	// The proxy's refusal, not PostgreSQL's 26000 (prepared statement "…"
	// does not exist), which would mean the Bind reached a backend without
	// the statement and the check was never needed.
	if len(errs) != 1 || errs[0].Code != "26000" || !strings.Contains(errs[0].Message, "is unknown to stratum-proxy") || len(tags) != 0 {
		t.Errorf("binding another session's statement %s by its backend name: errors %+v, tags %v; want the proxy's 26000 (unknown to stratum-proxy) and no tag", shared, errs, tags)
	}
	wantPreparedInsertRefused(t, second, "binding another session's statement")
}

// keepPipelining sends q over and over on c, always two requests ahead
// of the replies (so the proxy never sees the session with nothing pending
// when a request arrives), for d, and returns the SQLSTATEs seen per request
// in order ("" for success).
func keepPipelining(t *testing.T, c *pgx.Conn, q string, d time.Duration, during func()) []string {
	t.Helper()
	pc := c.PgConn()
	fe := pc.Frontend()
	ctx, cancel := context.WithTimeout(context.Background(), d+30*time.Second)
	defer cancel()
	// A send fails when the proxy has ended the session (a suspension):
	// then sending stops and what the proxy sent before is still read.
	sendFailed := false
	send := func() bool {
		fe.Send(&pgproto3.Query{String: q})
		if err := fe.Flush(); err != nil {
			sendFailed = true
			return false
		}
		return true
	}
	if !send() || !send() {
		t.Fatal("sending the first requests failed")
	}
	var codes []string
	code := ""
	end := time.Now().Add(d)
	ran := false
	for outstanding := 2; outstanding > 0; {
		m, err := pc.ReceiveMessage(ctx)
		if err != nil {
			if !ran {
				t.Fatalf("the session ended before the change was made: %v (answers %v)", err, codes)
			}
			codes = append(codes, "closed: "+err.Error())
			return codes
		}
		switch m := m.(type) {
		case *pgproto3.ErrorResponse:
			code = m.Code
		case *pgproto3.ReadyForQuery:
			codes = append(codes, code)
			code = ""
			outstanding--
			if !ran && len(codes) > 3 {
				ran = true
				during()
			}
			if time.Now().Before(end) && !sendFailed && send() {
				outstanding++
			}
		}
	}
	return codes
}

// testPipeliningSessionStillGetsPolicyAndSuspension: a session that always
// has a request in flight still gets a new policy (each of its Queries is a
// transaction of its own) and still ends when its tenant is suspended.
func testPipeliningSessionStillGetsPolicyAndSuspension(t *testing.T, ts *stacktest.Stack) {
	own := standIns(t, ts, "piping", "alpha", "beta")
	c := stacktest.Connect(t, ts.URL("demo", "demo", own.alpha, ""))
	waitSQL(t, c, "SELECT 1", "")
	watcher := stacktest.Connect(t, ts.URL("demo", "demo", own.alpha, ""))
	const q = "INSERT INTO orders (item) SELECT 'piped' FROM pg_sleep(0.03)"
	codes := keepPipelining(t, c, q, 2*time.Second, func() {
		ts.AdminWant(t, http.MethodPut, "/v1/tenants/"+own.northstar+"/config/proxy.read_only",
			map[string]any{"value": true}, http.StatusOK)
		waitSQL(t, watcher, "INSERT INTO orders (item) VALUES ('x')", "25006")
	})
	if last := codes[len(codes)-1]; last != "25006" {
		t.Errorf("a session that keeps pipelining INSERTs still writes 2s after its tenant became read-only: last answers %v", codes[max(0, len(codes)-5):])
	}

	c2 := stacktest.Connect(t, ts.URL("demo", "demo", own.beta, ""))
	waitSQL(t, c2, "SELECT 1", "")
	codes = keepPipelining(t, c2, "SELECT pg_sleep(0.03)", 2*time.Second, func() {
		ts.AdminWant(t, http.MethodPost, "/v1/tenants/"+own.northstar+"/suspend", nil, http.StatusOK)
	})
	if last := codes[len(codes)-1]; !strings.HasPrefix(last, "closed") && last != "57P01" {
		t.Errorf("a session that keeps pipelining still runs 2s after its tenant's parent was suspended: last answers %v", codes[max(0, len(codes)-5):])
	}
}

// testPendingPolicyDoesNotWaitOnCopyIn: when a policy change is pending and the
// client sends a request in the middle of COPY FROM STDIN (a protocol misuse
// PostgreSQL answers with an error), the proxy must not wait for the COPY to
// end: only the client can end it, and the proxy would no longer read it.
func testPendingPolicyDoesNotWaitOnCopyIn(t *testing.T, ts *stacktest.Stack) {
	own := standIns(t, ts, "copypend", "beta")
	c := stacktest.Connect(t, ts.URL("demo", "demo", own.beta, ""))
	watcher := stacktest.Connect(t, ts.URL("demo", "demo", own.beta, ""))
	waitSQL(t, c, "SELECT 1", "")
	pc := c.PgConn()
	fe := pc.Frontend()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	fe.Send(&pgproto3.Query{String: "COPY orders (item) FROM STDIN"})
	if err := fe.Flush(); err != nil {
		t.Fatal(err)
	}
	if m, err := pc.ReceiveMessage(ctx); err != nil {
		t.Fatal(err)
	} else if _, ok := m.(*pgproto3.CopyInResponse); !ok {
		t.Fatalf("got %T, want CopyInResponse", m)
	}
	ts.AdminWant(t, http.MethodPut, "/v1/tenants/"+own.beta+"/config/proxy.statement_timeout",
		map[string]any{"value": "6s"}, http.StatusOK)
	waitSetting(t, watcher, "statement_timeout", "6s")
	fe.Send(&pgproto3.Query{String: "SELECT 1"})
	if err := fe.Flush(); err != nil {
		t.Fatal(err)
	}
	for {
		m, err := pc.ReceiveMessage(ctx)
		if err != nil {
			t.Fatalf("a Query in the middle of COPY FROM STDIN, with a policy change pending: %v (want PostgreSQL's error, not a stuck session)", err)
		}
		if er, ok := m.(*pgproto3.ErrorResponse); ok {
			if er.Code != "08P01" {
				t.Errorf("a Query in the middle of COPY FROM STDIN: %s %s, want PostgreSQL's protocol violation (08P01)", er.Code, er.Message)
			}
			return
		}
	}
}
