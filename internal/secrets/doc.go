// Package secrets seals small secrets (backend passwords, sensitive config) with
// AES-256-GCM under a keyring of named keys, so that keys can be rotated: every
// ciphertext is stored beside the id of the key that sealed it.
//
// It imports nothing of ours.
package secrets
