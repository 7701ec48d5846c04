-- A finished move (failed, cancelled, finalized) whose cleanup has not
-- ended: its half-built target, or a finalized move's source copy, still to
-- be dropped, its capture still to be removed. Set with the phase, in one
-- transaction; cleared when the cleanup succeeds. A new move of the tenant
-- is refused meanwhile: placement names are the tenant's (t_<short id>), so
-- a cleanup still under way could drop what the new move builds there, or
-- the placement a move back made live again.
ALTER TABLE tenant_moves ADD COLUMN cleanup_pending boolean NOT NULL DEFAULT false;
