package pooling

import (
	"context"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stratum-hq/stratum-proxy/internal/stacktest"
	"github.com/stratum-hq/stratum-proxy/server"
)

// TestClientLimits checks the limits against hostile or runaway clients: a cap
// on client connections (counted from accept, so silent half-open connections
// count), a cap per tenant, and throttling of a source that keeps failing
// authentication. Each refusal is a FATAL with SQLSTATE.
func TestClientLimits(t *testing.T) {
	ts := stacktest.Start(t, func(sc *server.Config) {
		sc.Proxy.MaxClientConnections = 6
		sc.Proxy.MaxTenantConnections = 2
		sc.Proxy.AuthFailureThreshold = 3
		sc.Proxy.AuthLockout = 1500 * time.Millisecond
	})
	ctx := context.Background()
	try := func(user, pw, tenant string) error {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		c, err := pgx.Connect(cctx, ts.URL(user, pw, tenant, ""))
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
		if stacktest.SQLState(err) != "53300" || !strings.Contains(err.Error(), `tenant "client_alpha"`) {
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
			c, err := net.Dial("tcp", ts.ProxyAddr)
			if err != nil {
				t.Fatal(err)
			}
			silent = append(silent, c)
		}
		time.Sleep(100 * time.Millisecond) // let the proxy accept them
		err := try("demo", "demo", "client_gamma")
		if stacktest.SQLState(err) != "53300" || !strings.Contains(err.Error(), "too many clients") {
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
			if err := try("demo", "wrong", "client_beta"); stacktest.SQLState(err) != "28P01" {
				t.Fatalf("wrong password %d: %v", i, err)
			}
		}
		err := try("demo", "demo", "client_beta")
		if stacktest.SQLState(err) != "28000" || !strings.Contains(err.Error(), "too many failed authentications") {
			t.Errorf("right password while throttled: %v, want 28000", err)
		}
		time.Sleep(1600 * time.Millisecond)
		if err := try("demo", "demo", "client_beta"); err != nil && stacktest.SQLState(err) != "53300" {
			t.Errorf("after the lockout: %v", err)
		}
	})
}

// TestManySilentConnections opens two thousand connections that never send a
// startup packet: the proxy keeps serving other clients, its memory grows by
// a bounded amount per connection, and everything is released when they go.
func TestManySilentConnections(t *testing.T) {
	ts := stacktest.Start(t)
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for i := 0; i < 2000; i++ {
		c, err := net.Dial("tcp", ts.ProxyAddr)
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		conns = append(conns, c)
	}
	time.Sleep(300 * time.Millisecond)
	c := stacktest.Connect(t, ts.URL("demo", "demo", "client_alpha", ""))
	if n := stacktest.Count(t, c, "SELECT 1"); n != 1 {
		t.Fatal("a normal client is not served")
	}
	runtime.GC()
	var during runtime.MemStats
	runtime.ReadMemStats(&during)
	// Heap and goroutine stacks of this process (test clients included).
	grown := int64(during.HeapInuse+during.StackInuse) - int64(before.HeapInuse+before.StackInuse)
	per := grown / 2000
	t.Logf("2000 silent connections: %d KiB in all, %d bytes each (client side included)", grown>>10, per)
	if per > 64<<10 {
		t.Errorf("%d bytes per silent connection", per)
	}
}
