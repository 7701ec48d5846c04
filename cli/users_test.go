package cli

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/stratum-hq/stratum-proxy/internal/stacktest"
)

// TestCLIUsers: user create|list|show|passwd|rebind|delete through the
// admin API, and what a login through the proxy sees after each: a changed
// password or a deleted user no longer logs in, at once.
func TestCLIUsers(t *testing.T) {
	t.Parallel()
	ts := stacktest.StartEmpty(t)
	env := map[string]string{"STRATUM_ADMIN_URL": ts.AdminURL, "STRATUM_ADMIN_KEY": cliTestKey}
	run := func(stdin string, args ...string) cliResult {
		t.Helper()
		var out, errb bytes.Buffer
		code := Run(args, Env{Stdout: &out, Stderr: &errb, Getenv: func(k string) string { return env[k] },
			Stdin: strings.NewReader(stdin)})
		t.Logf("stratum-proxy %s -> %d\n%s%s", strings.Join(args, " "), code, out.String(), errb.String())
		return cliResult{code: code, stdout: out.String(), stderr: errb.String()}
	}
	login := func(user, pw string) error {
		ctx := context.Background()
		conn, err := pgx.Connect(ctx, ts.URL(user, pw, "acme", ""))
		if err != nil {
			return err
		}
		defer conn.Close(ctx)
		var n int
		return conn.QueryRow(ctx, "SELECT 1").Scan(&n)
	}

	// loginSettles waits for a login to give the wanted outcome: the router
	// learns of a catalog change from its NOTIFY, a few milliseconds later.
	loginSettles := func(user, pw string, works bool) error {
		deadline := time.Now().Add(5 * time.Second)
		for {
			err := login(user, pw)
			if (err == nil) == works || time.Now().After(deadline) {
				return err
			}
			time.Sleep(20 * time.Millisecond)
		}
	}

	run("", "tenant", "create", "acme").ok(t)
	run("", "tenant", "create", "acme_eu", "--parent", "acme").ok(t)
	run("pw-one\n", "user", "create", "app_user", "--tenant", "acme", "--password-stdin").ok(t)
	if err := login("app_user", "pw-one"); err != nil {
		t.Fatalf("the new user does not log in: %v", err)
	}
	if r := run("", "user", "create", "demo.acme", "--tenant", "acme", "--password", "pw-x"); r.code != 1 || !strings.Contains(r.stderr, "user name") {
		t.Errorf("a name with a dot: exit %d, stderr %q", r.code, r.stderr)
	}
	if r := run("", "user", "create", "other", "--tenant", "acme"); r.code != 2 {
		t.Errorf("no password: exit %d, want 2", r.code)
	}
	if r := run("", "user", "create", "--help"); r.code != 0 {
		t.Errorf("--help: exit %d", r.code)
	}
	if r := run("", "user", "list", "--bogus"); r.code != 2 {
		t.Errorf("bad flag: exit %d", r.code)
	}
	row := rowFor(tableRows(run("", "user", "list").ok(t).stdout), "app_user")
	if len(row) < 3 || row[1] != "acme" || row[2] != "false" {
		t.Errorf("user list row %v", row)
	}
	if out := run("", "user", "show", "app_user").ok(t).stdout; !strings.Contains(out, "app_user") || strings.Contains(out, "SCRAM") {
		t.Errorf("user show: %s", out)
	}

	run("", "user", "passwd", "app_user", "--password", "pw-two").ok(t)
	if err := loginSettles("app_user", "pw-one", false); err == nil {
		t.Errorf("the old password still logs in after passwd")
	}
	if err := login("app_user", "pw-two"); err != nil {
		t.Errorf("the new password does not log in: %v", err)
	}
	run("", "user", "rebind", "app_user", "acme_eu", "--can-switch", "true").ok(t)
	u, err := ts.Catalog.GetUser(context.Background(), "app_user")
	if err != nil || !u.CanSwitch {
		t.Errorf("after rebind: %+v %v", u, err)
	}
	if err := loginSettles("app_user", "pw-two", false); err == nil {
		t.Errorf("rebound to acme_eu, the user still reaches acme")
	}
	run("", "user", "rebind", "app_user", "acme").ok(t)
	if err := loginSettles("app_user", "pw-two", true); err != nil {
		t.Fatalf("rebound to acme, the user does not log in: %v", err)
	}

	// A database name mapped to acme names it on connect (no tenant named).
	dbLogin := func() error {
		ctx := context.Background()
		conn, err := pgx.Connect(ctx, strings.Replace(ts.URL("app_user", "pw-two", "", ""), "/app?", "/acme_db?", 1))
		if err != nil {
			return err
		}
		return conn.Close(ctx)
	}
	if err := dbLogin(); err == nil {
		t.Errorf("an unmapped database name identified a tenant")
	}
	if out := run("", "tenant", "db-map", "acme", "acme_db").ok(t).stdout; !strings.Contains(out, "acme_db") {
		t.Errorf("db-map does not show the mapping: %s", out)
	}
	if r := run("", "tenant", "db-map", "acme_eu", "acme_db"); r.code != 1 {
		t.Errorf("mapping a taken name: exit %d, want 1", r.code)
	}
	if r := run("", "tenant", "db-map", "acme", "postgres"); r.code != 1 {
		t.Errorf("mapping postgres: exit %d, want 1", r.code)
	}
	if err := dbLogin(); err != nil {
		t.Errorf("the mapped database name does not log in: %v", err)
	}
	run("", "tenant", "db-unmap", "acme", "acme_db").ok(t)
	deadline := time.Now().Add(5 * time.Second)
	for dbLogin() == nil && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if err := dbLogin(); err == nil {
		t.Errorf("an unmapped database name still identifies the tenant")
	}

	run("", "user", "delete", "app_user").ok(t)
	if err := loginSettles("app_user", "pw-two", false); err == nil {
		t.Errorf("a deleted user still logs in")
	}
	if r := run("", "user", "show", "app_user"); r.code != 1 {
		t.Errorf("show of a deleted user: exit %d", r.code)
	}
}
