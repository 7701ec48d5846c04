package backends

import (
	"strings"
	"testing"
)

func TestFillDefaults(t *testing.T) {
	t.Parallel()
	s := Set{Backends: map[string]Backend{"db1": {Host: "h", Port: 5432, AdminUser: "u"}}}
	if err := s.FillDefaults(); err != nil {
		t.Fatal(err)
	}
	b := s.Backends["db1"]
	if s.SharedBackend != "db1" || s.DefaultBackend != "db1" || s.SharedDatabase != "app" ||
		b.AdminDatabase != "postgres" || b.SSLMode != "prefer" || b.MaxConnections != 80 {
		t.Errorf("defaults: %+v", s)
	}
	// A copy of a set shares its map with the original, which a router may
	// be reading: filling the copy's defaults must not write it.
	orig := Set{Backends: map[string]Backend{"db1": {Host: "h", Port: 5432, AdminUser: "u"}}}
	cp := orig
	if err := cp.FillDefaults(); err != nil {
		t.Fatal(err)
	}
	if orig.Backends["db1"].MaxConnections != 0 || cp.Backends["db1"].MaxConnections != 80 {
		t.Errorf("filling a copy's defaults changed the original's map: %+v", orig.Backends)
	}
	for _, bad := range []Set{
		{},
		{Backends: map[string]Backend{"a": {Host: "h", Port: 1}}},                                      // no admin_user
		{Backends: map[string]Backend{"a": {Host: "h", Port: 1, AdminUser: "u", SSLMode: "verify"}}},   // sslmode
		{Backends: map[string]Backend{"a": {Host: "h", Port: 1, AdminUser: "u"}}, SharedBackend: "b"},  // unknown
		{Backends: map[string]Backend{"a": {Host: "h", Port: 1, AdminUser: "u"}}, SharedDatabase: "X"}, // not an identifier
	} {
		if err := bad.FillDefaults(); err == nil {
			t.Errorf("FillDefaults(%+v) accepted it", bad)
		}
	}
}

func TestConnStringQuotes(t *testing.T) {
	t.Parallel()
	b := Backend{Host: "h", Port: 5432, SSLMode: "disable"}
	got := b.ConnString("u", `p' host=evil \`, "db")
	if !strings.Contains(got, `password='p\' host=evil \\'`) || strings.Count(got, "host=") != 2 {
		t.Errorf("ConnString = %s", got)
	}
}
