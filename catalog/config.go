package catalog

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/stratum-hq/stratum-proxy/policy"
)

// TenantRef names a tenant in API answers.
type TenantRef struct {
	ID   string `json:"id"`
	Slug string `json:"slug"`
}

// ConfigEntry is one key of a tenant's resolved config; Value is plaintext
// (decrypted).
type ConfigEntry struct {
	Key       string          `json:"key"`
	Value     json.RawMessage `json:"value"`
	Source    TenantRef       `json:"source"`
	Inherited bool            `json:"inherited"`
	Locked    bool            `json:"locked"`
	LockedBy  *TenantRef      `json:"locked_by,omitempty"`
	Sensitive bool            `json:"sensitive"`
}

// ConfigValue is what a tenant stores for one config key.
type ConfigValue struct {
	// Value is any JSON value except null, at most MaxConfigValueBytes once
	// compacted.
	Value json.RawMessage
	// Locked fixes the value for the tenant's whole subtree: no descendant may
	// set the key, and values descendants already hold are ignored.
	Locked bool
	// Sensitive seals the value (AES-256-GCM under the catalog keyring); it is
	// never stored in the clear.
	Sensitive bool
	// Capped refuses a value of a limit key (policy.IsLimit) looser than the
	// cap the tenant inherits (policy.InheritedCap). The admin API sets it
	// for keys bound to a tenant; without it any value is stored, and the
	// cap still applies when the policy is resolved.
	Capped bool
	// PlatformMaxConns is the proxy's per-tenant connection limit: with
	// Capped, the cap of proxy.max_connections where no ancestor sets one, so
	// that a tenant cannot raise its own share above the platform's default.
	PlatformMaxConns int
}

// MaxConfigValueBytes bounds a config value's compact JSON encoding.
const MaxConfigValueBytes = 64 << 10

// MaxValueDepth bounds how deeply a config or permission value nests arrays
// and objects. A deeper value would make every answer that shows it (the
// resolved config, the audit log) too deep for common JSON decoders.
const MaxValueDepth = 64

// jsonDepth returns how deeply the JSON text nests arrays and objects.
func jsonDepth(text []byte) int {
	depth, deepest, inString, escaped := 0, 0, false, false
	for _, c := range text {
		switch {
		case inString && escaped:
			escaped = false
		case inString && c == '\\':
			escaped = true
		case inString:
			inString = c != '"'
		case c == '"':
			inString = true
		case c == '[' || c == '{':
			depth++
			deepest = max(deepest, depth)
		case c == ']' || c == '}':
			depth--
		}
	}
	return deepest
}

// MaskedValue is the JSON a sensitive value reads as when it is not revealed.
const MaskedValue = `"********"`

var configKeyPattern = regexp.MustCompile(`^[a-z][a-z0-9_]{0,62}(\.[a-z][a-z0-9_]{0,62}){0,7}$`)

// ValidConfigKey reports whether key is a well-formed config key: up to eight
// dot-separated parts, each a lower-case letter then up to 62 lower-case
// letters, digits or underscores, 200 characters at most.
func ValidConfigKey(key string) bool {
	return len(key) <= 200 && configKeyPattern.MatchString(key)
}

// ConfigError says why a config key or value was refused. It matches
// ErrInvalid.
type ConfigError struct {
	Key    string
	Reason string
	// Known lists the accepted keys when Key is an unknown "proxy." key
	// (policy.Keys).
	Known []string
}

// Error names the key and the reason.
func (e *ConfigError) Error() string { return fmt.Sprintf("config key %q: %s", e.Key, e.Reason) }

// Unwrap makes a ConfigError match ErrInvalid.
func (e *ConfigError) Unwrap() error { return ErrInvalid }

// LockedError refuses a write of Key on a tenant below By, which has locked
// Key. It matches ErrLocked.
type LockedError struct {
	Key string
	By  TenantRef
}

// Error names the key and the locking tenant.
func (e *LockedError) Error() string {
	return fmt.Sprintf("config key %q is locked by ancestor tenant %q (%s); change it on %s or unlock it there first",
		e.Key, e.By.Slug, e.By.ID, e.By.Slug)
}

// Unwrap makes a LockedError match ErrLocked.
func (e *LockedError) Unwrap() error { return ErrLocked }

