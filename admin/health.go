package admin

import (
	"context"
	"net/http"
	"time"

	"go.uber.org/zap"
)

// readyTimeout bounds the readiness checks of one /readyz request.
const readyTimeout = 2 * time.Second

// healthz says the process is alive; it checks nothing else.
func (a *API) healthz(w http.ResponseWriter, r *http.Request) error {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	return nil
}

// readyz says whether the process can serve: the catalog answers within
// readyTimeout, and Config.Readiness (if any) agrees.
func (a *API) readyz(w http.ResponseWriter, r *http.Request) error {
	ctx, cancel := context.WithTimeout(r.Context(), readyTimeout)
	defer cancel()
	if err := a.cat.Ping(ctx); err != nil {
		a.log.Warn("not ready: catalog ping failed", zap.Error(err))
		return &Error{Status: http.StatusServiceUnavailable, Code: CodeUnavailable,
			Message: "not ready: the catalog database does not answer",
			Details: map[string]any{"check": "catalog"}}
	}
	if a.cfg.Readiness != nil {
		if err := a.cfg.Readiness.Ready(ctx); err != nil {
			a.log.Warn("not ready: readiness check failed", zap.Error(err))
			return &Error{Status: http.StatusServiceUnavailable, Code: CodeUnavailable,
				Message: "not ready", Details: map[string]any{"check": "readiness"}}
		}
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
	return nil
}
