package admin

import (
	"context"
	"fmt"
	"net/http"
	"strconv"

	"github.com/stratum-hq/stratum-proxy/catalog"
	"github.com/stratum-hq/stratum-proxy/provision"
)

// Listing limits of GET /v1/moves.
const (
	movesDefaultLimit = 100
	movesMaxLimit     = 500
)

// moveRoutes: placement moves. A move is started on its tenant
// (POST /v1/tenants/{ref}/placement) and followed, cancelled, finalized
// and moved back under /v1/moves. A key bound to a tenant sees and changes only the moves
// of its subtree; another move is reported as missing (404).
func (a *API) moveRoutes(mux *http.ServeMux) {
	a.route(mux, "/v1/tenants/{ref}/placement", methods{http.MethodPost: a.authed(scopesWrite, a.startMove)})
	a.route(mux, "/v1/moves", methods{http.MethodGet: a.authed(scopesRead, a.listMoves)})
	a.route(mux, "/v1/moves/{id}", methods{http.MethodGet: a.authed(scopesRead, a.getMove)})
	a.route(mux, "/v1/moves/{id}/cancel", methods{http.MethodPost: a.authed(scopesWrite, a.moveStep((*provision.Provisioner).CancelMove))})
	a.route(mux, "/v1/moves/{id}/finalize", methods{http.MethodPost: a.authed(scopesWrite, a.moveStep((*provision.Provisioner).FinalizeMove))})
	a.route(mux, "/v1/moves/{id}/revert", methods{http.MethodPost: a.authed(scopesWrite, a.revertMove)})
}

// revertMove starts a move back of a switched move to its kept source copy
// and answers 202 with the new move (its reverts names the switched one)
// and its Location. 409 unless the move is switched, 422 when the kept
// copy cannot take the tenant back.
func (a *API) revertMove(w http.ResponseWriter, r *http.Request) error {
	id, err := moveID(r)
	if err != nil {
		return err
	}
	m, err := a.prov.RevertMove(r.Context(), id, catalog.ActorFrom(r.Context()).KeyID)
	if err != nil {
		return err
	}
	w.Header().Set("Location", "/v1/moves/"+m.ID)
	writeJSON(w, http.StatusAccepted, m)
	return nil
}

// placementRequest is the body of POST /v1/tenants/{ref}/placement.
type placementRequest struct {
	// Isolation is the target placement: shared, schema or database.
	Isolation string `json:"isolation"`
	// Backend is the target's backend server (database isolation); ""
	// keeps the tenant's, or takes the default.
	Backend string `json:"backend"`
}

// startMove starts an online move of a tenant to another placement and
// answers 202 with the move (phase pending) and its Location; the move runs
// on in the proxy. 409 when the tenant has a move under way or is in that
// placement already, 422 when the target is not possible.
func (a *API) startMove(w http.ResponseWriter, r *http.Request) error {
	var req placementRequest
	if err := decodeBody(w, r, &req); err != nil {
		return err
	}
	t, err := a.tenantFor(r, r.PathValue("ref"))
	if err != nil {
		return err
	}
	if req.Isolation == "" {
		return badRequest("isolation is required: shared, schema or database", map[string]any{"field": "isolation"})
	}
	m, err := a.prov.StartMove(r.Context(), t.ID, provision.MoveTarget{Isolation: req.Isolation, Backend: req.Backend},
		catalog.ActorFrom(r.Context()).KeyID)
	if err != nil {
		return err
	}
	w.Header().Set("Location", "/v1/moves/"+m.ID)
	writeJSON(w, http.StatusAccepted, m)
	return nil
}

// moveListBody answers GET /v1/moves.
type moveListBody struct {
	Moves []*catalog.Move `json:"moves"`
}

// listMoves lists the moves the caller reaches, newest first: ?tenant= one
// tenant's (slug or id), ?limit= at most that many.
func (a *API) listMoves(w http.ResponseWriter, r *http.Request) error {
	q, err := knownParamsOnly(r, "tenant", "limit")
	if err != nil {
		return err
	}
	for name, vals := range q {
		if len(vals) > 1 {
			return badRequest(fmt.Sprintf("query parameter %q is given %d times; give it once", name, len(vals)),
				map[string]any{"parameter": name})
		}
	}
	limit := movesDefaultLimit
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > movesMaxLimit {
			return badRequest(fmt.Sprintf("limit must be a whole number from 1 to %d", movesMaxLimit),
				map[string]any{"parameter": "limit", "value": s})
		}
		limit = n
	}
	tenantID := ""
	if ref := q.Get("tenant"); ref != "" {
		if !catalog.ValidRef(ref) {
			return tenantNotFound(ref)
		}
		t, err := a.tenantFor(r, ref)
		if err != nil {
			return err
		}
		tenantID = t.ID
	}
	ms, err := a.cat.ListMoves(r.Context(), tenantID, limit)
	if err != nil {
		return err
	}
	if ms == nil {
		ms = []*catalog.Move{}
	}
	writeJSON(w, http.StatusOK, moveListBody{Moves: ms})
	return nil
}

// moveID reads the path's {id}: a move id is a UUID; anything else names
// no move (404, as a move the caller cannot reach).
func moveID(r *http.Request) (string, error) {
	id := r.PathValue("id")
	if !catalog.IsUUID(id) {
		return "", moveNotFound(id)
	}
	return id, nil
}

func moveNotFound(id string) *Error {
	return &Error{Status: http.StatusNotFound, Code: CodeNotFound,
		Message: fmt.Sprintf("placement move %q does not exist", id), Details: map[string]any{"move": id}}
}

// getMove reports one move: phase, rows copied per table, lag, times, error.
func (a *API) getMove(w http.ResponseWriter, r *http.Request) error {
	id, err := moveID(r)
	if err != nil {
		return err
	}
	m, err := a.cat.GetMove(r.Context(), id)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, m)
	return nil
}

// moveStep answers POST /v1/moves/{id}/cancel and .../finalize with the
// move after the step; 409 when its phase does not allow the step.
func (a *API) moveStep(step func(*provision.Provisioner, context.Context, string, string) (*catalog.Move, error)) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		id, err := moveID(r)
		if err != nil {
			return err
		}
		m, err := step(a.prov, r.Context(), id, catalog.ActorFrom(r.Context()).KeyID)
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, m)
		return nil
	}
}
