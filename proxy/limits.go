package proxy

import (
	"net"
	"strings"
	"sync"
	"time"

	"github.com/stratum-hq/stratum-proxy/catalog"
)

// limits counts what Config's connection limits bound: client connections
// overall (from accept, so half-open startups count too) and sessions per
// tenant, and it throttles sources that keep failing authentication.
type limits struct {
	mu struct {
		sync.Mutex
		clients   int
		perTenant map[string]int
		failures  map[string]*authFailures // by userKey and by sourceKey
	}
}

type authFailures struct {
	count int
	until time.Time // refuse this key until then
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

// Failed authentications are counted twice: per (source address, user name),
// where the lockout applies (so that users behind one NAT do not lock each
// other out), and per source address, with a much higher threshold, against
// one source spraying many user names.

// userKey is the throttling key of a user name from a source. The user is
// the proxy user a startup name found, else the name as findUser would read
// it for a user suffix (the part before the last dot): "ghost.a" and
// "ghost.b" count together as "demo.a" and "demo.b" do, so an unknown name
// is locked out exactly when a known one would be.
func userKey(ip, user string) string { return ip + "\x00" + user }

// throttleName is the user part of userKey for a startup name: the found
// user's name, else the name up to its last dot.
func throttleName(startupName string, u *catalog.User) string {
	if u != nil {
		return u.Name
	}
	if i := strings.LastIndexByte(startupName, '.'); i > 0 {
		return startupName[:i]
	}
	return startupName
}

// sourceKey is the throttling key of a source as a whole.
func sourceKey(ip string) string { return ip }

// throttled reports how long the key must still wait after too many failed
// authentications (zero: it may try).
func (l *limits) throttled(key string, now time.Time) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	f := l.mu.failures[key]
	if f == nil || !now.Before(f.until) {
		return 0
	}
	return f.until.Sub(now)
}

// authFailed records a failed authentication under key: after threshold
// failures within window the key is refused for lockout, doubling each time.
func (l *limits) authFailed(key string, threshold int, window, lockout time.Duration, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	f := l.mu.failures[key]
	if f == nil || now.Sub(f.last) > window {
		f = &authFailures{}
		l.mu.failures[key] = f
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

// authSucceeded forgets the failures of a (source, user) pair. The source's
// own count stays: one good password must not reset a spray of other names.
func (l *limits) authSucceeded(key string) {
	l.mu.Lock()
	delete(l.mu.failures, key)
	l.mu.Unlock()
}
