package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/stratum-hq/stratum-proxy/internal/pgcluster"
)

// EnvURL names the environment variable that points the tests at an
// existing server: a superuser URL, postgres://user:password@host:port/db.
const EnvURL = "STRATUM_TEST_DATABASE_URL"

const startTimeout = 2 * time.Minute

// server is the server Main provides, set before the tests run.
var server *Server

// Server is the PostgreSQL server the tests of a binary run against.
type Server struct {
	base     *url.URL // superuser URL; its path is replaced per database
	host     string
	port     int
	user     string
	password string
}

// Main runs a test binary's tests against a PostgreSQL server: the one named by
// STRATUM_TEST_DATABASE_URL (a superuser URL) when set, else a throwaway cluster it starts
// (pgcluster, data dir under /dev/shm when it can, else os.TempDir) and removes afterwards. Use from TestMain:
//
//	func TestMain(m *testing.M) { pgtest.Main(m) }
//
// It calls os.Exit with m.Run's code after cleaning up. When no server can be
// had it prints why and exits with code 1: the tests do not skip.
func Main(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	s, cleanup, err := provide()
	if err != nil {
		fmt.Fprintf(os.Stderr, "pgtest: %v\n", err)
		return 1
	}
	server = s
	code := m.Run()
	if err := cleanup(); err != nil {
		fmt.Fprintf(os.Stderr, "pgtest: %v\n", err)
		if code == 0 {
			code = 1
		}
	}
	return code
}

// provide returns the server named by EnvURL, or starts one, and a function
// that cleans up after it.
func provide() (*Server, func() error, error) {
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	if raw := os.Getenv(EnvURL); raw != "" {
		s, err := external(ctx, raw)
		return s, func() error { return nil }, err
	}
	return throwaway(ctx)
}

// external returns the server at the superuser URL raw, once it answers.
func external(ctx context.Context, raw string) (*Server, error) {
	s, err := parseServer(raw)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", EnvURL, err)
	}
	conn, err := pgconn.Connect(ctx, raw)
	if err != nil {
		return nil, fmt.Errorf("connecting to %s: %w", EnvURL, err)
	}
	_ = conn.Close(ctx)
	return s, nil
}

// parseServer describes the server at the URL raw.
func parseServer(raw string) (*Server, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("parsing url: %w", err)
	}
	if u.Scheme != "postgres" && u.Scheme != "postgresql" {
		return nil, fmt.Errorf("parsing url: want a postgres:// URL, got scheme %q", u.Scheme)
	}
	// pgconn fills in what the URL leaves out (port 5432, PGPASSWORD, ...).
	cfg, err := pgconn.ParseConfig(raw)
	if err != nil {
		return nil, fmt.Errorf("parsing url: %w", err)
	}
	return &Server{base: u, host: cfg.Host, port: int(cfg.Port), user: cfg.User, password: cfg.Password}, nil
}

// memoryDir is where throwaway clusters live when the machine has it: a
// tmpfs, so the many databases the tests create and drop cost no file
// system journal (a third less system time per test stack, measured).
const memoryDir = "/dev/shm"

// clusterDir makes a new directory for a cluster: under memoryDir when it
// takes one, else under os.TempDir.
func clusterDir(prefix string) (string, error) {
	if dir, err := os.MkdirTemp(memoryDir, prefix); err == nil {
		return dir, nil
	}
	return os.MkdirTemp("", prefix)
}

