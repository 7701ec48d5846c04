package catalog

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// AuditRecord is one stored audit row, as readers see it.
type AuditRecord struct {
	// Seq numbers the rows gaplessly from 1, in the order they were appended.
	Seq   int64      `json:"seq"`
	At    time.Time  `json:"at"`
	Actor AuditActor `json:"actor"`
	// Action is e.g. "tenant.create", "config.set", "key.rotate".
	Action string `json:"action"`
	// Target is what changed, e.g. "tenant:acmesec".
	Target   string  `json:"target"`
	TenantID *string `json:"tenant_id"`
	// Before and After are the target's state (secrets masked); JSON null where
	// there is none.
	Before    json.RawMessage `json:"before"`
	After     json.RawMessage `json:"after"`
	RequestID string          `json:"request_id"`
	SourceIP  string          `json:"source_ip"`
	// Hash is the row's link in the chain, sha256(PrevHash || canonical row),
	// in hex; PrevHash is the previous row's Hash ("" for the first row).
	Hash     string `json:"hash"`
	PrevHash string `json:"prev_hash"`
}

// AuditActor is who made a change recorded in the audit log.
type AuditActor struct {
	KeyID string `json:"key_id"`
	Name  string `json:"name"`
}

// AuditQuery selects audit rows. Zero fields select everything.
type AuditQuery struct {
	// TenantID keeps the rows of that tenant; with Subtree, of that tenant and
	// its current descendants.
	TenantID string
	Subtree  bool
	// Within, a tenant id, keeps only rows whose tenant is inside that
	// tenant's current subtree (what a key bound to it may see); rows of no
	// tenant are then left out.
	Within string
	// Action keeps rows with exactly this action; ActionPrefix rows whose
	// action starts with it (e.g. "config.").
	Action, ActionPrefix string
	// ActorKeyID keeps the rows of one actor (key id, "bootstrap", "system").
	ActorKeyID string
	// Since (inclusive) and Until (exclusive) bound the time; zero: open.
	Since, Until time.Time
	// BeforeSeq, when positive, keeps rows with a smaller seq: the keyset
	// cursor of the next page (the last seq of the previous one).
	BeforeSeq int64
	// Limit is the page size; default 50.
	Limit int
}

// ListAudit returns the rows q selects, newest first, at most q.Limit of them,
// and whether more rows follow (then the next page has BeforeSeq set to the
// last row's Seq).
func (c *Catalog) ListAudit(ctx context.Context, q AuditQuery) ([]*AuditRecord, bool, error) {
	if q.Limit <= 0 {
		q.Limit = 50
	}
	var (
		where []string
		args  []any
	)
	arg := func(v any) string {
		args = append(args, v)
		return "$" + strconv.Itoa(len(args))
	}
	subtreeOf := func(id string) string {
		return `tenant_id IN (SELECT id FROM tenants WHERE path <@ (SELECT path FROM tenants WHERE id = ` + arg(id) + `::uuid))`
	}
	if q.TenantID != "" {
		if q.Subtree {
			// The tenant itself by id too, so the rows of a tenant that no
			// longer exists stay reachable by its id.
			where = append(where, `(tenant_id = `+arg(q.TenantID)+`::uuid OR `+subtreeOf(q.TenantID)+`)`)
		} else {
			where = append(where, `tenant_id = `+arg(q.TenantID)+`::uuid`)
		}
	}
	if q.Within != "" {
		where = append(where, subtreeOf(q.Within))
	}
	if q.Action != "" {
		where = append(where, `action = `+arg(q.Action))
	}
	if q.ActionPrefix != "" {
		p := arg(q.ActionPrefix)
		where = append(where, `left(action, length(`+p+`)) = `+p)
	}
	if q.ActorKeyID != "" {
		where = append(where, `actor_key_id = `+arg(q.ActorKeyID))
	}
	if !q.Since.IsZero() {
		where = append(where, `at >= `+arg(q.Since))
	}
	if !q.Until.IsZero() {
		where = append(where, `at < `+arg(q.Until))
	}
	if q.BeforeSeq > 0 {
		where = append(where, `seq < `+arg(q.BeforeSeq))
	}
	sql := `SELECT seq, at, actor_key_id, actor_name, action, target, tenant_id, before, after,
		request_id, source_ip, hash, prev_hash FROM audit_log`
	if len(where) > 0 {
		sql += ` WHERE ` + strings.Join(where, ` AND `)
	}
	sql += ` ORDER BY seq DESC LIMIT ` + arg(q.Limit+1)
	rows, err := c.pool.Query(ctx, sql, args...)
	if err != nil {
		return nil, false, fmt.Errorf("reading audit log: %w", err)
	}
	defer rows.Close()
	out := []*AuditRecord{}
	for rows.Next() {
		var (
			r              AuditRecord
			hash, prevHash []byte
		)
		if err := rows.Scan(&r.Seq, &r.At, &r.Actor.KeyID, &r.Actor.Name, &r.Action, &r.Target, &r.TenantID,
			&r.Before, &r.After, &r.RequestID, &r.SourceIP, &hash, &prevHash); err != nil {
			return nil, false, fmt.Errorf("reading audit log: %w", err)
		}
		r.Hash, r.PrevHash = hex.EncodeToString(hash), hex.EncodeToString(prevHash)
		out = append(out, &r)
	}
	if err := rows.Err(); err != nil {
		return nil, false, fmt.Errorf("reading audit log: %w", err)
	}
	more := len(out) > q.Limit
	if more {
		out = out[:q.Limit]
	}
	return out, more, nil
}