// ValidateConfig checks key and v as SetConfig would, without a database: the
// key's form, the value (present, not null, small enough, storable) and the
// rules of the "proxy." keys (policy.Validate). Failures are *ConfigError.
func ValidateConfig(key string, v ConfigValue) error {
	if !ValidConfigKey(key) {
		return &ConfigError{Key: key, Reason: "a key is up to 8 dot-separated parts, each a lower-case letter then up to 62 lower-case letters, digits or underscores (200 characters at most)"}
	}
	if len(bytes.TrimSpace(v.Value)) == 0 {
		return &ConfigError{Key: key, Reason: "a value is required"}
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, v.Value); err != nil {
		return &ConfigError{Key: key, Reason: "the value is not valid JSON"}
	}
	if buf.String() == "null" {
		return &ConfigError{Key: key, Reason: "null is not a value; DELETE the key to remove the tenant's value"}
	}
	if buf.Len() > MaxConfigValueBytes {
		return &ConfigError{Key: key, Reason: fmt.Sprintf("the value is %d bytes of JSON; at most %d (64 KiB) are allowed", buf.Len(), MaxConfigValueBytes)}
	}
	if d := jsonDepth(buf.Bytes()); d > MaxValueDepth {
		return &ConfigError{Key: key, Reason: fmt.Sprintf("the value nests arrays and objects %d deep; at most %d levels are allowed", d, MaxValueDepth)}
	}
	if configHasNUL(buf.Bytes()) {
		return &ConfigError{Key: key, Reason: "the value must not contain a NUL character (\\u0000)"}
	}
	if policy.Governs(key) {
		var ke *policy.KeyError
		if err := policy.Validate(key, buf.Bytes(), v.Sensitive); errors.As(err, &ke) {
			ce := &ConfigError{Key: key, Reason: ke.Reason}
			if ke.Unknown {
				ce.Known = policy.Keys()
			}
			return ce
		} else if err != nil {
			return &ConfigError{Key: key, Reason: err.Error()}
		}
	}
	return nil
}

// configHasNUL reports whether any string (member names included) of the JSON text
// holds a NUL character, which PostgreSQL's jsonb cannot store.
func configHasNUL(text []byte) bool {
	dec := json.NewDecoder(bytes.NewReader(text))
	for {
		tok, err := dec.Token()
		if err != nil {
			return !errors.Is(err, io.EOF) // unreachable for valid JSON
		}
		if s, ok := tok.(string); ok && strings.IndexByte(s, 0) >= 0 {
			return true
		}
	}
}

// configAAD binds a sealed config value to its row.
func configAAD(tenantID, key string) []byte { return []byte(tenantID + "/" + key) }

type configQuerier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// ResolveConfig returns the tenant's resolved config, sorted by key, with
// sensitive values decrypted. For each key the topmost locked value on the
// path from the root to the tenant wins; without a lock, the nearest value
// (the tenant's own, else its closest ancestor's) does. ErrNotFound when
// there is no such tenant.
func (c *Catalog) ResolveConfig(ctx context.Context, tenantID string) ([]ConfigEntry, error) {
	_, entries, err := c.resolveConfig(ctx, c.pool, tenantID, "", true)
	return entries, err
}

// ReadConfig is ResolveConfig for display: unless reveal is set, sensitive
// values are not decrypted and read as MaskedValue. It also returns the
// tenant's ref.
func (c *Catalog) ReadConfig(ctx context.Context, tenantID string, reveal bool) (TenantRef, []ConfigEntry, error) {
	return c.resolveConfig(ctx, c.pool, tenantID, "", reveal)
}

// ReadConfigKey returns one key of the tenant's resolved config (masked unless
// reveal, as ReadConfig); ErrNotFound when the tenant or the key is missing.
func (c *Catalog) ReadConfigKey(ctx context.Context, tenantID, key string, reveal bool) (*ConfigEntry, error) {
	if !ValidConfigKey(key) {
		return nil, fmt.Errorf("config key %q: %w", key, ErrNotFound)
	}
	ref, entries, err := c.resolveConfig(ctx, c.pool, tenantID, key, reveal)
	if err != nil {
		return nil, err
	}
	if len(entries) == 0 {
		return nil, fmt.Errorf("config key %q is not set on tenant %q or its ancestors: %w", key, ref.Slug, ErrNotFound)
	}
	return &entries[0], nil
}

