package catalog

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// namedLockClass is the first half of the two-key advisory locks WithLock
// takes ("lock" in ASCII); the second half is the name's hash.
const namedLockClass int32 = 0x6c6f636b

// WithLock runs fn while holding the catalog's advisory lock called name,
// waiting for it as long as ctx allows. Proxy replicas sharing the catalog
// serialise their maintenance of the backends this way (preparing the shared
// database, applying the app schema to one placement). The lock lives in the
// catalog database, which no tenant can reach, so no tenant can take it
// first and stall that maintenance; an advisory lock in a database tenants
// share could be. It is transaction-scoped on a catalog connection of its
// own, held for the whole of fn and released however fn ends (a lost
// connection releases it too). fn may use the catalog: it runs on other
// connections of the pool (which therefore needs one spare per concurrent
// WithLock).
func (c *Catalog) WithLock(ctx context.Context, name string, fn func(ctx context.Context) error) error {
	return pgx.BeginFunc(ctx, c.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_catalog.pg_advisory_xact_lock($1, pg_catalog.hashtext($2))`, namedLockClass, name); err != nil {
			return fmt.Errorf("taking catalog lock %q: %w", name, err)
		}
		return fn(ctx)
	})
}
