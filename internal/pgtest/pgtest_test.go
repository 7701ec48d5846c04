package pgtest

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
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

// superuserIters reads the iteration count of the superuser's verifier at url.
func superuserIters(t *testing.T, url string) string {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatalf("connecting: %v", err)
	}
	defer conn.Close(ctx)
	var v string
	if err := conn.QueryRow(ctx, "select rolpassword from pg_authid where rolname = current_user").Scan(&v); err != nil {
		t.Fatalf("reading the verifier: %v", err)
	}
	iters, _, _ := strings.Cut(strings.TrimPrefix(v, "SCRAM-SHA-256$"), ":")
	return iters
}

func TestSuperuserVerifierIsCheap(t *testing.T) {
	want := fmt.Sprint(superuserIterations)
	if os.Getenv(EnvURL) == "" {
		if got := superuserIters(t, Get(t).URL("postgres")); got != want {
			t.Errorf("throwaway cluster: superuser verifier has %s iterations, want %s", got, want)
		}
	}
	p := StartPrivate(t)
	if got := superuserIters(t, p.URL("postgres")); got != want {
		t.Errorf("private cluster: superuser verifier has %s iterations, want %s", got, want)
	}
	p.Stop(t)
	p.Start(t)
	if got := superuserIters(t, p.URL("postgres")); got != want {
		t.Errorf("private cluster restarted: superuser verifier has %s iterations, want %s", got, want)
	}
}

func TestTemplate(t *testing.T) {
	s := Get(t)
	var prepared int
	prepare := func(ctx context.Context, url string) error {
		prepared++
		conn, err := pgx.Connect(ctx, url)
		if err != nil {
			return err
		}
		defer conn.Close(ctx)
		_, err = conn.Exec(ctx, "create table t (v int); insert into t values (7)")
		return err
	}
	var names [4]string
	t.Run("group", func(t *testing.T) {
		for i := range names {
			t.Run(fmt.Sprint(i), func(t *testing.T) {
				t.Parallel()
				tmpl := s.Template(t, "pgtest_test", prepare)
				names[i] = s.NewDatabaseFrom(t, "copy", tmpl)
				s.Exec(t, names[i], "insert into t values ($1)", i)
				ctx := context.Background()
				conn, err := pgx.Connect(ctx, s.URL(names[i]))
				if err != nil {
					t.Fatal(err)
				}
				defer conn.Close(ctx)
				var sum, n int
				if err := conn.QueryRow(ctx, "select sum(v), count(*) from t").Scan(&sum, &n); err != nil || sum != 7+i || n != 2 {
					t.Errorf("copy %d: sum %d of %d rows (%v), want %d of 2: the template's row and its own", i, sum, n, err, 7+i)
				}
			})
		}
	})
	if prepared != 1 {
		t.Errorf("prepare ran %d times, want once", prepared)
	}
	for _, name := range names {
		if databaseExists(t, s, name) {
			t.Errorf("copy %s still exists after its test", name)
		}
	}
	tmpl := s.Template(t, "pgtest_test", prepare)
	if !databaseExists(t, s, tmpl) {
		t.Fatalf("template %s is gone before the tests end", tmpl)
	}
	if err := s.exec(context.Background(), tmpl, "select 1"); err == nil {
		t.Errorf("template %s takes connections, which would stop it being copied", tmpl)
	}
	// A failing prepare: its error, and the database is recorded for the
	// drop at the end.
	var tp template
	err := s.makeTemplate(context.Background(), &tp, "pgtest_failing", func(context.Context, string) error { return errors.New("no") })
	if err == nil || err.Error() != "no" || tp.name == "" {
		t.Errorf("failing prepare: error %v, name %q; want its error and the name", err, tp.name)
	}
	if tp.name != "" {
		s.Exec(t, "postgres", "drop database "+tp.name)
	}
}
