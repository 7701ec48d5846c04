package backends

import (
	"context"
	"fmt"
	"net"
	"regexp"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
)

// Backend is one PostgreSQL server that tenant data can live on.
type Backend struct {
	// Host and Port of the server.
	Host string `yaml:"host"`
	Port int    `yaml:"port"`
	// AdminUser and AdminPassword name a role that may create roles and
	// databases (a superuser in practice); used only for provisioning.
	AdminUser     string `yaml:"admin_user"`
	AdminPassword string `yaml:"-"`
	// AdminDatabase is where the admin connects for cluster-wide work; default "postgres".
	AdminDatabase string `yaml:"admin_database"`
	// SSLMode for connections to this server: disable, prefer or require; default prefer.
	SSLMode string `yaml:"sslmode"`
	// MaxConnections caps the connections the proxy opens to this server,
	// across all tenants; default 80 (keep it below the server's max_connections).
	MaxConnections int `yaml:"max_connections"`
}

// Addr is the server's host:port.
func (b Backend) Addr() string { return net.JoinHostPort(b.Host, strconv.Itoa(b.Port)) }

// ConnString builds a keyword/value connection string to the server; values
// are quoted so no field can inject another.
func (b Backend) ConnString(user, password, database string) string {
	q := func(s string) string {
		return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'"
	}
	return strings.Join([]string{
		"host=" + q(b.Host), "port=" + strconv.Itoa(b.Port), "user=" + q(user),
		"password=" + q(password), "dbname=" + q(database), "sslmode=" + b.SSLMode,
	}, " ")
}

// Set is the backend servers of a deployment and which of them hold what.
// Zero fields get the defaults noted (FillDefaults).
type Set struct {
	// Backends by name. At least one is required.
	Backends map[string]Backend
	// SharedBackend names the backend holding the shared database; default: the
	// only backend, or "main".
	SharedBackend string
	// SharedDatabase is the database of shared and schema tenants; default "app".
	SharedDatabase string
	// DefaultBackend is where database-isolated tenants go when none is named;
	// default SharedBackend.
	DefaultBackend string
}

var identPattern = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)

// FillDefaults fills in the defaults of the set and of each backend, and
// checks what is left. It is idempotent. The backends go into a new map: a
// copy of the Set (a router's, a provisioner's) may share the old one with
// goroutines reading it, so it is never written.
func (s *Set) FillDefaults() error {
	if len(s.Backends) == 0 {
		return fmt.Errorf("backend config: no backends")
	}
	filled := make(map[string]Backend, len(s.Backends))
	for name, b := range s.Backends {
		if b.AdminDatabase == "" {
			b.AdminDatabase = "postgres"
		}
		if b.MaxConnections <= 0 {
			b.MaxConnections = 80
		}
		if b.SSLMode == "" {
			b.SSLMode = "prefer"
		}
		switch b.SSLMode {
		case "disable", "prefer", "require":
		default:
			return fmt.Errorf("backend %q: sslmode %q: use disable, prefer or require", name, b.SSLMode)
		}
		if b.Host == "" || b.Port == 0 || b.AdminUser == "" {
			return fmt.Errorf("backend %q: host, port and admin_user are required", name)
		}
		filled[name] = b
	}
	s.Backends = filled
	if s.SharedBackend == "" {
		if len(s.Backends) == 1 {
			for name := range s.Backends {
				s.SharedBackend = name
			}
		} else {
			s.SharedBackend = "main"
		}
	}
	if _, ok := s.Backends[s.SharedBackend]; !ok {
		return fmt.Errorf("backend config: shared backend %q is not configured", s.SharedBackend)
	}
	if s.SharedDatabase == "" {
		s.SharedDatabase = "app"
	}
	if !identPattern.MatchString(s.SharedDatabase) {
		return fmt.Errorf("backend config: shared database %q: use lower-case letters, digits and underscores", s.SharedDatabase)
	}
	if s.DefaultBackend == "" {
		s.DefaultBackend = s.SharedBackend
	}
	if _, ok := s.Backends[s.DefaultBackend]; !ok {
		return fmt.Errorf("backend config: default backend %q is not configured", s.DefaultBackend)
	}
	return nil
}

// PinnedSearchPath is the search_path of every connection the proxy opens for
// its own maintenance (admin rights or a tenant's): only the system catalog,
// then the session's own temporary schema (named last, so that temporary
// objects cannot shadow catalog ones; functions and operators are never looked
// up there). No tenant can create anything in either, so an unqualified name in
// the proxy's SQL cannot reach a tenant's object (CVE-2018-1058).
const PinnedSearchPath = "pg_catalog, pg_temp"

// AdvisorySchema is the schema, in the shared database, of the advisory-lock
// functions tenants call: same-named wrappers of pg_catalog's, which key each
// lock on the calling tenant so that tenants sharing the database never see
// or block each other's locks (provision makes them; pg_catalog's own are
// closed to tenants there).
const AdvisorySchema = "stratum_advisory"

// SessionLockNotice is the SQLSTATE of the NOTICE the advisory-lock wrappers
// send when they take a session-level lock: the proxy, which cannot read
// dynamic SQL or FunctionCall arguments, learns from it that the session must
// keep its backend in transaction pooling, and drops the notice. A tenant
// faking it only pins its own session.
const SessionLockNotice = "SAL01"

// SharedSearchPath is the search_path of a tenant's sessions in the shared
// database: first schema, where its tables are (public for shared tenants, its
// own for schema tenants; also where unqualified CREATEs go), then the
// advisory-lock wrappers, then pg_catalog. pg_catalog is named because
// PostgreSQL searches it first when it is not, and the wrappers must come
// before it; the price is that the tenant's own objects in its schema shadow
// pg_catalog's in its own sessions. Provision sets it as the role's default
// in the shared database; the router sends it at startup for schema tenants.
func SharedSearchPath(schema string) string {
	return pgx.Identifier{schema}.Sanitize() + ", " + AdvisorySchema + ", pg_catalog"
}

// AdminConn opens an admin connection to a database on the backend called
// name, with the search_path pinned to PinnedSearchPath. The caller closes it.
func (s *Set) AdminConn(ctx context.Context, name, database string) (*pgx.Conn, error) {
	b, ok := s.Backends[name]
	if !ok {
		return nil, fmt.Errorf("backend %q is not configured", name)
	}
	return s.RoleConn(ctx, name, database, b.AdminUser, b.AdminPassword)
}

// RoleConn opens a connection to a database on the backend called name,
// logged in as role with its password, and the search_path pinned to
// PinnedSearchPath. With a tenant's backend role it is how the proxy does
// maintenance with the tenant's rights: the session user itself is the
// tenant, so nothing that runs in it can RESET ROLE back to more rights. The
// caller closes it.
func (s *Set) RoleConn(ctx context.Context, name, database, role, password string) (*pgx.Conn, error) {
	b, ok := s.Backends[name]
	if !ok {
		return nil, fmt.Errorf("backend %q is not configured", name)
	}
	cfg, err := pgx.ParseConfig(b.ConnString(role, password, database))
	if err != nil {
		return nil, fmt.Errorf("configuring connection: %w", err)
	}
	cfg.RuntimeParams["search_path"] = PinnedSearchPath
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connecting to backend %q database %q as %q: %w", name, database, role, err)
	}
	return conn, nil
}