// resolveConfig resolves every key (or only key, when not empty) of the
// tenant's config in one query over the tenant's ancestors (ltree @>).
func (c *Catalog) resolveConfig(ctx context.Context, q configQuerier, tenantID, key string, reveal bool) (TenantRef, []ConfigEntry, error) {
	if !IsUUID(tenantID) {
		return TenantRef{}, nil, fmt.Errorf("tenant %q: %w", tenantID, ErrNotFound)
	}
	tenantID = strings.ToLower(tenantID)
	rows, err := q.Query(ctx, `SELECT tg.slug, s.id, s.slug, s.key, s.value, s.locked, s.sensitive, s.key_id, s.ciphertext
		FROM tenants tg
		LEFT JOIN LATERAL (
			SELECT t.id::text, t.slug, t.depth, cv.key, cv.value::text, cv.locked, cv.sensitive, cv.key_id, cv.ciphertext
			FROM tenants t JOIN config_values cv ON cv.tenant_id = t.id
			WHERE t.path @> tg.path AND ($2 = '' OR cv.key = $2)) s ON true
		WHERE tg.id = $1
		ORDER BY s.key COLLATE "C", s.depth`, tenantID, key)
	if err != nil {
		return TenantRef{}, nil, fmt.Errorf("resolving config: %w", err)
	}
	defer rows.Close()
	type stored struct {
		source    TenantRef
		key       string
		value     *string
		locked    bool
		sensitive bool
		keyID     *string
		sealed    []byte
	}
	var (
		ref   = TenantRef{ID: tenantID}
		found bool
		byKey [][]stored // each key's values, root first
	)
	for rows.Next() {
		var (
			s                 stored
			srcID, srcSlug, k *string
			locked, sensitive *bool
		)
		if err := rows.Scan(&ref.Slug, &srcID, &srcSlug, &k, &s.value, &locked, &sensitive, &s.keyID, &s.sealed); err != nil {
			return TenantRef{}, nil, fmt.Errorf("resolving config: %w", err)
		}
		found = true
		if k == nil {
			continue // the tenant exists and nothing applies to it
		}
		s.source, s.key, s.locked, s.sensitive = TenantRef{ID: *srcID, Slug: *srcSlug}, *k, *locked, *sensitive
		if n := len(byKey); n > 0 && byKey[n-1][0].key == s.key {
			byKey[n-1] = append(byKey[n-1], s)
		} else {
			byKey = append(byKey, []stored{s})
		}
	}
	if err := rows.Err(); err != nil {
		return TenantRef{}, nil, fmt.Errorf("resolving config: %w", err)
	}
	if !found {
		return TenantRef{}, nil, fmt.Errorf("tenant %q: %w", tenantID, ErrNotFound)
	}
	entries := make([]ConfigEntry, 0, len(byKey))
	for _, vs := range byKey {
		win := vs[len(vs)-1] // the nearest value
		if i := slices.IndexFunc(vs, func(s stored) bool { return s.locked }); i >= 0 {
			win = vs[i] // the topmost lock beats everything below it
		}
		e := ConfigEntry{Key: win.key, Source: win.source, Inherited: win.source.ID != tenantID,
			Locked: win.locked, Sensitive: win.sensitive}
		if win.locked {
			by := win.source
			e.LockedBy = &by
		}
		switch {
		case !win.sensitive:
			e.Value = json.RawMessage(*win.value)
		case !reveal:
			e.Value = json.RawMessage(MaskedValue)
		default:
			if win.keyID == nil {
				return TenantRef{}, nil, fmt.Errorf("opening config value %q of tenant %s: no key id", win.key, win.source.Slug)
			}
			pt, err := c.keys.Open(*win.keyID, win.sealed, configAAD(win.source.ID, win.key))
			if err != nil {
				return TenantRef{}, nil, fmt.Errorf("opening config value %q of tenant %s: %w", win.key, win.source.Slug, err)
			}
			e.Value = json.RawMessage(pt)
		}
		entries = append(entries, e)
	}
	return ref, entries, nil
}

// configState is a tenant's own value of one key as the audit log records it;
// a sensitive value is always masked.
type configState struct {
	Value     json.RawMessage `json:"value"`
	Locked    bool            `json:"locked"`
	Sensitive bool            `json:"sensitive"`
}

// configLockClass is the first half of the advisory lock that serialises
// writes of one config key (the second half is the key's hash), so that a
// write below an ancestor cannot slip past that ancestor's new lock.
const configLockClass = 0x636f6e66 // "conf"

