package policy

import (
	"strconv"
	"strings"

	"github.com/stratum-hq/stratum-proxy/internal/sqlquote"
)

// Policy is what a tenant's resolved config, permissions and place in the tree
// ask of its sessions. The zero Policy asks nothing.
type Policy struct {
	// Blocked, when not empty, says why the tenant may not be used: it or an
	// ancestor is suspended or archived, or it is not provisioned yet.
	Blocked string
	// Paused, when not empty, says why the tenant's sessions may not start a
	// transaction now: it or an ancestor is paused. They wait for the pause
	// to end; it does not change what a backend connection is set to.
	Paused string
	// ReadOnly, when not empty, says why the tenant's sessions may not write
	// (proxy.read_only, or the sql.write permission denied).
	ReadOnly string
	// NoDDL, when not empty, says why DDL is refused (sql.ddl denied).
	NoDDL string
	// Access is the level the tenant's backend role has: AccessRead when
	// ReadOnly is set, else AccessWrite when NoDDL is set, else AccessFull.
	Access Access
	// StatementTimeout is proxy.statement_timeout in milliseconds; -1 when unset.
	StatementTimeout int
	// IdleInTxTimeout is proxy.idle_in_transaction_timeout in milliseconds
	// (the proxy ends a session idle in a transaction that long); 0
	// disabled, -1 unset.
	IdleInTxTimeout int
	// MaxConns is proxy.max_connections; 0 when unset.
	MaxConns int
	// Settings are the tenant's other non-sensitive config keys as
	// stratum.config.<key> settings, sorted by name.
	Settings []Setting
	// Sig identifies what the policy sets on a backend connection (statement
	// timeout, read-only default, settings), whether DDL is refused and the
	// access level; ""
	// when it asks nothing of a backend. A change of Sig is applied with
	// simple Queries, which also drop the unnamed prepared statement.
	Sig string
	// SQL is the statement that applies the policy on a backend connection
	// after RESET ALL; "" when Sig is "".
	SQL string
}

// Setting is one PostgreSQL setting a policy gives the tenant's sessions.
type Setting struct{ Name, Value string }

// applySQL is one simple-query text that sets the policy on a backend
// connection where RESET ALL just ran: the statement timeout, the read-only
// default (PostgreSQL itself then refuses writes, a second layer under the
// proxy's own check) and the settings.
func (p *Policy) applySQL() string {
	var b strings.Builder
	if p.StatementTimeout >= 0 {
		b.WriteString("SET statement_timeout = " + strconv.Itoa(p.StatementTimeout) + ";")
	}
	if p.ReadOnly != "" {
		b.WriteString("SET default_transaction_read_only = on;")
	}
	if len(p.Settings) > 0 {
		b.WriteString("SELECT ")
		for i, s := range p.Settings {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString("pg_catalog.set_config(" + sqlquote.Literal(s.Name) + ", " + sqlquote.Literal(s.Value) + ", false)")
		}
		b.WriteString(";")
	}
	return b.String()
}
