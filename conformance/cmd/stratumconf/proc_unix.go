//go:build unix

package main

import (
	"os/exec"
	"syscall"
)

// setProcessGroup puts cmd in a process group of its own and makes its
// cancellation kill the whole group: a suite runner's children (go test's
// test binaries, pytest's workers) must not outlive a time limit.
func setProcessGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error {
		return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
}