// SetConfig stores the tenant's own value of key, with a "config.set" audit
// row. It fails with *ConfigError (ErrInvalid) for a bad key or value,
// *LockedError (ErrLocked) when an ancestor has locked key, and ErrNotFound
// for an unknown tenant. The tenant that holds a lock may change or unlock it.
func (c *Catalog) SetConfig(ctx context.Context, tenantID, key string, v ConfigValue) error {
	if err := ValidateConfig(key, v); err != nil {
		return err
	}
	err := c.inTx(ctx, func(tx pgx.Tx) error {
		if err := lockConfigKeys(ctx, tx, []string{key}); err != nil {
			return err
		}
		t, err := reachable(ctx, tx, tenantID, " FOR KEY SHARE")
		if err != nil {
			return err
		}
		ev, err := c.setConfigTx(ctx, tx, t, key, v)
		if err != nil {
			return err
		}
		return appendAudit(ctx, tx, ev)
	})
	if err != nil {
		return fmt.Errorf("setting config: %w", err)
	}
	return nil
}

// DeleteConfig removes the tenant's own value of key, with a "config.delete"
// audit row, so that the inherited value (if any) shows through. It fails
// with ErrNotFound when the tenant has no value of its own and *LockedError
// when an ancestor has locked key.
func (c *Catalog) DeleteConfig(ctx context.Context, tenantID, key string) error {
	if !ValidConfigKey(key) {
		return &ConfigError{Key: key, Reason: "not a valid config key"}
	}
	err := c.inTx(ctx, func(tx pgx.Tx) error {
		if err := lockConfigKeys(ctx, tx, []string{key}); err != nil {
			return err
		}
		t, err := reachable(ctx, tx, tenantID, " FOR KEY SHARE")
		if err != nil {
			return err
		}
		ev, err := deleteConfigTx(ctx, tx, t, key)
		if err != nil {
			return err
		}
		return appendAudit(ctx, tx, ev)
	})
	if err != nil {
		return fmt.Errorf("deleting config: %w", err)
	}
	return nil
}

// ApplyConfig applies a batch of changes to the tenant's own values in one
// transaction: a non-nil ConfigValue sets its key, nil deletes it. Each key is
// applied in its own savepoint, so a key that fails (invalid, locked, nothing
// to delete) is reported in failed and the others still apply; applied lists
// the keys that did, sorted. err is set, and nothing applied, only when the
// tenant is missing or the catalog fails.
func (c *Catalog) ApplyConfig(ctx context.Context, tenantID string, changes map[string]*ConfigValue) (applied []string, failed map[string]error, err error) {
	failed = map[string]error{}
	keys := make([]string, 0, len(changes))
	for k, v := range changes {
		var verr error
		switch {
		case v == nil && !ValidConfigKey(k):
			verr = &ConfigError{Key: k, Reason: "not a valid config key"}
		case v != nil:
			verr = ValidateConfig(k, *v)
		}
		if verr != nil {
			failed[k] = verr
			continue
		}
		keys = append(keys, k)
	}
	slices.Sort(keys)
	err = c.inTx(ctx, func(tx pgx.Tx) error {
		applied = nil
		if err := lockConfigKeys(ctx, tx, keys); err != nil {
			return err
		}
		t, err := reachable(ctx, tx, tenantID, " FOR KEY SHARE")
		if err != nil {
			return err
		}
		var events []AuditEvent
		for _, k := range keys {
			ev, kerr := c.applyOne(ctx, tx, t, k, changes[k])
			switch {
			case kerr == nil:
				applied = append(applied, k)
				events = append(events, ev)
			case errors.Is(kerr, ErrInvalid), errors.Is(kerr, ErrLocked), errors.Is(kerr, ErrNotFound):
				failed[k] = kerr
			default:
				return kerr
			}
		}
		// Audit rows last: the audit chain's lock is then always the last one
		// a config transaction takes.
		for _, ev := range events {
			if err := appendAudit(ctx, tx, ev); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("applying config batch: %w", err)
	}
	if applied == nil {
		applied = []string{}
	}
	return applied, failed, nil
}

// applyOne applies one change of a batch in a savepoint.
func (c *Catalog) applyOne(ctx context.Context, tx pgx.Tx, t *Tenant, key string, v *ConfigValue) (AuditEvent, error) {
	sp, err := tx.Begin(ctx)
	if err != nil {
		return AuditEvent{}, fmt.Errorf("opening savepoint: %w", err)
	}
	var ev AuditEvent
	if v == nil {
		ev, err = deleteConfigTx(ctx, sp, t, key)
	} else {
		ev, err = c.setConfigTx(ctx, sp, t, key, *v)
	}
	if err != nil {
		if rerr := sp.Rollback(ctx); rerr != nil {
			return AuditEvent{}, fmt.Errorf("rolling back savepoint: %w", rerr)
		}
		return AuditEvent{}, err
	}
	if err := sp.Commit(ctx); err != nil {
		return AuditEvent{}, fmt.Errorf("releasing savepoint: %w", err)
	}
	return ev, nil
}

// lockConfigKeys takes the write locks of keys, in sorted order (callers pass
// them sorted), before any row lock, so writers never deadlock.
func lockConfigKeys(ctx context.Context, tx pgx.Tx, keys []string) error {
	// The tree lock, shared: no move rewrites paths while the lock checks
	// walk the ancestors (moves take it exclusively).
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock_shared($1)`, treeLockKey); err != nil {
		return fmt.Errorf("locking the tenant tree: %w", err)
	}
	for _, k := range keys {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1, hashtext($2))`, int32(configLockClass), k); err != nil {
			return fmt.Errorf("locking config key: %w", err)
		}
	}
	return nil
}

