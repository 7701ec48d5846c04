package admin

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// maxBodyBytes bounds a request body.
const maxBodyBytes = 1 << 20

// decodeBody reads the request body, at most maxBodyBytes, as exactly one JSON
// object into dst, refusing fields dst does not have. Every failure is a 400.
func decodeBody(w http.ResponseWriter, r *http.Request, dst any) error {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBodyBytes))
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		return badBody(err)
	}
	if err := dec.Decode(&json.RawMessage{}); !errors.Is(err, io.EOF) {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return badBody(err)
		}
		return badRequest("the request body must hold a single JSON object", nil)
	}
	return nil
}

func badRequest(msg string, details map[string]any) *Error {
	return &Error{Status: http.StatusBadRequest, Code: CodeBadRequest, Message: msg, Details: details}
}

// badBody explains a decoding error.
func badBody(err error) *Error {
	var (
		mbe *http.MaxBytesError
		se  *json.SyntaxError
		ute *json.UnmarshalTypeError
	)
	switch {
	case errors.Is(err, io.EOF):
		return badRequest("the request body is empty; send a JSON object", nil)
	case errors.As(err, &mbe):
		return badRequest(fmt.Sprintf("the request body is larger than %d bytes (1 MiB)", mbe.Limit),
			map[string]any{"max_bytes": mbe.Limit})
	case errors.As(err, &se):
		return badRequest(fmt.Sprintf("malformed JSON at byte %d: %s", se.Offset, strings.TrimPrefix(se.Error(), "json: ")),
			map[string]any{"offset": se.Offset})
	case errors.Is(err, io.ErrUnexpectedEOF):
		return badRequest("malformed JSON: the body ends in the middle of a value", nil)
	case errors.As(err, &ute):
		if ute.Field == "" {
			return badRequest("the request body must be a JSON object", nil)
		}
		return badRequest(fmt.Sprintf("field %q must be a JSON %s, not %s", ute.Field, jsonKind(ute.Type.Kind().String()), ute.Value),
			map[string]any{"field": ute.Field})
	}
	// encoding/json has no typed error for an unknown field.
	if f, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		name := strings.Trim(f, `"`)
		return badRequest(fmt.Sprintf("unknown field %q", name), map[string]any{"field": name})
	}
	return badRequest("malformed JSON body", nil)
}

func jsonKind(goKind string) string {
	switch goKind {
	case "bool":
		return "boolean"
	case "string":
		return "string"
	case "slice", "array":
		return "array"
	case "map", "struct":
		return "object"
	}
	return "number"
}

// noNUL refuses a text field holding a NUL byte, which PostgreSQL text cannot
// store (it would otherwise come back as a 500).
func noNUL(fields map[string]string) error {
	for name, v := range fields {
		if strings.IndexByte(v, 0) >= 0 {
			return &Error{Status: http.StatusUnprocessableEntity, Code: CodeInvalid,
				Message: fmt.Sprintf("field %q must not contain a NUL character", name),
				Details: map[string]any{"field": name}}
		}
	}
	return nil
}
