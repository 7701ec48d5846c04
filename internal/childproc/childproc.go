package childproc

import (
	"os/exec"
	"runtime"
)

// Process is a started child, waited on by its own goroutine.
type Process struct {
	// Pid is the child's process id.
	Pid int
	// Done is closed once the child has exited and been reaped.
	Done chan struct{}
	// Err is what Wait returned; read it only after Done is closed.
	Err error
}

// Start starts cmd from a goroutine that stays locked to its OS thread until
// the child exits, then reaps it. A parent-death signal (SysProcAttr.Pdeathsig)
// fires when the thread that forked dies, not the process, so that thread must
// live as long as the child does.
func Start(cmd *exec.Cmd) (*Process, error) {
	p := &Process{Done: make(chan struct{})}
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		p.Pid = cmd.Process.Pid
		started <- nil
		p.Err = cmd.Wait()
		close(p.Done)
	}()
	if err := <-started; err != nil {
		return nil, err
	}
	return p, nil
}
