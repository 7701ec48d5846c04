// Package rewrite classifies the SQL a tenant session sends, on pg_query_go
// (PostgreSQL's own parser). It is pure: no I/O, no catalog, no sessions; it
// imports nothing of ours. The proxy asks it only about statements that need it
// (a cheap byte check first), so plain DML never pays for a parse.
//
// Today it recognises the proxy's own tenant commands (SET / RESET / SHOW
// stratum.tenant); the tenant-context guard builds on the same entry points.
package rewrite
