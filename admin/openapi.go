package admin

import "net/http"

// openapi serves the OpenAPI document. (To be written.)
func (a *API) openapi(w http.ResponseWriter, r *http.Request) error { return nil }
