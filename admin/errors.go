package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"go.uber.org/zap"

	"github.com/stratum-hq/stratum-proxy/catalog"
	"github.com/stratum-hq/stratum-proxy/provision"
)

// Error codes, the "code" of an error body.
const (
	CodeBadRequest       = "bad_request"
	CodeUnauthorized     = "unauthorized"
	CodeForbidden        = "forbidden"
	CodeNotFound         = "not_found"
	CodeMethodNotAllowed = "method_not_allowed"
	CodeConflict         = "conflict"
	CodeLocked           = "locked"
	CodeInvalid          = "invalid"
	CodeDepthExceeded    = "depth_exceeded"
	CodeUnavailable      = "unavailable"
	CodeRateLimited      = "rate_limited"
	CodeInternal         = "internal"
)

// Error is an error with its HTTP status, and the "error" member of every error
// body: {"error":{"code":"…","message":"…","details":{…}}}.
type Error struct {
	Status  int            `json:"-"`
	Code    string         `json:"code"`
	Message string         `json:"message"`
	Details map[string]any `json:"details,omitempty"`
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

// errorBody is the whole error response.
type errorBody struct {
	Error *Error `json:"error"`
}

var errPanic = errors.New("handler panicked")

// classify turns err into the Error the client sees. Catalog and provision
// sentinels become 4xx with the error's own text (written for operators);
// anything unclassified is internal, and its text stays in the log.
func classify(err error) (e *Error, internal bool) {
	if errors.As(err, &e) {
		return e, false
	}
	var de *catalog.DepthError
	if errors.As(err, &de) {
		return &Error{Status: http.StatusUnprocessableEntity, Code: CodeDepthExceeded, Message: err.Error(),
			Details: map[string]any{"max_depth": catalog.MaxDepth, "level": de.Level}}, false
	}
	switch {
	case errors.Is(err, catalog.ErrCycle), errors.Is(err, catalog.ErrStatus):
		return &Error{Status: http.StatusConflict, Code: CodeConflict, Message: err.Error()}, false
	case errors.Is(err, catalog.ErrBadCursor):
		return badRequest("the cursor is not one this listing handed out; start again without it", nil), false
	case errors.Is(err, catalog.ErrDepthExceeded):
		return &Error{Status: http.StatusUnprocessableEntity, Code: CodeDepthExceeded,
			// Only a parent at the deepest level is refused a child, so the
			// refused tenant is always one level below it.
			Message: fmt.Sprintf("%v; a tenant at level %d is refused", err, catalog.MaxDepth+1),
			Details: map[string]any{"max_depth": catalog.MaxDepth}}, false
	case errors.Is(err, catalog.ErrMoveNotFound):
		return &Error{Status: http.StatusNotFound, Code: CodeNotFound, Message: "placement move not found"}, false
	case errors.Is(err, catalog.ErrMoveRunning), errors.Is(err, catalog.ErrMovePhase), errors.Is(err, provision.ErrMoveSame):
		return &Error{Status: http.StatusConflict, Code: CodeConflict, Message: err.Error()}, false
	case errors.Is(err, provision.ErrInvalidMove):
		return &Error{Status: http.StatusUnprocessableEntity, Code: CodeInvalid, Message: err.Error()}, false
	case errors.Is(err, catalog.ErrNotFound):
		return &Error{Status: http.StatusNotFound, Code: CodeNotFound, Message: err.Error()}, false
	case errors.Is(err, catalog.ErrLocked):
		return &Error{Status: http.StatusConflict, Code: CodeLocked, Message: err.Error()}, false
	case errors.Is(err, catalog.ErrConflict):
		return &Error{Status: http.StatusConflict, Code: CodeConflict, Message: err.Error()}, false
	case errors.Is(err, provision.ErrInvalidSpec), errors.Is(err, catalog.ErrInvalid):
		return &Error{Status: http.StatusUnprocessableEntity, Code: CodeInvalid, Message: err.Error()}, false
	case errors.Is(err, context.DeadlineExceeded):
		return &Error{Status: http.StatusServiceUnavailable, Code: CodeUnavailable,
			Message: "the request timed out; try again"}, true
	}
	return &Error{Status: http.StatusInternalServerError, Code: CodeInternal,
		Message: "internal error"}, true
}

// writeError is the one place an error becomes a response. Internal errors are
// logged with the request id, which the message points to; their text is not
// sent.
func (a *API) writeError(w http.ResponseWriter, r *http.Request, err error) {
	e, internal := classify(err)
	if internal {
		id := w.Header().Get(RequestIDHeader)
		a.log.Error("admin request failed", zap.String("request_id", id),
			zap.String("method", r.Method), zap.String("path", r.URL.Path), zap.Error(err))
		e = &Error{Status: e.Status, Code: e.Code, Message: e.Message + " (request " + id + ")"}
	}
	writeJSON(w, e.Status, errorBody{Error: e})
}

// writeJSON writes v as the response body with status. An encoding or write
// failure means the client went away; there is no one left to tell.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false) // the body is JSON, never HTML
	_ = enc.Encode(v)
}
