-- Online placement moves: a tenant's rows copied to another placement while
-- it serves, then switched over (provision/move*.go). One row per move; the
-- phases are pending, provisioning, copying, catching_up, cutting_over,
-- switched (the tenant serves from the target, the source copy is kept),
-- finalized (source dropped), cancelled and failed. from_* and to_* are the
-- placements (the tenants row's isolation, backend, database and schema).
-- owner names the proxy process running the move and updated_at is its
-- heartbeat: a move whose owner stopped is told apart from a live one.
CREATE TABLE tenant_moves (
    id             uuid PRIMARY KEY,
    tenant_id      uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    from_isolation text NOT NULL,
    from_backend   text NOT NULL,
    from_database  text NOT NULL,
    from_schema    text NOT NULL,
    to_isolation   text NOT NULL CHECK (to_isolation IN ('shared', 'schema', 'database')),
    to_backend     text NOT NULL,
    to_database    text NOT NULL,
    to_schema      text NOT NULL,
    phase          text NOT NULL DEFAULT 'pending' CHECK (phase IN ('pending', 'provisioning', 'copying',
                   'catching_up', 'cutting_over', 'switched', 'finalized', 'cancelled', 'failed')),
    error          text NOT NULL DEFAULT '',
    -- why cleaning up after the move (capture, half-built target) is not
    -- finished; the recovery sweep retries while it is set.
    cleanup_error  text NOT NULL DEFAULT '',
    tables         jsonb NOT NULL DEFAULT '[]',
    lag            bigint NOT NULL DEFAULT 0,
    -- how long the switch's pause held the tenant, in milliseconds
    pause_ms       bigint NOT NULL DEFAULT 0,
    created_by     text NOT NULL,
    owner          text NOT NULL DEFAULT '',
    started_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    finished_at    timestamptz,
    finalized_at   timestamptz
);
-- One unfinished move per tenant; a switched move (source kept) counts
-- until it is finalized.
CREATE UNIQUE INDEX tenant_moves_one_open ON tenant_moves (tenant_id)
    WHERE phase NOT IN ('finalized', 'cancelled', 'failed');
CREATE INDEX tenant_moves_tenant ON tenant_moves (tenant_id, started_at DESC);
