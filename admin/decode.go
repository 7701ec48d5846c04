package admin

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"strings"
	"unicode/utf8"
)

// maxBodyBytes bounds a request body.
const maxBodyBytes = 1 << 20

// decodeBody reads the request body, at most maxBodyBytes, as exactly one JSON
// value into dst (decodeJSON). Every failure is a 400.
func decodeBody(w http.ResponseWriter, r *http.Request, dst any) error {
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBodyBytes))
	if err != nil {
		return badBody(err)
	}
	if e := decodeJSON(data, dst); e != nil {
		return e
	}
	return nil
}

// decodeJSON decodes data, exactly one JSON value, into dst, strictly: the
// text must be UTF-8, no object may name a member twice, and an object decoded
// into a struct may name only the struct's fields, spelt exactly (encoding/json
// would take any spelling of a field's name, and the last of repeated members).
// Every failure is a 400.
func decodeJSON(data []byte, dst any) *Error {
	if !utf8.Valid(data) {
		return badRequest("the request body is not valid UTF-8, which JSON text must be", nil)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		return badBody(err)
	}
	if err := dec.Decode(&json.RawMessage{}); !errors.Is(err, io.EOF) {
		return badRequest("the request body must hold a single JSON object", nil)
	}
	return checkMemberNames(data, fieldNames(dst))
}

// fieldNames returns the JSON names of the fields of the struct dst points
// to; nil when dst is not a pointer to a struct, or one with embedded fields.
func fieldNames(dst any) map[string]bool {
	t := reflect.TypeOf(dst)
	if t == nil || t.Kind() != reflect.Pointer || t.Elem().Kind() != reflect.Struct {
		return nil
	}
	t = t.Elem()
	names := map[string]bool{}
	for i := range t.NumField() {
		f := t.Field(i)
		if f.Anonymous {
			return nil
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		switch {
		case !f.IsExported() || name == "-":
			continue
		case name == "":
			name = f.Name
		}
		names[name] = true
	}
	return names
}

// checkMemberNames refuses, in data (valid JSON), an object that names a
// member twice and, when fields is not nil, a top-level member not spelt
// exactly as one of fields.
func checkMemberNames(data []byte, fields map[string]bool) *Error {
	type frame struct {
		names     map[string]bool // nil for an array
		expectKey bool
	}
	var stack []*frame
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return badBody(err) // unreachable: data decoded already
		}
		var top *frame
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		switch tok {
		case json.Delim('{'), json.Delim('['):
			if top != nil && top.names != nil {
				top.expectKey = true // the container is a member's value
			}
			f := &frame{}
			if tok == json.Delim('{') {
				f.names, f.expectKey = map[string]bool{}, true
			}
			stack = append(stack, f)
			continue
		case json.Delim('}'), json.Delim(']'):
			stack = stack[:len(stack)-1]
			continue
		}
		if top == nil || top.names == nil {
			continue // an array element or a lone value
		}
		if !top.expectKey {
			top.expectKey = true // a member's value
			continue
		}
		name, _ := tok.(string)
		if top.names[name] {
			return badRequest(fmt.Sprintf("member %q is given twice in one object; give it once", name),
				map[string]any{"field": name})
		}
		if len(stack) == 1 && fields != nil && !fields[name] {
			return badRequest(fmt.Sprintf("unknown field %q", name), map[string]any{"field": name})
		}
		top.names[name] = true
		top.expectKey = false
	}
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
