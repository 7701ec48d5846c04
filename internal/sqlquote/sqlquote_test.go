package sqlquote

import (
	"context"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/stratum-hq/stratum-proxy/internal/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// TestLiteralReadsBack has PostgreSQL read each literal, with
// standard_conforming_strings on and off, and compares with the original.
func TestLiteralReadsBack(t *testing.T) {
	srv := pgtest.Get(t)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, srv.URL("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	values := []string{"", "plain", "it's", `back\slash`, `\'; SELECT 1; --`, `'\`, `\\''`, "ünïcode ✓", "tab\tnew\nline", `E'x'`}
	for _, scs := range []string{"on", "off"} {
		if _, err := conn.Exec(ctx, "SET standard_conforming_strings = "+scs); err != nil {
			t.Fatal(err)
		}
		for _, v := range values {
			// A simple Query through pgconn: the literal is read by the
			// parser, as in the statements the proxy sends (pgx's own simple
			// protocol refuses to run with standard_conforming_strings off).
			res, err := conn.PgConn().Exec(ctx, "SELECT "+Literal(v)).ReadAll()
			if err == nil && (len(res) != 1 || len(res[0].Rows) != 1) {
				err = fmt.Errorf("results %v", res)
			}
			if err != nil {
				t.Errorf("standard_conforming_strings=%s: %q as %s: %v", scs, v, Literal(v), err)
				continue
			}
			if got := string(res[0].Rows[0][0]); got != v {
				t.Errorf("standard_conforming_strings=%s: %s reads back as %q, want %q", scs, Literal(v), got, v)
			}
		}
	}
}
