package isolation

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stratum-hq/stratum-proxy/internal/stacktest"
)

// TestNotificationsStayWithinTenant: a shared tenant listens on a channel in
// the shared database; another shared tenant, a schema tenant and a client
// connected directly to the database notify that channel in every way
// (NOTIFY, pg_notify, pg_notify hidden in dynamic SQL, pg_notify through
// FunctionCall). The listener gets none of those, and does get its own
// tenant's notification from a second session. Both pool modes (LISTEN pins a
// session in transaction pooling).
func TestNotificationsStayWithinTenant(t *testing.T) {
	stacktest.PoolModes(t, func(t *testing.T, ts *stacktest.Stack) {
		ctx := context.Background()
		listener := stacktest.Connect(t, ts.URL("demo", "demo", "acmesec", ""))
		// The guard refuses LISTEN and NOTIFY to tenants sharing a database
		// (a friendly early error); dynamic SQL gets past it. The advisory
		// lock pins the session to its backend in transaction pooling (a
		// LISTEN the proxy cannot see would not).
		for _, q := range []string{"SELECT pg_advisory_lock(1)", stacktest.Hidden("LISTEN c")} {
			if _, err := listener.Exec(ctx, q); err != nil {
				t.Fatalf("%s: %v", q, err)
			}
		}
		for _, slug := range []string{"client_alpha", "client_beta"} {
			c := stacktest.Connect(t, ts.URL("demo", "demo", slug, ""))
			for _, q := range []string{
				"NOTIFY c, '" + slug + "-notify'",
				"SELECT pg_notify('c', '" + slug + "-pg_notify')",
				stacktest.Hidden("SELECT pg_notify('c', '" + slug + "-hidden')"),
			} {
				if _, err := c.Exec(ctx, q); err != nil && stacktest.SQLState(err) != "0A000" {
					t.Fatalf("%s: %s: %v", slug, q, err)
				}
			}
			if _, code := stacktest.CallFunction(t, c, oidOf(t, c, "pg_notify(text, text)"), "c", slug+"-functioncall"); code != "" {
				t.Fatalf("%s: FunctionCall pg_notify: %s", slug, code)
			}
		}
		if _, err := ts.SrvConn(t, ts.Router.Config().SharedDatabase).Exec(ctx, "NOTIFY c, 'direct'"); err != nil {
			t.Fatal(err)
		}
		own := stacktest.Connect(t, ts.URL("demo", "demo", "acmesec", ""))
		if _, err := own.Exec(ctx, stacktest.Hidden("SELECT pg_notify('c', 'own')")); err != nil {
			t.Fatal(err)
		}
		var got []string
		for {
			wctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			n, err := listener.WaitForNotification(wctx)
			cancel()
			if errors.Is(err, context.DeadlineExceeded) || pgconnTimeout(err) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, n.Payload)
		}
		if len(got) != 1 || got[0] != "own" {
			t.Errorf("the listener got %q, want only its own tenant's \"own\"", got)
		}
	})
}

// pgconnTimeout reports whether err is pgx's wrapping of a timed-out wait.
func pgconnTimeout(err error) bool {
	var te interface{ Timeout() bool }
	return errors.As(err, &te) && te.Timeout()
}
