package stacktest

import (
	"bytes"
	"cmp"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"sort"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
	"go.uber.org/zap/zaptest"

	"github.com/stratum-hq/stratum-proxy/catalog"
	"github.com/stratum-hq/stratum-proxy/internal/backends"
	"github.com/stratum-hq/stratum-proxy/internal/pgtest"
	"github.com/stratum-hq/stratum-proxy/internal/secrets"
	"github.com/stratum-hq/stratum-proxy/provision"
	"github.com/stratum-hq/stratum-proxy/router"
	"github.com/stratum-hq/stratum-proxy/server"
)

// AdminKey is the bootstrap admin key of every test stack.
const AdminKey = "test-admin-key"

// Database is the app's database name clients of every test stack connect
// with (URL), as the dev deployment's do. The stack's shared database has a
// name of its own on the test server, so the stack names this one in
// proxy.Config.DatabaseNames; other database names are refused (3D000)
// unless mapped to a tenant.
const Database = "app"

// DemoSlugs are the seeded demo tenants, in the order server.DemoTree
// creates them.
var DemoSlugs = func() []string {
	s := make([]string, len(server.DemoTree))
	for i, t := range server.DemoTree {
		s[i] = t.Slug
	}
	return s
}()

// Option changes a test stack's configuration before it starts.
type Option func(*server.Config)

// Stack is a whole stratum-proxy on the test server, listening on loopback.
type Stack struct {
	*server.Stack
	// Srv is the test binary's PostgreSQL server; SrvConn reaches it
	// directly (even when the stack's backend is another server).
	Srv *pgtest.Server
	// ProxyAddr is host:port of the proxy, AdminURL the admin API's base URL
	// and AdminKey its bootstrap key.
	ProxyAddr, AdminURL, AdminKey string
	// CatalogURL reaches the stack's catalog database directly, for tests
	// that change it with SQL where no route does yet.
	CatalogURL string
	// PoolMode is the proxy's pool mode ("session", the default, or
	// "transaction"; proxy.PoolSession, proxy.PoolTransaction), for tests that share a stack per pool mode
	// (PoolModes) but run some of their cases in one mode only.
	PoolMode string
	// backends are the stack's backend servers, for the teardown's check
	// that nothing the stack made is left on them.
	backends backends.Set
}

// Start starts a stack with its own catalog database, shared database and
// tenants on the test server, seeded with the demo tree and user, and removes
// all of them when the test ends.
func Start(t *testing.T, opts ...Option) *Stack {
	t.Helper()
	return StartOn(t, catalogOnTestServer(t), TestBackend(t), opts...)
}

// StartEmpty is Start without the demo tree, user and schema.
func StartEmpty(t *testing.T, opts ...Option) *Stack {
	t.Helper()
	return start(t, catalogOnTestServer(t), TestBackend(t), false, opts)
}

// StartOn starts a seeded stack with the catalog at catalogURL and the one
// backend "main" given.
func StartOn(t *testing.T, catalogURL string, backend backends.Backend, opts ...Option) *Stack {
	t.Helper()
	return start(t, catalogURL, backend, true, opts)
}

// TestBackend is the test server as a backend, reached as its superuser.
func TestBackend(t testing.TB) backends.Backend {
	srv := pgtest.Get(t)
	return backends.Backend{Host: srv.Host(), Port: srv.Port(), AdminUser: srv.SuperUser(),
		AdminPassword: srv.Password(), SSLMode: "disable"}
}

func catalogOnTestServer(t *testing.T) string {
	srv := pgtest.Get(t)
	return srv.URL(srv.NewDatabase(t, "cat"))
}

func start(t *testing.T, catalogURL string, backend backends.Backend, seed bool, opts []Option) *Stack {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	keys, err := secrets.NewKeyText("k1")
	if err != nil {
		t.Fatal(err)
	}
	cert, key, err := server.EnsureSelfSignedCert(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	cfg := server.Config{
		Listen: "127.0.0.1:0", AdminListen: "127.0.0.1:0",
		CatalogURL: catalogURL, SecretKeys: keys,
		TLSCertFile: cert, TLSKeyFile: key,
		Router: router.Config{Set: backends.Set{
			Backends:       map[string]backends.Backend{"main": backend},
			SharedDatabase: pgtest.UniqueName("app"),
		}},
	}
	cfg.Admin.BootstrapKey = AdminKey
	cfg.Proxy.ShutdownGrace = time.Second
	cfg.Proxy.DatabaseNames = []string{Database}
	for _, o := range opts {
		o(&cfg)
	}
	log := zaptest.NewLogger(t)
	st, err := server.Start(ctx, cfg, log)
	if err != nil {
		t.Fatalf("starting stack: %v", err)
	}
	ts := &Stack{Stack: st, Srv: pgtest.Get(t), ProxyAddr: st.ProxyAddr(),
		AdminURL: "http://" + st.AdminAddr(), AdminKey: cfg.Admin.BootstrapKey, CatalogURL: catalogURL,
		PoolMode: cmp.Or(cfg.Proxy.PoolMode, "session"), backends: cfg.Router.Set}
	if err := ts.backends.FillDefaults(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ts.Teardown(t) })
	if seed {
		if err := server.SeedDemo(ctx, st.Provisioner, log); err != nil {
			t.Fatalf("seeding: %v", err)
		}
	}
	return ts
}

