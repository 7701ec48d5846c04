//go:build unix && !linux

package pgcluster

import "syscall"

// setParentDeathSignal does nothing where the kernel has no parent-death
// signal: the owner must call Stop.
func setParentDeathSignal(*syscall.SysProcAttr) {}
