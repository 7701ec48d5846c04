package main

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// TestClientLimits checks the limits against hostile or runaway clients: a cap
// on client connections (counted from accept, so silent half-open connections
// count), a cap per tenant, and throttling of a source that keeps failing
// authentication. Each refusal is a FATAL with SQLSTATE.
func TestClientLimits(t *testing.T) {
	ts := startTestStack(t, func(sc *stackConfig) {
		sc.MaxClientConnections = 6
		sc.MaxTenantConnections = 2
		sc.AuthFailureThreshold = 3
		sc.AuthLockout = 1500 * time.Millisecond
	})
	ctx := context.Background()
	try := func(user, pw, tenant string) error {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		c, err := pgx.Connect(cctx, ts.url(user, pw, tenant, ""))
		if err == nil {
			t.Cleanup(func() { c.Close(ctx) })
		}
		return err
	}

	t.Run("per tenant", func(t *testing.T) {
		for i := 0; i < 2; i++ {
			if err := try("demo", "demo", "client_alpha"); err != nil {
				t.Fatal(err)
			}
		}
		err := try("demo", "demo", "client_alpha")
		if sqlstate(err) != "53300" || !strings.Contains(err.Error(), `tenant "client_alpha"`) {
			t.Errorf("third client_alpha session: %v, want 53300 naming the tenant", err)
		}
		if err := try("demo", "demo", "client_beta"); err != nil {
			t.Errorf("another tenant is not limited: %v", err)
		}
	})

	t.Run("overall", func(t *testing.T) {
		// 3 sessions are open; 3 silent connections fill the cap of 6.
		var silent []net.Conn
		for i := 0; i < 3; i++ {
			c, err := net.Dial("tcp", ts.proxyAddr)
			if err != nil {
				t.Fatal(err)
			}
			silent = append(silent, c)
		}
		time.Sleep(100 * time.Millisecond) // let the proxy accept them
		err := try("demo", "demo", "client_gamma")
		if sqlstate(err) != "53300" || !strings.Contains(err.Error(), "too many clients") {
			t.Errorf("connection over the cap: %v, want 53300", err)
		}
		for _, c := range silent {
			c.Close()
		}
		deadline := time.Now().Add(3 * time.Second)
		for {
			err := try("demo", "demo", "client_gamma")
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("after the silent connections closed: %v", err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	})

	t.Run("auth throttling", func(t *testing.T) {
		for i := 0; i < 3; i++ {
			if err := try("demo", "wrong", "client_beta"); sqlstate(err) != "28P01" {
				t.Fatalf("wrong password %d: %v", i, err)
			}
		}
		err := try("demo", "demo", "client_beta")
		if sqlstate(err) != "28000" || !strings.Contains(err.Error(), "too many failed authentications") {
			t.Errorf("right password while throttled: %v, want 28000", err)
		}
		time.Sleep(1600 * time.Millisecond)
		if err := try("demo", "demo", "client_beta"); err != nil && sqlstate(err) != "53300" {
			t.Errorf("after the lockout: %v", err)
		}
	})
}