// Reasons a verification gives for a break in the audit chain.
const (
	// AuditHashMismatch: the row's content does not hash to its stored hash
	// (the row was edited).
	AuditHashMismatch = "hash mismatch"
	// AuditBrokenLink: the row's prev_hash is not the previous row's hash (a
	// row before it was replaced, or rows were reordered).
	AuditBrokenLink = "broken link"
	// AuditGap: the row's seq does not follow the previous row's (rows were
	// deleted).
	AuditGap = "gap"
)

// AuditVerification is the outcome of VerifyAudit.
type AuditVerification struct {
	// OK says the whole chain holds.
	OK bool `json:"ok"`
	// Rows is how many rows were checked.
	Rows int64 `json:"rows"`
	// Head is the last row; nil for an empty log.
	Head *AuditHead `json:"head"`
	// Break is the first row where the chain breaks; nil when it holds.
	Break *AuditBreak `json:"break"`
}

// AuditHead is the newest row of the chain.
type AuditHead struct {
	Seq  int64  `json:"seq"`
	Hash string `json:"hash"` // hex
}

// AuditBreak is where the chain first breaks.
type AuditBreak struct {
	Seq    int64  `json:"seq"`
	Reason string `json:"reason"` // AuditGap, AuditBrokenLink or AuditHashMismatch
}

// VerifyAudit recomputes the hash chain in the catalog, with the formula of
// the audit_chain trigger: seq runs gaplessly from 1, each row's prev_hash is
// the previous row's hash (” for the first), and each hash is
// sha256(prev_hash || audit_canonical(row)). It reports the first row that
// fails, checking in that order (gap, broken link, hash mismatch).
//
// Deleting the newest rows leaves a shorter chain that still holds; compare
// Head with a head recorded elsewhere to detect that.
func (c *Catalog) VerifyAudit(ctx context.Context) (*AuditVerification, error) {
	var (
		v        AuditVerification
		headSeq  *int64
		headHash []byte
		breakSeq *int64
		breakWhy *string
	)
	err := c.pool.QueryRow(ctx, `WITH checked AS (
		SELECT seq, hash,
			CASE
				WHEN seq <> coalesce(lag(seq) OVER w, 0) + 1 THEN 'gap'
				WHEN prev_hash <> coalesce(lag(hash) OVER w, '\x'::bytea) THEN 'broken link'
				WHEN hash <> sha256(prev_hash || audit_canonical(seq, at, actor_key_id, actor_name, action, target,
					tenant_id, before, after, request_id, source_ip)) THEN 'hash mismatch'
			END AS reason
		FROM audit_log
		WINDOW w AS (ORDER BY seq))
	SELECT (SELECT count(*) FROM checked),
		(SELECT seq FROM checked ORDER BY seq DESC LIMIT 1),
		(SELECT hash FROM checked ORDER BY seq DESC LIMIT 1),
		(SELECT seq FROM checked WHERE reason IS NOT NULL ORDER BY seq LIMIT 1),
		(SELECT reason FROM checked WHERE reason IS NOT NULL ORDER BY seq LIMIT 1)`).
		Scan(&v.Rows, &headSeq, &headHash, &breakSeq, &breakWhy)
	if err != nil {
		return nil, fmt.Errorf("verifying audit log: %w", err)
	}
	if headSeq != nil {
		v.Head = &AuditHead{Seq: *headSeq, Hash: hex.EncodeToString(headHash)}
	}
	if breakSeq != nil && breakWhy != nil {
		v.Break = &AuditBreak{Seq: *breakSeq, Reason: *breakWhy}
	}
	v.OK = v.Break == nil
	return &v, nil
}
