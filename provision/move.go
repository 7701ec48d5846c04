package provision

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/stratum-hq/stratum-proxy/catalog"
)

// Placement moves (online): a tenant's rows are copied to another placement
// while it keeps serving from its own, changes made meanwhile are captured
// by triggers and applied, and a short pause switches it over. The engine is
// move_engine.go (copy, capture, catch-up, cut-over), move_place.go
// (making and dropping the target and the source copy) and this file (the
// API, validation, the goroutines, recovery).

// MoveTarget is where StartMove moves a tenant.
type MoveTarget struct {
	// Isolation is shared, schema or database.
	Isolation string `json:"isolation"`
	// Backend is the target's backend server: for database isolation ""
	// keeps the tenant's backend when it is a database tenant already and
	// takes Config.DefaultBackend otherwise; shared and schema tenants live
	// on the shared backend ("" or its name).
	Backend string `json:"backend,omitempty"`
}

var (
	// ErrMoveSame refuses a move to the placement the tenant has.
	ErrMoveSame = errors.New("provision: the tenant is in that placement already")
	// ErrInvalidMove wraps what is wrong with a move request (unknown
	// isolation or backend, a tenant not active, tables the tenant made
	// itself, tables without a primary key): a client error (400).
	ErrInvalidMove = errors.New("provision: invalid placement move")
)

// errMoveAbandoned is the cause of a move's context when a test simulates
// the death of the proxy running it (AbandonMove): the goroutine stops where
// it is, with no cleanup and no catalog change.
var errMoveAbandoned = errors.New("move abandoned (simulated proxy death)")

// errMoveShutdown is the cause of a move's context at Close.
var errMoveShutdown = errors.New("the proxy running the move shut down")

// moveCancelled is the cause of a move's context at CancelMove.
type moveCancelled struct{ actor string }

func (c moveCancelled) Error() string { return "cancelled by " + c.actor }

// moveRunner is the moves this process runs.
type moveRunner struct {
	owner string // this process's id in tenant_moves.owner

	mu      sync.Mutex
	running map[string]*runningMove // by move id
	closed  bool
	wg      sync.WaitGroup
	sweep   context.CancelFunc // the recovery and retention sweep, once started
}

type runningMove struct {
	cancel context.CancelCauseFunc
	done   chan struct{}
}

func newMoveRunner() *moveRunner {
	id, _, _ := catalog.NewID()
	return &moveRunner{owner: id, running: map[string]*runningMove{}}
}

func (r *moveRunner) get(id string) *runningMove {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.running[id]
}

// StartMove validates a move of the tenant named by ref to target to,
// records it (phase pending, created by actor) and runs it in a goroutine of
// its own; it returns at once. Errors: catalog.ErrNotFound for an unknown
// tenant, ErrMoveSame, ErrInvalidMove (wrapped, with the reason),
// catalog.ErrMoveRunning when the tenant has an unfinished move. Follow the
// move with catalog.GetMove.
func (p *Provisioner) StartMove(ctx context.Context, ref string, to MoveTarget, actor string) (*catalog.Move, error) {
	t, err := p.cat.GetTenant(ctx, ref)
	if err != nil {
		return nil, err
	}
	tt, err := p.moveTarget(t, to)
	if err != nil {
		return nil, err
	}
	id, short, err := catalog.NewID()
	if err != nil {
		return nil, err
	}
	if tt.Isolation == catalog.IsolationDatabase && t.Isolation == catalog.IsolationDatabase &&
		p.sameServer(tt.Backend, t.Backend) {
		// Another backend name for the same server: the database needs a
		// name of its own.
		tt.Database = "t_" + t.ShortID + "_" + short[:8]
	}
	if err := p.checkMovable(ctx, t, tt); err != nil {
		return nil, err
	}
	return p.insertAndLaunch(ctx, &catalog.Move{ID: id, TenantID: t.ID,
		FromIsolation: t.Isolation, FromBackend: t.Backend, FromDatabase: t.Database, FromSchema: t.Schema,
		ToIsolation: tt.Isolation, ToBackend: tt.Backend, ToDatabase: tt.Database, ToSchema: tt.Schema,
		CreatedBy: actor})
}

// insertAndLaunch records m (owned by this process) and runs it; refused
// once Close began.
func (p *Provisioner) insertAndLaunch(ctx context.Context, m *catalog.Move) (*catalog.Move, error) {
	r := p.moves
	r.mu.Lock()
	closed := r.closed
	r.mu.Unlock()
	if closed {
		return nil, errors.New("provision: shutting down; no new moves")
	}
	m.Owner = r.owner
	m, err := p.cat.InsertMove(ctx, m)
	if err != nil {
		return nil, err
	}
	p.launchMove(context.WithoutCancel(ctx), m)
	return m, nil
}

