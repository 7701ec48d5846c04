-- The catalog: tenants and their placements, proxy users, backend credentials,
-- admin API keys and the app schema applied to every placement.

CREATE EXTENSION IF NOT EXISTS ltree;

-- One row: facts about this deployment.
CREATE TABLE stratum_meta (
    singleton     boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    deployment_id text NOT NULL DEFAULT substr(md5(random()::text || clock_timestamp()::text), 1, 8),
    created_at    timestamptz NOT NULL DEFAULT now()
);
INSERT INTO stratum_meta DEFAULT VALUES;

CREATE TABLE tenants (
    id         uuid PRIMARY KEY,
    -- short_id names the tenant's role, schema and database; never the slug.
    short_id   text NOT NULL UNIQUE CHECK (short_id ~ '^[0-9a-f]{16}$'),
    slug       text NOT NULL UNIQUE CHECK (slug ~ '^[a-z][a-z0-9_]{0,62}$'),
    name       text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    parent_id  uuid REFERENCES tenants (id),
    path       ltree NOT NULL,
    depth      int NOT NULL CHECK (depth BETWEEN 1 AND 20),
    isolation  text NOT NULL CHECK (isolation IN ('shared', 'schema', 'database')),
    backend    text NOT NULL,
    database   text NOT NULL,
    schema     text NOT NULL,
    role_name  text NOT NULL UNIQUE,
    status     text NOT NULL DEFAULT 'provisioning'
               CHECK (status IN ('provisioning', 'active', 'suspended', 'archived')),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX tenants_path_gist ON tenants USING gist (path);
CREATE INDEX tenants_parent ON tenants (parent_id);

-- The generated password of each tenant's backend role, AES-256-GCM encrypted.
CREATE TABLE backend_credentials (
    tenant_id  uuid PRIMARY KEY REFERENCES tenants (id) ON DELETE CASCADE,
    key_id     text NOT NULL,
    ciphertext bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- Users that log in to the proxy. verifier is a SCRAM-SHA-256 verifier in
-- PostgreSQL's own format; the password itself is never stored.
CREATE TABLE proxy_users (
    name       text PRIMARY KEY CHECK (length(name) BETWEEN 1 AND 63),
    verifier   text NOT NULL CHECK (verifier LIKE 'SCRAM-SHA-256$%'),
    tenant_id  uuid NOT NULL REFERENCES tenants (id),
    can_switch boolean NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- Database names that identify a tenant when a client names them on connect.
CREATE TABLE database_map (
    database_name text PRIMARY KEY,
    tenant_id     uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE
);

CREATE TABLE api_keys (
    id         uuid PRIMARY KEY,
    name       text NOT NULL,
    key_hash   bytea NOT NULL UNIQUE,
    scopes     text[] NOT NULL,
    tenant_id  uuid REFERENCES tenants (id),
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz
);

-- The app's DDL, in the order it was applied; new tenants replay all of it.
CREATE TABLE app_schema (
    version    serial PRIMARY KEY,
    checksum   text NOT NULL UNIQUE,
    sql        text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);

-- Which app schema versions each placement has.
CREATE TABLE app_schema_applied (
    version    int NOT NULL REFERENCES app_schema (version),
    placement  text NOT NULL, -- 'shared', 'template' or a tenant id
    applied_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (version, placement)
);

-- Tell every proxy when a tenant, its credentials or a user changes.
CREATE FUNCTION notify_catalog_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('stratum_catalog', TG_TABLE_NAME || ':' ||
        CASE WHEN TG_OP = 'DELETE' THEN row_to_json(OLD)->>TG_ARGV[0]
             ELSE row_to_json(NEW)->>TG_ARGV[0] END);
    RETURN NULL;
END $$;
CREATE TRIGGER tenants_notify AFTER INSERT OR UPDATE OR DELETE ON tenants
    FOR EACH ROW EXECUTE FUNCTION notify_catalog_change('id');
CREATE TRIGGER proxy_users_notify AFTER INSERT OR UPDATE OR DELETE ON proxy_users
    FOR EACH ROW EXECUTE FUNCTION notify_catalog_change('name');
CREATE TRIGGER database_map_notify AFTER INSERT OR UPDATE OR DELETE ON database_map
    FOR EACH ROW EXECUTE FUNCTION notify_catalog_change('database_name');
