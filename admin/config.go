package admin

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/stratum-hq/stratum-proxy/catalog"
	"github.com/stratum-hq/stratum-proxy/internal/secrets"
)

// maxBatchKeys bounds the keys of one PATCH .../config.
const maxBatchKeys = 1000

// configRoutes: the resolved config of a tenant, its own values, batches,
// diffs and the re-encryption of sealed values.
func (a *API) configRoutes(mux *http.ServeMux) {
	a.route(mux, "/v1/tenants/{ref}/config", methods{
		http.MethodGet:   a.authed(scopesRead, a.getConfig),
		http.MethodPatch: a.authed(scopesWrite, a.patchConfig),
	})
	a.route(mux, "/v1/tenants/{ref}/config/{key}", methods{
		http.MethodGet:    a.authed(scopesRead, a.getConfigKey),
		http.MethodPut:    a.authed(scopesWrite, a.putConfigKey),
		http.MethodDelete: a.authed(scopesWrite, a.deleteConfigKey),
	})
	a.route(mux, "/v1/config/diff", methods{http.MethodGet: a.authed(scopesRead, a.diffConfig)})
	a.route(mux, "/v1/config/rotate-keys", methods{http.MethodPost: a.authed(scopesAdmin, a.rotateKeys)})
}

// configSetRequest is the body of PUT .../config/{key} and each non-null
// member of a PATCH .../config body.
type configSetRequest struct {
	Value     json.RawMessage `json:"value"`
	Locked    bool            `json:"locked"`
	Sensitive bool            `json:"sensitive"`
}

// configEntryBody is a resolved entry as the API shows it: masked is true
// when a sensitive value is hidden because the caller lacks secrets:read.
type configEntryBody struct {
	catalog.ConfigEntry
	Masked bool `json:"masked"`
}

func configEntryOf(e *catalog.ConfigEntry, reveal bool) *configEntryBody {
	if e == nil {
		return nil
	}
	return &configEntryBody{ConfigEntry: *e, Masked: e.Sensitive && !reveal}
}

// capsLimits reports whether the caller's values of limit keys must respect
// what the tenant inherits (catalog.ConfigValue.Capped): keys bound to a
// tenant, whose holder is that tenant, may lower a limit and never raise it.
// A platform key may set anything; the cap still applies below.
func capsLimits(r *http.Request) bool { return principalFrom(r.Context()).Root != nil }

// revealsSecrets reports whether the caller may read sensitive values in the clear.
func revealsSecrets(r *http.Request) bool { return principalFrom(r.Context()).has(ScopeSecretsRead) }

// configError turns the catalog's config refusals into API errors that name
// the key and, for a lock, the locking tenant; other errors pass through.
func configError(err error) error {
	var (
		le *catalog.LockedError
		ce *catalog.ConfigError
	)
	switch {
	case errors.As(err, &le):
		return &Error{Status: http.StatusConflict, Code: CodeLocked, Message: le.Error(),
			Details: map[string]any{"key": le.Key, "locked_by": le.By}}
	case errors.As(err, &ce):
		d := map[string]any{"key": ce.Key}
		if ce.Known != nil {
			d["known"] = ce.Known
		}
		return &Error{Status: http.StatusUnprocessableEntity, Code: CodeInvalid, Message: ce.Error(), Details: d}
	}
	return err
}

// validConfigKeyParam refuses a malformed key named in the path.
func validConfigKeyParam(key string) error {
	if catalog.ValidConfigKey(key) {
		return nil
	}
	return configError(catalog.ValidateConfig(key, catalog.ConfigValue{}))
}

// getConfig answers the tenant's resolved config, sorted by key.
func (a *API) getConfig(w http.ResponseWriter, r *http.Request) error {
	t, err := a.tenantFor(r, r.PathValue("ref"))
	if err != nil {
		return err
	}
	reveal := revealsSecrets(r)
	ref, entries, err := a.cat.ReadConfig(r.Context(), t.ID, reveal)
	if err != nil {
		return err
	}
	out := make([]*configEntryBody, len(entries))
	for i := range entries {
		out[i] = configEntryOf(&entries[i], reveal)
	}
	writeJSON(w, http.StatusOK, map[string]any{"tenant": ref, "config": out})
	return nil
}

