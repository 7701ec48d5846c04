package pgcluster

import "syscall"

// setParentDeathSignal asks the kernel to shut the server down (SIGINT, a
// fast shutdown) when the thread that started it dies, so that a crashed or
// killed owner does not leave a postmaster behind.
func setParentDeathSignal(attr *syscall.SysProcAttr) {
	attr.Pdeathsig = syscall.SIGINT
}
