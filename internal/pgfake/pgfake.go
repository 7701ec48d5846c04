package pgfake

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"reflect"

	"github.com/jackc/pgx/v5/pgproto3"
)

// Step is one step of a script, run on the backend's side of the connection.
type Step interface {
	Step(b *pgproto3.Backend) error
}

// Script is a sequence of steps. A Script is itself a Step, so scripts nest.
type Script struct {
	Steps []Step
}

// NewScript returns a script of steps.
func NewScript(steps ...Step) *Script { return &Script{Steps: steps} }

// Add appends steps and returns s.
func (s *Script) Add(steps ...Step) *Script {
	s.Steps = append(s.Steps, steps...)
	return s
}

// Run runs the steps in order and stops at the first that fails.
func (s *Script) Run(b *pgproto3.Backend) error {
	for i, st := range s.Steps {
		if err := st.Step(b); err != nil {
			return fmt.Errorf("step %d: %w", i+1, err)
		}
	}
	return nil
}

// Step runs the script as one step of another.
func (s *Script) Step(b *pgproto3.Backend) error { return s.Run(b) }

// ErrUnexpected is wrapped by the error of a script that received a message
// other than the one it expected, or any message after its last step.
var ErrUnexpected = errors.New("unexpected frontend message")

type expectStep struct {
	want     pgproto3.FrontendMessage
	typeOnly bool
}

func (e *expectStep) Step(b *pgproto3.Backend) error {
	got, err := b.Receive()
	if err != nil {
		return fmt.Errorf("waiting for %s: %w", describe(e.want), err)
	}
	if reflect.TypeOf(got) != reflect.TypeOf(e.want) {
		return fmt.Errorf("%w: got %s, want %s", ErrUnexpected, describe(got), describe(e.want))
	}
	if e.typeOnly {
		return nil
	}
	// Compared encoded, so that an empty and a nil slice are the same.
	gb, gerr := got.Encode(nil)
	wb, werr := e.want.Encode(nil)
	if gerr != nil || werr != nil || !bytes.Equal(gb, wb) {
		return fmt.Errorf("%w: got %s, want %s", ErrUnexpected, describe(got), describe(e.want))
	}
	return nil
}

// Expect expects the next frontend message to equal want (same encoding).
func Expect(want pgproto3.FrontendMessage) Step { return &expectStep{want: want} }

// ExpectType expects the next frontend message to be of want's type,
// whatever its content.
func ExpectType(want pgproto3.FrontendMessage) Step { return &expectStep{want: want, typeOnly: true} }

type sendStep struct{ msgs []pgproto3.BackendMessage }

func (s *sendStep) Step(b *pgproto3.Backend) error {
	for _, m := range s.msgs {
		b.Send(m)
	}
	return b.Flush()
}

// Send sends msgs to the frontend, in one write.
func Send(msgs ...pgproto3.BackendMessage) Step { return &sendStep{msgs: msgs} }

// Func is a step that runs f: to signal a test, or to wait for one. A Func
// that waits must return when the test ends, failed or not: closing the
// connection does not interrupt it.
type Func func(b *pgproto3.Backend) error

// Step runs f.
func (f Func) Step(b *pgproto3.Backend) error { return f(b) }

// errHangUp ends a script early with the connection closed (HangUp).
var errHangUp = errors.New("hang up")

// HangUp is a last step that closes the connection at once, as a server
// does after a FATAL error; Serve then returns nil.
func HangUp() Step { return Func(func(*pgproto3.Backend) error { return errHangUp }) }

// Query expects the simple Query sql and answers it with CommandComplete(tag)
// and ReadyForQuery(txStatus), as a backend does for a statement without rows.
func Query(sql, tag string, txStatus byte) *Script {
	return NewScript(
		Expect(&pgproto3.Query{String: sql}),
		Send(&pgproto3.CommandComplete{CommandTag: []byte(tag)}, &pgproto3.ReadyForQuery{TxStatus: txStatus}),
	)
}

// Serve runs script on the backend's end of conn, then keeps reading until
// the peer closes conn or sends Terminate: any other message after the script
// is an error wrapping ErrUnexpected (the code under test sent more than the
// script allowed). A HangUp step ends it at once. Serve closes conn when it
// returns. Its error is the script's, or nil when the script ran to its end.
func Serve(conn net.Conn, script *Script) error {
	defer conn.Close()
	b := pgproto3.NewBackend(conn, conn)
	if err := script.Run(b); err != nil {
		if errors.Is(err, errHangUp) {
			return nil
		}
		return err
	}
	for {
		msg, err := b.Receive()
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) || errors.Is(err, io.ErrClosedPipe) {
				return nil
			}
			return fmt.Errorf("after the script: %w", err)
		}
		if _, ok := msg.(*pgproto3.Terminate); ok {
			return nil
		}
		return fmt.Errorf("%w after the script's end: %s", ErrUnexpected, describe(msg))
	}
}

// describe renders a message for an error: its type and JSON form.
func describe(m any) string {
	j, err := json.Marshal(m)
	if err != nil {
		return fmt.Sprintf("%T", m)
	}
	return fmt.Sprintf("%T%s", m, j)
}