// getConfigKey answers one resolved key, or 404 when it resolves to nothing.
func (a *API) getConfigKey(w http.ResponseWriter, r *http.Request) error {
	t, key, err := a.tenantAndKey(r, validConfigKeyParam)
	if err != nil {
		return err
	}
	reveal := revealsSecrets(r)
	e, err := a.cat.ReadConfigKey(r.Context(), t.ID, key, reveal)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, configEntryOf(e, reveal))
	return nil
}

// putConfigKey sets the tenant's own value of a key and answers the entry that
// now resolves. 409 "locked" when an ancestor has locked the key.
func (a *API) putConfigKey(w http.ResponseWriter, r *http.Request) error {
	t, err := a.tenantFor(r, r.PathValue("ref"))
	if err != nil {
		return err
	}
	key := r.PathValue("key")
	var req configSetRequest
	if err := decodeBody(w, r, &req); err != nil {
		return err
	}
	if err := a.cat.SetConfig(r.Context(), t.ID, key,
		catalog.ConfigValue{Value: req.Value, Locked: req.Locked, Sensitive: req.Sensitive, Capped: capsLimits(r), PlatformMaxConns: a.cfg.PlatformMaxConns}); err != nil {
		return configError(err)
	}
	reveal := revealsSecrets(r)
	e, err := a.cat.ReadConfigKey(r.Context(), t.ID, key, reveal)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, configEntryOf(e, reveal))
	return nil
}

// configDeleteBody answers a DELETE: the entry that now resolves (inherited
// from an ancestor), or null when none does.
type configDeleteBody struct {
	Key     string           `json:"key"`
	Deleted bool             `json:"deleted"`
	Entry   *configEntryBody `json:"entry"`
}

// deleteConfigKey removes the tenant's own value; 404 when it has none.
func (a *API) deleteConfigKey(w http.ResponseWriter, r *http.Request) error {
	t, key, err := a.tenantAndKey(r, validConfigKeyParam)
	if err != nil {
		return err
	}
	if err := a.cat.DeleteConfig(r.Context(), t.ID, key); err != nil {
		return configError(err)
	}
	reveal := revealsSecrets(r)
	e, err := a.cat.ReadConfigKey(r.Context(), t.ID, key, reveal)
	if err != nil && !errors.Is(err, catalog.ErrNotFound) {
		return err
	}
	writeJSON(w, http.StatusOK, configDeleteBody{Key: key, Deleted: true, Entry: configEntryOf(e, reveal)})
	return nil
}

// configBatchBody answers a PATCH: the keys applied and why the others were
// not.
type configBatchBody struct {
	Applied []string          `json:"applied"`
	Errors  map[string]*Error `json:"errors"`
}