// launchMove runs m's engine in a goroutine registered with the runner.
func (p *Provisioner) launchMove(ctx context.Context, m *catalog.Move) {
	r := p.moves
	ctx, cancel := context.WithCancelCause(ctx)
	rm := &runningMove{cancel: cancel, done: make(chan struct{})}
	r.mu.Lock()
	r.running[m.ID] = rm
	r.wg.Add(1)
	r.mu.Unlock()
	go func() {
		defer r.wg.Done()
		defer close(rm.done)
		defer func() {
			r.mu.Lock()
			delete(r.running, m.ID)
			r.mu.Unlock()
			cancel(nil)
		}()
		p.runMove(ctx, cancel, m)
	}()
}

// moveTarget is t as it will be after a move to `to`: the target placement.
func (p *Provisioner) moveTarget(t *catalog.Tenant, to MoveTarget) (*catalog.Tenant, error) {
	if t.Status != catalog.StatusActive && t.Status != catalog.StatusSuspended {
		return nil, fmt.Errorf("%w: tenant %q is %s; only active or suspended tenants move", ErrInvalidMove, t.Slug, t.Status)
	}
	tt := *t
	tt.Isolation = to.Isolation
	switch to.Isolation {
	case catalog.IsolationShared, catalog.IsolationSchema:
		if to.Backend != "" && to.Backend != p.cfg.SharedBackend {
			return nil, fmt.Errorf("%w: %s tenants live on the shared backend %q; only database tenants may name another",
				ErrInvalidMove, to.Isolation, p.cfg.SharedBackend)
		}
		tt.Backend, tt.Database, tt.Schema = p.cfg.SharedBackend, p.cfg.SharedDatabase, "public"
		if to.Isolation == catalog.IsolationSchema {
			tt.Schema = "t_" + t.ShortID
		}
	case catalog.IsolationDatabase:
		tt.Backend = to.Backend
		if tt.Backend == "" {
			tt.Backend = p.cfg.DefaultBackend
			if t.Isolation == catalog.IsolationDatabase {
				tt.Backend = t.Backend
			}
		}
		if _, ok := p.cfg.Backends[tt.Backend]; !ok {
			return nil, fmt.Errorf("%w: backend %q is not configured", ErrInvalidMove, tt.Backend)
		}
		tt.Database, tt.Schema = "t_"+t.ShortID, "public"
	default:
		return nil, fmt.Errorf("%w: isolation %q: use shared, schema or database", ErrInvalidMove, to.Isolation)
	}
	if tt.Isolation == t.Isolation && tt.Backend == t.Backend {
		return nil, fmt.Errorf("%w: tenant %q is a %s tenant on backend %q", ErrMoveSame, t.Slug, t.Isolation, t.Backend)
	}
	return &tt, nil
}

// moveTenants returns m's tenant as it is at the move's source and at its
// target.
func (p *Provisioner) moveTenants(ctx context.Context, m *catalog.Move) (src, dst *catalog.Tenant, err error) {
	t, err := p.cat.GetTenant(ctx, m.TenantID)
	if err != nil {
		return nil, nil, err
	}
	s, d := *t, *t
	s.Isolation, s.Backend, s.Database, s.Schema = m.FromIsolation, m.FromBackend, m.FromDatabase, m.FromSchema
	d.Isolation, d.Backend, d.Database, d.Schema = m.ToIsolation, m.ToBackend, m.ToDatabase, m.ToSchema
	return &s, &d, nil
}

