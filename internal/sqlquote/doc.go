// Package sqlquote writes SQL string literals for statements the proxy
// builds itself (provisioning DDL, the policy it applies on a backend).
//
// It is a leaf: it imports nothing of ours.
package sqlquote