// patchConfig applies a batch {"key": {"value","locked","sensitive"} | null}.
// Each key is applied or refused on its own (partial success): the answer is
// 200 with the applied keys and the per-key errors whenever the body itself
// is a well-formed object naming 1 to 1000 keys, even if every key was
// refused. Only a malformed body (400), an empty or oversized batch (422), a
// tenant out of reach (404) or a catalog failure fails the whole request.
func (a *API) patchConfig(w http.ResponseWriter, r *http.Request) error {
	t, err := a.tenantFor(r, r.PathValue("ref"))
	if err != nil {
		return err
	}
	var body map[string]json.RawMessage
	if err := decodeBody(w, r, &body); err != nil {
		return err
	}
	if len(body) == 0 || len(body) > maxBatchKeys {
		return &Error{Status: http.StatusUnprocessableEntity, Code: CodeInvalid,
			Message: fmt.Sprintf("a config batch names 1 to %d keys; this one names %d", maxBatchKeys, len(body)),
			Details: map[string]any{"keys": len(body), "max_keys": maxBatchKeys}}
	}
	errs := map[string]*Error{}
	changes := map[string]*catalog.ConfigValue{}
	for key, raw := range body {
		if string(raw) == "null" {
			changes[key] = nil
			continue
		}
		if raw[0] != '{' {
			errs[key] = &Error{Status: http.StatusBadRequest, Code: CodeBadRequest,
				Message: fmt.Sprintf("config key %q: give an object {\"value\": …, \"locked\": …, \"sensitive\": …}, or null to delete the tenant's value", key),
				Details: map[string]any{"key": key}}
			continue
		}
		var req configSetRequest
		if e := decodeJSON(raw, &req); e != nil {
			e.Message = fmt.Sprintf("config key %q: %s", key, e.Message)
			if e.Details == nil {
				e.Details = map[string]any{}
			}
			e.Details["key"] = key
			errs[key] = e
			continue
		}
		changes[key] = &catalog.ConfigValue{Value: req.Value, Locked: req.Locked, Sensitive: req.Sensitive, Capped: capsLimits(r), PlatformMaxConns: a.cfg.PlatformMaxConns}
	}
	applied, failed, err := a.cat.ApplyConfig(r.Context(), t.ID, changes)
	if err != nil {
		return err
	}
	for key, kerr := range failed {
		e, _ := classify(configError(kerr))
		if e.Details == nil {
			e.Details = map[string]any{"key": key}
		}
		errs[key] = e
	}
	writeJSON(w, http.StatusOK, configBatchBody{Applied: applied, Errors: errs})
	return nil
}

// configDiffBody answers GET /v1/config/diff.
type configDiffBody struct {
	A           catalog.TenantRef `json:"a"`
	B           catalog.TenantRef `json:"b"`
	Differences []configDiffEntry `json:"differences"`
}

type configDiffEntry struct {
	Key string           `json:"key"`
	A   *configEntryBody `json:"a"`
	B   *configEntryBody `json:"b"`
}

// diffConfig answers the keys whose resolved values differ between tenants a
// and b (?a=&b=, slug or id). Values are compared in the clear and masked in
// the answer unless the caller has secrets:read.
func (a *API) diffConfig(w http.ResponseWriter, r *http.Request) error {
	q, err := knownParamsOnly(r, "a", "b")
	if err != nil {
		return err
	}
	refA, refB := q.Get("a"), q.Get("b")
	if refA == "" || refB == "" {
		return badRequest("name the two tenants to compare: ?a=<slug|id>&b=<slug|id>",
			map[string]any{"a": refA, "b": refB})
	}
	ta, err := a.tenantFor(r, refA)
	if err != nil {
		return err
	}
	tb, err := a.tenantFor(r, refB)
	if err != nil {
		return err
	}
	reveal := revealsSecrets(r)
	ra, rb, diff, err := a.cat.DiffConfig(r.Context(), ta.ID, tb.ID, reveal)
	if err != nil {
		return err
	}
	body := configDiffBody{A: ra, B: rb, Differences: make([]configDiffEntry, len(diff))}
	for i, d := range diff {
		body.Differences[i] = configDiffEntry{Key: d.Key, A: configEntryOf(d.A, reveal), B: configEntryOf(d.B, reveal)}
	}
	writeJSON(w, http.StatusOK, body)
	return nil
}

// rotateKeys re-encrypts every sealed value under the keyring's active key.
// Keys bound to a tenant are refused: the keyring is the platform's.
func (a *API) rotateKeys(w http.ResponseWriter, r *http.Request) error {
	if p := principalFrom(r.Context()); p.Root != nil {
		return &Error{Status: http.StatusForbidden, Code: CodeForbidden,
			Message: "a key bound to a tenant cannot rotate the platform's encryption keys",
			Details: map[string]any{"key_id": p.KeyID}}
	}
	res, err := a.cat.RotateKeys(r.Context())
	if errors.Is(err, secrets.ErrUnknownKey) {
		return &Error{Status: http.StatusConflict, Code: CodeConflict,
			Message: "a sealed value uses a key the keyring lacks; add the old key to the keyring after the active one and retry (nothing was re-encrypted)"}
	}
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, res)
	return nil
}
