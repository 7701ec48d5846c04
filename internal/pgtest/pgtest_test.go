package pgtest

import (
	"context"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
)

func TestMain(m *testing.M) { Main(m) }

// databaseExists asks the server whether database exists.
func databaseExists(t *testing.T, s *Server, name string) bool {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, s.URL("postgres"))
	if err != nil {
		t.Fatalf("connecting: %v", err)
	}
	defer conn.Close(ctx)
	var exists bool
	if err := conn.QueryRow(ctx, "select exists (select from pg_database where datname = $1)", name).Scan(&exists); err != nil {
		t.Fatalf("querying pg_database: %v", err)
	}
	return exists
}

func TestNewDatabase(t *testing.T) {
	s := Get(t)
	var name string
	t.Run("inner", func(t *testing.T) {
		name = s.NewDatabase(t, "My-Test")
		if !regexp.MustCompile(`^my_test_[0-9a-f]{8}$`).MatchString(name) {
			t.Fatalf("database name %q", name)
		}
		if !databaseExists(t, s, name) {
			t.Fatalf("database %s does not exist during the test", name)
		}

		s.Exec(t, name, "create table t (v int); insert into t values (1), (2)")
		s.Exec(t, name, "insert into t values ($1)", 3)

		ctx := context.Background()
		conn, err := pgx.Connect(ctx, s.URL(name))
		if err != nil {
			t.Fatalf("connecting to %s: %v", name, err)
		}
		// Left open on purpose: the drop must end this session.
		var sum int
		var db, owner string
		err = conn.QueryRow(ctx, `select (select sum(v) from t), current_database(),
			(select pg_get_userbyid(datdba) from pg_database where datname = current_database())`).Scan(&sum, &db, &owner)
		if err != nil || sum != 6 || db != name || owner != s.SuperUser() {
			t.Fatalf("got sum %d, database %q, owner %q, err %v; want 6, %q, %q", sum, db, owner, err, name, s.SuperUser())
		}
	})
	if databaseExists(t, s, name) {
		t.Fatalf("database %s still exists after its test", name)
	}
}

func TestServerAccessors(t *testing.T) {
	s := Get(t)
	if s.Host() == "" || s.Port() == 0 || s.SuperUser() == "" {
		t.Fatalf("host %q port %d user %q", s.Host(), s.Port(), s.SuperUser())
	}
	if u, err := url.Parse(s.URL("x")); err != nil || u.Path != "/x" {
		t.Fatalf("URL(x) = %s (%v)", s.URL("x"), err)
	}
}

func TestUniqueName(t *testing.T) {
	for prefix, want := range map[string]string{
		"roles":                 `^roles_[0-9a-f]{8}$`,
		"Tenant A.b":            `^tenant_a_b_[0-9a-f]{8}$`,
		"":                      `^t_[0-9a-f]{8}$`,
		"9lives":                `^t9lives_[0-9a-f]{8}$`,
		strings.Repeat("x", 80): `^x{54}_[0-9a-f]{8}$`,
	} {
		got := UniqueName(prefix)
		if !regexp.MustCompile(want).MatchString(got) {
			t.Errorf("UniqueName(%q) = %q, want %s", prefix, got, want)
		}
	}
	if UniqueName("a") == UniqueName("a") {
		t.Error("UniqueName repeated itself")
	}
}

func TestParseServer(t *testing.T) {
	s, err := parseServer("postgresql://admin:s%40cret@db.example:6432/main?sslmode=require&application_name=x")
	if err != nil {
		t.Fatal(err)
	}
	if s.Host() != "db.example" || s.Port() != 6432 || s.SuperUser() != "admin" || s.Password() != "s@cret" {
		t.Fatalf("got host %q port %d user %q password %q", s.Host(), s.Port(), s.SuperUser(), s.Password())
	}
	want := "postgresql://admin:s%40cret@db.example:6432/other?sslmode=require&application_name=x"
	if got := s.URL("other"); got != want {
		t.Fatalf("URL(other) = %s, want %s", got, want)
	}
	if _, err := parseServer("host=localhost dbname=x"); err == nil {
		t.Fatal("parseServer accepted a keyword/value string")
	}
}
