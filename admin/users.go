package admin

import (
	"errors"
	"net/http"
	"time"

	"github.com/xdg-go/scram"

	"github.com/stratum-hq/stratum-proxy/catalog"
)

// createUserRequest is the body of POST /v1/users.
type createUserRequest struct {
	Name      string `json:"name"`
	Password  string `json:"password"`
	Tenant    string `json:"tenant"` // slug or id of the tenant the user is bound to
	CanSwitch bool   `json:"can_switch"`
}

// userResponse is a proxy user as the API shows it: never the password or the
// verifier, whatever catalog.User grows.
type userResponse struct {
	Name      string    `json:"name"`
	TenantID  string    `json:"tenant_id"`
	CanSwitch bool      `json:"can_switch"`
	CreatedAt time.Time `json:"created_at"`
}

// createUser stores a proxy user bound to a tenant's subtree; 201 with the user.
func (a *API) createUser(w http.ResponseWriter, r *http.Request) error {
	var req createUserRequest
	if err := decodeBody(w, r, &req); err != nil {
		return err
	}
	if err := noNUL(map[string]string{"name": req.Name, "password": req.Password, "tenant": req.Tenant}); err != nil {
		return err
	}
	if req.Tenant == "" {
		return &Error{Status: http.StatusUnprocessableEntity, Code: CodeInvalid,
			Message: `field "tenant" is required: the slug or id of the user's tenant`,
			Details: map[string]any{"field": "tenant"}}
	}
	// SASLprep refuses some passwords (control characters, unassigned code
	// points…); catalog.CreateUser reports that as an unclassified error, so
	// check first and call it invalid input.
	if _, err := scram.SHA256.NewClient("", req.Password, ""); err != nil {
		return &Error{Status: http.StatusUnprocessableEntity, Code: CodeInvalid,
			Message: "password: characters not allowed in a SCRAM password (SASLprep)",
			Details: map[string]any{"field": "password"}}
	}
	if _, err := a.tenantFor(r, req.Tenant); err != nil {
		return err
	}
	u, err := a.cat.CreateUser(r.Context(), req.Name, req.Password, req.Tenant, req.CanSwitch)
	if errors.Is(err, catalog.ErrNotFound) {
		return tenantNotFound(req.Tenant)
	}
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, userResponse{Name: u.Name, TenantID: u.TenantID,
		CanSwitch: u.CanSwitch, CreatedAt: u.CreatedAt})
	return nil
}
