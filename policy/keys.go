package policy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
)

// KeyPrefix starts every config key the proxy itself reads; the catalog
// refuses such a key unless Validate accepts it.
const KeyPrefix = "proxy."

// The proxy.* config keys. Config keys are resolved through the tenant tree
// (inheritance, locks).
const (
	// KeyIdleInTransactionTimeout bounds how long a session of the tenant
	// may sit idle inside a transaction; the proxy enforces it.
	KeyIdleInTransactionTimeout = "proxy.idle_in_transaction_timeout"
	// KeyMaxConnections is the tenant's backend connection cap.
	KeyMaxConnections = "proxy.max_connections"
	// KeyReadOnly makes the tenant's sessions read-only.
	KeyReadOnly = "proxy.read_only"
	// KeyStatementTimeout is the tenant's statement_timeout.
	KeyStatementTimeout = "proxy.statement_timeout"
)

// The permissions that shape sessions; they are resolved through
// delegation and take booleans.
const (
	// PermWrite false makes the tenant's sessions read-only.
	PermWrite = "sql.write"
	// PermDDL false refuses DDL in the tenant's sessions.
	PermDDL = "sql.ddl"
)

// SettingPrefix names the PostgreSQL settings that carry a tenant's other
// config keys into its sessions: current_setting('stratum.config.<key>').
const SettingPrefix = "stratum.config."

// key is one proxy.* config key: its name, its doc line, how a value is
// checked and what a value sets in a Policy.
type key struct {
	name string
	doc  string
	// check returns why a value (compact JSON) is refused, or "" when it is
	// accepted. The reason is worded to follow the key's name.
	check func(v json.RawMessage) string
	// apply sets the value in p; src is the slug of the tenant that set it.
	// A value check would have refused is ignored, never an error: the
	// catalog validated it when it was set.
	apply func(p *Policy, v json.RawMessage, tenant, src string)
}

// keys is every proxy.* key, sorted by name. It is never modified.
var keys = []key{
	{
		name: KeyIdleInTransactionTimeout,
		doc: `integer milliseconds 0..86400000, or a string with a unit ("30s", "500ms", "2min"); 0 disables: ` +
			`the proxy ends a session that stays idle in a transaction that long (default 30s in the shared placement)`,
		check: checkDuration,
		apply: func(p *Policy, v json.RawMessage, _, _ string) {
			if ms, ok := statementTimeoutMillis(v); ok {
				p.IdleInTxTimeout = ms
			}
		},
	},
	{
		name: KeyMaxConnections,
		doc:  "an integer 1..10000: the tenant's backend connection cap",
		check: func(v json.RawMessage) string {
			if n, ok := jsonInteger(v); !ok || n < 1 || n > 10000 {
				return "must be an integer from 1 to 10000"
			}
			return ""
		},
		apply: func(p *Policy, v json.RawMessage, _, _ string) {
			var n int
			if json.Unmarshal(v, &n) == nil && n > 0 {
				p.MaxConns = n
			}
		},
	},
	{
		name: KeyReadOnly,
		doc:  "a boolean: true makes the tenant's sessions read-only",
		check: func(v json.RawMessage) string {
			if s := string(v); s != "true" && s != "false" {
				return "must be true or false"
			}
			return ""
		},
		apply: func(p *Policy, v json.RawMessage, tenant, src string) {
			var on bool
			if json.Unmarshal(v, &on) == nil && on {
				p.ReadOnly = fmt.Sprintf("tenant %q is read-only (%s is true, set on %q)", tenant, KeyReadOnly, src)
			}
		},
	},
	{
		name:  KeyStatementTimeout,
		doc:   `integer milliseconds 0..86400000, or a string with a unit ("30s", "500ms", "2min"): the tenant's statement_timeout`,
		check: checkDuration,
		apply: func(p *Policy, v json.RawMessage, _, _ string) {
			if ms, ok := statementTimeoutMillis(v); ok {
				p.StatementTimeout = ms
			}
		},
	},
}

// checkDuration is the check of the duration keys (statementTimeoutMillis).
func checkDuration(v json.RawMessage) string {
	if _, ok := statementTimeoutMillis(v); !ok {
		return statementTimeoutWant
	}
	return ""
}

func lookup(name string) *key {
	for i := range keys {
		if keys[i].name == name {
			return &keys[i]
		}
	}
	return nil
}

