package proxy

import (
	"bytes"
	"maps"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/stratum-hq/stratum-proxy/rewrite"
)

// FuzzStartup feeds arbitrary bytes to the client-side startup parsing: the
// StartupMessage parameter list and the options parameter. Neither may panic.
// The parameter list parses exactly when it is name/value pairs with
// non-empty names, each string NUL-terminated, ended by one empty name and
// nothing after; then the parsed map holds those pairs (the last of a
// repeated name wins). Taking stratum.tenant out of options must leave
// options that read back as the same words minus the tenant's (and minus an
// empty word, which only a trailing lone backslash makes), and return the
// value of the last tenant setting with the non-option words that follow it
// (so that a name with spaces is reported whole). Checked against the
// allow-list, options are either refused with one of its SQLSTATEs or
// forwarded holding only allowed settings, as PostgreSQL reads them.
func FuzzStartup(f *testing.F) {
	f.Add([]byte("user\x00demo\x00database\x00app\x00\x00"), "-c stratum.tenant=client_alpha -c statement_timeout=5s")
	f.Add([]byte("\x00"), `-c\ x=1 --stratum.tenant=a\\b`)
	f.Add([]byte("user\x00"), "-cstratum.tenant=x\t-c\tapplication_name=a\\ b\\")
	f.Add([]byte{}, "")
	f.Add([]byte{}, "-c role=postgres --client-encoding=BIG5 -cstandard_conforming_strings=off -d 5 -F")
	f.Add([]byte{}, `--TimeZone=UTC -cDateStyle=ISO -c application_name=a\ b -c stratum.config.x=1`)
	f.Fuzz(func(t *testing.T, params []byte, options string) {
		p, err := parseStartupParams(params)
		want, ok := splitParams(params)
		if (err == nil) != ok {
			t.Fatalf("parsing %q: error %v, want an error: %v", params, err, !ok)
		}
		if err == nil && !maps.Equal(p, want) {
			t.Fatalf("parsing %q: got %q, want %q", params, p, want)
		}

		words := startupOptions(options)
		for i, w := range words {
			// Only a lone backslash ending the string makes an empty word
			// (PostgreSQL's pg_split_opts does the same).
			if w == "" && (i != len(words)-1 || !strings.HasSuffix(options, `\`)) {
				t.Fatalf("empty word %d from %q", i, options)
			}
		}
		keep, wantValue, wantFound := withoutTenant(words)
		// takeOption drops that empty word: escapeOption cannot write it.
		keep = slices.DeleteFunc(keep, func(w string) bool { return w == "" })
		value, found, rest := takeOption(options, "stratum.tenant")
		if found != wantFound || value != wantValue {
			t.Fatalf("takeOption(%q): value %q found %v, want %q %v", options, value, found, wantValue, wantFound)
		}
		// The rest, as the backend splits it, is the same words minus the
		// tenant's: escaping round-trips every word, spaces and backslashes
		// included.
		if again := startupOptions(rest); !slices.Equal(again, keep) {
			t.Fatalf("takeOption(%q) left %q, which reads back as %q; want %q", options, rest, again, keep)
		}

		fwd, _, _, perr := checkStartup(map[string]string{"options": options})
		if perr != nil {
			if !perr.Fatal || (perr.Code != "42501" && perr.Code != "42704" && perr.Code != "0A000") {
				t.Fatalf("options %q refused with %v (fatal %v)", options, perr, perr.Fatal)
			}
			return
		}
		if bad := disallowedSetting(pgSplitOpts(fwd["options"])); bad != "" {
			t.Fatalf("options %q accepted, forwarding %q: the backend reads %s", options, fwd["options"], bad)
		}
	})
}

// splitParams reads a StartupMessage parameter list by splitting it at NULs:
// name, value, name, value, …, then an empty name. ok is false when the
// bytes are not such a list.
func splitParams(b []byte) (map[string]string, bool) {
	parts := bytes.Split(b, []byte{0})
	// A well-formed list ends "…\x00\x00": the empty name, then nothing.
	n := len(parts)
	if n < 2 || n%2 != 0 || len(parts[n-2]) != 0 || len(parts[n-1]) != 0 {
		return nil, false
	}
	m := map[string]string{}
	for i := 0; i+1 < n-2; i += 2 {
		if len(parts[i]) == 0 {
			return nil, false
		}
		m[string(parts[i])] = string(parts[i+1])
	}
	return m, true
}

// withoutTenant drops the stratum.tenant settings from the words of an
// options parameter, as PostgreSQL would read them ("-c name=value",
// "-cname=value", "--name=value"; name case-insensitive, '-' as '_'), and
// returns what is left and the last tenant value, with the words after it
// that are not options.
func withoutTenant(words []string) (keep []string, value string, found bool) {
	tenant := func(s string) (string, bool) {
		n, v, ok := strings.Cut(s, "=")
		if ok && strings.EqualFold(strings.ReplaceAll(n, "-", "_"), "stratum.tenant") {
			return v, true
		}
		return "", false
	}
	// stray takes the words after a tenant setting that are not options
	// into its value ("-c stratum.tenant=Bad Name!" names "Bad Name!").
	stray := func(i int, v string) int {
		for i+1 < len(words) && !strings.HasPrefix(words[i+1], "-") {
			v += " " + words[i+1]
			i++
		}
		value, found = v, true
		return i
	}
	for i := 0; i < len(words); i++ {
		w := words[i]
		if w == "-c" && i+1 < len(words) {
			if v, ok := tenant(words[i+1]); ok {
				i = stray(i+1, v)
			} else {
				keep = append(keep, w, words[i+1])
				i++
			}
			continue
		}
		if strings.HasPrefix(w, "-c") || strings.HasPrefix(w, "--") {
			if v, ok := tenant(w[2:]); ok {
				i = stray(i, v)
				continue
			}
		}
		keep = append(keep, w)
	}
	return keep, value, found
}

// fuzzAllowed is the allow-list as the fuzz oracle knows it, written out
// apart from the proxy's table.
var fuzzAllowed = map[string]bool{
	"application_name": true, "client_encoding": true, "datestyle": true, "timezone": true,
	"intervalstyle": true, "extra_float_digits": true, "search_path": true, "statement_timeout": true,
	"lock_timeout": true, "idle_in_transaction_session_timeout": true, "default_transaction_isolation": true,
	"default_transaction_read_only": true, "standard_conforming_strings": true,
	"client_min_messages": true, "bytea_output": true, "timezone_abbreviations": true, "xmloption": true,
	"lc_monetary": true, "lc_numeric": true, "lc_time": true, "work_mem": true, "jit": true,
	"synchronous_commit": true, "plan_cache_mode": true, "default_text_search_config": true,
	"idle_session_timeout": true,
}

// disallowedSetting reads options words as PostgreSQL's
// process_postgres_switches would and describes the first that is not an
// allowed setting with an allowed value; "" when all are.
func disallowedSetting(words []string) string {
	for i := 0; i < len(words); i++ {
		w := words[i]
		var setting string
		switch {
		case w == "-c" && i+1 < len(words):
			i++
			setting = words[i]
		case len(w) > 2 && (w[:2] == "-c" || w[:2] == "--"):
			setting = w[2:]
		default:
			return "the word " + strconv.Quote(w)
		}
		name, value, ok := strings.Cut(setting, "=")
		name = strings.ToLower(strings.ReplaceAll(name, "-", "_"))
		switch {
		case !ok || !fuzzAllowed[name]:
			return "the setting " + strconv.Quote(setting)
		case name == "client_encoding" && rewrite.UnsafeClientEncoding(value),
			name == "standard_conforming_strings" && !slices.Contains([]string{"on", "1", "t", "tr", "tru", "true", "y", "ye", "yes"}, strings.ToLower(value)):
			return "the value of " + strconv.Quote(setting)
		}
	}
	return ""
}
