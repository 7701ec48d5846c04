package proxy

import (
	"fmt"
	"strings"

	"github.com/stratum-hq/stratum-proxy/rewrite"
)

// startupSetting is the rule for one setting a client may name in its
// startup packet, as a parameter of its own or inside options.
type startupSetting struct {
	// allowed reports whether the value may be forwarded; nil allows every
	// value (PostgreSQL itself refuses a malformed one).
	allowed func(value string) bool
	// why says, for a refused value, why and what to use instead.
	why string
}

// startupSettings is the allow-list of the settings a client may choose at
// connect: what drivers send (libpq and psql: application_name, with
// fallback_application_name sent under that name by libpq itself, and
// client_encoding from PGCLIENTENCODING; JDBC: DateStyle, TimeZone,
// extra_float_digits, client_encoding, application_name; lib/pq:
// extra_float_digits, datestyle; pgx: its RuntimeParams) and session
// defaults a tenant may set with SET anyway. Names are keyed folded as
// PostgreSQL folds setting names (settingKey). default_transaction_read_only
// may be either value: a read-only tenant's policy sets it on after RESET ALL
// on every backend, so a client's off cannot undo that. Every other name is
// refused (refusedSetting).
var startupSettings = map[string]startupSetting{
	"application_name":                    {},
	"client_encoding":                     {allowed: safeClientEncoding, why: unsafeEncodingWhy},
	"datestyle":                           {},
	"timezone":                            {},
	"intervalstyle":                       {},
	"extra_float_digits":                  {},
	"search_path":                         {},
	"statement_timeout":                   {},
	"lock_timeout":                        {},
	"idle_in_transaction_session_timeout": {},
	"default_transaction_isolation":       {},
	"default_transaction_read_only":       {},
	// Session settings that shape only this session's own output or
	// planning, which a client may SET at any time anyway (pgx's test
	// suite connects with client_min_messages; JDBC and psycopg users set
	// the others in their connection strings).
	"client_min_messages":        {},
	"bytea_output":               {},
	"timezone_abbreviations":     {},
	"xmloption":                  {},
	"lc_monetary":                {},
	"lc_numeric":                 {},
	"lc_time":                    {},
	"work_mem":                   {},
	"jit":                        {},
	"synchronous_commit":         {},
	"plan_cache_mode":            {},
	"default_text_search_config": {},
	"idle_session_timeout":       {},
	"standard_conforming_strings": {allowed: pgTrue, why: "with it off, a backslash can end a string literal for " +
		"PostgreSQL but not for the proxy, so string literals could hide statements from the proxy's checks; " +
		"stratum-proxy keeps it on"},
}

// unsafeEncodingWhy gives the guard's reason for refusing SET client_encoding
// to the same encodings (rewrite's whyEncoding).
const unsafeEncodingWhy = "in it a quote or backslash byte can be part of a multi-byte character, so string " +
	"literals could hide statements from the proxy's checks; use UTF8"

// settingKey folds a setting name as PostgreSQL does: case-insensitive, and
// '-' read as '_' (as in options' --name=value).
func settingKey(name string) string {
	return strings.ToLower(strings.ReplaceAll(name, "-", "_"))
}

// checkSetting applies the allow-list to one setting the client named as a
// startup parameter or, inOptions, inside options.
func checkSetting(name, value string, inOptions bool) *Error {
	where := fmt.Sprintf("startup parameter %q", name)
	if inOptions {
		where = fmt.Sprintf("setting %q in options", name)
	}
	key := settingKey(name)
	s, ok := startupSettings[key]
	if !ok {
		return refusedSetting(where, key)
	}
	if s.allowed != nil && !s.allowed(value) {
		return fatalf(codeFeatureNotSupported, "%s = %q is not supported by stratum-proxy: %s", where, value, s.why)
	}
	return nil
}

// refusedSetting is the error for a name not on the allow-list: 42501 for one
// that would cross a privilege (the backend role, the proxy's own stratum.*
// settings such as the tenant's locked stratum.config.*), else 42704 as
// PostgreSQL answers an unknown setting.
func refusedSetting(where, key string) *Error {
	switch {
	case key == "role" || key == "session_authorization":
		return fatalf(codeInsufficientPriv, "%s may not be set through stratum-proxy: the backend role is the tenant's", where)
	case strings.HasPrefix(key, "stratum."):
		e := fatalf(codeInsufficientPriv, "%s may not be set by a client: stratum.* settings belong to stratum-proxy", where)
		if key == rewrite.TenantSetting {
			e.Hint = "name the tenant with the startup parameter stratum.tenant (lower case) or options=-c stratum.tenant=<slug>"
		}
		return e
	}
	e := fatalf(codeUndefinedObject, "%s is not accepted by stratum-proxy", where)
	e.Hint = "allowed at connect: " + allowedSettingNames
	return e
}

