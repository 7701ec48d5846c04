// Package migrations holds the catalog database's schema as numbered SQL files,
// embedded in the binary. It owns no logic beyond listing them in order: applying
// them is the catalog package's job. It imports nothing of ours.
package migrations