// CancelMove cancels a move before its switch: the goroutine running it (in
// this process) stops, the half-built target is dropped and the capture on
// the source removed; the tenant stays where it is, with nothing lost, and
// the move ends "cancelled" (audit "move.cancel"). A move of another
// process is marked cancelled here (its owner sees that at its next
// heartbeat and stops) and cleaned up by this call. catalog.ErrMovePhase
// after the switch (finalize instead) or once the move ended.
func (p *Provisioner) CancelMove(ctx context.Context, id, actor string) (*catalog.Move, error) {
	m, err := p.cat.GetMove(ctx, id)
	if err != nil {
		return nil, err
	}
	if !m.Running() {
		return nil, fmt.Errorf("%w: move %s is %s; only a move before its switch can be cancelled", catalog.ErrMovePhase, id, m.Phase)
	}
	if rm := p.moves.get(id); rm != nil {
		rm.cancel(moveCancelled{actor: actor})
		select {
		case <-rm.done:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		m, err := p.cat.GetMove(ctx, id)
		if err == nil && m.Phase == catalog.MoveSwitched {
			return m, fmt.Errorf("%w: move %s switched before the cancel took effect; finalize it, or move the tenant back", catalog.ErrMovePhase, id)
		}
		return m, err
	}
	m, err = p.cat.SetMovePhase(ctx, id, nil, catalog.MoveCancelled, "cancelled by "+actor, "move.cancel")
	if err != nil {
		return nil, err
	}
	cctx := context.WithoutCancel(ctx)
	p.quiesceMove(cctx, m)
	err = p.cleanupMove(cctx, m)
	p.finishCleanup(cctx, m, err)
	if err != nil {
		return m, fmt.Errorf("cancelled move %s, but cleaning up failed (the recovery sweep retries): %w", id, err)
	}
	return m, nil
}

// FinalizeMove ends a switched move: the source copy is dropped (a shared
// source's rows of the tenant deleted, a schema or database dropped, the
// roles' memberships of the old placement revoked) and the move ends
// "finalized" (audit "move.finalize"). catalog.ErrMovePhase unless the
// move is switched.
func (p *Provisioner) FinalizeMove(ctx context.Context, id, actor string) (*catalog.Move, error) {
	m, err := p.cat.GetMove(ctx, id)
	if err != nil {
		return nil, err
	}
	if m.Phase != catalog.MoveSwitched {
		return nil, fmt.Errorf("%w: move %s is %s; only a switched move can be finalized", catalog.ErrMovePhase, id, m.Phase)
	}
	// Finalized first, in one catalog transaction that marks the cleanup
	// pending: a move back of m (which needs it switched) can no longer
	// start and make the source copy live while it is being dropped, and
	// no new move of the tenant starts until the copy is gone.
	m, err = p.cat.SetMovePhase(ctx, id, []string{catalog.MoveSwitched}, catalog.MoveFinalized, "", "move.finalize")
	if err != nil {
		return nil, err
	}
	err = p.dropKeptSource(ctx, m)
	p.finishCleanup(context.WithoutCancel(ctx), m, err)
	if err != nil {
		return m, fmt.Errorf("finalized move %s, but dropping its source copy failed (the recovery sweep retries): %w", id, err)
	}
	return m, nil
}

// dropKeptSource removes a finalized move's source copy with its capture,
// and the record of its app schema versions. Idempotent.
func (p *Provisioner) dropKeptSource(ctx context.Context, m *catalog.Move) error {
	src, dst, err := p.moveTenants(ctx, m)
	if err != nil {
		return err
	}
	if err := p.dropCapture(ctx, m, src); err != nil {
		return err
	}
	if p.cfg.Pools != nil {
		p.cfg.Pools.Invalidate()
	}
	if err := p.dropSource(ctx, src, dst); err != nil {
		return fmt.Errorf("dropping the source copy of move %s: %w", m.ID, err)
	}
	return p.cat.ForgetAppSchemaPlacement(ctx, keptAppSchemaName(m))
}

// AbandonMove stops the goroutine running move id in this process as the
// death of the proxy would: no cleanup, no catalog change. For tests of
// RecoverMoves only.
func (p *Provisioner) AbandonMove(id string) {
	if rm := p.moves.get(id); rm != nil {
		rm.cancel(errMoveAbandoned)
		<-rm.done
	}
}

// RecoverMoves cleans up after moves whose proxy died (call it at start, after
// PrepareShared): a move before its switch owned by no live process (this
// process's moves that no goroutine runs, and any move without a heartbeat
// for three Config.MoveHeartbeat periods) is marked failed with the reason,
// its half-built target dropped and its capture and pause removed; the
// tenant keeps serving from the source. Cleanups that could not finish
// before (a lock held too long) are retried, and with Config.MoveRetention
// set, switched moves older than it are finalized. It then starts a sweep that repeats this every
// three heartbeats (for moves of replicas that die later) until Close.
func (p *Provisioner) RecoverMoves(ctx context.Context) error {
	err := p.recoverOnce(ctx)
	r := p.moves
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.sweep == nil && !r.closed {
		sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		r.sweep = cancel
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			tick := time.NewTicker(3 * p.cfg.MoveHeartbeat)
			defer tick.Stop()
			for {
				select {
				case <-sctx.Done():
					return
				case <-tick.C:
					p.recoverOnce(sctx)
				}
			}
		}()
	}
	return err
}

