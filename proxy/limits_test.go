package proxy

import (
	"testing"
	"time"
)

func TestAuthThrottling(t *testing.T) {
	l := newLimits()
	now := time.Unix(1000, 0)
	for i := 0; i < 2; i++ {
		l.authFailed("10.0.0.1", 3, time.Minute, time.Second, now)
	}
	if d := l.throttled("10.0.0.1", now); d != 0 {
		t.Fatalf("throttled after 2 of 3 failures: %v", d)
	}
	l.authFailed("10.0.0.1", 3, time.Minute, time.Second, now)
	if d := l.throttled("10.0.0.1", now); d != time.Second {
		t.Fatalf("after the third failure: %v, want 1s", d)
	}
	l.authFailed("10.0.0.1", 3, time.Minute, time.Second, now)
	if d := l.throttled("10.0.0.1", now); d != 2*time.Second {
		t.Fatalf("after the fourth failure: %v, want 2s (doubling)", d)
	}
	if d := l.throttled("10.0.0.2", now); d != 0 {
		t.Fatalf("another source throttled: %v", d)
	}
	if d := l.throttled("10.0.0.1", now.Add(3*time.Second)); d != 0 {
		t.Fatalf("after the lockout: %v", d)
	}
	l.authFailed("10.0.0.3", 3, time.Minute, time.Second, now)
	l.authFailed("10.0.0.3", 3, time.Minute, time.Second, now.Add(2*time.Minute)) // window passed: counts afresh
	if d := l.throttled("10.0.0.3", now.Add(2*time.Minute)); d != 0 {
		t.Fatalf("failures outside the window counted: %v", d)
	}
	l.authSucceeded("10.0.0.1")
	if d := l.throttled("10.0.0.1", now); d != 0 {
		t.Fatalf("after a success: %v", d)
	}
}

func TestConnectionCaps(t *testing.T) {
	l := newLimits()
	if !l.admitClient(2) || !l.admitClient(2) || l.admitClient(2) {
		t.Fatal("client cap of 2 not kept")
	}
	l.releaseClient()
	if !l.admitClient(2) {
		t.Fatal("released slot not reusable")
	}
	if !l.admitTenant("a", 1) || l.admitTenant("a", 1) || !l.admitTenant("b", 1) {
		t.Fatal("tenant cap of 1 not kept per tenant")
	}
	l.releaseTenant("a")
	if !l.admitTenant("a", 1) {
		t.Fatal("released tenant slot not reusable")
	}
	if !l.admitClient(0) {
		t.Fatal("0 must mean no cap")
	}
}