// configLockingAncestor returns the topmost proper ancestor of t that has locked key,
// as a *LockedError, or nil.
func configLockingAncestor(ctx context.Context, tx pgx.Tx, t *Tenant, key string) error {
	var by TenantRef
	err := tx.QueryRow(ctx, `SELECT t.id::text, t.slug FROM tenants t
		JOIN config_values cv ON cv.tenant_id = t.id AND cv.key = $2 AND cv.locked
		WHERE t.path @> $1::ltree AND t.id <> $3
		ORDER BY t.depth LIMIT 1`, t.Path, key, t.ID).Scan(&by.ID, &by.Slug)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("checking config locks: %w", err)
	}
	return &LockedError{Key: key, By: by}
}

// ownConfig reads and row-locks the tenant's own value of key, masked; nil
// when it has none.
func ownConfig(ctx context.Context, tx pgx.Tx, tenantID, key string) (*configState, error) {
	var (
		s     configState
		value *string
	)
	err := tx.QueryRow(ctx, `SELECT value::text, locked, sensitive FROM config_values
		WHERE tenant_id = $1 AND key = $2 FOR UPDATE`, tenantID, key).Scan(&value, &s.Locked, &s.Sensitive)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading config value: %w", err)
	}
	s.Value = json.RawMessage(MaskedValue)
	if !s.Sensitive && value != nil {
		s.Value = json.RawMessage(*value)
	}
	return &s, nil
}

// setConfigTx writes one validated value and returns its audit event.
func (c *Catalog) setConfigTx(ctx context.Context, tx pgx.Tx, t *Tenant, key string, v ConfigValue) (AuditEvent, error) {
	if err := configLockingAncestor(ctx, tx, t, key); err != nil {
		return AuditEvent{}, err
	}
	if v.Capped && policy.IsLimit(key) {
		above, err := limitValues(ctx, tx, t.ID, false)
		if err != nil {
			return AuditEvent{}, err
		}
		if cp, ok := policy.InheritedCap(key, above, t.Isolation == IsolationShared, v.PlatformMaxConns); ok && !cp.Admits(v.Value) {
			return AuditEvent{}, &ConfigError{Key: key, Reason: fmt.Sprintf(
				"must be at most %s: a tenant's limit may lower what it inherits, never raise it", cp)}
		}
	}
	before, err := ownConfig(ctx, tx, t.ID, key)
	if err != nil {
		return AuditEvent{}, err
	}
	var compact bytes.Buffer
	if err := json.Compact(&compact, v.Value); err != nil {
		return AuditEvent{}, &ConfigError{Key: key, Reason: "the value is not valid JSON"}
	}
	after := configState{Value: json.RawMessage(compact.Bytes()), Locked: v.Locked, Sensitive: v.Sensitive}
	var (
		value      *string
		keyID      *string
		ciphertext []byte
	)
	if v.Sensitive {
		id, ct, err := c.keys.Seal(compact.Bytes(), configAAD(t.ID, key))
		if err != nil {
			return AuditEvent{}, fmt.Errorf("sealing config value: %w", err)
		}
		keyID, ciphertext = &id, ct
		after.Value = json.RawMessage(MaskedValue)
	} else {
		s := compact.String()
		value = &s
	}
	_, err = tx.Exec(ctx, `INSERT INTO config_values (tenant_id, key, value, locked, sensitive, key_id, ciphertext)
		VALUES ($1, $2, $3::jsonb, $4, $5, $6, $7)
		ON CONFLICT (tenant_id, key) DO UPDATE SET value = excluded.value, locked = excluded.locked,
			sensitive = excluded.sensitive, key_id = excluded.key_id, ciphertext = excluded.ciphertext,
			updated_at = now()`, t.ID, key, value, v.Locked, v.Sensitive, keyID, ciphertext)
	if err != nil {
		var pe *pgconn.PgError
		if errors.As(err, &pe) && strings.HasPrefix(pe.Code, "22") {
			// Data exceptions: a number jsonb cannot hold, a lone surrogate, ...
			return AuditEvent{}, &ConfigError{Key: key, Reason: "the value cannot be stored: " + pe.Message}
		}
		return AuditEvent{}, fmt.Errorf("storing config value: %w", err)
	}
	ev := AuditEvent{Action: "config.set", Target: "config:" + t.Slug + "/" + key, TenantID: &t.ID, After: after}
	if before != nil {
		ev.Before = before
	}
	return ev, nil
}

