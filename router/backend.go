package router

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
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
