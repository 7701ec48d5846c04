package admin

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/stratum-hq/stratum-proxy/catalog"
)

// CodeWidening is the error code of a delegated permission set wider than the
// value delegated from above (422).
const CodeWidening = "widening"

// permissionRoutes: a tenant's resolved permissions, and granting and
// revoking its own policies. The rules (modes, narrowing, revocation) are the
// catalog's; see catalog/permissions.go.
func (a *API) permissionRoutes(mux *http.ServeMux) {
	a.route(mux, "/v1/tenants/{ref}/permissions", methods{
		http.MethodGet: a.authed(scopesRead, a.getPermissions),
	})
	a.route(mux, "/v1/tenants/{ref}/permissions/{key}", methods{
		http.MethodGet:    a.authed(scopesRead, a.getPermission),
		http.MethodPut:    a.authed(scopesWrite, a.putPermission),
		http.MethodDelete: a.authed(scopesWrite, a.deletePermission),
	})
}

// permissionSetRequest is the body of PUT .../permissions/{key}. Every member
// is required; value may be any JSON, null included.
type permissionSetRequest struct {
	Value      json.RawMessage `json:"value"`
	Mode       string          `json:"mode"`
	Revocation string          `json:"revocation"`
}

// permissionError turns the catalog's permission refusals into API errors that
// name the policy that refused and who may change it; other errors pass
// through to classify.
func permissionError(err error) error {
	var pe *catalog.PermissionError
	if !errors.As(err, &pe) {
		return err
	}
	d := map[string]any{"key": pe.Key, "reason": pe.Reason, "tenant": pe.Target,
		"holder": pe.Holder, "mode": pe.Mode, "revocation": pe.Revocation, "granted_by": pe.GrantedBy}
	if pe.Reason == catalog.ReasonWidening {
		d["value"], d["delegated_value"] = pe.Value, pe.Limit
		return &Error{Status: http.StatusUnprocessableEntity, Code: CodeWidening, Message: pe.Error(), Details: d}
	}
	return &Error{Status: http.StatusConflict, Code: CodeLocked, Message: pe.Error(), Details: d}
}

// validPermissionKeyParam refuses a malformed key named in the path.
func validPermissionKeyParam(key string) error {
	if catalog.ValidPermissionKey(key) {
		return nil
	}
	return &Error{Status: http.StatusUnprocessableEntity, Code: CodeInvalid,
		Message: fmt.Sprintf("permission key %q is malformed: use up to 8 dot-separated names, each a lower-case letter then lower-case letters, digits or underscores", key),
		Details: map[string]any{"key": key}}
}

// getPermissions answers the tenant's resolved permissions, sorted by key.
func (a *API) getPermissions(w http.ResponseWriter, r *http.Request) error {
	t, err := a.tenantFor(r, r.PathValue("ref"))
	if err != nil {
		return err
	}
	entries, err := a.cat.ResolvePermissions(r.Context(), t.ID)
	if errors.Is(err, catalog.ErrNotFound) {
		return tenantNotFound(r.PathValue("ref")) // removed meanwhile
	}
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"tenant": catalog.TenantRef{ID: t.ID, Slug: t.Slug},
		"permissions": entries})
	return nil
}

// getPermission answers one resolved key, or 404 when no policy reaches the
// tenant.
func (a *API) getPermission(w http.ResponseWriter, r *http.Request) error {
	t, key, err := a.tenantAndKey(r, validPermissionKeyParam)
	if err != nil {
		return err
	}
	e, err := a.cat.ResolvePermission(r.Context(), t.ID, key)
	if errors.Is(err, catalog.ErrNotFound) {
		return &Error{Status: http.StatusNotFound, Code: CodeNotFound,
			Message: fmt.Sprintf("no permission policy for %q reaches tenant %q", key, t.Slug),
			Details: map[string]any{"tenant": t.Slug, "key": key}}
	}
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, e)
	return nil
}

// putPermission grants or changes the tenant's own policy for a key and
// answers the entry that now resolves. 409 "locked" when a LOCKED, INHERITED
// or PERMANENT policy forbids it; 422 "widening" when a delegated value would
// be widened.
func (a *API) putPermission(w http.ResponseWriter, r *http.Request) error {
	t, key, err := a.tenantAndKey(r, validPermissionKeyParam)
	if err != nil {
		return err
	}
	var req permissionSetRequest
	if err := decodeBody(w, r, &req); err != nil {
		return err
	}
	var missing []string
	if len(req.Value) == 0 {
		missing = append(missing, "value")
	}
	if req.Mode == "" {
		missing = append(missing, "mode")
	}
	if req.Revocation == "" {
		missing = append(missing, "revocation")
	}
	if len(missing) > 0 {
		return &Error{Status: http.StatusUnprocessableEntity, Code: CodeInvalid,
			Message: fmt.Sprintf("missing %v: a policy needs value (any JSON), mode (LOCKED, INHERITED or DELEGATED) and revocation (CASCADE, SOFT or PERMANENT)", missing),
			Details: map[string]any{"missing": missing}}
	}
	e, err := a.cat.SetPermission(r.Context(), t.ID, catalog.PermissionPolicy{Key: key, Value: req.Value,
		Mode: req.Mode, Revocation: req.Revocation})
	if errors.Is(err, catalog.ErrNotFound) {
		return tenantNotFound(r.PathValue("ref"))
	}
	if err != nil {
		return permissionError(err)
	}
	writeJSON(w, http.StatusOK, e)
	return nil
}

// deletePermission revokes the tenant's own policy for a key, as its
// revocation says, and answers what was removed:
// {"revoked": grant, "removed": [grants below, for a cascade]}.
func (a *API) deletePermission(w http.ResponseWriter, r *http.Request) error {
	t, key, err := a.tenantAndKey(r, validPermissionKeyParam)
	if err != nil {
		return err
	}
	rev, err := a.cat.RevokePermission(r.Context(), t.ID, key)
	if errors.Is(err, catalog.ErrNotFound) {
		return &Error{Status: http.StatusNotFound, Code: CodeNotFound,
			Message: fmt.Sprintf("tenant %q holds no policy of its own for %q", t.Slug, key),
			Details: map[string]any{"tenant": t.Slug, "key": key}}
	}
	if err != nil {
		return permissionError(err)
	}
	writeJSON(w, http.StatusOK, rev)
	return nil
}
