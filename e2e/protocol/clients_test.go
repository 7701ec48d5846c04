package protocol

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stratum-hq/stratum-proxy/internal/stacktest"
)

// TestPgxFeatures drives the extended protocol through the proxy with pgx:
// QueryRow with arguments, a batch, COPY FROM and prepared statements that
// survive a tenant switch.
func TestPgxFeatures(t *testing.T) {
	stacktest.PoolModes(t, func(t *testing.T, ts *stacktest.Stack) {
		ctx := context.Background()
		for _, slug := range []string{"client_alpha", "client_beta", "client_gamma"} {
			t.Run(slug, func(t *testing.T) {
				c := stacktest.Connect(t, ts.URL("demo", "demo", slug, ""))
				var id int64
				var item string
				if err := c.QueryRow(ctx, `INSERT INTO orders (item, quantity) VALUES ($1, $2) RETURNING id, item`, "widget", 3).Scan(&id, &item); err != nil || item != "widget" {
					t.Fatalf("QueryRow: %v %q", err, item)
				}
				b := &pgx.Batch{}
				for i := 0; i < 5; i++ {
					b.Queue(`INSERT INTO orders (item, quantity) VALUES ($1, $2)`, fmt.Sprintf("batch-%d", i), i)
				}
				b.Queue(`SELECT count(*) FROM orders`)
				br := c.SendBatch(ctx, b)
				for i := 0; i < 5; i++ {
					if _, err := br.Exec(); err != nil {
						t.Fatalf("batch insert %d: %v", i, err)
					}
				}
				var n int
				if err := br.QueryRow().Scan(&n); err != nil || n != 6 {
					t.Fatalf("batch count: %d %v", n, err)
				}
				if err := br.Close(); err != nil {
					t.Fatal(err)
				}
				rows := [][]any{{"copy-1", 1}, {"copy-2", 2}, {"copy-3", 3}}
				copied, err := c.CopyFrom(ctx, pgx.Identifier{"orders"}, []string{"item", "quantity"}, pgx.CopyFromRows(rows))
				if slug == "client_alpha" {
					// PostgreSQL refuses COPY FROM into a table under row-level
					// security; shared tenants use INSERT (documented).
					if err == nil || !strings.Contains(err.Error(), "row-level security") {
						t.Fatalf("CopyFrom into a shared table: %v", err)
					}
				} else if err != nil || copied != 3 {
					t.Fatalf("CopyFrom: %d %v", copied, err)
				}
				var out strings.Builder
				tag, err := c.PgConn().CopyTo(ctx, &out, `COPY (SELECT item FROM orders ORDER BY id) TO STDOUT`)
				if err != nil || !strings.Contains(out.String(), "batch-4") {
					t.Fatalf("CopyTo: %v %v %q", tag, err, out.String())
				}
			})
		}
		t.Run("prepared statements survive a switch", func(t *testing.T) {
			// Tag rows so the two tenants answer differently: two in
			// client_beta, three in client_gamma. The other subtests' rows do
			// not match the tag.
			for slug, n := range map[string]int{"client_beta": 2, "client_gamma": 3} {
				tc := stacktest.Connect(t, ts.URL("demo", "demo", slug, ""))
				for i := 0; i < n; i++ {
					if _, err := tc.Exec(ctx, `INSERT INTO orders (item) VALUES ($1)`, "switch-"+slug); err != nil {
						t.Fatalf("tagging %s: %v", slug, err)
					}
				}
			}
			c := stacktest.Connect(t, ts.URL("demo", "demo", "client_beta", ""))
			q := `SELECT count(*), min(item) FROM orders WHERE item LIKE $1`
			scan := func() (n int, item string) {
				t.Helper()
				if err := c.QueryRow(ctx, q, "switch-%").Scan(&n, &item); err != nil {
					t.Fatalf("%s: %v", q, err)
				}
				return n, item
			}
			// Prepared and cached by pgx on client_beta's backend.
			if n, item := scan(); n != 2 || item != "switch-client_beta" {
				t.Fatalf("before the switch: %d rows tagged %q, want 2 tagged switch-client_beta", n, item)
			}
			if _, err := c.Exec(ctx, `SET stratum.tenant = 'client_gamma'`); err != nil {
				t.Fatal(err)
			}
			// The cached statement, now on client_gamma's backend.
			if n, item := scan(); n != 3 || item != "switch-client_gamma" {
				t.Errorf("after the switch the cached statement saw %d rows tagged %q, want 3 tagged switch-client_gamma", n, item)
			}
		})
	})
}

// TestPgbench runs pgbench -i and a select-only run through the proxy for a
// schema tenant and a database tenant.
func TestPgbench(t *testing.T) {
	pgbench, err := exec.LookPath("pgbench")
	if err != nil {
		t.Fatal("pgbench is not installed: run make deps")
	}
	stacktest.PoolModes(t, func(t *testing.T, ts *stacktest.Stack) { testPgbench(t, ts, pgbench) })
}

func testPgbench(t *testing.T, ts *stacktest.Stack, pgbench string) {
	for _, slug := range []string{"client_beta", "client_gamma"} {
		t.Run(slug, func(t *testing.T) {
			env := append(os.Environ(), "PGPASSWORD=demo", "PGOPTIONS=-c stratum.tenant="+slug, "PGSSLMODE=disable")
			base := []string{"-h", "127.0.0.1", "-p", fmt.Sprint(ts.Port()), "-U", "demo"}
			for _, args := range [][]string{
				{"-i", "-s", "1", "-q"},
				{"-S", "-c", "4", "-j", "2", "-t", "200", "-n"},
				{"-S", "-M", "prepared", "-c", "2", "-t", "200", "-n"},
			} {
				cmd := exec.Command(pgbench, append(append(args, base...), "app")...)
				cmd.Env = env
				out, err := cmd.CombinedOutput()
				if err != nil {
					t.Fatalf("pgbench %v: %v\n%s", args, err, out)
				}
				if args[0] != "-i" && !strings.Contains(string(out), "number of failed transactions: 0") {
					t.Errorf("pgbench %v:\n%s", args, out)
				}
			}
			c := stacktest.Connect(t, ts.URL("demo", "demo", slug, ""))
			if n := stacktest.Count(t, c, `SELECT count(*) FROM pgbench_accounts`); n != 100000 {
				t.Errorf("pgbench_accounts has %d rows, want 100000", n)
			}
		})
	}
	// The tables pgbench made live in each tenant's own space only.
	c := stacktest.Connect(t, ts.URL("demo", "demo", "client_alpha", ""))
	_, err := c.Exec(context.Background(), `SELECT 1 FROM pgbench_accounts LIMIT 1`)
	if stacktest.SQLState(err) != "42P01" {
		t.Errorf("client_alpha reading pgbench_accounts: %v, want 42P01 (no such table)", err)
	}
}
