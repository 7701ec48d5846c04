package router

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// connString builds a keyword/value connection string; values are quoted so no
// field can inject another.
func connString(b Backend, user, password, database string) string {
	q := func(s string) string {
		return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'"
	}
	return strings.Join([]string{
		"host=" + q(b.Host), "port=" + strconv.Itoa(b.Port), "user=" + q(user),
		"password=" + q(password), "dbname=" + q(database), "sslmode=" + b.SSLMode,
	}, " ")
}

func (b Backend) addr() string { return net.JoinHostPort(b.Host, strconv.Itoa(b.Port)) }

// adminConn opens an admin connection to a database on backend name. The
// caller closes it.
func (r *Router) adminConn(ctx context.Context, backend, database string) (*pgx.Conn, error) {
	b, ok := r.cfg.Backends[backend]
	if !ok {
		return nil, fmt.Errorf("backend %q is not configured", backend)
	}
	cfg, err := pgx.ParseConfig(connString(b, b.AdminUser, b.AdminPassword, database))
	if err != nil {
		return nil, fmt.Errorf("configuring admin connection: %w", err)
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connecting to backend %q database %q as admin: %w", backend, database, err)
	}
	return conn, nil
}

// dialTenant connects to the tenant's placement as the tenant's role with the
// client's startup parameters, and returns the raw connection.
func (r *Router) dialTenant(ctx context.Context, p *Placement, params map[string]string) (*ServerConn, error) {
	b := r.cfg.Backends[p.Tenant.Backend]
	cfg, err := pgconn.ParseConfig(connString(b, p.Tenant.RoleName, p.password, p.Tenant.Database))
	if err != nil {
		return nil, fmt.Errorf("configuring backend connection: %w", err)
	}
	cfg.ConnectTimeout = r.cfg.DialTimeout
	for k, v := range params {
		cfg.RuntimeParams[k] = v
	}
	// The tenant's slug as a session default on the backend, so that SHOW
	// stratum.tenant and current_setting('stratum.tenant') answer in every
	// protocol. It is informational: isolation rests on the role.
	cfg.RuntimeParams["stratum.tenant"] = p.Tenant.Slug
	if p.Tenant.Isolation == "schema" {
		// The role's own default says the same; sending it makes the placement
		// explicit even for a role whose defaults were changed by hand.
		cfg.RuntimeParams["search_path"] = p.Tenant.Schema
	}
	conn, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connecting to backend %q for tenant %q: %w", p.Tenant.Backend, p.Tenant.Slug, err)
	}
	hj, err := conn.Hijack()
	if err != nil {
		conn.Close(ctx)
		return nil, fmt.Errorf("taking over backend connection: %w", err)
	}
	return newServerConn(hj, b.addr(), r.cfg.MaxMessageSize), nil
}
