// Package fakeclock is a clock that tests move by hand, for code that takes
// its clock as a func() time.Time knob (router's pools, proxy's lockouts).
//
// It is a leaf: it imports nothing of ours.
package fakeclock
