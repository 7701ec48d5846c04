package policy

// Access is how much a tenant's sessions may change, enforced by PostgreSQL:
// each level has a backend login role of its own (Role), with privileges to
// match, and a session logs in as the role of its tenant's level.
type Access uint8

const (
	// AccessFull: read, write and DDL; the tenant's own role, which owns the
	// tenant's objects in its schema or database.
	AccessFull Access = iota
	// AccessWrite: read and write data, no DDL (sql.ddl denied).
	AccessWrite
	// AccessRead: read only (proxy.read_only, or sql.write denied).
	AccessRead
)

// Accesses are the levels, AccessFull first.
var Accesses = []Access{AccessFull, AccessWrite, AccessRead}

// Role is the name of the backend login role of this level for a tenant
// whose own (full) role is base: base, base_w or base_r.
func (a Access) Role(base string) string {
	switch a {
	case AccessWrite:
		return base + "_w"
	case AccessRead:
		return base + "_r"
	}
	return base
}

func (a Access) String() string {
	switch a {
	case AccessWrite:
		return "write"
	case AccessRead:
		return "read"
	}
	return "full"
}
