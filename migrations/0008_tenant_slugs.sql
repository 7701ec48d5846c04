-- Every slug a tenant has had, current and old: a slug names one tenant for
-- ever, so that a connection string naming an old slug never reaches another
-- tenant. tenant_id is the tenant's id (kept after the tenant is deleted: the
-- slug stays reserved); retired_at is when the slug stopped being the
-- tenant's current one (NULL: it is the current slug). The primary key makes
-- a slug taken by anyone, now or before, a unique violation (23505), with
-- the index's usual waiting, so concurrent creates and renames cannot race.
-- A tenant deleted while still provisioning (a failed create) frees its slug.
CREATE TABLE tenant_slugs (
    slug       text PRIMARY KEY CHECK (slug ~ '^[a-z][a-z0-9_]{0,62}$'),
    tenant_id  uuid NOT NULL,
    retired_at timestamptz
);
CREATE INDEX tenant_slugs_tenant ON tenant_slugs (tenant_id);

INSERT INTO tenant_slugs (slug, tenant_id) SELECT slug, id FROM tenants;

CREATE FUNCTION tenant_slugs_track() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        IF OLD.status = 'provisioning' THEN
            DELETE FROM tenant_slugs WHERE tenant_id = OLD.id;
        ELSE
            UPDATE tenant_slugs SET retired_at = now() WHERE tenant_id = OLD.id AND retired_at IS NULL;
        END IF;
        RETURN OLD;
    END IF;
    IF TG_OP = 'UPDATE' THEN
        IF NEW.slug = OLD.slug THEN
            RETURN NEW;
        END IF;
        UPDATE tenant_slugs SET retired_at = now() WHERE slug = OLD.slug AND tenant_id = OLD.id;
    END IF;
    -- The tenant's own old slug becomes current again; any other taken slug
    -- fails the insert with 23505 on tenant_slugs_pkey.
    UPDATE tenant_slugs SET retired_at = NULL WHERE slug = NEW.slug AND tenant_id = NEW.id;
    IF NOT FOUND THEN
        INSERT INTO tenant_slugs (slug, tenant_id) VALUES (NEW.slug, NEW.id);
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER tenants_slugs AFTER INSERT OR UPDATE OF slug OR DELETE ON tenants
    FOR EACH ROW EXECUTE FUNCTION tenant_slugs_track();
