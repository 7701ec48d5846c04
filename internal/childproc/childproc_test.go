package childproc

import (
	"os/exec"
	"testing"
	"time"
)

func TestStartReapsAndReportsExit(t *testing.T) {
	p, err := Start(exec.Command("sh", "-c", "exit 3"))
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.Done:
	case <-time.After(5 * time.Second):
		t.Fatal("child not reaped")
	}
	if p.Pid == 0 || p.Err == nil {
		t.Fatalf("pid %d, err %v; want a pid and exit status 3", p.Pid, p.Err)
	}
	if _, err := Start(exec.Command("/nonexistent/binary")); err == nil {
		t.Fatal("starting a missing binary succeeded")
	}
}
