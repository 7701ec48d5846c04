package protocol

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/stratum-hq/stratum-proxy/internal/stacktest"
	"github.com/stratum-hq/stratum-proxy/server"
)

// stmtsOneBackend makes transaction pooling give a tenant one backend
// connection, so that its sessions take turns on it; session pooling keeps
// the default (each session holds a backend of its own).
func stmtsOneBackend(c *server.Config) {
	if c.Proxy.PoolMode == "transaction" {
		c.Router.MaxConnsPerTenant = 1
	}
}

// stmtsRoundTrip sends msgs to pc, reads the replies up to ReadyForQuery and
// returns them as lines: each message's type with what identifies it (column
// names, values, tags, SQLSTATE and message, transaction status).
func stmtsRoundTrip(t *testing.T, pc *pgconn.PgConn, msgs ...pgproto3.FrontendMessage) []string {
	t.Helper()
	return stmtsPipelined(t, pc, 1, msgs...)
}

// stmtsPipelined sends msgs, which hold requests requests (each ended by a
// Sync or a Query), in one write and reads the replies up to the last
// ReadyForQuery, as stmtsRoundTrip does for one.
func stmtsPipelined(t *testing.T, pc *pgconn.PgConn, requests int, msgs ...pgproto3.FrontendMessage) []string {
	t.Helper()
	fe := pc.Frontend()
	for _, m := range msgs {
		fe.Send(m)
	}
	pc.Conn().SetDeadline(time.Now().Add(protoReplyTimeout))
	defer pc.Conn().SetDeadline(time.Time{})
	if err := fe.Flush(); err != nil {
		t.Fatalf("sending: %v", err)
	}
	var out []string
	for {
		m, err := fe.Receive()
		if err != nil {
			t.Fatalf("reading replies (so far %q): %v", out, err)
		}
		switch m := m.(type) {
		case *pgproto3.ParseComplete:
			out = append(out, "ParseComplete")
		case *pgproto3.BindComplete:
			out = append(out, "BindComplete")
		case *pgproto3.CloseComplete:
			out = append(out, "CloseComplete")
		case *pgproto3.NoData:
			out = append(out, "NoData")
		case *pgproto3.ParameterDescription:
			out = append(out, fmt.Sprintf("ParameterDescription %d", len(m.ParameterOIDs)))
		case *pgproto3.RowDescription:
			var cols []string
			for _, f := range m.Fields {
				cols = append(cols, string(f.Name))
			}
			out = append(out, "RowDescription "+strings.Join(cols, ","))
		case *pgproto3.DataRow:
			var vals []string
			for _, v := range m.Values {
				vals = append(vals, string(v))
			}
			out = append(out, "DataRow "+strings.Join(vals, ","))
		case *pgproto3.CommandComplete:
			out = append(out, "CommandComplete "+string(m.CommandTag))
		case *pgproto3.EmptyQueryResponse:
			out = append(out, "EmptyQueryResponse")
		case *pgproto3.ErrorResponse:
			out = append(out, "ErrorResponse "+m.Code+" "+m.Message)
		case *pgproto3.ReadyForQuery:
			out = append(out, "ReadyForQuery "+string(m.TxStatus))
			if requests--; requests == 0 {
				return out
			}
		case *pgproto3.NoticeResponse, *pgproto3.ParameterStatus:
		default:
			out = append(out, fmt.Sprintf("%T", m))
		}
	}
}

// stmtsWant fails the test unless got equals want.
func stmtsWant(t *testing.T, what string, got []string, want ...string) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Errorf("%s:\n got  %q\n want %q", what, got, want)
	}
}

func stmtsBackendPID(t *testing.T, pc *pgconn.PgConn) string {
	t.Helper()
	res := pc.Exec(context.Background(), "SELECT pg_backend_pid()")
	rs, err := res.ReadAll()
	if err != nil || len(rs) != 1 || len(rs[0].Rows) != 1 {
		t.Fatalf("pg_backend_pid: %v", err)
	}
	return string(rs[0].Rows[0][0])
}