// deleteConfigTx removes one own value and returns its audit event.
func deleteConfigTx(ctx context.Context, tx pgx.Tx, t *Tenant, key string) (AuditEvent, error) {
	if err := configLockingAncestor(ctx, tx, t, key); err != nil {
		return AuditEvent{}, err
	}
	before, err := ownConfig(ctx, tx, t.ID, key)
	if err != nil {
		return AuditEvent{}, err
	}
	if before == nil {
		return AuditEvent{}, fmt.Errorf("tenant %q has no value of its own for config key %q: %w", t.Slug, key, ErrNotFound)
	}
	if _, err := tx.Exec(ctx, `DELETE FROM config_values WHERE tenant_id = $1 AND key = $2`, t.ID, key); err != nil {
		return AuditEvent{}, fmt.Errorf("deleting config value: %w", err)
	}
	return AuditEvent{Action: "config.delete", Target: "config:" + t.Slug + "/" + key, TenantID: &t.ID, Before: before}, nil
}

// ConfigDifference is one key whose resolved values differ between two
// tenants; A or B is nil where the key does not resolve for that tenant.
type ConfigDifference struct {
	Key string       `json:"key"`
	A   *ConfigEntry `json:"a"`
	B   *ConfigEntry `json:"b"`
}

// DiffConfig compares the resolved config of tenants a and b (ids) and returns
// the keys whose values differ, sorted. Values are compared in the clear;
// unless reveal, sensitive values are then masked in the answer.
func (c *Catalog) DiffConfig(ctx context.Context, a, b string, reveal bool) (refA, refB TenantRef, diff []ConfigDifference, err error) {
	refA, ea, err := c.resolveConfig(ctx, c.pool, a, "", true)
	if err != nil {
		return refA, refB, nil, err
	}
	refB, eb, err := c.resolveConfig(ctx, c.pool, b, "", true)
	if err != nil {
		return refA, refB, nil, err
	}
	byKey := map[string]*ConfigDifference{}
	var keys []string
	side := func(es []ConfigEntry, set func(*ConfigDifference, *ConfigEntry)) {
		for i := range es {
			e := &es[i]
			d := byKey[e.Key]
			if d == nil {
				d = &ConfigDifference{Key: e.Key}
				byKey[e.Key] = d
				keys = append(keys, e.Key)
			}
			set(d, e)
		}
	}
	side(ea, func(d *ConfigDifference, e *ConfigEntry) { d.A = e })
	side(eb, func(d *ConfigDifference, e *ConfigEntry) { d.B = e })
	slices.Sort(keys)
	diff = []ConfigDifference{}
	for _, k := range keys {
		d := byKey[k]
		if d.A != nil && d.B != nil && sameConfigJSON(d.A.Value, d.B.Value) {
			continue
		}
		for _, e := range []*ConfigEntry{d.A, d.B} {
			if e != nil && e.Sensitive && !reveal {
				e.Value = json.RawMessage(MaskedValue)
			}
		}
		diff = append(diff, *d)
	}
	return refA, refB, diff, nil
}

