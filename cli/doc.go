// Package cli is the operator command line over the admin HTTP API
// (`stratum-proxy tenant|config|perm|audit|key ...`): flag parsing, requests,
// tables or the API's JSON, and exit statuses. It speaks only the API's wire
// format (net/http and encoding/json), so it works against any deployment
// and imports no package of ours; tests start a real stack through
// internal/stacktest.
package cli
