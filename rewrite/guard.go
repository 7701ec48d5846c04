package rewrite

import (
	"strings"

	lru "github.com/hashicorp/golang-lru/v2"
	pg_query "github.com/pganalyze/pg_query_go/v5"
)

// SQLSTATEs of the guard's refusals.
const (
	// CodeInsufficientPrivilege (42501, insufficient_privilege) is the
	// SQLSTATE of every refusal but those below.
	CodeInsufficientPrivilege = "42501"
	// CodeFeatureNotSupported (0A000, feature_not_supported) refuses a value
	// of a setting the proxy keeps fixed: standard_conforming_strings off or
	// a client encoding that is not ASCII-safe. The startup packet's
	// allow-list refuses the same values with the same SQLSTATE.
	CodeFeatureNotSupported = "0A000"
)

const (
	// defaultGuardCacheSize is GuardConfig.CacheSize when left zero.
	defaultGuardCacheSize = 10000
	// maxCachedSQLLen: longer texts are checked on every call, never cached,
	// so a client cannot fill the cache with megabytes of SQL.
	maxCachedSQLLen = 8 << 10
)

// Verdict is the guard's answer for one Query or Parse text. All fields are
// plain values: a Verdict may be copied and kept.
type Verdict struct {
	// Allow is false when the proxy must refuse the text with Code and Message
	// instead of sending it to the backend.
	Allow bool
	// Code is the SQLSTATE of a refusal (CodeInsufficientPrivilege or
	// CodeFeatureNotSupported); "" when allowed.
	Code string
	// Message names what was refused and why, for the ErrorResponse; "" when
	// allowed.
	Message string
	// Reason is a short label for metrics and logs. Refusals always have one
	// ("set_role", "set_config_role", "stratum_setting", ...); allowed texts
	// have "tenant_setting", "reset_all", "discard_all", "discard_plans",
	// "discard_sequences", "discard_temp", "parse_error", or "".
	Reason string
	// Writes: the text may modify data (INSERT, UPDATE, DELETE, MERGE, COPY
	// FROM, TRUNCATE, SELECT INTO, data-modifying WITH, CALL, EXECUTE, DO,
	// LOCK, VACUUM/ANALYZE, REFRESH MATERIALIZED VIEW, ...). Locking reads
	// (SELECT ... FOR UPDATE) are not writes, and neither are function calls
	// in a SELECT: the guard cannot see what a function does.
	Writes bool
	// DDL: the text changes the schema or privileges (CREATE, ALTER, DROP,
	// COMMENT, GRANT, REVOKE, SECURITY LABEL, SELECT INTO, DO, ...).
	// TRUNCATE is a write, not DDL.
	DDL bool
	// Fingerprint is pg_query's fingerprint (hex) of the whole text: equal for
	// texts that differ only in literals, so it can be logged instead of the
	// SQL. "" when the text does not parse.
	Fingerprint string
	// TxControl: the text holds only transaction control (BEGIN, COMMIT,
	// ROLLBACK, SAVEPOINT, RELEASE, PREPARE TRANSACTION, ...).
	TxControl bool
	// ResetsSession: the text resets session state (DISCARD ALL, RESET ALL,
	// DISCARD PLANS, DISCARD SEQUENCES, DISCARD TEMP), which pooled mode must
	// handle itself.
	ResetsSession bool
}

// GuardConfig configures a Guard.
type GuardConfig struct {
	// CacheSize is the number of verdicts kept, keyed by the exact SQL text;
	// texts longer than 8 KiB are never cached. Zero or negative means 10000.
	CacheSize int
}

// Guard is the proxy's second layer of tenant isolation: it refuses
// statements that try to change the tenant context and classifies the rest
// for the sql.write and sql.ddl permissions. It is safe for concurrent use.
type Guard struct {
	// cache maps an exact SQL text to its verdict; it locks itself.
	cache *lru.Cache[string, Verdict]
}

// NewGuard returns a Guard with cfg's defaults filled in. A Guard holds no
// resources and needs no Close.
func NewGuard(cfg GuardConfig) *Guard {
	if cfg.CacheSize <= 0 {
		cfg.CacheSize = defaultGuardCacheSize
	}
	cache, err := lru.New[string, Verdict](cfg.CacheSize)
	if err != nil {
		// lru.New fails only for a size <= 0, excluded above.
		panic("rewrite: creating guard cache: " + err.Error())
	}
	return &Guard{cache: cache}
}

// Check returns the verdict for sql, one Query message's text or one Parse
// message's statement. Verdicts of texts up to 8 KiB are cached by exact text.
func (g *Guard) Check(sql string) Verdict {
	if len(sql) > maxCachedSQLLen {
		return checkSQL(sql)
	}
	if v, ok := g.cache.Get(sql); ok {
		return v
	}
	v := checkSQL(sql)
	// Clone: the caller's string may be a view of a reused read buffer.
	g.cache.Add(strings.Clone(sql), v)
	return v
}

// checkSQL computes a verdict without the cache.
func checkSQL(sql string) Verdict {
	// PostgreSQL reads a Query or Parse text up to its first NUL, and so does
	// pg_query (the text crosses into C); make that explicit.
	if i := strings.IndexByte(sql, 0); i >= 0 {
		sql = sql[:i]
	}
	c := &checker{}
	var res guardResult
	tree, err := pg_query.Parse(sql)
	if err == nil {
		res = c.topStatements(tree.Stmts)
	} else {
		res = c.unparseable(sql)
	}
	v := Verdict{
		Allow:         true,
		Writes:        res.class.writes,
		DDL:           res.class.ddl,
		TxControl:     res.class.tx,
		ResetsSession: c.resets,
		Reason:        res.reason,
	}
	if err == nil {
		if fp, ferr := pg_query.Fingerprint(sql); ferr == nil {
			v.Fingerprint = fp
		}
	} else if v.Reason == "" {
		v.Reason = "parse_error"
	}
	if c.deny != nil {
		v.Allow = false
		v.Code = c.deny.code
		v.Reason = c.deny.reason
		v.Message = c.deny.message
	}
	return v
}

// Classify reports whether sql may modify data and whether it is DDL, always
// equal to Check's Writes and DDL. Plain single SELECT, INSERT, UPDATE, DELETE
// and MERGE statements are answered from their first keyword without parsing;
// anything else goes through the cached Check.
func (g *Guard) Classify(sql string) (writes, ddl bool) {
	if w, d, ok := classifyByKeyword(sql); ok {
		return w, d
	}
	v := g.Check(sql)
	return v.Writes, v.DDL
}

// guardClass is the classification of one statement or of a whole text.
type guardClass struct {
	writes, ddl, tx bool
}

func (a guardClass) or(b guardClass) guardClass {
	return guardClass{writes: a.writes || b.writes, ddl: a.ddl || b.ddl}
}

// guardResult is what checking a list of statements yields besides refusals.
type guardResult struct {
	class  guardClass
	reason string // first allowed reason: tenant_setting, reset_all, ...
}
