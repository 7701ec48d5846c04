package admin

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// fakeClock is a settable clock for the limiter.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time          { return c.t }
func (c *fakeClock) advance(d time.Duration) { c.t = c.t.Add(d) }

func TestLimiterBucket(t *testing.T) {
	clock := &fakeClock{t: time.Unix(1_700_000_000, 0)}
	l := newLimiter(600)
	l.now = clock.now
	for i := range 60 {
		if _, ok := l.take("k", 60); !ok {
			t.Fatalf("request %d of a full bucket refused", i+1)
		}
	}
	wait, ok := l.take("k", 60)
	if ok || wait <= 0 || wait > time.Second {
		t.Fatalf("empty bucket: ok %v, wait %v; want a refusal and at most 1 s (60 a minute)", ok, wait)
	}
	clock.advance(500 * time.Millisecond)
	if wait, ok := l.take("k", 60); ok || wait < 400*time.Millisecond || wait > 600*time.Millisecond {
		t.Fatalf("half a token later: ok %v, wait %v", ok, wait)
	}
	clock.advance(500 * time.Millisecond)
	if _, ok := l.take("k", 60); !ok {
		t.Fatal("a whole token later: refused")
	}
	// Refill is capped at the capacity.
	clock.advance(time.Hour)
	for i := range 60 {
		if _, ok := l.take("k", 60); !ok {
			t.Fatalf("after an hour, request %d refused", i+1)
		}
	}
	if _, ok := l.take("k", 60); ok {
		t.Fatal("the bucket held more than its capacity")
	}
	// A lowered limit caps the tokens.
	clock.advance(time.Hour)
	if _, ok := l.take("k", 2); !ok {
		t.Fatal("lowered limit: first request refused")
	}
	if _, ok := l.take("k", 2); !ok {
		t.Fatal("lowered limit: second request refused")
	}
	if _, ok := l.take("k", 2); ok {
		t.Fatal("lowered limit: third request taken")
	}
}

func TestLimiterBounded(t *testing.T) {
	clock := &fakeClock{t: time.Unix(1_700_000_000, 0)}
	l := newLimiter(600)
	l.now = clock.now
	l.max = 10
	for i := range 10 {
		l.take(fmt.Sprint("busy", i), 1) // each bucket now empty
		clock.advance(time.Second)
	}
	if l.size() != 10 {
		t.Fatalf("size %d", l.size())
	}
	// Full map of busy keys: the least recently used goes.
	l.take("new", 1)
	if l.size() != 10 {
		t.Fatalf("size %d after an eviction, want 10", l.size())
	}
	if _, ok := l.mu.buckets["busy0"]; ok {
		t.Error("the least recently used bucket was kept")
	}
	// Once buckets have refilled (idle keys) they all go at the next insert.
	clock.advance(2 * time.Minute)
	l.take("another", 1)
	if l.size() != 1 {
		t.Fatalf("size %d after idle buckets were swept, want 1", l.size())
	}
}

func TestLimitAnswer(t *testing.T) {
	clock := &fakeClock{t: time.Unix(1_700_000_000, 0)}
	a := &API{limiter: newLimiter(600)}
	a.limiter.now = clock.now
	p := &principal{KeyID: "k", RateLimit: 1}
	if err := a.limit(httptest.NewRecorder(), p); err != nil {
		t.Fatal(err)
	}
	w := httptest.NewRecorder()
	err := a.limit(w, p)
	e, ok := err.(*Error)
	if !ok || e.Status != http.StatusTooManyRequests || e.Code != CodeRateLimited || e.Details["limit"] != 1 {
		t.Fatalf("over the limit: %v", err)
	}
	if got := w.Header().Get("Retry-After"); got != "60" {
		t.Errorf("Retry-After %q, want 60", got)
	}
	// A fraction of a second still says 1.
	clock.advance(59*time.Second + 900*time.Millisecond)
	w = httptest.NewRecorder()
	if err := a.limit(w, p); err == nil || w.Header().Get("Retry-After") != "1" {
		t.Errorf("Retry-After %q (%v), want 1", w.Header().Get("Retry-After"), err)
	}
	// The default applies to keys without their own limit; off when negative.
	off := &API{limiter: newLimiter(-1)}
	for range 1000 {
		if err := off.limit(httptest.NewRecorder(), &principal{KeyID: "k"}); err != nil {
			t.Fatalf("default off: %v", err)
		}
	}
	if err := off.limit(httptest.NewRecorder(), p); err != nil {
		t.Fatal(err)
	}
	if err := off.limit(httptest.NewRecorder(), p); err == nil {
		t.Fatal("a key's own limit was not applied with the default off")
	}
}
