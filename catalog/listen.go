package catalog

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// Change is one catalog change announced over NOTIFY: the table and the row's key.
type Change struct {
	Table string
	Key   string
}

// Listen calls fn for every catalog change until ctx ends. When the connection
// breaks it calls fn with a zero Change (meaning: forget everything cached, some
// changes may have been missed) and reconnects after a pause.
func (c *Catalog) Listen(ctx context.Context, fn func(Change)) {
	for ctx.Err() == nil {
		err := c.listenOnce(ctx, fn)
		if ctx.Err() != nil {
			return
		}
		_ = err // the caller learns through the zero Change; logs belong to it
		fn(Change{})
		select {
		case <-ctx.Done():
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func (c *Catalog) listenOnce(ctx context.Context, fn func(Change)) error {
	conn, err := pgx.Connect(ctx, c.url)
	if err != nil {
		return fmt.Errorf("connecting to listen: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, `LISTEN stratum_catalog`); err != nil {
		return fmt.Errorf("listening: %w", err)
	}
	// Anything changed before LISTEN took effect is covered by this flush.
	fn(Change{})
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return err
		}
		table, key, _ := strings.Cut(n.Payload, ":")
		fn(Change{Table: table, Key: key})
	}
}
