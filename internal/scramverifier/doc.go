// Package scramverifier makes and reads SCRAM-SHA-256 verifiers in PostgreSQL's
// own text format (SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>), on
// top of the maintained xdg-go/scram library. The proxy checks clients against
// such verifiers, the catalog stores them and backend roles are created with them,
// so no password ever reaches a server log.
//
// It imports nothing of ours.
package scramverifier