// throwaway starts a cluster in a new temporary directory (clusterDir).
func throwaway(ctx context.Context) (*Server, func() error, error) {
	dir, err := clusterDir("stratum-pgtest-")
	if err != nil {
		return nil, nil, fmt.Errorf("creating cluster directory: %w", err)
	}
	// When we are root the server runs as the postgres user, who must reach
	// the data directory inside.
	if err := os.Chmod(dir, 0o755); err != nil {
		os.RemoveAll(dir)
		return nil, nil, fmt.Errorf("creating cluster directory: %w", err)
	}
	c, err := pgcluster.Start(ctx, pgcluster.Config{
		DataDir:  filepath.Join(dir, "data"),
		Password: randomHex(16),
		// WAL is recycled sooner: the cluster may live in memory.
		Settings: map[string]string{"max_wal_size": "256MB", "min_wal_size": "32MB"},
	})
	if err != nil {
		os.RemoveAll(dir)
		return nil, nil, err
	}
	s, err := parseServer(c.URL("postgres"))
	if err != nil {
		return nil, nil, errors.Join(err, c.Remove(), os.RemoveAll(dir))
	}
	cleanup := func() error {
		if err := errors.Join(c.Remove(), os.RemoveAll(dir)); err != nil {
			return fmt.Errorf("removing test cluster: %w", err)
		}
		return nil
	}
	return s, cleanup, nil
}

// Get returns the server that Main provides. It fails the test when the test
// binary's TestMain does not call Main.
func Get(t testing.TB) *Server {
	t.Helper()
	if server == nil {
		t.Fatal("pgtest: no server: the package's TestMain must call pgtest.Main(m)")
	}
	return server
}

// Host returns the server's host.
func (s *Server) Host() string { return s.host }

// Port returns the server's port.
func (s *Server) Port() int { return s.port }

// SuperUser returns the superuser's name.
func (s *Server) SuperUser() string { return s.user }

// Password returns the superuser's password.
func (s *Server) Password() string { return s.password }

// URL returns the superuser's URL for database on the server: the server's
// URL with its database replaced, keeping its query parameters.
func (s *Server) URL(database string) string {
	u := *s.base
	u.Path = "/" + database
	u.RawPath = "/" + url.PathEscape(database)
	return u.String()
}

// NewDatabase creates a fresh empty database owned by the superuser, named
// UniqueName(prefix), and drops it (WITH (FORCE)) when the test ends. It
// returns the name, which needs no quoting in SQL.
func (s *Server) NewDatabase(t testing.TB, prefix string) string {
	t.Helper()
	name := UniqueName(prefix)
	ident := pgx.Identifier{name}.Sanitize()
	// template0 takes no connections, so creations never collide on it.
	s.Exec(t, "postgres", "create database "+ident+" template template0")
	t.Cleanup(func() {
		err := s.exec(context.Background(), "postgres", "drop database if exists "+ident+" with (force)")
		if err != nil {
			t.Errorf("pgtest: dropping database %s: %v", name, err)
		}
	})
	return name
}

// UniqueName returns prefix_<8 random hex digits>, for databases, roles and
// the like. The prefix is lower-cased and every character outside [a-z0-9_]
// becomes "_"; an empty prefix or one starting with a digit gets "t" in
// front, and a long one is cut so the name fits PostgreSQL's 63 bytes. The
// result needs no quoting in SQL.
func UniqueName(prefix string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(prefix) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_' {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	p := b.String()
	if p == "" || p[0] >= '0' && p[0] <= '9' {
		p = "t" + p
	}
	const maxPrefix = 63 - len("_12345678")
	if len(p) > maxPrefix {
		p = p[:maxPrefix]
	}
	return p + "_" + randomHex(4)
}

// Exec runs sql with args as the superuser on database, failing the test on
// error. Without args, sql may hold several statements.
func (s *Server) Exec(t testing.TB, database, sql string, args ...any) {
	t.Helper()
	if err := s.exec(context.Background(), database, sql, args...); err != nil {
		t.Fatalf("pgtest: exec on database %s: %v", database, err)
	}
}

func (s *Server) exec(ctx context.Context, database, sql string, args ...any) error {
	conn, err := pgx.Connect(ctx, s.URL(database))
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, sql, args...)
	return err
}

// randomHex returns n random bytes in hex.
func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // never fails
	return hex.EncodeToString(b)
}
