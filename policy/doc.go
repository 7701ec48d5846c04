// Package policy is what a tenant's config and permissions ask of its
// sessions. It owns, in one place:
//
//   - the names of the proxy.* config keys, with each key's doc line, the
//     validation of its values (type, range) and what it sets in a Policy
//     (keys.go);
//   - the names of the permissions that shape sessions (sql.write, sql.ddl);
//   - the Policy type, resolved from plain inputs (Resolve), and the SQL that
//     applies it on a backend connection;
//   - the access levels (Access: full, write without DDL, read-only) and the
//     name of each level's backend role (Access.Role), which router dials
//     and provision creates;
//   - the limit keys and their rule (limits.go): the tightest value on the
//     tenant's path wins, a shared tenant's default idle timeout, and the
//     cap a tenant-bound key must respect (InheritedCap).
//
// Adding a proxy.* key touches this package, and the place in proxy that
// enforces the new Policy field, only.
//
// It is a leaf, like rewrite: it imports nothing of ours but the leaf helper
// internal/sqlquote, and does no I/O.
// catalog imports it to validate proxy.* keys and permission values, and
// turns its rows into an Input (Catalog.PolicyInput); router resolves a
// placement's Policy from that Input. This reverses the arrow the design
// document drew (policy → catalog): a leaf that catalog can use for
// validation keeps the key definitions in one place without a cycle.
package policy