// TestUnnamedStatementBelongsToItsClient is issue 11's repro: in transaction
// pooling a client's unnamed statement (Parse "" in one round trip, Bind ""
// in the next) must be its own, not whatever unnamed statement the backend
// holds by then because another session of the tenant used it in between.
// A Close of the unnamed statement must not close another session's, and
// what drops it in PostgreSQL (a simple Query, a Close) drops it here.
func TestUnnamedStatementBelongsToItsClient(t *testing.T) {
	stacktest.PoolModes(t, func(t *testing.T, ts *stacktest.Stack) {
		url := ts.URL("demo", "demo", "client_alpha", "")
		a := stacktest.Connect(t, url).PgConn()
		b := stacktest.Connect(t, url).PgConn()
		txn := strings.HasSuffix(t.Name(), "/transaction") // stacktest.PoolModes names the subtests by mode
		if txn && stmtsBackendPID(t, a) != stmtsBackendPID(t, b) {
			t.Fatal("the two sessions do not share the tenant's one backend: the test would prove nothing")
		}

		bindA := func(v string) []pgproto3.FrontendMessage {
			return []pgproto3.FrontendMessage{
				&pgproto3.Bind{Parameters: [][]byte{[]byte(v)}},
				&pgproto3.Describe{ObjectType: 'P'}, &pgproto3.Execute{}, &pgproto3.Sync{},
			}
		}
		stmtsWant(t, "A prepares its unnamed statement", stmtsRoundTrip(t, a,
			&pgproto3.Parse{Query: "select $1::text as a_col"}, &pgproto3.Describe{ObjectType: 'S'}, &pgproto3.Sync{}),
			"ParseComplete", "ParameterDescription 1", "RowDescription a_col", "ReadyForQuery I")
		bindB := &pgproto3.Bind{Parameters: [][]byte{[]byte("b")}}
		stmtsWant(t, "B runs its own unnamed statement", stmtsRoundTrip(t, b,
			&pgproto3.Parse{Query: "select 'secret of B'::text as b_col where $1::text is not null"}, bindB,
			&pgproto3.Describe{ObjectType: 'P'}, &pgproto3.Execute{}, &pgproto3.Sync{}),
			"ParseComplete", "BindComplete", "RowDescription b_col", "DataRow secret of B", "CommandComplete SELECT 1", "ReadyForQuery I")
		stmtsWant(t, "A binds its unnamed statement after B", stmtsRoundTrip(t, a, bindA("mine")...),
			"BindComplete", "RowDescription a_col", "DataRow mine", "CommandComplete SELECT 1", "ReadyForQuery I")

		// B binds its own again (A's is the backend's now), then describes it.
		stmtsWant(t, "B binds its statement after A", stmtsRoundTrip(t, b,
			bindB, &pgproto3.Execute{}, &pgproto3.Sync{}),
			"BindComplete", "DataRow secret of B", "CommandComplete SELECT 1", "ReadyForQuery I")
		stmtsWant(t, "A describes its statement after B", stmtsRoundTrip(t, a,
			&pgproto3.Describe{ObjectType: 'S'}, &pgproto3.Sync{}),
			"ParameterDescription 1", "RowDescription a_col", "ReadyForQuery I")

		// B closes its unnamed statement while A's is the backend's: A's
		// stays, B has none.
		stmtsWant(t, "B closes its unnamed statement", stmtsRoundTrip(t, b,
			&pgproto3.Close{ObjectType: 'S'}, &pgproto3.Sync{}),
			"CloseComplete", "ReadyForQuery I")
		stmtsWant(t, "A binds after B's Close", stmtsRoundTrip(t, a, bindA("still mine")...),
			"BindComplete", "RowDescription a_col", "DataRow still mine", "CommandComplete SELECT 1", "ReadyForQuery I")
		noUnnamed := []string{"ErrorResponse 26000 unnamed prepared statement does not exist", "ReadyForQuery I"}
		stmtsWant(t, "B binds after closing its statement", stmtsRoundTrip(t, b,
			bindB, &pgproto3.Execute{}, &pgproto3.Sync{}), noUnnamed...)

		// A simple Query drops A's unnamed statement.
		stmtsRoundTrip(t, a, &pgproto3.Query{String: "SELECT 1"})
		stmtsWant(t, "A binds after a simple Query", stmtsRoundTrip(t, a, bindA("gone")...), noUnnamed...)
		stmtsWant(t, "A describes after a simple Query", stmtsRoundTrip(t, a,
			&pgproto3.Describe{ObjectType: 'S'}, &pgproto3.Sync{}), noUnnamed...)

		// SET stratum.tenant, a simple Query, drops it too: nothing to
		// carry to the new tenant's backend.
		stmtsRoundTrip(t, a, &pgproto3.Parse{Query: "select $1::text as a_col"}, &pgproto3.Sync{})
		stmtsWant(t, "A switches tenant", stmtsRoundTrip(t, a, &pgproto3.Query{String: "SET stratum.tenant = 'client_beta'"}),
			"CommandComplete SET", "ReadyForQuery I")
		stmtsWant(t, "A binds after the switch", stmtsRoundTrip(t, a, bindA("switched")...), noUnnamed...)

		// The same steps on PostgreSQL itself give the same answers.
		d := ts.SrvConn(t, ts.Router.Config().SharedDatabase).PgConn()
		stmtsRoundTrip(t, d, &pgproto3.Parse{Query: "select $1::text as a_col"}, &pgproto3.Sync{})
		stmtsRoundTrip(t, d, &pgproto3.Close{ObjectType: 'S'}, &pgproto3.Sync{})
		stmtsWant(t, "PostgreSQL: Bind after Close", stmtsRoundTrip(t, d, bindA("x")...), noUnnamed...)
	}, stmtsOneBackend)
}

