// Package childproc starts and reaps child processes that must not outlive
// their parent (a private PostgreSQL, PgBouncer). It imports nothing of ours.
package childproc
