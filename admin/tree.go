package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"github.com/stratum-hq/stratum-proxy/catalog"
)

// treeRoutes: move, lifecycle, pauses and the tree listings. (Rename is PATCH
// /v1/tenants/{ref}, registered with the other methods of that path in
// tenantRoutes.)
func (a *API) treeRoutes(mux *http.ServeMux) {
	a.route(mux, "/v1/tenants/{ref}/move", methods{http.MethodPost: a.authed(scopesWrite, a.moveTenant)})
	a.route(mux, "/v1/tenants/{ref}/suspend", methods{http.MethodPost: a.authed(scopesWrite, a.tenantLifecycle((*catalog.Catalog).SuspendTenant))})
	a.route(mux, "/v1/tenants/{ref}/resume", methods{http.MethodPost: a.authed(scopesWrite, a.tenantLifecycle((*catalog.Catalog).ResumeTenant))})
	a.route(mux, "/v1/tenants/{ref}/pause", methods{http.MethodPost: a.authed(scopesWrite, a.pauseTenant)})
	a.route(mux, "/v1/tenants/{ref}/unpause", methods{http.MethodPost: a.authed(scopesWrite, a.unpauseTenant)})
	a.route(mux, "/v1/tenants/{ref}/archive", methods{http.MethodPost: a.authed(scopesWrite, a.tenantLifecycle((*catalog.Catalog).ArchiveTenant))})
	a.route(mux, "/v1/tenants/{ref}/children", methods{http.MethodGet: a.authed(scopesRead, a.listChildren)})
	a.route(mux, "/v1/tenants/{ref}/ancestors", methods{http.MethodGet: a.authed(scopesRead, a.listAncestors)})
	a.route(mux, "/v1/tenants/{ref}/descendants", methods{http.MethodGet: a.authed(scopesRead, a.listDescendants)})
}

// tenantListBody is the answer of every tenant listing: one page, and the
// cursor of the next (null after the last page).
type tenantListBody struct {
	Tenants    []*catalog.Tenant `json:"tenants"`
	NextCursor *string           `json:"next_cursor"`
}

// writeTenantPage answers a page of tenants.
func writeTenantPage(w http.ResponseWriter, ts []*catalog.Tenant, next string) {
	if ts == nil {
		ts = []*catalog.Tenant{}
	}
	body := tenantListBody{Tenants: ts}
	if next != "" {
		body.NextCursor = &next
	}
	writeJSON(w, http.StatusOK, body)
}

// treePageParams reads a listing's ?limit= (default catalog.DefaultPageSize,
// at most catalog.MaxPageSize) and ?cursor= (opaque; "" for the first page).
// A malformed limit, or a malformed, unknown or repeated parameter, is a
// 400; the catalog judges the cursor.
func treePageParams(r *http.Request) (limit int, cursor string, err error) {
	q, err := knownParamsOnly(r, "limit", "cursor")
	if err != nil {
		return 0, "", err
	}
	limit = catalog.DefaultPageSize
	if s := q.Get("limit"); s != "" {
		n, convErr := strconv.Atoi(s)
		if convErr != nil || n < 1 || n > catalog.MaxPageSize {
			return 0, "", badRequest(fmt.Sprintf("limit must be a whole number from 1 to %d", catalog.MaxPageSize),
				map[string]any{"limit": s, "max": catalog.MaxPageSize})
		}
		limit = n
	}
	return limit, q.Get("cursor"), nil
}

// listTenantPage answers one page of the tenants f selects.
func (a *API) listTenantPage(w http.ResponseWriter, r *http.Request, f catalog.TenantFilter) error {
	limit, cursor, err := treePageParams(r)
	if err != nil {
		return err
	}
	ts, next, err := a.cat.ListTenantsPage(r.Context(), f, cursor, limit)
	if err != nil {
		return err
	}
	writeTenantPage(w, ts, next)
	return nil
}

// listChildren answers the tenant's direct children, by slug.
func (a *API) listChildren(w http.ResponseWriter, r *http.Request) error {
	t, err := a.tenantFor(r, r.PathValue("ref"))
	if err != nil {
		return err
	}
	return a.listTenantPage(w, r, catalog.TenantFilter{ChildrenOf: t.ID})
}

// listDescendants answers the tenant's descendants (not itself), in tree order.
func (a *API) listDescendants(w http.ResponseWriter, r *http.Request) error {
	t, err := a.tenantFor(r, r.PathValue("ref"))
	if err != nil {
		return err
	}
	return a.listTenantPage(w, r, catalog.TenantFilter{DescendantsOf: t.ID})
}

// listAncestors answers the tenant's ancestors, root first, in one page. A
// key bound to a tenant sees them only from its own root down.
func (a *API) listAncestors(w http.ResponseWriter, r *http.Request) error {
	t, err := a.tenantFor(r, r.PathValue("ref"))
	if err != nil {
		return err
	}
	stopAt := ""
	if root := principalFrom(r.Context()).Root; root != nil {
		stopAt = root.ID
	}
	ts, err := a.cat.ListAncestors(r.Context(), t.ID, stopAt)
	if err != nil {
		return err
	}
	writeTenantPage(w, ts, "")
	return nil
}

// moveTenantRequest is the body of POST /v1/tenants/{ref}/move: parent is a
// tenant's slug or id, or null to make the tenant a root.
type moveTenantRequest struct {
	Parent json.RawMessage `json:"parent"`
}

