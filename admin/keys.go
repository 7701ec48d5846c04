package admin

import "net/http"

// keyRoutes registers the keys routes. (To be written.)
func (a *API) keyRoutes(mux *http.ServeMux) {}
