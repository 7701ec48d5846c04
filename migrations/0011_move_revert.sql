-- Moving a tenant back fast (provision/move_revert.go): a switched move's
-- kept source copy is brought up to date and switched to again, instead of
-- a new placement being made and filled. The move back is a move of its own
-- whose reverts names the switched move; while it runs that move is
-- "reverting" (it stays switched in all but name: the tenant serves from its
-- target), and "reverted" once the move back switched. A move back that
-- fails or is cancelled puts it back to "switched". The one-open-move rule
-- counts the move back, not the move it reverts.
ALTER TABLE tenant_moves ADD COLUMN reverts uuid REFERENCES tenant_moves (id) ON DELETE CASCADE;
-- The target server's transaction id (xid8) taken in the switch's pause:
-- rows of the target whose xmin is newer were written after the switch,
-- which is what a move back has to bring to the kept copy.
ALTER TABLE tenant_moves ADD COLUMN switch_xid bigint;
ALTER TABLE tenant_moves DROP CONSTRAINT tenant_moves_phase_check;
ALTER TABLE tenant_moves ADD CONSTRAINT tenant_moves_phase_check CHECK (phase IN ('pending', 'provisioning',
    'copying', 'catching_up', 'cutting_over', 'switched', 'finalized', 'cancelled', 'failed', 'reverting', 'reverted'));
DROP INDEX tenant_moves_one_open;
CREATE UNIQUE INDEX tenant_moves_one_open ON tenant_moves (tenant_id)
    WHERE phase NOT IN ('finalized', 'cancelled', 'failed', 'reverting', 'reverted');
-- One move back of a move at a time.
CREATE UNIQUE INDEX tenant_moves_one_revert ON tenant_moves (reverts)
    WHERE phase NOT IN ('finalized', 'cancelled', 'failed', 'reverting', 'reverted');
