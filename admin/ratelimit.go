package admin

import "net/http"

// limit applies p's rate limit: nil while p is within it, else a 429 with
// Retry-After set on w. (Filled in by the API-keys work.)
func (a *API) limit(w http.ResponseWriter, p *principal) error {
	return nil
}

// limiter holds per-key request budgets. (To be written.)
type limiter struct{}
