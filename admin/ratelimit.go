package admin

import (
	"fmt"
	"math"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// DefaultRateLimit is Config.RateLimit's default: requests per minute per key.
const DefaultRateLimit = 600

// maxBuckets bounds the limiter's memory: past it, buckets that have refilled
// (idle keys) are dropped, then the least recently used.
const maxBuckets = 10000

// limit applies p's rate limit: nil while p is within it, else a 429
// (rate_limited) with Retry-After set on w. The limit is the key's own, else
// Config.RateLimit; the bootstrap key is limited like any other.
func (a *API) limit(w http.ResponseWriter, p *principal) error {
	if a.limiter == nil {
		return nil // an API not made by New
	}
	perMinute := p.RateLimit
	if perMinute <= 0 {
		perMinute = a.limiter.def
	}
	if perMinute <= 0 {
		return nil // the default is off and the key has no limit of its own
	}
	wait, ok := a.limiter.take(p.KeyID, perMinute)
	if ok {
		return nil
	}
	secs := max(int(math.Ceil(wait.Seconds())), 1)
	w.Header().Set("Retry-After", strconv.Itoa(secs))
	return &Error{Status: http.StatusTooManyRequests, Code: CodeRateLimited,
		Message: fmt.Sprintf("the api key is over its rate limit of %d requests per minute; retry in %d s", perMinute, secs),
		Details: map[string]any{"key_id": p.KeyID, "limit": perMinute, "per": "minute", "retry_after_seconds": secs}}
}

// limiter holds one token bucket per API key: a bucket holds up to the key's
// per-minute limit of tokens, refills continuously at limit/60 tokens a
// second, and each request takes one token. Buckets live in this process's
// memory only, so N replicas behind a load balancer grant a key N times its
// limit, and a restart refills every bucket.
type limiter struct {
	def int              // the default limit; <= 0: off
	now func() time.Time // the clock (tests inject one)
	max int              // most buckets kept

	mu struct {
		sync.Mutex
		buckets map[string]*bucket
	}
}

// bucket is one key's budget: tokens as of last.
type bucket struct {
	tokens float64
	last   time.Time
	used   time.Time // the key's last request, for evictions
	limit  int       // per minute: the capacity
}

func newLimiter(def int) *limiter {
	l := &limiter{def: def, now: time.Now, max: maxBuckets}
	l.mu.buckets = map[string]*bucket{}
	return l
}

// refill brings b up to now under limit (which changes when the key's limit
// does: the tokens are kept, capped at the new limit). The limiter's lock is
// held.
func (b *bucket) refill(now time.Time, limit int) {
	b.limit = limit
	if el := now.Sub(b.last); el > 0 {
		b.tokens += el.Seconds() * float64(b.limit) / 60
		b.last = now
	}
	b.tokens = min(b.tokens, float64(b.limit))
}

// take takes one token from key's bucket (made full on first use). It reports
// whether there was one, and if not how long until there is.
func (l *limiter) take(key string, perMinute int) (time.Duration, bool) {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	b, ok := l.mu.buckets[key]
	if !ok {
		l.makeRoomLocked(now)
		b = &bucket{tokens: float64(perMinute), last: now, limit: perMinute}
		l.mu.buckets[key] = b
	}
	b.refill(now, perMinute)
	b.used = now
	if b.tokens >= 1 {
		b.tokens--
		return 0, true
	}
	need := (1 - b.tokens) * 60 / float64(b.limit)
	return time.Duration(need * float64(time.Second)), false
}

// makeRoomLocked keeps the map under l.max: it drops every bucket that has
// refilled by now (dropping it loses nothing: a new one starts full), and if
// that is not enough the least recently used one.
func (l *limiter) makeRoomLocked(now time.Time) {
	if len(l.mu.buckets) < l.max {
		return
	}
	var oldestKey string
	var oldest time.Time
	for k, b := range l.mu.buckets {
		b.refill(now, b.limit)
		if b.tokens >= float64(b.limit) {
			delete(l.mu.buckets, k)
			continue
		}
		if oldestKey == "" || b.used.Before(oldest) {
			oldestKey, oldest = k, b.used
		}
	}
	if len(l.mu.buckets) >= l.max && oldestKey != "" {
		delete(l.mu.buckets, oldestKey)
	}
}

// size is the number of buckets held.
func (l *limiter) size() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.mu.buckets)
}