func (p *Provisioner) recoverOnce(ctx context.Context) error {
	var errs []error
	dead, err := p.cat.MovesToRecover(ctx, p.moves.owner, 3*p.cfg.MoveHeartbeat)
	if err != nil {
		return err
	}
	for _, m := range dead {
		if p.moves.get(m.ID) != nil {
			continue // ours and alive
		}
		reason := fmt.Sprintf("the proxy running the move stopped during phase %s; the tenant serves from its source", m.Phase)
		p.quiesceMove(ctx, m)
		fm, err := p.cat.SetMovePhase(ctx, m.ID, nil, catalog.MoveFailed, reason, "move.fail")
		if err != nil {
			if !errors.Is(err, catalog.ErrMovePhase) {
				errs = append(errs, err)
			}
			continue
		}
		err = p.cleanupMove(ctx, fm)
		p.finishCleanup(ctx, fm, err)
		if err != nil {
			errs = append(errs, fmt.Errorf("cleaning up move %s: %w", m.ID, err))
		}
	}
	// Cleanups that could not finish before (a lock held too long).
	unclean, err := p.cat.MovesToClean(ctx, 3*p.cfg.MoveHeartbeat)
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	for _, m := range unclean {
		if p.moves.get(m.ID) != nil {
			continue // ours, and still cleaning up after itself
		}
		switch m.Phase {
		case catalog.MoveFinalized:
			err = p.dropKeptSource(ctx, m)
		case catalog.MoveSwitched, catalog.MoveReverted:
			var src *catalog.Tenant
			if src, _, err = p.moveTenants(ctx, m); err == nil {
				err = p.dropCapture(ctx, m, src)
			}
		default:
			err = p.cleanupMove(ctx, m)
		}
		p.finishCleanup(ctx, m, err)
		if err != nil {
			errs = append(errs, fmt.Errorf("cleaning up move %s: %w", m.ID, err))
		}
	}
	if p.cfg.MoveRetention > 0 {
		old, err := p.cat.MovesSwitchedBefore(ctx, time.Now().Add(-p.cfg.MoveRetention))
		if err != nil {
			return errors.Join(append(errs, err)...)
		}
		for _, m := range old {
			if _, err := p.FinalizeMove(ctx, m.ID, "retention"); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// WaitMoves waits until no move runs in this process (their goroutines
// and the sweep have returned). Use Close to stop them first.
func (p *Provisioner) WaitMoves() {
	p.moves.wg.Wait()
}

// Close stops the moves this process runs (each is cleaned up and marked
// failed: the tenant stays on its source), stops the sweep and waits for
// them. Call it at shutdown before closing the catalog. StartMove refuses
// new moves afterwards.
func (p *Provisioner) Close() {
	r := p.moves
	r.mu.Lock()
	r.closed = true
	if r.sweep != nil {
		r.sweep()
	}
	for _, rm := range r.running {
		rm.cancel(errMoveShutdown)
	}
	r.mu.Unlock()
	r.wg.Wait()
}

// closeMovesOf stops the tenant's running move and drops a switched move's
// source copy, before the tenant is dropped.
func (p *Provisioner) closeMovesOf(ctx context.Context, t *catalog.Tenant) error {
	moves, err := p.cat.OpenMoves(ctx, t.ID)
	if err != nil {
		return err
	}
	for _, m := range moves {
		if m.Running() {
			_, err = p.CancelMove(ctx, m.ID, "tenant.drop")
		} else {
			_, err = p.FinalizeMove(ctx, m.ID, "tenant.drop")
		}
		if err != nil && !errors.Is(err, catalog.ErrMovePhase) {
			return err
		}
	}
	return nil
}

// SetLogger replaces Config.Log; call it before any move starts.
func (p *Provisioner) SetLogger(l *zap.Logger) {
	if l != nil {
		p.cfg.Log = l
	}
}

// SetPauseBarrier replaces Config.PauseBarrier; call it before any move
// starts (a server sets its proxy's once the proxy is made).
func (p *Provisioner) SetPauseBarrier(fn func(ctx context.Context, tenantID string) error) {
	p.cfg.PauseBarrier = fn
}

// SetMoveHook replaces Config.MoveHook (tests set it on a running stack's
// provisioner). Set it before starting the moves it should see.
func (p *Provisioner) SetMoveHook(h func(ctx context.Context, moveID, step string)) {
	p.cfg.MoveHook = h
}
