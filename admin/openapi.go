package admin

import (
	_ "embed"
	"io"
	"net/http"
)

// openapiDoc is the OpenAPI 3.1 description of this API (admin/openapi.json).
// TestOpenAPIInSync fails when it and the registered routes disagree.
//
//go:embed openapi.json
var openapiDoc string

// openapi serves the OpenAPI document. It needs no key: it describes the API,
// not any tenant's data.
func (a *API) openapi(w http.ResponseWriter, r *http.Request) error {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = io.WriteString(w, openapiDoc) // a failed write means the client went away
	return nil
}
