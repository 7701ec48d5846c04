package proxy

import (
	"net"
	"sync"
	"time"
)

// limits counts what Config's connection limits bound: client connections
// overall (from accept, so half-open startups count too) and sessions per
// tenant, and it throttles sources that keep failing authentication.
type limits struct {
	mu struct {
		sync.Mutex
		clients   int
		perTenant map[string]int
		failures  map[string]*authFailures // by source IP
	}
}

type authFailures struct {
	count int
	until time.Time // refuse this source until then
	last  time.Time
}

func newLimits() *limits {
	l := &limits{}
	l.mu.perTenant = map[string]int{}
	l.mu.failures = map[string]*authFailures{}
	return l
}

// admitClient counts a new client connection; false when max (> 0) is reached.
func (l *limits) admitClient(max int) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if max > 0 && l.mu.clients >= max {
		return false
	}
	l.mu.clients++
	return true
}

func (l *limits) releaseClient() {
	l.mu.Lock()
	l.mu.clients--
	l.mu.Unlock()
}

// admitTenant counts a session of tenant id; false when max (> 0) is reached.
func (l *limits) admitTenant(id string, max int) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if max > 0 && l.mu.perTenant[id] >= max {
		return false
	}
	l.mu.perTenant[id]++
	return true
}

func (l *limits) releaseTenant(id string) {
	l.mu.Lock()
	if l.mu.perTenant[id]--; l.mu.perTenant[id] <= 0 {
		delete(l.mu.perTenant, id)
	}
	l.mu.Unlock()
}

// sourceIP is the throttling key of a client address.
func sourceIP(a net.Addr) string {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.IP.String()
	}
	host, _, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	return host
}

// throttled reports how long a source must still wait after too many failed
// authentications (zero: it may try).
func (l *limits) throttled(ip string, now time.Time) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	f := l.mu.failures[ip]
	if f == nil || !now.Before(f.until) {
		return 0
	}
	return f.until.Sub(now)
}

// authFailed records a failed authentication from ip: after threshold failures
// within window the source is refused for lockout, doubling each time.
func (l *limits) authFailed(ip string, threshold int, window, lockout time.Duration, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	f := l.mu.failures[ip]
	if f == nil || now.Sub(f.last) > window {
		f = &authFailures{}
		l.mu.failures[ip] = f
	}
	f.count++
	f.last = now
	if f.count >= threshold {
		extra := f.count - threshold
		d := lockout << min(extra, 6)
		f.until = now.Add(d)
	}
	if len(l.mu.failures) > 100_000 { // bound memory under a spray of sources
		for k, v := range l.mu.failures {
			if now.Sub(v.last) > window {
				delete(l.mu.failures, k)
			}
		}
	}
}

// authSucceeded forgets a source's failures.
func (l *limits) authSucceeded(ip string) {
	l.mu.Lock()
	delete(l.mu.failures, ip)
	l.mu.Unlock()
}
