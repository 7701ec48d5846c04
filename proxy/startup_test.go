package proxy

import (
	"encoding/binary"
	"reflect"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"
)

// pgSplitOpts is PostgreSQL's pg_split_opts (postinit.c): arguments are
// separated by isspace() characters and a backslash makes the next character
// literal. It is the reference the proxy's parsing and re-escaping must match,
// since the options that remain are forwarded to a real backend.
func pgSplitOpts(s string) []string {
	isspace := func(c byte) bool {
		return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r'
	}
	var out []string
	i := 0
	for i < len(s) {
		for i < len(s) && isspace(s[i]) {
			i++
		}
		if i == len(s) {
			break
		}
		var b strings.Builder
		esc := false
		for ; i < len(s); i++ {
			c := s[i]
			if isspace(c) && !esc {
				break
			}
			if !esc && c == '\\' {
				esc = true
				continue
			}
			esc = false
			b.WriteByte(c)
		}
		out = append(out, b.String())
	}
	return out
}

func TestStartupOptions(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
	}{
		{"", nil},
		{"   ", nil},
		{"-c stratum.tenant=a", []string{"-c", "stratum.tenant=a"}},
		{"  -c   a=b  ", []string{"-c", "a=b"}},
		{"-ca=b\t--c=d\n-c\re=f", []string{"-ca=b", "--c=d", "-c", "e=f"}},
		{`-c application_name=a\ b`, []string{"-c", "application_name=a b"}},
		{`-c x=a\\b`, []string{"-c", `x=a\b`}},
		{`-c x=\a\b`, []string{"-c", "x=ab"}},
		{`\ `, []string{" "}},
	} {
		got := startupOptions(tc.in)
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("startupOptions(%q) = %q, want %q", tc.in, got, tc.want)
		}
		if ref := pgSplitOpts(tc.in); !reflect.DeepEqual(got, ref) && !(len(got) == 0 && len(ref) == 0) {
			t.Errorf("startupOptions(%q) = %q, PostgreSQL reads %q", tc.in, got, ref)
		}
	}
}

func TestTakeOption(t *testing.T) {
	const name = "stratum.tenant"
	for _, tc := range []struct {
		desc, in  string
		value     string
		found     bool
		rest      string
		restWords []string // what PostgreSQL reads from rest
	}{
		{"-c separate", "-c stratum.tenant=a", "a", true, "", nil},
		{"-c joined", "-cstratum.tenant=a", "a", true, "", nil},
		{"double dash", "--stratum.tenant=a", "a", true, "", nil},
		{"keeps other settings", "-c statement_timeout=5s -c stratum.tenant=b", "b", true,
			"-c statement_timeout=5s", []string{"-c", "statement_timeout=5s"}},
		{"tenant first", "-c stratum.tenant=b -c statement_timeout=5s", "b", true,
			"-c statement_timeout=5s", []string{"-c", "statement_timeout=5s"}},
		{"escaped space re-escaped", `-c application_name=a\ b -c stratum.tenant=x`, "x", true,
			`-c application_name=a\ b`, []string{"-c", "application_name=a b"}},
		{"escaped backslash re-escaped", `-c application_name=a\\b -c stratum.tenant=x`, "x", true,
			`-c application_name=a\\b`, []string{"-c", `application_name=a\b`}},
		{"escaped tab re-escaped", "-c application_name=a\\\tb -c stratum.tenant=x", "x", true,
			"", []string{"-c", "application_name=a\tb"}},
		{"not present", "-c search_path=public", "", false,
			"-c search_path=public", []string{"-c", "search_path=public"}},
		{"empty", "", "", false, "", nil},
		{"case-insensitive", "-c STRATUM.Tenant=a", "a", true, "", nil},
		{"case-insensitive joined", "-cStratum.TENANT=a", "a", true, "", nil},
		{"last one wins", "-c stratum.tenant=a -c stratum.tenant=b", "b", true, "", nil},
		{"value with equals", "-c stratum.tenant=a=b", "a=b", true, "", nil},
		{"empty value", "-c stratum.tenant=", "", true, "", nil},
		{"prefix of another name", "-c stratum.tenant_x=a", "", false,
			"-c stratum.tenant_x=a", []string{"-c", "stratum.tenant_x=a"}},
		{"-c without a setting", "-c", "", false, "-c", []string{"-c"}},
		{"name without value", "-c stratum.tenant", "", false,
			"-c stratum.tenant", []string{"-c", "stratum.tenant"}},
		{"stray words belong to the name", "-c stratum.tenant=Bad Name!", "Bad Name!", true, "", nil},
		{"stray words, joined form", "--stratum.tenant=Bad Name! -c search_path=x", "Bad Name!", true,
			"-c search_path=x", []string{"-c", "search_path=x"}},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			value, found, rest := takeOption(tc.in, name)
			if value != tc.value || found != tc.found {
				t.Errorf("takeOption(%q) = %q, %v; want %q, %v", tc.in, value, found, tc.value, tc.found)
			}
			if tc.rest != "" && rest != tc.rest {
				t.Errorf("takeOption(%q) rest = %q, want %q", tc.in, rest, tc.rest)
			}
			if got := pgSplitOpts(rest); !reflect.DeepEqual(got, tc.restWords) && !(len(got) == 0 && len(tc.restWords) == 0) {
				t.Errorf("takeOption(%q) rest = %q: PostgreSQL reads it as %q, want %q", tc.in, rest, got, tc.restWords)
			}
			if rest != "" && len(startupOptions(rest)) != len(tc.restWords) {
				t.Errorf("rest %q does not parse back to %q", rest, tc.restWords)
			}
		})
	}
}

