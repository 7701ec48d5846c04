package admin

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/xdg-go/scram"

	"github.com/stratum-hq/stratum-proxy/catalog"
)

// userRoutes: create, list, read, change and delete proxy users.
func (a *API) userRoutes(mux *http.ServeMux) {
	a.route(mux, "/v1/users", methods{
		http.MethodGet:  a.authed(scopesRead, a.listUsers),
		http.MethodPost: a.authed(scopesWrite, a.createUser),
	})
	a.route(mux, "/v1/users/{name}", methods{
		http.MethodGet:    a.authed(scopesRead, a.getUser),
		http.MethodPatch:  a.authed(scopesWrite, a.updateUser),
		http.MethodDelete: a.authed(scopesWrite, a.deleteUser),
	})
}

// createUserRequest is the body of POST /v1/users.
type createUserRequest struct {
	Name      string `json:"name"`
	Password  string `json:"password"`
	Tenant    string `json:"tenant"` // slug or id of the tenant the user is bound to
	CanSwitch bool   `json:"can_switch"`
}

// updateUserRequest is the body of PATCH /v1/users/{name}; absent fields stay.
type updateUserRequest struct {
	Password  *string `json:"password"`
	Tenant    *string `json:"tenant"` // slug or id: rebind the user
	CanSwitch *bool   `json:"can_switch"`
}

// userResponse is a proxy user as the API shows it: never the password or the
// verifier, whatever catalog.User grows.
type userResponse struct {
	Name      string    `json:"name"`
	TenantID  string    `json:"tenant_id"`
	CanSwitch bool      `json:"can_switch"`
	CreatedAt time.Time `json:"created_at"`
}

func showUser(u *catalog.User) userResponse {
	return userResponse{Name: u.Name, TenantID: u.TenantID, CanSwitch: u.CanSwitch, CreatedAt: u.CreatedAt}
}

// checkUserName applies catalog.CheckUserName and refuses the backends'
// admin role names too; 422 naming the field.
func (a *API) checkUserName(name string) error {
	err := catalog.CheckUserName(name)
	if err == nil && a.prov != nil {
		for _, admin := range a.prov.AdminUsers() {
			if strings.EqualFold(name, admin) {
				err = fmt.Errorf("user name %q: reserved (a backend's admin role)", name)
			}
		}
	}
	if err != nil {
		return &Error{Status: http.StatusUnprocessableEntity, Code: CodeInvalid, Message: err.Error(),
			Details: map[string]any{"field": "name"}}
	}
	return nil
}

// checkPassword refuses a password SASLprep refuses (control characters,
// unassigned code points…); the catalog would report it unclassified.
func checkPassword(pw string) error {
	if _, err := scram.SHA256.NewClient("", pw, ""); err != nil {
		return &Error{Status: http.StatusUnprocessableEntity, Code: CodeInvalid,
			Message: "password: characters not allowed in a SCRAM password (SASLprep)",
			Details: map[string]any{"field": "password"}}
	}
	return nil
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
	if err := a.checkUserName(req.Name); err != nil {
		return err
	}
	if err := checkPassword(req.Password); err != nil {
		return err
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
	w.Header().Set("Location", "/v1/users/"+url.PathEscape(u.Name))
	writeJSON(w, http.StatusCreated, showUser(u))
	return nil
}

// listUsers answers the users the caller may see, by name: a bound key sees
// only users bound inside its subtree.
func (a *API) listUsers(w http.ResponseWriter, r *http.Request) error {
	if _, err := knownParamsOnly(r); err != nil {
		return err
	}
	us, err := a.cat.ListUsers(r.Context(), catalog.UserFilter{Within: principalFrom(r.Context()).tenantID()})
	if err != nil {
		return err
	}
	out := make([]userResponse, 0, len(us))
	for _, u := range us {
		out = append(out, showUser(u))
	}
	writeJSON(w, http.StatusOK, map[string]any{"users": out})
	return nil
}

// userFor returns the user named by the path's {name} when the caller may
// reach it (bound inside its subtree); any other user answers exactly like
// a missing one.
func (a *API) userFor(r *http.Request) (*catalog.User, error) {
	name := r.PathValue("name")
	notFound := &Error{Status: http.StatusNotFound, Code: CodeNotFound,
		Message: fmt.Sprintf("user %q does not exist", name), Details: map[string]any{"user": name}}
	if name == "" || len(name) > 63 || strings.ContainsRune(name, 0) || !utf8.ValidString(name) {
		return nil, notFound // no stored name looks like that, and PostgreSQL refuses NUL and bad UTF-8
	}
	u, err := a.cat.GetUser(r.Context(), name)
	if errors.Is(err, catalog.ErrNotFound) {
		return nil, notFound
	}
	if err != nil {
		return nil, err
	}
	if err := a.reachable(r, u.TenantID, notFound); err != nil {
		return nil, err
	}
	return u, nil
}

// getUser answers one user.
func (a *API) getUser(w http.ResponseWriter, r *http.Request) error {
	u, err := a.userFor(r)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, showUser(u))
	return nil
}

// updateUser changes a user's password, tenant (inside the caller's
// subtree) or can_switch; 200 with the user. New logins see it at once.
func (a *API) updateUser(w http.ResponseWriter, r *http.Request) error {
	u, err := a.userFor(r)
	if err != nil {
		return err
	}
	var req updateUserRequest
	if err := decodeBody(w, r, &req); err != nil {
		return err
	}
	if req.Password == nil && req.Tenant == nil && req.CanSwitch == nil {
		return &Error{Status: http.StatusUnprocessableEntity, Code: CodeInvalid,
			Message: `nothing to change: send "password", "tenant" or "can_switch"`}
	}
	ch := catalog.UserChange{Within: principalFrom(r.Context()).tenantID()}
	if req.Password != nil {
		if err := noNUL(map[string]string{"password": *req.Password}); err != nil {
			return err
		}
		if err := checkPassword(*req.Password); err != nil {
			return err
		}
		ch.Password = req.Password
	}
	if req.Tenant != nil {
		if err := noNUL(map[string]string{"tenant": *req.Tenant}); err != nil {
			return err
		}
		t, err := a.tenantFor(r, *req.Tenant)
		if err != nil {
			return err
		}
		ch.TenantID = &t.ID
	}
	// can_switch lets the user name any tenant of its own subtree, which
	// lies inside the caller's: granting it gives nothing the caller lacks.
	ch.CanSwitch = req.CanSwitch
	u, err = a.cat.UpdateUser(r.Context(), u.Name, ch)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, showUser(u))
	return nil
}

// deleteUser removes a user; 200 with the user it was. New logins as it
// fail at once.
func (a *API) deleteUser(w http.ResponseWriter, r *http.Request) error {
	u, err := a.userFor(r)
	if err != nil {
		return err
	}
	if err := a.cat.DeleteUser(r.Context(), u.Name, principalFrom(r.Context()).tenantID()); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, showUser(u))
	return nil
}