// Teardown stops serving and drops every tenant (deepest first), the shared
// database and the group roles, so the server is left as it was. Start
// registers it as a cleanup; tests call it only to tear down early.
func (ts *Stack) Teardown(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ts.Shutdown(ctx)
	made := ts.made(ctx, t)
	DropAll(ctx, t, ts.Catalog, ts.Provisioner)
	ts.Close()
	ts.checkGone(ctx, t, made)
}

// madeNames are the roles and databases a stack made on its shared backend.
type madeNames struct{ roles, databases []string }

// made lists the roles and databases the stack made on its shared backend:
// each tenant's roles (one per access level) and database, the shared
// database and the group roles.
func (ts *Stack) made(ctx context.Context, t *testing.T) (names madeNames) {
	t.Helper()
	names.databases = append(names.databases, ts.backends.SharedDatabase)
	if dep, err := ts.Catalog.DeploymentID(ctx); err == nil {
		names.roles = append(names.roles, "stratum_"+dep+"_shared", "stratum_"+dep+"_shared_w",
			"stratum_"+dep+"_shared_r", "stratum_"+dep+"_schema", "stratum_"+dep+"_lo_write")
	}
	tenants, _ := ts.Catalog.ListTenants(ctx) // DropAll reports a failure
	for _, tn := range tenants {
		if tn.Backend != ts.backends.SharedBackend {
			continue // another server: not checked
		}
		names.roles = append(names.roles, tn.RoleName, tn.RoleName+"_w", tn.RoleName+"_r")
		if tn.Isolation == catalog.IsolationDatabase {
			names.databases = append(names.databases, tn.Database)
		}
	}
	return names
}

// checkGone fails the test for every role or database of made that is still
// on the shared backend: a test leaves the server as it found it.
func (ts *Stack) checkGone(ctx context.Context, t *testing.T, made madeNames) {
	t.Helper()
	conn, err := ts.backends.AdminConn(ctx, ts.backends.SharedBackend, ts.backends.Backends[ts.backends.SharedBackend].AdminDatabase)
	if err != nil {
		t.Errorf("teardown: checking what is left: %v", err)
		return
	}
	defer conn.Close(ctx)
	for _, q := range []struct {
		what, sql string
		names     []string
	}{
		{"role", `SELECT rolname FROM pg_catalog.pg_roles WHERE rolname = ANY($1) ORDER BY 1`, made.roles},
		{"database", `SELECT datname FROM pg_catalog.pg_database WHERE datname = ANY($1) ORDER BY 1`, made.databases},
	} {
		rows, err := conn.Query(ctx, q.sql, q.names)
		if err != nil {
			t.Errorf("teardown: listing %ss left: %v", q.what, err)
			continue
		}
		left, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil || len(left) > 0 {
			t.Errorf("teardown: %ss left on the server: %v %v", q.what, left, err)
		}
	}
}

// DropAll drops every tenant of the catalog (deepest first) and the shared
// database with its group roles; failures are test errors.
func DropAll(ctx context.Context, t testing.TB, cat *catalog.Catalog, p *provision.Provisioner) {
	t.Helper()
	tenants, err := cat.ListTenants(ctx)
	if err != nil {
		t.Errorf("teardown: listing tenants: %v", err)
	}
	sort.SliceStable(tenants, func(i, j int) bool { return tenants[i].Depth > tenants[j].Depth })
	for _, tn := range tenants {
		if err := p.DropTenant(ctx, tn.ID); err != nil {
			t.Errorf("teardown: dropping tenant %s: %v", tn.Slug, err)
		}
	}
	if err := p.DropShared(ctx); err != nil {
		t.Errorf("teardown: dropping shared database: %v", err)
	}
}

