package main

import (
	"context"
	"net"
	"sort"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap/zaptest"

	"github.com/stratum-hq/stratum-proxy/internal/backends"
	"github.com/stratum-hq/stratum-proxy/internal/pgtest"
	"github.com/stratum-hq/stratum-proxy/internal/secrets"
	"github.com/stratum-hq/stratum-proxy/router"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// testStack is a whole stratum-proxy (catalog, router, proxy, admin) on the
// test server, seeded with the demo tree, listening on loopback ports.
type testStack struct {
	*stack
	srv       *pgtest.Server
	proxyAddr string
	adminURL  string
	adminKey  string
}

// startTestStack starts a stack with its own catalog database, shared database
// and tenants on the shared test server, and removes all of them when the
// test ends.
func startTestStack(t *testing.T, opts ...func(*stackConfig)) *testStack {
	t.Helper()
	srv := pgtest.Get(t)
	catdb := srv.NewDatabase(t, "cat")
	return startStackOn(t, srv.URL(catdb), backends.Backend{
		Host: srv.Host(), Port: srv.Port(), AdminUser: srv.SuperUser(), AdminPassword: srv.Password(), SSLMode: "disable",
	}, opts...)
}

// startStackOn starts a stack with the catalog at catalogURL and the one
// backend "main" given, seeded with the demo tree. ts.srv is the shared
// pgtest server (ts.srvConn reaches it, even when the backend is another).
func startStackOn(t *testing.T, catalogURL string, backend backends.Backend, opts ...func(*stackConfig)) *testStack {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	keys, err := secrets.NewKeyText("k1")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cert, key, err := ensureDevCert(dir)
	if err != nil {
		t.Fatal(err)
	}
	sc := &stackConfig{
		Listen: "127.0.0.1:0", AdminListen: "127.0.0.1:0",
		CatalogURL: catalogURL, SecretKeys: keys, BootstrapKey: "test-admin-key",
		TLSCert: cert, TLSKey: key, ShutdownGrace: time.Second,
		Router: router.Config{Set: backends.Set{
			Backends:       map[string]backends.Backend{"main": backend},
			SharedDatabase: pgtest.UniqueName("app"),
		}},
	}
	for _, o := range opts {
		o(sc)
	}
	log := zaptest.NewLogger(t)
	st, err := startStack(ctx, sc, log)
	if err != nil {
		t.Fatalf("starting stack: %v", err)
	}
	ts := &testStack{stack: st, srv: pgtest.Get(t), proxyAddr: st.proxyLn.Addr().String(),
		adminURL: "http://" + st.adminLn.Addr().String(), adminKey: sc.BootstrapKey}
	t.Cleanup(func() { ts.teardown(t) })
	if err := seedDemo(ctx, st.prov, log); err != nil {
		t.Fatalf("seeding: %v", err)
	}
	return ts
}

// teardown stops serving and drops every tenant (deepest first), the shared
// database and the group roles, so the server is left as it was.
func (ts *testStack) teardown(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ts.admin.Shutdown(ctx)
	ts.proxy.Shutdown(ctx)
	tenants, err := ts.cat.ListTenants(ctx)
	if err != nil {
		t.Errorf("teardown: %v", err)
	}
	sort.Slice(tenants, func(i, j int) bool { return tenants[i].Depth > tenants[j].Depth })
	for _, tn := range tenants {
		if err := ts.prov.DropTenant(ctx, tn.ID); err != nil {
			t.Errorf("teardown: dropping %s: %v", tn.Slug, err)
		}
	}
	if err := ts.prov.DropShared(ctx); err != nil {
		t.Errorf("teardown: %v", err)
	}
	ts.close()
}

// url is a connection string to the proxy for user/password and tenant
// (empty: none named), with extra query parameters appended.
func (ts *testStack) url(user, password, tenant, extra string) string {
	host, port, _ := net.SplitHostPort(ts.proxyAddr)
	u := "postgres://" + user + ":" + password + "@" + net.JoinHostPort(host, port) + "/app?sslmode=disable"
	if tenant != "" {
		u += "&options=-c%20stratum.tenant%3D" + tenant
	}
	if extra != "" {
		u += "&" + extra
	}
	return u
}

func (ts *testStack) port() int {
	_, p, _ := net.SplitHostPort(ts.proxyAddr)
	n, _ := strconv.Atoi(p)
	return n
}

// srvConn connects to a database on the test server as the superuser,
// bypassing the proxy, to check what PostgreSQL really holds.
func (ts *testStack) srvConn(t *testing.T, database string) *pgx.Conn {
	t.Helper()
	return connect(t, ts.srv.URL(database))
}

// poolModes runs f once per pool mode, each on its own stack.
func poolModes(t *testing.T, f func(t *testing.T, ts *testStack)) {
	for _, mode := range []string{"session", "transaction"} {
		t.Run(mode, func(t *testing.T) {
			f(t, startTestStack(t, func(sc *stackConfig) { sc.PoolMode = mode }))
		})
	}
}
