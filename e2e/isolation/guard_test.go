package isolation

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stratum-hq/stratum-proxy/internal/stacktest"
)

// TestGuardThroughProxy checks that the proxy's SQL guard refuses context
// changes before the backend sees them, in the simple and the extended
// protocol, that the session stays usable, and that refusals are counted in
// the metrics.
func TestGuardThroughProxy(t *testing.T) {
	stacktest.PoolModes(t, func(t *testing.T, ts *stacktest.Stack) {
		ctx := context.Background()
		c := stacktest.Connect(t, ts.URL("demo", "demo", "client_alpha", ""))
		for _, q := range []string{
			"SET ROLE postgres",
			"set session authorization postgres",
			"SELECT set_config('role', 'postgres', false)",
			"SELECT 1; RESET ROLE",
			"DO $$ BEGIN EXECUTE 'SET ROLE postgres'; END $$",
			"SET stratum.tenant_id = 'x'",
		} {
			_, err := c.Exec(ctx, q) // simple protocol
			if stacktest.SQLState(err) != "42501" || !strings.Contains(err.Error(), "not allowed through stratum-proxy") {
				t.Errorf("%q: %v, want the guard's 42501", q, err)
			}
		}
		// Extended protocol, pipelined: the batch's statement before the
		// refused one answers first, the refused one fails, the session goes on.
		pl := c.PgConn().StartPipeline(ctx)
		pl.SendQueryParams("SELECT 1", nil, nil, nil, nil)
		pl.SendQueryParams("SELECT set_config('role', $1, false)", [][]byte{[]byte("postgres")}, nil, nil, nil)
		if err := pl.Sync(); err != nil {
			t.Fatal(err)
		}
		var got []string
		for {
			res, err := pl.GetResults()
			if err != nil {
				got = append(got, "error "+stacktest.SQLState(err))
				continue
			}
			if res == nil {
				break
			}
			switch r := res.(type) {
			case *pgconn.ResultReader:
				_, err := r.Close()
				if err != nil {
					got = append(got, "error "+stacktest.SQLState(err))
				} else {
					got = append(got, "ok")
				}
			case *pgconn.PipelineSync:
				got = append(got, "sync")
			}
			if len(got) > 5 {
				break
			}
		}
		pl.Close()
		if strings.Join(got, ",") != "ok,error 42501,sync" {
			t.Errorf("pipeline results %v, want ok, the guard's error, sync", got)
		}
		if n := stacktest.Count(t, c, "SELECT count(*) FROM orders"); n != 0 {
			t.Errorf("session unusable or wrong after refusals: %d", n)
		}
		var role string
		if err := c.QueryRow(ctx, "SELECT current_user").Scan(&role); err != nil || !strings.HasPrefix(role, "stratum_t_") {
			t.Errorf("current_user after refusals: %q %v", role, err)
		}
		// A client encoding that hides quotes in multi-byte characters is refused.
		_, err := pgx.Connect(ctx, ts.URL("demo", "demo", "client_alpha", "client_encoding=SJIS"))
		if stacktest.SQLState(err) != "0A000" {
			t.Errorf("SJIS client: %v, want 0A000", err)
		}
		resp, err := http.Get(ts.AdminURL + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		for _, want := range []string{`stratum_guard_denials_total{reason="set_role"}`, `stratum_queries_total{tenant="client_alpha"}`,
			"stratum_client_connections ", `stratum_server_connections{state="idle"}`, "stratum_pool_acquire_seconds_bucket"} {
			if !strings.Contains(string(body), want) {
				t.Errorf("/metrics lacks %s", want)
			}
		}
	})
}
