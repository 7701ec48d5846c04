package proxy

import (
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
)

// Error is what the proxy tells a client went wrong: a SQLSTATE and a message
// that names the cause and, where it can, what to do. Fatal errors end the session.
type Error struct {
	Code    string
	Message string
	Detail  string
	Hint    string
	Fatal   bool
	// FailsTransaction marks an error PostgreSQL itself gives, which the
	// proxy gives in its place (transaction pooling's statement names):
	// like PostgreSQL's, it fails an open transaction block (failTransaction).
	FailsTransaction bool
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

// SQLSTATEs the proxy itself uses.
const (
	codeProtocolViolation   = "08P01"
	codeConnectionFailure   = "08006"
	codeCannotConnect       = "08001"
	codeInvalidAuthSpec     = "28000"
	codeInvalidPassword     = "28P01"
	codeInsufficientPriv    = "42501"
	codeNotInPrerequisite   = "55000"
	codeActiveTransaction   = "25001"
	codeFeatureNotSupported = "0A000"
	codeInvalidParamValue   = "22023"
	codeProgramLimit        = "54000"
	codeAdminShutdown       = "57P01"
	codeTooManyConnections  = "53300"
	codeUndefinedObject     = "42704"
	codeInvalidCatalogName  = "3D000" // invalid_catalog_name: an unknown database
	codeDeprecated          = "01P01" // deprecated_feature, a warning class: the NOTICE of an old slug
)

func fatalf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...), Fatal: true}
}

func errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// asError turns any error into the Error a client should see. A PostgreSQL
// error from a backend keeps its SQLSTATE and text; anything else is a
// connection failure, with the cause in the detail.
func asError(err error, fatal bool) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return &Error{Code: pe.Code, Message: pe.Message, Detail: pe.Detail, Hint: pe.Hint, Fatal: fatal}
	}
	return &Error{Code: codeConnectionFailure, Message: "stratum-proxy could not reach the tenant's database",
		Detail: err.Error(), Fatal: fatal}
}

// encode appends the ErrorResponse for e to dst. This is the one place errors
// become protocol messages.
func (e *Error) encode(dst []byte) []byte {
	sev := "ERROR"
	if e.Fatal {
		sev = "FATAL"
	}
	out, err := (&pgproto3.ErrorResponse{
		Severity: sev, SeverityUnlocalized: sev, Code: e.Code, Message: e.Message,
		Detail: e.Detail, Hint: e.Hint,
	}).Encode(dst)
	if err != nil {
		return dst
	}
	return out
}

// catalogError is what a client sees when the catalog could not answer a
// lookup the session needed (the tenant or user was not cached).
func catalogError(err error, fatal bool) *Error {
	return &Error{Code: codeCannotConnect, Message: "stratum-proxy cannot read its catalog right now",
		Detail: err.Error(), Hint: "try again shortly; an operator should check the catalog database", Fatal: fatal}
}