// TestUnnamedStatementsDescribeExec runs pgx's QueryExecModeDescribeExec
// (Parse "" + Describe, then Bind "" + Execute, in two round trips) in two
// goroutines of one tenant, sharing one backend in transaction pooling:
// every row and column name must be the goroutine's own.
func TestUnnamedStatementsDescribeExec(t *testing.T) {
	stacktest.PoolModes(t, func(t *testing.T, ts *stacktest.Stack) {
		url := ts.URL("demo", "demo", "client_beta", "")
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		var wg sync.WaitGroup
		errs := make(chan error, 2)
		for g := range 2 {
			c := stacktest.Connect(t, url)
			wg.Add(1)
			go func() {
				defer wg.Done()
				col := fmt.Sprintf("g%d", g)
				// Different texts (and parameter counts) per goroutine.
				sql := fmt.Sprintf("select $1::text as %s", col)
				if g == 1 {
					sql = fmt.Sprintf("select $1::text || $2::text as %s", col)
				}
				for i := range 60 {
					args := []any{pgx.QueryExecModeDescribeExec, fmt.Sprintf("%s-%d", col, i)}
					want := fmt.Sprintf("%s-%d", col, i)
					if g == 1 {
						args = append(args, "!")
						want += "!"
					}
					rows, err := c.Query(ctx, sql, args...)
					if err != nil {
						errs <- fmt.Errorf("%s iteration %d: %w", col, i, err)
						return
					}
					var got string
					for rows.Next() {
						if err := rows.Scan(&got); err != nil {
							errs <- fmt.Errorf("%s iteration %d: %w", col, i, err)
							return
						}
					}
					fd := rows.FieldDescriptions()
					rows.Close()
					if err := rows.Err(); err != nil {
						errs <- fmt.Errorf("%s iteration %d: %w", col, i, err)
						return
					}
					if got != want || len(fd) != 1 || fd[0].Name != col {
						errs <- fmt.Errorf("%s iteration %d: got %q in %v, want %q in %s", col, i, got, fd, want, col)
						return
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
	}, stmtsOneBackend)
}

// stmtsStep is one round trip of a scripted session.
type stmtsStep []pgproto3.FrontendMessage

func stmtsQuery(sql string) stmtsStep { return stmtsStep{&pgproto3.Query{String: sql}} }

func stmtsParse(name, sql string) stmtsStep {
	return stmtsStep{&pgproto3.Parse{Name: name, Query: sql}, &pgproto3.Sync{}}
}

func stmtsExec(name string) stmtsStep {
	return stmtsStep{&pgproto3.Bind{PreparedStatement: name}, &pgproto3.Execute{}, &pgproto3.Sync{}}
}

// stmtsExtended is how libpq's PQexecParams (psycopg's DEALLOCATE among
// others) sends a statement: the unnamed statement and portal, one round trip.
func stmtsExtended(sql string) stmtsStep {
	return stmtsStep{&pgproto3.Parse{Query: sql}, &pgproto3.Bind{}, &pgproto3.Describe{ObjectType: 'P'},
		&pgproto3.Execute{}, &pgproto3.Sync{}}
}

// TestStatementNamesAsPostgreSQL runs scripts of DEALLOCATE (simple and
// extended protocol, in and out of transactions, failed transactions,
// unknown names, ALL) and of Parses of a name prepared already (42P05)
// through the proxy and on PostgreSQL itself: the answers must be the same.
// In transaction pooling the client's names are not the backend's, so the
// proxy answers these itself (issue 11, cause 2).
func TestStatementNamesAsPostgreSQL(t *testing.T) {
	stacktest.PoolModes(t, func(t *testing.T, ts *stacktest.Stack) {
		shared := ts.Router.Config().SharedDatabase
		url := ts.URL("demo", "demo", "client_alpha", "")
		for _, c := range []struct {
			name  string
			steps []stmtsStep
			// want, when set, is what PostgreSQL must answer to the step
			// with that index: the script proves what it claims.
			want map[int][]string
		}{
			{"DEALLOCATE", []stmtsStep{
				stmtsParse("s1", "select 1"), stmtsQuery("DEALLOCATE s1"), stmtsExec("s1"),
				stmtsParse("s1", "select 2"), stmtsExec("s1"), stmtsQuery("DEALLOCATE PREPARE s1"),
				stmtsQuery("deallocate s1"),
			}, map[int][]string{
				1: {"CommandComplete DEALLOCATE", "ReadyForQuery I"},
				2: {`ErrorResponse 26000 prepared statement "s1" does not exist`, "ReadyForQuery I"},
				4: {"BindComplete", "DataRow 2", "CommandComplete SELECT 1", "ReadyForQuery I"},
			}},
			{"DEALLOCATE ALL", []stmtsStep{
				stmtsParse("a", "select 1"), stmtsParse("b", "select 2"), stmtsQuery("DEALLOCATE ALL"),
				stmtsParse("a", "select 3"), stmtsExec("a"), stmtsExec("b"), stmtsQuery("DEALLOCATE PREPARE ALL"),
			}, map[int][]string{2: {"CommandComplete DEALLOCATE ALL", "ReadyForQuery I"}}},
			{"DEALLOCATE ALL through Parse", []stmtsStep{
				stmtsParse("a", "select 1"), stmtsParse("b", "select 2"), stmtsExtended("DEALLOCATE ALL"),
				stmtsExec("a"), stmtsParse("a", "select 3"), stmtsExec("a"),
				stmtsParse("c", "select 4"), stmtsQuery("BEGIN"), stmtsQuery("SELECT 1/0"),
				stmtsExtended("DEALLOCATE ALL"), stmtsQuery("ROLLBACK"), stmtsExec("c"), stmtsExec("a"),
				stmtsExtended("DEALLOCATE PREPARE ALL"), stmtsExec("c"),
			}, map[int][]string{
				2:  {"ParseComplete", "BindComplete", "NoData", "CommandComplete DEALLOCATE ALL", "ReadyForQuery I"},
				3:  {`ErrorResponse 26000 prepared statement "a" does not exist`, "ReadyForQuery I"},
				5:  {"BindComplete", "DataRow 3", "CommandComplete SELECT 1", "ReadyForQuery I"},
				9:  {"ErrorResponse 25P02 current transaction is aborted, commands ignored until end of transaction block", "ReadyForQuery E"},
				11: {"BindComplete", "DataRow 4", "CommandComplete SELECT 1", "ReadyForQuery I"},
				14: {`ErrorResponse 26000 prepared statement "c" does not exist`, "ReadyForQuery I"},
			}},
			{"in a transaction", []stmtsStep{
				stmtsParse("s4", "select 4"), stmtsParse("s5", "select 5"), stmtsQuery("BEGIN"),
				stmtsQuery("DEALLOCATE s4"), stmtsQuery("SELECT 1"), stmtsQuery("DEALLOCATE nope"),
				stmtsQuery("DEALLOCATE s5"), stmtsQuery("DEALLOCATE ALL"), stmtsQuery("ROLLBACK"),
				stmtsExec("s5"), stmtsExec("s4"),
			}, map[int][]string{
				3: {"CommandComplete DEALLOCATE", "ReadyForQuery T"},
				5: {`ErrorResponse 26000 prepared statement "nope" does not exist`, "ReadyForQuery E"},
				6: {"ErrorResponse 25P02 current transaction is aborted, commands ignored until end of transaction block", "ReadyForQuery E"},
				9: {"BindComplete", "DataRow 5", "CommandComplete SELECT 1", "ReadyForQuery I"},
			}},
			{"extended protocol", []stmtsStep{
				stmtsParse("s6", "select 6"), stmtsExtended("DEALLOCATE s6"), stmtsExec("s6"),
				stmtsParse("s6", "select 66"), stmtsExec("s6"), stmtsExtended("DEALLOCATE nope"),
				stmtsParse("s8", "select 8"), stmtsQuery("BEGIN"), stmtsExtended("DEALLOCATE PREPARE s6"),
				stmtsQuery("SELECT 1/0"), stmtsExtended("DEALLOCATE s8"), stmtsQuery("ROLLBACK"),
				stmtsExtended("DEALLOCATE s8"),
			}, map[int][]string{
				1:  {"ParseComplete", "BindComplete", "NoData", "CommandComplete DEALLOCATE", "ReadyForQuery I"},
				5:  {"ParseComplete", "BindComplete", "NoData", `ErrorResponse 26000 prepared statement "nope" does not exist`, "ReadyForQuery I"},
				8:  {"ParseComplete", "BindComplete", "NoData", "CommandComplete DEALLOCATE", "ReadyForQuery T"},
				10: {"ErrorResponse 25P02 current transaction is aborted, commands ignored until end of transaction block", "ReadyForQuery E"},
			}},
			{"a name prepared already", []stmtsStep{
				stmtsParse("s9", "select 9"),
				{&pgproto3.Parse{Name: "s9", Query: "select 99"}, &pgproto3.Bind{PreparedStatement: "s9"}, &pgproto3.Execute{}, &pgproto3.Sync{}},
				stmtsParse("s9", "select 9"), stmtsExec("s9"),
				{&pgproto3.Parse{Name: "s10", Query: "select 10"}, &pgproto3.Parse{Name: "s10", Query: "select 10"}, &pgproto3.Sync{}},
				// A Parse that failed made no statement: the name is free.
				stmtsParse("s11", "select * from stmts_no_such_table"), stmtsParse("s11", "select 11"), stmtsExec("s11"),
				stmtsQuery("BEGIN"), stmtsParse("s11", "select 12"), stmtsQuery("SELECT 1"), stmtsQuery("ROLLBACK"),
				// In one batch: the second Parse runs only if the first did.
				{&pgproto3.Parse{Name: "s12", Query: "select * from stmts_no_such_table"}, &pgproto3.Parse{Name: "s12", Query: "select 12"}, &pgproto3.Sync{}},
				stmtsParse("s12", "select 12"),
				stmtsQuery("BEGIN"),
				{&pgproto3.Parse{Name: "s13", Query: "select * from stmts_no_such_table"}, &pgproto3.Parse{Name: "s13", Query: "select 13"}, &pgproto3.Sync{}},
				stmtsQuery("ROLLBACK"),
			}, map[int][]string{
				1:  {`ErrorResponse 42P05 prepared statement "s9" already exists`, "ReadyForQuery I"},
				3:  {"BindComplete", "DataRow 9", "CommandComplete SELECT 1", "ReadyForQuery I"},
				4:  {"ParseComplete", `ErrorResponse 42P05 prepared statement "s10" already exists`, "ReadyForQuery I"},
				6:  {"ParseComplete", "ReadyForQuery I"},
				9:  {`ErrorResponse 42P05 prepared statement "s11" already exists`, "ReadyForQuery E"},
				10: {"ErrorResponse 25P02 current transaction is aborted, commands ignored until end of transaction block", "ReadyForQuery E"},
				12: {`ErrorResponse 42P01 relation "stmts_no_such_table" does not exist`, "ReadyForQuery I"},
				13: {"ParseComplete", "ReadyForQuery I"},
				15: {`ErrorResponse 42P01 relation "stmts_no_such_table" does not exist`, "ReadyForQuery E"},
			}},
		} {
			t.Run(c.name, func(t *testing.T) {
				p := stacktest.Connect(t, url).PgConn()
				d := ts.SrvConn(t, shared).PgConn()
				for i, step := range c.steps {
					want := stmtsRoundTrip(t, d, step...)
					if w, ok := c.want[i]; ok {
						stmtsWant(t, fmt.Sprintf("PostgreSQL, step %d", i), want, w...)
					}
					stmtsWant(t, fmt.Sprintf("step %d", i), stmtsRoundTrip(t, p, step...), want...)
				}
			})
		}
	})
}

// TestDeallocateAllAsDrivers: psycopg 3 and pgx's exec mode send
// DEALLOCATE ALL as the unnamed statement (Parse, Bind, Execute, Sync); the
// client's statements are gone after it, with PostgreSQL's tag, and their
// names are free to prepare again with other SQL.
func TestDeallocateAllAsDrivers(t *testing.T) {
	stacktest.PoolModes(t, func(t *testing.T, ts *stacktest.Stack) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		c := stacktest.Connect(t, ts.URL("demo", "demo", "client_alpha", ""))
		if _, err := c.Prepare(ctx, "q", "select 1"); err != nil {
			t.Fatal(err)
		}
		tag, err := c.Exec(ctx, "DEALLOCATE ALL", pgx.QueryExecModeExec)
		if err != nil || tag.String() != "DEALLOCATE ALL" {
			t.Fatalf("DEALLOCATE ALL: tag %q, %v", tag.String(), err)
		}
		if _, err := c.Prepare(ctx, "q", "select 2"); err != nil {
			t.Fatalf("preparing the name again: %v", err)
		}
		var n int
		if err := c.QueryRow(ctx, "q").Scan(&n); err != nil || n != 2 {
			t.Fatalf("q after DEALLOCATE ALL: %d, %v; want 2", n, err)
		}
	})
}

// TestStatementNamesTransactionPooling covers what transaction pooling
// answers differently from PostgreSQL, on purpose: a DEALLOCATE of the
// client's statements among other statements in one Query is refused, a
// DEALLOCATE ALL (here through the extended protocol) drops the client's
// statements and not the ones the backend holds for the tenant's other
// sessions, and a DEALLOCATE of a backend statement the proxy shares
// between the tenant's sessions (its name is a hash of the text) is
// answered as unknown and drops nothing.
func TestStatementNamesTransactionPooling(t *testing.T) {
	ts := stacktest.Start(t, func(c *server.Config) {
		c.Proxy.PoolMode = "transaction"
		c.Router.MaxConnsPerTenant = 1
	})
	url := ts.URL("demo", "demo", "client_alpha", "")
	a := stacktest.Connect(t, url).PgConn()
	b := stacktest.Connect(t, url).PgConn()
	stmtsRoundTrip(t, a, stmtsParse("mine", "select 1")...)
	stmtsWant(t, "DEALLOCATE among other statements", stmtsRoundTrip(t, a, stmtsQuery("SELECT 1; DEALLOCATE mine")...),
		"ErrorResponse 0A000 DEALLOCATE of a prepared statement must be sent as a query of its own through stratum-proxy in transaction pooling", "ReadyForQuery I")
	stmtsRoundTrip(t, b, stmtsParse("theirs", "select 2")...)
	stmtsWant(t, "DEALLOCATE ALL through Parse", stmtsRoundTrip(t, a, stmtsExtended("DEALLOCATE ALL")...),
		"ParseComplete", "BindComplete", "NoData", "CommandComplete DEALLOCATE ALL", "ReadyForQuery I")
	stmtsWant(t, "A's statement is gone", stmtsRoundTrip(t, a, stmtsExec("mine")...),
		`ErrorResponse 26000 prepared statement "mine" does not exist`, "ReadyForQuery I")
	stmtsWant(t, "B's statement on the same backend is not", stmtsRoundTrip(t, b, stmtsExec("theirs")...),
		"BindComplete", "DataRow 2", "CommandComplete SELECT 1", "ReadyForQuery I")
	stmtsRoundTrip(t, a, stmtsParse("mine", "select 1")...)

	// The backend name of "select 1" with no parameter types (state.go).
	sum := sha256.Sum256([]byte("select 1\x00\x00\x00"))
	shared := "stratum_" + hex.EncodeToString(sum[:12])
	want := `ErrorResponse 26000 prepared statement "` + shared + `" does not exist`
	stmtsWant(t, "B deallocates the shared statement", stmtsRoundTrip(t, b, stmtsQuery("DEALLOCATE "+shared)...), want, "ReadyForQuery I")
	stmtsWant(t, "B deallocates it through Parse", stmtsRoundTrip(t, b, stmtsExtended("DEALLOCATE "+shared)...), want, "ReadyForQuery I")
	stmtsRoundTrip(t, b, stmtsQuery("BEGIN")...)
	stmtsWant(t, "B deallocates it in a transaction", stmtsRoundTrip(t, b, stmtsQuery("DEALLOCATE "+shared)...), want, "ReadyForQuery E")
	stmtsRoundTrip(t, b, stmtsQuery("ROLLBACK")...)
	stmtsWant(t, "A runs its statement", stmtsRoundTrip(t, a, stmtsExec("mine")...),
		"BindComplete", "DataRow 1", "CommandComplete SELECT 1", "ReadyForQuery I")
}

// TestInjectedRepliesStayInTheirBatch: in transaction pooling the proxy
// injects messages into a client's requests (a Parse re-establishing the
// client's unnamed statement, a Close before re-preparing a shared
// statement) and drops their replies. A client that sends several requests
// before reading any must get exactly the replies to its own messages: a
// count of replies to drop must end with its request's ReadyForQuery, not
// reach into the next request's replies (nor into a request after an error,
// where the backend skipped what it owed).
func TestInjectedRepliesStayInTheirBatch(t *testing.T) {
	stacktest.PoolModes(t, func(t *testing.T, ts *stacktest.Stack) {
		url := ts.URL("demo", "demo", "client_alpha", "")
		a := stacktest.Connect(t, url).PgConn()
		b := stacktest.Connect(t, url).PgConn()
		txn := strings.HasSuffix(t.Name(), "/transaction")
		if txn && stmtsBackendPID(t, a) != stmtsBackendPID(t, b) {
			t.Fatal("the two sessions do not share the tenant's one backend: the test would prove nothing")
		}
		stmtsRoundTrip(t, a, &pgproto3.Parse{Query: "select $1::text as a_col"}, &pgproto3.Sync{})
		// B prepares a named statement A will prepare too (same text: on
		// the backend it is one statement), then makes the backend's
		// unnamed statement its own.
		stmtsRoundTrip(t, b, &pgproto3.Parse{Name: "b2", Query: "select 2 as two"}, &pgproto3.Sync{})
		stmtsRoundTrip(t, b, &pgproto3.Parse{Query: "select 'b' as b_col"}, &pgproto3.Sync{})

		// A, in one write (transaction pooling injects a message into
		// each of the first three requests):
		//  1. binds its unnamed statement (an injected Parse re-establishes it);
		//  2. prepares B's text under a name of its own (an injected Close
		//     of the backend's statement, as it is prepared again);
		//  3. fails, then prepares that text again under another name (an
		//     injected Close the backend skips after the error);
		//  4. closes a statement (a reply the client asked for).
		got := stmtsPipelined(t, a, 4,
			&pgproto3.Bind{Parameters: [][]byte{[]byte("one")}}, &pgproto3.Execute{}, &pgproto3.Sync{},
			&pgproto3.Parse{Name: "a2", Query: "select 2 as two"}, &pgproto3.Sync{},
			&pgproto3.Bind{PreparedStatement: "nope"}, &pgproto3.Parse{Name: "a3", Query: "select 2 as two"}, &pgproto3.Sync{},
			&pgproto3.Close{ObjectType: 'S', Name: "a2"}, &pgproto3.Sync{},
		)
		stmtsWant(t, "A's pipelined requests", got,
			"BindComplete", "DataRow one", "CommandComplete SELECT 1", "ReadyForQuery I",
			"ParseComplete", "ReadyForQuery I",
			`ErrorResponse 26000 prepared statement "nope" does not exist`, "ReadyForQuery I",
			"CloseComplete", "ReadyForQuery I")
	}, stmtsOneBackend)
}