// sameConfigJSON reports whether two JSON texts hold the same value (member order
// and spacing aside).
func sameConfigJSON(a, b json.RawMessage) bool {
	var va, vb any
	if json.Unmarshal(a, &va) != nil || json.Unmarshal(b, &vb) != nil {
		return bytes.Equal(a, b)
	}
	ca, _ := json.Marshal(va) // maps marshal with sorted keys
	cb, _ := json.Marshal(vb)
	return bytes.Equal(ca, cb)
}

// RotationResult is what RotateKeys did.
type RotationResult struct {
	// ActiveKeyID is the keyring's active key, which now seals everything.
	ActiveKeyID string `json:"active_key_id"`
	// Reencrypted counts the values sealed anew.
	Reencrypted RotationCounts `json:"reencrypted"`
}

// RotationCounts counts re-encrypted values by kind.
type RotationCounts struct {
	Config      int `json:"config"`
	Credentials int `json:"credentials"`
}

// RotateKeys re-encrypts, in one transaction with one "keys.rotate" audit
// row, every sensitive config value and every backend credential sealed
// under a key other than the keyring's active one. The old keys must still be
// in the keyring (after the active one); a value sealed under a key the ring
// lacks fails the whole rotation with secrets.ErrUnknownKey.
func (c *Catalog) RotateKeys(ctx context.Context) (*RotationResult, error) {
	res := &RotationResult{ActiveKeyID: c.keys.ActiveID()}
	err := c.inTx(ctx, func(tx pgx.Tx) error {
		res.Reencrypted = RotationCounts{}
		n, err := c.resealRows(ctx, tx, `SELECT tenant_id::text, key, key_id, ciphertext FROM config_values
			WHERE sensitive AND key_id <> $1 ORDER BY tenant_id, key FOR UPDATE`,
			`UPDATE config_values SET key_id = $3, ciphertext = $4 WHERE tenant_id = $1 AND key = $2`,
			func(tenantID, key string) []byte { return configAAD(tenantID, key) })
		if err != nil {
			return fmt.Errorf("re-encrypting config values: %w", err)
		}
		res.Reencrypted.Config = n
		n, err = c.resealRows(ctx, tx, `SELECT tenant_id::text, '', key_id, ciphertext FROM backend_credentials
			WHERE key_id <> $1 ORDER BY tenant_id FOR UPDATE`,
			`UPDATE backend_credentials SET key_id = $3, ciphertext = $4 WHERE tenant_id = $1 AND $2 = ''`,
			func(tenantID, _ string) []byte { return []byte(tenantID) })
		if err != nil {
			return fmt.Errorf("re-encrypting backend credentials: %w", err)
		}
		res.Reencrypted.Credentials = n
		return appendAudit(ctx, tx, AuditEvent{Action: "keys.rotate", Target: "keyring", After: res})
	})
	if err != nil {
		return nil, fmt.Errorf("rotating keys: %w", err)
	}
	return res, nil
}

// resealRows opens every row selectQ returns (tenant id, key, key id, ciphertext)
// and seals it again under the active key with updateQ.
func (c *Catalog) resealRows(ctx context.Context, tx pgx.Tx, selectQ, updateQ string, aad func(tenantID, key string) []byte) (int, error) {
	type sealed struct {
		tenantID, key, keyID string
		ct                   []byte
	}
	rows, err := tx.Query(ctx, selectQ, c.keys.ActiveID())
	if err != nil {
		return 0, err
	}
	all, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (sealed, error) {
		var s sealed
		err := r.Scan(&s.tenantID, &s.key, &s.keyID, &s.ct)
		return s, err
	})
	if err != nil {
		return 0, err
	}
	for _, s := range all {
		pt, err := c.keys.Open(s.keyID, s.ct, aad(s.tenantID, s.key))
		if err != nil {
			return 0, fmt.Errorf("opening the value of tenant %s %s: %w", s.tenantID, s.key, err)
		}
		id, ct, err := c.keys.Seal(pt, aad(s.tenantID, s.key))
		if err != nil {
			return 0, err
		}
		if _, err := tx.Exec(ctx, updateQ, s.tenantID, s.key, id, ct); err != nil {
			return 0, err
		}
	}
	return len(all), nil
}