// URL is a connection string to the proxy for user/password and tenant
// (empty: none named) on the app's database name (Database), with extra
// query parameters appended.
func (ts *Stack) URL(user, password, tenant, extra string) string {
	return ts.DatabaseURL(Database, user, password, tenant, extra)
}

// DatabaseURL is URL with another database name.
func (ts *Stack) DatabaseURL(database, user, password, tenant, extra string) string {
	u := "postgres://" + user + ":" + password + "@" + ts.ProxyAddr + "/" + database + "?sslmode=disable"
	if tenant != "" {
		u += "&options=-c%20stratum.tenant%3D" + tenant
	}
	if extra != "" {
		u += "&" + extra
	}
	return u
}

// Port is the proxy's port.
func (ts *Stack) Port() int {
	_, p, _ := net.SplitHostPort(ts.ProxyAddr)
	n, _ := strconv.Atoi(p)
	return n
}

// SrvConn connects to a database on the test server as the superuser,
// bypassing the proxy, to check what PostgreSQL really holds.
func (ts *Stack) SrvConn(t *testing.T, database string) *pgx.Conn {
	t.Helper()
	return Connect(t, ts.Srv.URL(database))
}

// Admin sends an admin API request as the bootstrap key (body, when not
// nil, as JSON) and returns the status and body.
func (ts *Stack) Admin(method, path string, body any) (int, string, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, "", err
		}
		rd = bytes.NewReader(b)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, ts.AdminURL+path, rd)
	if err != nil {
		return 0, "", err
	}
	req.Header.Set("Authorization", "Bearer "+ts.AdminKey)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), nil
}

// AdminWant sends an admin API request as the bootstrap key and fails the
// test unless the answer has status want. It returns the body.
func (ts *Stack) AdminWant(t *testing.T, method, path string, body any, want int) string {
	t.Helper()
	st, b, err := ts.Admin(method, path, body)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	if st != want {
		t.Fatalf("%s %s: status %d, want %d; body %s", method, path, st, want, b)
	}
	return b
}

// PoolModes runs f once per pool mode, each on its own stack, the two in
// parallel (subtests: they run after the calling test function returns).
func PoolModes(t *testing.T, f func(t *testing.T, ts *Stack), opts ...Option) {
	for _, mode := range []string{"session", "transaction"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			f(t, Start(t, append([]Option{func(c *server.Config) { c.Proxy.PoolMode = mode }}, opts...)...))
		})
	}
}

// Connect opens a pgx connection, closed when the test ends.
func Connect(t *testing.T, url string) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatalf("connecting to %s: %v", url, err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

// Count runs a query returning one integer and fails the test on error.
func Count(t *testing.T, c *pgx.Conn, sql string, args ...any) int {
	t.Helper()
	var n int
	if err := c.QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return n
}

// SQLState is the SQLSTATE of a PostgreSQL error, "" for nil or any other error.
func SQLState(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}

// Hidden is stmt as a DO block that EXECUTEs it from base64, so that the
// proxy's SQL guard (a second layer) cannot read it: what it does must be
// stopped by PostgreSQL.
func Hidden(stmt string) string {
	b := base64.StdEncoding.EncodeToString([]byte(stmt))
	return "DO $plant$ BEGIN EXECUTE pg_catalog.convert_from(pg_catalog.decode('" + b + "', 'base64'), 'UTF8'); END $plant$"
}

// CallFunction calls the function with this OID through the FunctionCall
// protocol message (no SQL text at all), with text arguments, and returns
// its result and the SQLSTATE of its error ("" when it ran).
func CallFunction(t *testing.T, c *pgx.Conn, oid uint32, args ...string) (result []byte, code string) {
	t.Helper()
	fc := &pgproto3.FunctionCall{Function: oid, ArgFormatCodes: []uint16{0}}
	for _, a := range args {
		fc.Arguments = append(fc.Arguments, []byte(a))
	}
	pc := c.PgConn()
	pc.Frontend().Send(fc)
	if err := pc.Frontend().Flush(); err != nil {
		t.Fatalf("sending FunctionCall: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for {
		m, err := pc.ReceiveMessage(ctx)
		if err != nil {
			t.Fatalf("reading the FunctionCall's reply: %v", err)
		}
		switch m := m.(type) {
		case *pgproto3.ErrorResponse:
			code = m.Code
		case *pgproto3.FunctionCallResponse:
			result = append([]byte(nil), m.Result...)
		case *pgproto3.ReadyForQuery:
			return result, code
		}
	}
}
