package proxy

import (
	"context"
	"errors"
	"time"

	"github.com/stratum-hq/stratum-proxy/internal/wire"
	"github.com/stratum-hq/stratum-proxy/router"
)

// attachLocked makes sc the session's backend and starts its pump. The caller
// holds no lock; the name says the session's state is being set up.
func (ss *session) attachLocked(sc *router.ServerConn) *attachment {
	att := &attachment{sc: sc, done: make(chan error, 1)}
	ss.mu.Lock()
	ss.mu.att = att
	ss.mu.Unlock()
	go ss.pump(att)
	return att
}

// attach returns the session's backend for a client message of type typ,
// acquiring one (and bringing it up to the session's state) when none is held,
// and records what the message means for the release rule.
func (ss *session) attach(typ byte) (*attachment, error) {
	ss.mu.Lock()
	att := ss.mu.att
	fresh := att == nil
	before := ss.mu.pending
	if fresh {
		ss.mu.Unlock()
		var err error
		if att, err = ss.acquire(); err != nil {
			return nil, err
		}
		ss.mu.Lock()
	} else {
		ss.injectPolicyLocked(att)
	}
	if expectsReadyForQuery(typ) {
		ss.mu.pending++
	}
	switch {
	case typ == wire.Sync:
		ss.mu.unsynced = false
	case opensBatch(typ):
		ss.mu.unsynced = true
	}
	ss.clientSentLocked(before)
	ss.mu.Unlock()
	if fresh {
		go ss.pump(att)
	}
	return att, nil
}

// acquire gets a backend of the current tenant, brings it up to the session's
// state and attaches it. The caller starts its pump once the request that
// needed it is counted, so the pump cannot see the session idle in between.
func (ss *session) acquire() (*attachment, error) {
	cfg := ss.srv.backends.Config()
	ctx, cancel := context.WithTimeout(ss.ctx, cfg.QueueTimeout+cfg.DialTimeout)
	sc, err := ss.timedAcquire(ctx, ss.cur)
	cancel()
	if err != nil {
		return nil, ss.acquireError(err, false)
	}
	if err := ss.state.prepareBackend(ss, sc); err != nil {
		ss.srv.backends.Release(sc, router.Close)
		return nil, asError(err, false)
	}
	att := &attachment{sc: sc, done: make(chan error, 1)}
	ss.mu.Lock()
	ss.mu.att = att
	if n := ss.state.injectSettings(sc, ss.pol); n > 0 {
		att.dropUntilRF.Add(int32(n))
		ss.mu.pending += int32(n)
	}
	ss.mu.Unlock()
	return att, nil
}

// timedAcquire acquires a backend for p and records how long it took.
func (ss *session) timedAcquire(ctx context.Context, p *router.Placement) (*router.ServerConn, error) {
	now := ss.srv.cfg.knobs.now
	start := now()
	sc, err := ss.srv.backends.Acquire(ctx, p, ss.params)
	if err == nil {
		sc.SetClientPID(ss.key.pid) // notifications it sends name this session
	}
	d := now().Sub(start)
	ss.srv.metrics.acquireSeconds.Observe(d.Seconds())
	if d > 10*time.Millisecond {
		ss.srv.metrics.poolWaits.Inc()
	}
	if err != nil {
		ss.srv.metrics.countError("acquire")
	}
	return sc, err
}

// acquireError says why no backend connection could be had.
func (ss *session) acquireError(err error, fatal bool) *Error {
	if errors.Is(err, router.ErrQueueTimeout) {
		e := errorf(codeTooManyConnections, "too many connections for tenant %q: no backend connection became free in time", ss.cur.Tenant.Slug)
		e.Detail = err.Error()
		e.Hint = "raise the tenant's connection limit or shorten its transactions"
		e.Fatal = fatal
		return e
	}
	return asError(err, fatal)
}

// detach stops the pump without losing data (the reader is resumable, so a
// read cut off by the deadline consumes nothing) and takes the backend from
// the session. It returns the backend, or nil and the pump's error when the
// backend failed, or nil, nil when none was held.
func (ss *session) detach() (*router.ServerConn, error) {
	// Marking the pause under the lock orders it with the pump's release
	// decision (also under the lock): either the pump released the backend
	// first and att is gone, or it sees pausing and keeps it. A released
	// backend may already serve another session, so it must not be touched.
	ss.mu.Lock()
	att := ss.mu.att
	if att != nil {
		att.pausing.Store(true)
	}
	ss.mu.Unlock()
	if att == nil {
		return nil, nil
	}
	att.sc.Conn.SetReadDeadline(time.Now())
	err := <-att.done
	att.sc.Conn.SetReadDeadline(time.Time{})
	ss.mu.Lock()
	ss.mu.att = nil
	ss.mu.Unlock()
	if err != nil {
		ss.srv.backends.Release(att.sc, router.Close)
		return nil, err
	}
	return att.sc, nil
}

// errCopyIn: waitIdle cannot wait, the backend waits for the client's COPY data.
var errCopyIn = errors.New("the backend waits for COPY data from the client")

// waitIdle waits until every request sent has its ReadyForQuery. It fails when
// the pump ends first, and with errCopyIn when the backend needs the client's
// COPY data first (the client sent another request in the middle of COPY
// FROM STDIN, which the relay would never read while waiting).
func (ss *session) waitIdle() error {
	for {
		ss.mu.Lock()
		pending, att, copyIn := ss.mu.pending, ss.mu.att, ss.mu.copyIn
		ss.mu.Unlock()
		if pending <= 0 {
			return nil
		}
		if copyIn {
			return errCopyIn
		}
		if att == nil {
			return errors.New("no backend while requests are pending")
		}
		select {
		case <-ss.idle:
		case err := <-att.done:
			att.done <- err // leave it for finish
			if err == nil {
				continue // released: pending is zero now
			}
			return err
		}
	}
}
