-- The control plane: config inheritance, permission delegation, the hash-chained
-- audit log and richer API keys.

-- Config values set on a tenant. A value is inherited by the tenant's whole
-- subtree unless a descendant sets its own; a locked value beats every
-- descendant. A sensitive value is stored only as AES-256-GCM ciphertext
-- (value is NULL), beside the id of the key that sealed it.
CREATE TABLE config_values (
    tenant_id  uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    key        text NOT NULL CHECK (key ~ '^[a-z][a-z0-9_]{0,62}(\.[a-z][a-z0-9_]{0,62}){0,7}$' AND length(key) <= 200),
    value      jsonb,
    locked     boolean NOT NULL DEFAULT false,
    sensitive  boolean NOT NULL DEFAULT false,
    key_id     text,
    ciphertext bytea,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, key),
    CHECK (CASE WHEN sensitive THEN value IS NULL AND key_id IS NOT NULL AND ciphertext IS NOT NULL
                ELSE value IS NOT NULL AND key_id IS NULL AND ciphertext IS NULL END)
);

-- Permission policies set on a tenant. granted_by is the tenant whose key made
-- the grant (NULL: the platform, an API key bound to no tenant).
CREATE TABLE permission_policies (
    tenant_id  uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    key        text NOT NULL CHECK (key ~ '^[a-z][a-z0-9_]{0,62}(\.[a-z][a-z0-9_]{0,62}){0,7}$' AND length(key) <= 200),
    value      jsonb NOT NULL,
    mode       text NOT NULL CHECK (mode IN ('LOCKED', 'INHERITED', 'DELEGATED')),
    revocation text NOT NULL CHECK (revocation IN ('CASCADE', 'SOFT', 'PERMANENT')),
    granted_by uuid,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, key)
);

CREATE TRIGGER config_values_notify AFTER INSERT OR UPDATE OR DELETE ON config_values
    FOR EACH ROW EXECUTE FUNCTION notify_catalog_change('tenant_id');
CREATE TRIGGER permission_policies_notify AFTER INSERT OR UPDATE OR DELETE ON permission_policies
    FOR EACH ROW EXECUTE FUNCTION notify_catalog_change('tenant_id');

-- API keys: a per-key rate limit (requests per minute; NULL: the server's
-- default) and the key a rotation replaced.
ALTER TABLE api_keys ADD COLUMN rate_limit int CHECK (rate_limit > 0);
ALTER TABLE api_keys ADD COLUMN rotated_from uuid;

-- The audit log: one row per mutation, written in the mutation's transaction.
-- Rows form a hash chain: hash = sha256(prev_hash || audit_canonical(row)), so
-- editing, deleting or reordering rows is detectable (see /v1/audit/verify).
CREATE TABLE audit_log (
    seq          bigint PRIMARY KEY,
    at           timestamptz NOT NULL,
    actor_key_id text NOT NULL,
    actor_name   text NOT NULL,
    action       text NOT NULL,
    target       text NOT NULL,
    tenant_id    uuid,
    before       jsonb,
    after        jsonb,
    request_id   text NOT NULL,
    source_ip    text NOT NULL,
    prev_hash    bytea NOT NULL,
    hash         bytea NOT NULL
);
CREATE INDEX audit_log_tenant ON audit_log (tenant_id, seq);
CREATE INDEX audit_log_at ON audit_log (at, seq);

-- The text a row's hash covers. Timestamps are rendered in UTC so the digest
-- does not depend on the session's TimeZone; jsonb renders canonically.
CREATE FUNCTION audit_canonical(seq bigint, at timestamptz, actor_key_id text, actor_name text,
        action text, target text, tenant_id uuid, before jsonb, after jsonb,
        request_id text, source_ip text)
    RETURNS bytea LANGUAGE sql IMMUTABLE AS $$
    SELECT convert_to(concat_ws(chr(31), seq::text,
        to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
        actor_key_id, actor_name, action, target, coalesce(tenant_id::text, '-'),
        coalesce(before::text, 'null'), coalesce(after::text, 'null'), request_id, source_ip), 'UTF8')
$$;

-- Appends are serialised by a transaction-level advisory lock, so the chain
-- never forks; the trigger fills seq, at, prev_hash and hash.
CREATE FUNCTION audit_chain() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    last_seq  bigint;
    last_hash bytea;
BEGIN
    PERFORM pg_advisory_xact_lock(6004214523720966483);
    SELECT seq, hash INTO last_seq, last_hash FROM audit_log ORDER BY seq DESC LIMIT 1;
    NEW.seq := coalesce(last_seq, 0) + 1;
    NEW.prev_hash := coalesce(last_hash, '\x'::bytea);
    NEW.at := clock_timestamp();
    NEW.hash := sha256(NEW.prev_hash || audit_canonical(NEW.seq, NEW.at, NEW.actor_key_id,
        NEW.actor_name, NEW.action, NEW.target, NEW.tenant_id, NEW.before, NEW.after,
        NEW.request_id, NEW.source_ip));
    RETURN NEW;
END $$;
CREATE TRIGGER audit_log_chain BEFORE INSERT ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_chain();

-- The log is append-only for everyone who goes through triggers.
CREATE FUNCTION audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the audit log is append-only' USING ERRCODE = '42501';
END $$;
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_append_only();
