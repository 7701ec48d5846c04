-- A paused tenant's sessions start no new transaction: each waits in the
-- proxy (it is not refused) until the pause ends; transactions already
-- running finish. A pause covers the tenant's whole subtree, like a
-- suspension. Placement moves pause a tenant for their cut-over (by =
-- 'move:<id>'); operators pause one for maintenance. One row per paused
-- tenant; resuming deletes it.
CREATE TABLE tenant_pauses (
    tenant_id  uuid PRIMARY KEY REFERENCES tenants (id) ON DELETE CASCADE,
    reason     text NOT NULL CHECK (reason <> ''),
    paused_by  text NOT NULL,
    paused_at  timestamptz NOT NULL DEFAULT now()
);
CREATE TRIGGER tenant_pauses_notify AFTER INSERT OR UPDATE OR DELETE ON tenant_pauses
    FOR EACH ROW EXECUTE FUNCTION notify_catalog_change('tenant_id');