// Keys returns the names of the proxy.* keys, sorted.
func Keys() []string {
	out := make([]string, len(keys))
	for i, k := range keys {
		out[i] = k.name
	}
	return out
}

// Doc returns the doc line of the proxy.* key name (its type, range and
// effect), or "" for an unknown key.
func Doc(name string) string {
	if k := lookup(name); k != nil {
		return k.doc
	}
	return ""
}

// Governs reports whether the config key name is in the proxy's namespace,
// where only the keys of this package are accepted.
func Governs(name string) bool { return strings.HasPrefix(name, KeyPrefix) }

// IsPermission reports whether name is one of the permissions of this
// package (each takes a boolean).
func IsPermission(name string) bool { return name == PermWrite || name == PermDDL }

// KeyError says why a proxy.* key or its value was refused.
type KeyError struct {
	Key string
	// Reason is worded to follow the key's name.
	Reason string
	// Unknown is true when Key is no proxy.* key of this package.
	Unknown bool
}

// Error names the key and the reason.
func (e *KeyError) Error() string { return fmt.Sprintf("config key %q: %s", e.Key, e.Reason) }

// Validate checks a value (compact JSON, not null) of the proxy.* config key
// name, to be stored sensitive or not. Failures are *KeyError.
func Validate(name string, value json.RawMessage, sensitive bool) error {
	k := lookup(name)
	if k == nil {
		return &KeyError{Key: name, Unknown: true,
			Reason: "unknown proxy key; the known ones are " + strings.Join(Keys(), ", ")}
	}
	if sensitive {
		return &KeyError{Key: name, Reason: "proxy keys cannot be sensitive"}
	}
	if reason := k.check(value); reason != "" {
		return &KeyError{Key: name, Reason: reason}
	}
	return nil
}

// jsonInteger returns the value of a JSON number that is a whole number.
func jsonInteger(v []byte) (int64, bool) {
	v = bytes.TrimSpace(v)
	if len(v) == 0 || v[0] != '-' && (v[0] < '0' || v[0] > '9') {
		return 0, false // json.Number would also take a quoted number
	}
	var num json.Number
	if err := json.Unmarshal(v, &num); err != nil {
		return 0, false
	}
	if n, err := num.Int64(); err == nil {
		return n, true
	}
	f, err := num.Float64()
	if err != nil || f != math.Trunc(f) || math.Abs(f) > 1<<53 {
		return 0, false
	}
	return int64(f), true
}

// maxStatementTimeoutMillis is one day, the longest timeout either timeout
// key takes.
const maxStatementTimeoutMillis = 86_400_000

const statementTimeoutWant = "must be an integer of milliseconds from 0 to 86400000, or a string such as \"30s\", \"500ms\" or \"2min\" (units us, ms, s, min, h, d) of at most one day"

var timeoutPattern = regexp.MustCompile(`^([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*(us|ms|s|min|h|d)?$`)

// timeoutUnits are PostgreSQL's time units, in milliseconds.
var timeoutUnits = map[string]float64{"us": 0.001, "": 1, "ms": 1, "s": 1000, "min": 60_000, "h": 3_600_000, "d": 86_400_000}

// statementTimeoutMillis reads a proxy.statement_timeout (or
// proxy.idle_in_transaction_timeout) value: a JSON
// integer of milliseconds, or a JSON string of a number with an optional
// PostgreSQL time unit (us, ms, s, min, h, d; none means ms), such as "30s",
// "500ms", "2min" or "1.5h", rounded to whole milliseconds. The result is
// 0..86400000 (0 disables the timeout); ok is false for anything else.
func statementTimeoutMillis(v json.RawMessage) (ms int, ok bool) {
	v = bytes.TrimSpace(v)
	var f float64
	switch {
	case len(v) > 0 && v[0] == '"':
		var s string
		if err := json.Unmarshal(v, &s); err != nil {
			return 0, false
		}
		m := timeoutPattern.FindStringSubmatch(strings.TrimSpace(s))
		if m == nil {
			return 0, false
		}
		n, err := strconv.ParseFloat(m[1], 64)
		if err != nil {
			return 0, false
		}
		f = math.Round(n * timeoutUnits[m[2]])
	default:
		n, ok := jsonInteger(v)
		if !ok {
			return 0, false
		}
		f = float64(n)
	}
	if f < 0 || f > maxStatementTimeoutMillis {
		return 0, false
	}
	return int(f), true
}
