package router

import (
	"sync"
	"time"
)

// pool keeps the idle backend connections of one pool key, newest last.
type pool struct {
	mu   sync.Mutex
	idle []*ServerConn
}

// take pops the newest idle connection younger than lifetime, closing any older ones.
func (p *pool) take(lifetime time.Duration) *ServerConn {
	p.mu.Lock()
	defer p.mu.Unlock()
	for len(p.idle) > 0 {
		sc := p.idle[len(p.idle)-1]
		p.idle = p.idle[:len(p.idle)-1]
		if time.Since(sc.created) < lifetime {
			return sc
		}
		go sc.Close()
	}
	return nil
}

// put keeps sc idle unless the pool already holds max; it reports whether it kept it.
func (p *pool) put(sc *ServerConn, max int) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.idle) >= max {
		return false
	}
	sc.idleAt = time.Now()
	p.idle = append(p.idle, sc)
	return true
}

// reap closes connections idle for longer than timeout.
func (p *pool) reap(timeout time.Duration) {
	p.mu.Lock()
	var old []*ServerConn
	keep := p.idle[:0]
	for _, sc := range p.idle {
		if time.Since(sc.idleAt) > timeout {
			old = append(old, sc)
		} else {
			keep = append(keep, sc)
		}
	}
	p.idle = keep
	p.mu.Unlock()
	for _, sc := range old {
		sc.Close()
	}
}

func (p *pool) closeIdle() {
	p.mu.Lock()
	idle := p.idle
	p.idle = nil
	p.mu.Unlock()
	for _, sc := range idle {
		sc.Close()
	}
}
