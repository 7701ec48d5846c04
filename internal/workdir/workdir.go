package workdir

import (
	"fmt"
	"os"
	"time"
)

// Cleanups are what a run started, to be stopped when it ends.
type Cleanups []func()

// Add records f, to be called by Run before everything added earlier.
func (c *Cleanups) Add(f func()) { *c = append(*c, f) }

// Run calls the cleanups in reverse order of adding, then removes dir (when
// not empty) unless keep is set, in which case it prints where it is.
func (c *Cleanups) Run(dir string, keep bool) {
	for i := len(*c) - 1; i >= 0; i-- {
		(*c)[i]()
	}
	*c = nil
	if dir == "" {
		return
	}
	if keep {
		fmt.Println("kept", dir)
		return
	}
	os.RemoveAll(dir)
}

// Step prints a progress line with the time of day.
func Step(format string, args ...any) {
	fmt.Printf("[%s] %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}