// moveTenant reparents a tenant and its whole subtree; 200 with the moved
// tenant. A key bound to a tenant moves only inside its subtree: not its own
// root, not to the root level, not under a tenant it cannot reach.
func (a *API) moveTenant(w http.ResponseWriter, r *http.Request) error {
	t, err := a.tenantFor(r, r.PathValue("ref"))
	if err != nil {
		return err
	}
	var req moveTenantRequest
	if err := decodeBody(w, r, &req); err != nil {
		return err
	}
	parentRef, toRoot := "", false
	switch {
	case len(req.Parent) == 0:
		return &Error{Status: http.StatusUnprocessableEntity, Code: CodeInvalid,
			Message: `field "parent" is required: a tenant's slug or id, or null to make the tenant a root`,
			Details: map[string]any{"field": "parent"}}
	case string(req.Parent) == "null":
		toRoot = true
	default:
		if json.Unmarshal(req.Parent, &parentRef) != nil {
			return badRequest(`field "parent" must be a JSON string (a tenant's slug or id) or null`,
				map[string]any{"field": "parent"})
		}
		if parentRef == "" {
			return &Error{Status: http.StatusUnprocessableEntity, Code: CodeInvalid,
				Message: `field "parent" is empty: name a tenant by slug or id, or send null to make the tenant a root`,
				Details: map[string]any{"field": "parent"}}
		}
	}
	p := principalFrom(r.Context())
	if p.Root != nil {
		if t.ID == p.Root.ID {
			return &Error{Status: http.StatusForbidden, Code: CodeForbidden,
				Message: fmt.Sprintf("a key bound to tenant %q cannot move that tenant; it moves only tenants below it", p.Root.Slug),
				Details: map[string]any{"key_id": p.KeyID}}
		}
		if toRoot {
			return &Error{Status: http.StatusForbidden, Code: CodeForbidden,
				Message: "a key bound to a tenant cannot make a root tenant; name a parent inside its subtree",
				Details: map[string]any{"key_id": p.KeyID}}
		}
	}
	newParentID := ""
	if !toRoot {
		parent, err := a.tenantFor(r, parentRef)
		if err != nil {
			if e := (*Error)(nil); errors.As(err, &e) && e.Status == http.StatusNotFound {
				return &Error{Status: http.StatusNotFound, Code: CodeNotFound,
					Message: fmt.Sprintf("parent tenant %q does not exist", parentRef),
					Details: map[string]any{"parent": parentRef}}
			}
			return err
		}
		newParentID = parent.ID
	}
	moved, err := a.cat.MoveTenant(r.Context(), t.ID, newParentID)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, moved)
	return nil
}

// updateTenantRequest is the body of PATCH /v1/tenants/{ref}; absent (or
// null) fields stay as they are.
type updateTenantRequest struct {
	Slug *string `json:"slug"`
	Name *string `json:"name"`
}

// updateTenant renames a tenant (slug, display name or both); 200 with the
// tenant. Everything that refers to the tenant uses its id, so a new slug
// breaks nothing. The API then names it by the new slug only; the proxy
// still resolves the old one to it, and no other tenant may take it (409).
func (a *API) updateTenant(w http.ResponseWriter, r *http.Request) error {
	t, err := a.tenantFor(r, r.PathValue("ref"))
	if err != nil {
		return err
	}
	var req updateTenantRequest
	if err := decodeBody(w, r, &req); err != nil {
		return err
	}
	if req.Slug == nil && req.Name == nil {
		return &Error{Status: http.StatusUnprocessableEntity, Code: CodeInvalid,
			Message: `nothing to change: send "slug", "name" or both`}
	}
	fields := map[string]string{}
	if req.Slug != nil {
		fields["slug"] = *req.Slug
	}
	if req.Name != nil {
		fields["name"] = *req.Name
	}
	if err := noNUL(fields); err != nil {
		return err
	}
	updated, err := a.cat.UpdateTenant(r.Context(), t.ID, catalog.TenantUpdate{Slug: req.Slug, Name: req.Name})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, updated)
	return nil
}

// tenantLifecycle answers a lifecycle route (suspend, resume, archive) with
// change: 200 with the tenant, also when it already had the status (nothing
// is then written); 409 for a change the lifecycle forbids.
func (a *API) tenantLifecycle(change func(*catalog.Catalog, context.Context, string) (*catalog.Tenant, error)) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		t, err := a.tenantFor(r, r.PathValue("ref"))
		if err != nil {
			return err
		}
		changed, err := change(a.cat, r.Context(), t.ID)
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, changed)
		return nil
	}
}

// pauseRequest is the body of POST /v1/tenants/{ref}/pause.
type pauseRequest struct {
	// Reason says why (1 to catalog.MaxPauseReasonLen bytes); sessions
	// waiting on the pause log it.
	Reason string `json:"reason"`
}

// pauseTenant pauses a tenant and its subtree: their sessions start no new
// transaction (each waits in the proxy) until the pause ends. 409 when the
// tenant is paused already.
func (a *API) pauseTenant(w http.ResponseWriter, r *http.Request) error {
	var req pauseRequest
	if err := decodeBody(w, r, &req); err != nil {
		return err
	}
	t, err := a.tenantFor(r, r.PathValue("ref"))
	if err != nil {
		return err
	}
	p, err := a.cat.PauseTenant(r.Context(), t.ID, req.Reason, catalog.ActorFrom(r.Context()).KeyID)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, p)
	return nil
}

// unpauseBody answers POST /v1/tenants/{ref}/unpause.
type unpauseBody struct {
	Tenant   string `json:"tenant"`
	Unpaused bool   `json:"unpaused"`
}

// unpauseTenant ends a tenant's pause (unpaused false when it had none); a
// placement move's pause is the move's to end (409).
func (a *API) unpauseTenant(w http.ResponseWriter, r *http.Request) error {
	t, err := a.tenantFor(r, r.PathValue("ref"))
	if err != nil {
		return err
	}
	ok, err := a.cat.UnpauseTenant(r.Context(), t.ID, "")
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, unpauseBody{Tenant: t.Slug, Unpaused: ok})
	return nil
}
