package proxy

import (
	"strings"
	"testing"
)

// FuzzStartup feeds arbitrary bytes to the client-side startup parsing: the
// StartupMessage parameter list and the options parameter. Neither may panic;
// taking stratum.tenant out of options must leave options that read back as
// the same words minus the tenant's.
func FuzzStartup(f *testing.F) {
	f.Add([]byte("user\x00demo\x00database\x00app\x00\x00"), "-c stratum.tenant=client_alpha -c statement_timeout=5s")
	f.Add([]byte("\x00"), `-c\ x=1 --stratum.tenant=a\\b`)
	f.Add([]byte("user\x00"), "-cstratum.tenant=x\t-c\tapplication_name=a\\ b\\")
	f.Add([]byte{}, "")
	f.Fuzz(func(t *testing.T, params []byte, options string) {
		if p, err := parseStartupParams(params); err == nil {
			for k := range p {
				if k == "" || strings.ContainsRune(k, 0) {
					t.Fatalf("parameter name %q accepted", k)
				}
			}
		}
		_, found, rest := takeOption(options, "stratum.tenant")
		again := startupOptions(rest)
		if _, foundAgain, _ := takeOption(rest, "stratum.tenant"); foundAgain && found {
			// The last -c stratum.tenant wins in PostgreSQL; all are removed.
			t.Fatalf("stratum.tenant still in %q (from %q)", rest, options)
		}
		for _, w := range again {
			if w == "" {
				t.Fatalf("empty word from %q", rest)
			}
		}
	})
}