// allowedSettingNames lists the allow-list in the spelling drivers use.
const allowedSettingNames = "application_name, client_encoding (UTF8 or another ASCII-safe encoding), DateStyle, " +
	"TimeZone, IntervalStyle, extra_float_digits, search_path, statement_timeout, lock_timeout, " +
	"idle_in_transaction_session_timeout, default_transaction_isolation, default_transaction_read_only, " +
	"client_min_messages, bytea_output, timezone_abbreviations, xmloption, lc_monetary, lc_numeric, lc_time, " +
	"work_mem, jit, synchronous_commit, plan_cache_mode, default_text_search_config, idle_session_timeout, " +
	"standard_conforming_strings (on)"

// checkStartup applies the allow-list to a client's startup parameters. It
// returns the parameters forwarded to the backend (options without the
// tenant's setting) and the tenant named in options, if any. The parameters
// the proxy consumes (user, database, stratum.tenant, options, replication
// off) are not forwarded.
func checkStartup(startup map[string]string) (params map[string]string, optTenant string, optFound bool, err *Error) {
	params = make(map[string]string, len(startup))
	for k, v := range startup {
		switch k {
		case paramUser, paramDatabase, paramOptions, rewrite.TenantSetting:
		case paramReplication:
			if v != "false" && v != "0" && v != "off" && v != "no" {
				return nil, "", false, fatalf(codeFeatureNotSupported, "replication connections are not supported by stratum-proxy")
			}
		default:
			if err := checkSetting(k, v, false); err != nil {
				return nil, "", false, err
			}
			params[k] = v
		}
	}
	if opt, ok := startup[paramOptions]; ok {
		var rest string
		optTenant, optFound, rest = takeOption(opt, rewrite.TenantSetting)
		if err := checkOptions(rest); err != nil {
			return nil, "", false, err
		}
		if rest != "" {
			params[paramOptions] = rest
		}
	}
	return params, optTenant, optFound, nil
}

// checkOptions applies the allow-list to the words of an options parameter
// (the tenant's setting already taken out). Every word must be part of a
// setting in one of PostgreSQL's three forms, "-c name=value",
// "-cname=value" or "--name=value"; other command-line switches PostgreSQL
// accepts there (-B, -d, -e, -F, …) and stray words are refused.
func checkOptions(options string) *Error {
	words := startupOptions(options)
	for i := 0; i < len(words); i++ {
		w := words[i]
		var setting string
		switch {
		case w == "-c" && i+1 < len(words):
			i++
			setting = words[i]
		case strings.HasPrefix(w, "-c") && len(w) > 2:
			setting = w[2:]
		case strings.HasPrefix(w, "--") && len(w) > 2:
			setting = w[2:]
		case w == "":
			// A lone backslash ending options makes an empty word, which
			// the proxy drops (escapeOption cannot write it).
			continue
		default:
			e := fatalf(codeFeatureNotSupported, "%q in options is not supported by stratum-proxy: only settings are", w)
			e.Hint = "write settings as -c name=value"
			return e
		}
		name, value, ok := strings.Cut(setting, "=")
		if !ok {
			e := fatalf(codeFeatureNotSupported, "setting %q in options has no value", name)
			e.Hint = "write settings as -c name=value"
			return e
		}
		if err := checkSetting(name, value, true); err != nil {
			return err
		}
	}
	return nil
}

// pgTrue reports whether v is a true boolean as PostgreSQL's parse_bool
// reads it: on, 1, or a prefix of true or yes, in any case.
func pgTrue(v string) bool {
	switch strings.ToLower(v) {
	case "on", "1", "t", "tr", "tru", "true", "y", "ye", "yes":
		return true
	}
	return false
}

// safeClientEncoding reports whether an encoding keeps ASCII bytes ASCII:
// not one of PostgreSQL's client-only encodings SJIS, SHIFT_JIS_2004, BIG5,
// GBK, UHC, GB18030 and JOHAB in any of their spellings (names compared as
// PostgreSQL compares them, letters and digits only), the rule the guard
// applies to SET client_encoding.
func safeClientEncoding(enc string) bool {
	return !rewrite.UnsafeClientEncoding(enc)
}
