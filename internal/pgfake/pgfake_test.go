package pgfake

import (
	"errors"
	"net"
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"
)

func TestServeRunsScript(t *testing.T) {
	fc, bc := net.Pipe()
	done := make(chan error, 1)
	go func() { done <- Serve(bc, NewScript(Query("SELECT 1", "SELECT 1", 'I'))) }()
	fe := pgproto3.NewFrontend(fc, fc)
	fe.Send(&pgproto3.Query{String: "SELECT 1"})
	if err := fe.Flush(); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"*pgproto3.CommandComplete", "*pgproto3.ReadyForQuery"} {
		m, err := fe.Receive()
		if err != nil {
			t.Fatal(err)
		}
		if got := describe(m); got[:len(want)] != want {
			t.Fatalf("got %s, want %s", got, want)
		}
	}
	fc.Close()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestServeRefusesOtherMessages(t *testing.T) {
	for name, extra := range map[string]bool{"wrong message": false, "after the end": true} {
		t.Run(name, func(t *testing.T) {
			fc, bc := net.Pipe()
			done := make(chan error, 1)
			go func() { done <- Serve(bc, NewScript(Expect(&pgproto3.Query{String: "SELECT 1"}))) }()
			fe := pgproto3.NewFrontend(fc, fc)
			if extra {
				fe.Send(&pgproto3.Query{String: "SELECT 1"})
			}
			fe.Send(&pgproto3.Query{String: "SELECT 2"})
			go fe.Flush()
			if err := <-done; !errors.Is(err, ErrUnexpected) {
				t.Fatalf("got %v, want ErrUnexpected", err)
			}
			fc.Close()
		})
	}
}
