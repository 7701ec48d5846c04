package policy

import (
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"time"
)

// DefaultSharedIdleInTxTimeout is proxy.idle_in_transaction_timeout for a
// tenant in the shared placement when neither it nor an ancestor sets the
// key: there a transaction left open holds locks on tables other tenants use.
// Schema and database tenants get no default.
const DefaultSharedIdleInTxTimeout = 30 * time.Second

// LimitValue is a value of a limit key (IsLimit) that a tenant on the path
// from the root to the tenant a policy is for has set itself.
type LimitValue struct {
	Key   string
	Value json.RawMessage
	// Source is the slug of the tenant that set the value.
	Source string
	// Locked: the value is locked for the source's subtree, so the values
	// below it are ignored.
	Locked bool
}

// IsLimit reports whether key is a limit key: proxy.max_connections,
// proxy.statement_timeout or proxy.idle_in_transaction_timeout. A tenant's
// effective value of a limit key is the smallest of the values set on it and
// its ancestors (for the timeouts, 0 "disabled" is the largest), so a
// descendant may lower a limit, never raise it.
func IsLimit(key string) bool { return slices.Contains(limitKeys, key) }

// limitKeys are the limit keys. It is never modified.
var limitKeys = []string{KeyIdleInTransactionTimeout, KeyMaxConnections, KeyStatementTimeout}

// LimitKeys returns the names of the limit keys, sorted.
func LimitKeys() []string { return slices.Clone(limitKeys) }

// limitNumber reads a limit key's value: connections, or milliseconds.
func limitNumber(key string, v json.RawMessage) (int, bool) {
	if key == KeyMaxConnections {
		n, ok := jsonInteger(v)
		return int(n), ok && n >= 1 && n <= 10000
	}
	return statementTimeoutMillis(v)
}

// limitRank orders a limit key's numbers from tightest to loosest: a
// timeout of 0 disables it, which is no limit at all.
func limitRank(key string, n int) int {
	if key != KeyMaxConnections && n == 0 {
		return math.MaxInt
	}
	return n
}

// Cap is the tightest value of one limit key on a path of tenants.
type Cap struct {
	Key string
	// Value is in the key's unit (connections, milliseconds; 0: timeout
	// disabled).
	Value int
	// Source is the slug of the tenant that set it; "" for a platform
	// default (DefaultSharedIdleInTxTimeout, or the proxy's per-tenant
	// connection limit).
	Source string
}

// tightest returns the tightest value of key among values (root first): the
// values down to the topmost that is locked (those below a lock are ignored,
// as config resolution ignores them). ok is false when none is set.
func tightest(key string, values []LimitValue) (c Cap, ok bool) {
	for _, v := range values {
		if v.Key != key {
			continue
		}
		n, valid := limitNumber(key, v.Value)
		if valid && (!ok || limitRank(key, n) < limitRank(key, c.Value)) {
			c, ok = Cap{Key: key, Value: n, Source: v.Source}, true
		}
		if v.Locked {
			break
		}
	}
	return c, ok
}

// InheritedCap is the cap a tenant's own value of the limit key must respect:
// the tightest value its ancestors set (above, root first), or for a tenant in
// the shared placement (shared) with no such value and key
// proxy.idle_in_transaction_timeout, the platform's default. ok is false when
// nothing caps the key.
func InheritedCap(key string, above []LimitValue, shared bool, platformMaxConns int) (Cap, bool) {
	if c, ok := tightest(key, above); ok {
		return c, true
	}
	if shared && key == KeyIdleInTransactionTimeout {
		return Cap{Key: key, Value: int(DefaultSharedIdleInTxTimeout / time.Millisecond)}, true
	}
	if key == KeyMaxConnections && platformMaxConns > 0 {
		return Cap{Key: key, Value: platformMaxConns}, true
	}
	return Cap{}, false
}

// Admits reports whether a value of c's key is within the cap (no looser).
// A value the key does not accept is not admitted.
func (c Cap) Admits(v json.RawMessage) bool {
	n, ok := limitNumber(c.Key, v)
	return ok && limitRank(c.Key, n) <= limitRank(c.Key, c.Value)
}

// String says what the cap is and who set it, to follow "at most".
func (c Cap) String() string {
	val := fmt.Sprintf("%d ms", c.Value)
	switch {
	case c.Key == KeyMaxConnections:
		val = fmt.Sprint(c.Value)
	case c.Value == 0:
		val = "0 (disabled)"
	}
	if c.Source == "" && c.Key == KeyMaxConnections {
		return val + ", the proxy's per-tenant connection limit (pool.max_per_tenant)"
	}
	if c.Source == "" {
		return val + ", the platform's default for tenants in the shared placement"
	}
	return fmt.Sprintf("%s, set on ancestor tenant %q", val, c.Source)
}

// applyCaps lowers the policy's limits to the tightest values on the path
// (limits, root first), and gives a shared tenant without an idle timeout on
// its path the default one.
func (p *Policy) applyCaps(limits []LimitValue, shared bool) {
	fields := []struct {
		key string
		f   *int
		// unset is the field's value when nothing sets the key.
		unset int
	}{
		{KeyMaxConnections, &p.MaxConns, 0},
		{KeyStatementTimeout, &p.StatementTimeout, -1},
		{KeyIdleInTransactionTimeout, &p.IdleInTxTimeout, -1},
	}
	for _, fl := range fields {
		c, ok := tightest(fl.key, limits)
		if ok && (*fl.f == fl.unset || limitRank(fl.key, c.Value) < limitRank(fl.key, *fl.f)) {
			*fl.f = c.Value
		}
	}
	if p.IdleInTxTimeout < 0 && shared {
		p.IdleInTxTimeout = int(DefaultSharedIdleInTxTimeout / time.Millisecond)
	}
}
