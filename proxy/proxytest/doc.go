// Package proxytest is a fake of the router as the proxy sees it
// (proxy.Backends): tenants and users held in memory, and backend connections
// that are one end of a net.Pipe whose other end runs a pgfake script. A test
// scripts each backend connection a tenant will open, runs the proxy over the
// fake, and reads back what the proxy did with its backends (acquired,
// released how, cancelled) as a sequence of Events.
//
// It owns only the fake. It imports router (for its value types), catalog
// (types only) and leaf helpers under internal/; it must not import proxy,
// whose tests import it, nor admin or cmd.
package proxytest
