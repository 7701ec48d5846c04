-- Proxy user names: no '.', unique case-insensitively, not a reserved name.
-- The rules bind names written from now on (INSERT, or an UPDATE of name).
-- Rows that already break them are kept and still log in: name_legacy marks
-- them, they are left out of the unique index, and no new name may collide
-- with them case-insensitively (the trigger checks every row).
ALTER TABLE proxy_users ADD COLUMN name_legacy boolean NOT NULL DEFAULT false;

CREATE FUNCTION proxy_user_name_problem(n text) RETURNS text
    LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE
        WHEN position('.' IN n) > 0 THEN 'must not contain "." (user.tenant is the tenant-naming login form)'
        WHEN lower(n) IN ('postgres', 'public', 'none', 'current_user', 'session_user', 'current_role',
                          'root', 'admin', 'replication', 'pgbouncer')
            THEN 'is reserved'
        WHEN lower(n) LIKE 'pg\_%' THEN 'is reserved (names starting with pg_)'
        WHEN lower(n) LIKE 'stratum%' THEN 'is reserved (names starting with stratum)'
    END
$$;

UPDATE proxy_users SET name_legacy = true
WHERE proxy_user_name_problem(name) IS NOT NULL
   OR lower(name) IN (SELECT lower(name) FROM proxy_users GROUP BY 1 HAVING count(*) > 1);

CREATE UNIQUE INDEX proxy_users_lower_name ON proxy_users (lower(name)) WHERE NOT name_legacy;

CREATE FUNCTION proxy_users_check_name() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    problem text := proxy_user_name_problem(NEW.name);
BEGIN
    IF problem IS NOT NULL THEN
        RAISE EXCEPTION 'proxy user name "%" %', NEW.name, problem USING ERRCODE = 'check_violation';
    END IF;
    IF EXISTS (SELECT 1 FROM proxy_users WHERE lower(name) = lower(NEW.name)
               AND (TG_OP = 'INSERT' OR name <> OLD.name)) THEN
        RAISE EXCEPTION 'proxy user name "%" is taken (names are unique ignoring case)', NEW.name
            USING ERRCODE = 'unique_violation';
    END IF;
    NEW.name_legacy := false;
    RETURN NEW;
END
$$;

CREATE TRIGGER proxy_users_check_name BEFORE INSERT OR UPDATE OF name ON proxy_users
    FOR EACH ROW EXECUTE FUNCTION proxy_users_check_name();
