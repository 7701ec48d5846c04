package proxy

import (
	"sync"

	"github.com/stratum-hq/stratum-proxy/internal/wire"
)

// injectedReplies counts, for each request the backend has not answered yet,
// the replies to messages the proxy injected into it (the ParseComplete of a
// Parse, the CloseComplete of a Close), which the client must not see.
//
// A request is what one ReadyForQuery answers: an extended-protocol batch up
// to its Sync, a simple Query, a FunctionCall. The counts are kept per request
// because a client may send several before reading any replies, and after an
// error the backend skips the rest of a batch: the replies it owed there never
// come, so that batch's count must end with its ReadyForQuery rather than eat
// the next batch's replies (which the client asked for).
//
// The relay adds to the request it is writing (expect) and ends it when it
// writes the message a ReadyForQuery answers (endRequest); the pump takes the
// replies of the oldest unanswered request (take) and moves on at each of its
// ReadyForQuery (answered). Requests without injected messages cost no memory.
type injectedReplies struct {
	mu      sync.Mutex
	ended   []requestDrops // requests written in full with injected replies, oldest first
	open    requestDrops   // the request being written
	written uint64         // requests written in full
	done    uint64         // requests answered (their ReadyForQuery read)
}

// requestDrops is one request's count of injected replies still to come.
type requestDrops struct {
	seq          uint64 // the request's number, counted from 0 on this attachment
	parse, close int32
	// retag counts the request's DEALLOCATE ALL sent through Parse, which
	// the backend runs as a DEALLOCATE of one statement of the proxy's
	// (sessionState.deallocateThroughParse): its CommandComplete says
	// DEALLOCATE and the client must read DEALLOCATE ALL.
	retag int32
}

func (d requestDrops) empty() bool { return d.parse == 0 && d.close == 0 && d.retag == 0 }

// expect notes that the request being written carries an injected message
// whose reply is typ (wire.ParseComplete or wire.CloseComplete), or, for
// wire.CommandComplete, a DEALLOCATE ALL whose tag takeRetag rewrites.
func (r *injectedReplies) expect(typ byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch typ {
	case wire.ParseComplete:
		r.open.parse++
	case wire.CloseComplete:
		r.open.close++
	case wire.CommandComplete:
		r.open.retag++
	}
}

// endRequest notes that the message a ReadyForQuery answers was written.
func (r *injectedReplies) endRequest() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.open.empty() {
		r.open.seq = r.written
		r.ended = append(r.ended, r.open)
	}
	r.open = requestDrops{}
	r.written++
}

// current returns the counts of the request whose replies the backend is
// sending now, or nil when it carries no injected message.
func (r *injectedReplies) current() *requestDrops {
	if len(r.ended) > 0 && r.ended[0].seq == r.done {
		return &r.ended[0]
	}
	if r.done == r.written {
		return &r.open // replies before the request's end (after a Flush)
	}
	return nil
}

// take reports whether a reply of type typ answers an injected message of
// the request being answered, and counts it.
func (r *injectedReplies) take(typ byte) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	d := r.current()
	if d == nil {
		return false
	}
	switch {
	case typ == wire.ParseComplete && d.parse > 0:
		d.parse--
	case typ == wire.CloseComplete && d.close > 0:
		d.close--
	default:
		return false
	}
	return true
}

// takeRetag reports whether a CommandComplete DEALLOCATE answers a
// DEALLOCATE ALL the client sent through Parse in the request being
// answered, and counts it.
func (r *injectedReplies) takeRetag() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	d := r.current()
	if d == nil || d.retag == 0 {
		return false
	}
	d.retag--
	return true
}

// answered notes a ReadyForQuery: the request it answers is done, and what
// it still owed (replies skipped after an error) is forgotten.
func (r *injectedReplies) answered() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.ended) > 0 && r.ended[0].seq == r.done {
		r.ended = r.ended[1:]
		if len(r.ended) == 0 {
			r.ended = nil
		}
	}
	if r.done < r.written {
		r.done++
	} else {
		r.open = requestDrops{} // a ReadyForQuery for no request of ours: stay in step
	}
}
