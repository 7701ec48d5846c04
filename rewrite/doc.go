// Package rewrite classifies the SQL a tenant session sends, on pg_query_go
// (PostgreSQL 16's own parser). It is pure: no I/O, no catalog, no sessions; it
// imports nothing of ours (only pg_query_go, golang-lru and protobuf
// reflection for walking parse trees). The proxy asks it only about statements
// that need it (a cheap byte check first), so plain DML never pays for a parse.
//
// # Tenant commands
//
// ClassifyTenantCommand recognises the proxy's own commands, SET / RESET /
// SHOW stratum.tenant; MentionsTenantSetting is its pre-check.
//
// # The guard
//
// Each tenant session reaches PostgreSQL as the tenant's own role, so
// PostgreSQL enforces isolation. Guard is a second layer in front of it:
//
//   - Guard.Check refuses (SQLSTATE 42501) any statement that would change the
//     tenant context, in any spelling, in multi-statement texts, in
//     expressions, function SET clauses, and the SQL inside DO blocks and
//     function bodies: SET/RESET ROLE and SESSION AUTHORIZATION; set_config
//     of role, session_authorization, stratum.* or of a non-constant name;
//     SET/RESET stratum.* other than the proxy's tenant commands sent alone;
//     ALTER/CREATE/DROP ROLE, role GRANT/REVOKE, ALTER DATABASE, ALTER SYSTEM;
//     LOAD; COPY to or from a program or server file; writes through
//     pg_settings. It refuses with 0A000 the values of the two settings that
//     would make the backend read SQL differently from the guard
//     (standard_conforming_strings off, client-only multi-byte client
//     encodings such as SJIS), by SET or by set_config; set_config of them to
//     a constant safe value (on, UTF8) is allowed, to any other value refused.
//   - It classifies every text for the sql.write and sql.ddl permissions
//     (Verdict.Writes, Verdict.DDL), flags transaction control and session
//     resets (DISCARD, RESET ALL) for pooled mode, and gives a literal-free
//     fingerprint for logs. Verdicts are cached by exact text.
//   - NeedsFullCheck is the allocation-free pre-check: when it is false, Check
//     would allow the text and report nothing the proxy must act on.
//   - Guard.Classify answers Writes/DDL from the first keyword for plain DML
//     and from the cached Check otherwise; it always agrees with Check.
//
// Limits, by design: a function called from a SELECT may write or change
// settings internally (classified as a read; the backend's grants decide);
// EXECUTE of a prepared statement is a write (the statement was checked when
// prepared); SQL that runs elsewhere (dblink) is a plain string; dynamic SQL
// in PL/pgSQL is refused when the code mentions a protected name and cannot be
// followed otherwise. Text that does not parse is left to the backend unless
// its tokens show a refused pattern. The guard assumes the session's
// client_encoding is UTF8 or another ASCII-safe encoding from the start; the
// proxy must not let a client choose SJIS, BIG5, GBK, UHC, GB18030 or JOHAB
// in its startup packet.
//
// testdata/guard.sql with testdata/guard.golden is the specification of
// Check (go test ./rewrite -run TestGuardGolden -update rewrites it).
package rewrite