func TestErrorEncode(t *testing.T) {
	for _, tc := range []struct {
		err  *Error
		sev  string
		code string
	}{
		{fatalf(codeProtocolViolation, "invalid startup packet: %s", "x"), "FATAL", "08P01"},
		{errorf(codeFeatureNotSupported, "not supported"), "ERROR", "0A000"},
		{&Error{Code: codeInvalidPassword, Message: `password authentication failed for user "ü"`,
			Detail: "detail", Hint: "hint", Fatal: true}, "FATAL", "28P01"},
		{&Error{Code: codeInvalidParamValue, Message: ""}, "ERROR", "22023"},
	} {
		prefix := []byte("prefix")
		msg := tc.err.encode(append([]byte(nil), prefix...))
		if string(msg[:len(prefix)]) != string(prefix) {
			t.Fatalf("encode did not append to dst: %q", msg)
		}
		msg = msg[len(prefix):]
		if len(msg) < 5 || msg[0] != 'E' {
			t.Fatalf("%v: not an ErrorResponse: %q", tc.err, msg)
		}
		if l := binary.BigEndian.Uint32(msg[1:5]); int(l) != len(msg)-1 {
			t.Fatalf("%v: length prefix %d, message has %d bytes after the type", tc.err, l, len(msg)-1)
		}
		if msg[len(msg)-1] != 0 {
			t.Errorf("%v: ErrorResponse not terminated by a zero byte", tc.err)
		}
		var er pgproto3.ErrorResponse
		if err := er.Decode(msg[5:]); err != nil {
			t.Fatalf("%v: decoding: %v", tc.err, err)
		}
		if er.Severity != tc.sev || er.SeverityUnlocalized != tc.sev {
			t.Errorf("%v: severity %q/%q, want %q", tc.err, er.Severity, er.SeverityUnlocalized, tc.sev)
		}
		if er.Code != tc.code || er.Message != tc.err.Message || er.Detail != tc.err.Detail || er.Hint != tc.err.Hint {
			t.Errorf("%v: decoded %+v", tc.err, er)
		}
	}
	// The zero Error still encodes to something a client can parse.
	var er pgproto3.ErrorResponse
	if msg := (&Error{}).encode(nil); len(msg) < 5 || msg[0] != 'E' || er.Decode(msg[5:]) != nil || er.Severity != "ERROR" {
		t.Errorf("zero Error encodes to %q", msg)
	}
}
