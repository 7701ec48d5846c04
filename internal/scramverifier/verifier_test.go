package scramverifier

import (
	"testing"

	"github.com/xdg-go/scram"
)

// TestMakeParseAuthenticates runs a whole SCRAM conversation between the library's
// client and a server that knows only the parsed verifier.
func TestMakeParseAuthenticates(t *testing.T) {
	v, err := Make("s3cret")
	if err != nil {
		t.Fatal(err)
	}
	creds, err := Parse(v)
	if err != nil {
		t.Fatalf("parse %q: %v", v, err)
	}
	for _, tc := range []struct {
		password string
		ok       bool
	}{{"s3cret", true}, {"wrong", false}} {
		srv, _ := scram.SHA256.NewServer(func(string) (scram.StoredCredentials, error) { return creds, nil })
		cli, _ := scram.SHA256.NewClient("", tc.password, "")
		sc, cc := srv.NewConversation(), cli.NewConversation()
		msg, _ := cc.Step("")
		var serr error
		for !sc.Done() && serr == nil {
			var reply string
			reply, serr = sc.Step(msg)
			if serr == nil && !cc.Done() {
				msg, _ = cc.Step(reply)
			}
		}
		if got := serr == nil && sc.Valid(); got != tc.ok {
			t.Errorf("password %q: authenticated=%v, want %v (err %v)", tc.password, got, tc.ok, serr)
		}
	}
}

// TestParseKnownVerifier reads a verifier in the layout PostgreSQL stores in
// pg_authid.rolpassword (real server round trips are in the router tests).
func TestParseKnownVerifier(t *testing.T) {
	v := "SCRAM-SHA-256$4096:nlTjSOWJWaX/gQDlgnNGtQ==$3wJRW1fyEkZq+dOWp5ZJfeyovAQjRDrXYFj3FJWQtDY=:LvJRuZzpeVEnpsrxFzxqJ0o4M9aBRy6ARzJXOcqf/6s="
	c, err := Parse(v)
	if err != nil || c.Iters != 4096 || len(c.Salt) != 16 {
		t.Fatalf("got %+v, %v", c.KeyFactors, err)
	}
}

func TestParseRejectsGarbage(t *testing.T) {
	for _, v := range []string{"", "md5abc", "SCRAM-SHA-256$", "SCRAM-SHA-256$x:y$z:w",
		"SCRAM-SHA-256$4096:AAAA$AAAA:AAAA", "SCRAM-SHA-256$0:AAAA$" + "a:b"} {
		if _, err := Parse(v); err == nil {
			t.Errorf("Parse(%q) accepted", v)
		}
	}
}
