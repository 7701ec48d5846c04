package provision

import (
	"bytes"
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/stratum-hq/stratum-proxy/catalog"
	"github.com/stratum-hq/stratum-proxy/internal/sqlquote"
)

// Narrowing the switch's check (see cutOver). Between the verification
// point and the switch the tenant keeps writing, and every key applyLog
// applies is remembered (r.touched) for the keyed check in the switch's
// pause, whose length then grows with the writes of the whole
// verification. Before the pause, with the tenant running, narrowTouched
// compares the remembered keys' rows one by one between the source and the
// target and forgets the keys whose rows are equal on both sides (or absent
// on both).
//
// Why forgetting is safe: the source and the target were equal at the
// verification point, and the target changes only by applyLog, which
// remembers every key it applies. A key found equal at the comparison and
// changed on the source later has a captured change (the capture check of
// the switch's pause guarantees the capture was in place), which applyLog
// applies before the keyed check (the last one runs in the pause, after
// the drain) and so remembers again. A change that was visible to the
// comparison's read of the source but not yet applied to the target makes
// the rows differ (the key stays), or is applied later (remembered again).
// A forged log row changes the target by applyLog: remembered. So the keys
// the switch's check leaves out are equal, as before.

// narrowBatch is how many keys one comparison query sends (narrowing and
// the switch's check).
const narrowBatch = 2000

// narrowRounds bounds the rounds of narrowTouched; narrowEnough is the
// number of remembered keys at which it stops early.
const (
	narrowRounds = 4
	narrowEnough = 200
)

// touchedCount is the number of keys remembered for the switch's check.
func (r *moveRun) touchedCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, k := range r.touched {
		n += len(k)
	}
	return n
}

// narrowTouched forgets the remembered keys whose rows are equal in the
// source and the target, then catches up, for a few rounds while that
// shrinks the set (a tenant writing faster than the comparison keeps up
// with stops it: the switch's check then compares the rest in the pause).
// The move's hook sees step "narrowed:<keys left>".
func (r *moveRun) narrowTouched(ctx context.Context) error {
	for round := 0; round < narrowRounds; round++ {
		before := r.touchedCount()
		if before <= narrowEnough {
			break
		}
		if err := r.forgetEqualKeys(ctx); err != nil {
			return err
		}
		if err := r.catchUp(ctx); err != nil {
			return err
		}
		if after := r.touchedCount(); after > before/2 {
			break
		}
	}
	if r.p.cfg.MoveHook != nil {
		r.p.cfg.MoveHook(ctx, r.m.ID, fmt.Sprintf("narrowed:%d", r.touchedCount()))
	}
	return nil
}

// forgetEqualKeys compares, per table (not one truncated since the
// verification point: the switch compares those whole), the rows of the
// remembered keys in the source and the target, as the tenant's role, and
// forgets the keys whose rows are equal on both sides.
func (r *moveRun) forgetEqualKeys(ctx context.Context) error {
	for _, t := range r.tables {
		r.mu.Lock()
		if r.truncated[t.name] {
			r.mu.Unlock()
			continue
		}
		keys := make([]string, 0, len(r.touched[t.name]))
		rows := make([][]byte, 0, len(r.touched[t.name]))
		for k, row := range r.touched[t.name] {
			keys = append(keys, k)
			rows = append(rows, row)
		}
		r.mu.Unlock()
		for start := 0; start < len(keys); start += narrowBatch {
			end := min(start+narrowBatch, len(keys))
			src, dst, err := r.keyRowSums(ctx, t, rows[start:end])
			if err != nil {
				return err
			}
			r.mu.Lock()
			for i := start; i < end; i++ {
				n := int64(i - start + 1)
				if src[n] == dst[n] { // equal, or absent on both sides
					delete(r.touched[t.name], keys[i])
				}
			}
			r.mu.Unlock()
		}
	}
	return nil
}

// keyRowSums looks the keys of rows (remembered rows of t, at most
// narrowBatch) up in the source and the target, as the tenant's role, and
// returns each side's row hashes by the row's position in rows (1-based;
// absent: no such row on that side).
func (r *moveRun) keyRowSums(ctx context.Context, t *moveTable, rows [][]byte) (src, dst map[int64]string, err error) {
	arg := jsonArray(rows)
	src, err = rowSums(ctx, r.srcT, r.rowSumsSQL(t, r.srcTable(t), r.src.Isolation == catalog.IsolationShared), arg)
	if err != nil {
		return nil, nil, fmt.Errorf("comparing the changed rows of %s in the source: %w", t.name, err)
	}
	dst, err = rowSums(ctx, r.dstT, r.rowSumsSQL(t, r.dstTable(t), r.dst.Isolation == catalog.IsolationShared), arg)
	if err != nil {
		return nil, nil, fmt.Errorf("comparing the changed rows of %s in the target: %w", t.name, err)
	}
	return src, dst, nil
}

// jsonArray is rows (JSON objects) as one JSON array.
func jsonArray(rows [][]byte) string {
	var b bytes.Buffer
	b.WriteByte('[')
	for i, row := range rows {
		if i > 0 {
			b.WriteByte(',')
		}
		b.Write(row)
	}
	b.WriteByte(']')
	return b.String()
}

// rowSums runs a rowSumsSQL query and returns each found row's hash by its
// position (1-based) in the array sent.
func rowSums(ctx context.Context, conn *pgx.Conn, sql, arg string) (map[int64]string, error) {
	rows, err := conn.Query(ctx, sql, arg)
	if err != nil {
		return nil, err
	}
	out := map[int64]string{}
	var n int64
	var sum string
	_, err = pgx.ForEachRow(rows, []any{&n, &sum}, func() error {
		out[n] = sum
		return nil
	})
	return out, err
}

// rowSumsSQL returns, for each row of $1 (a jsonb array of captured rows)
// whose key the tenant has in table, the row's position in $1 and the hash
// of its copied columns but tenant_id (as checksumSQL hashes them). The
// lookup is by the whole primary key (an index); tenant_id in it is, on a
// shared side, the tenant's id (the tenant filter), elsewhere as captured.
func (r *moveRun) rowSumsSQL(t *moveTable, table string, shared bool) string {
	var on []string
	for _, c := range t.pk {
		if c == "tenant_id" && shared {
			continue
		}
		on = append(on, "t."+quoteIdent(c)+" OPERATOR(pg_catalog.=) k."+quoteIdent(c))
	}
	if shared && t.tenantID != "" {
		on = append(on, "t.tenant_id OPERATOR(pg_catalog.=) "+sqlquote.Literal(r.src.ID)+"::pg_catalog."+t.tenantID)
	}
	return "SELECT k.stratum_n, " + rowHash(t, "t") +
		" FROM (SELECT o.stratum_n, p.* FROM pg_catalog.jsonb_array_elements($1::pg_catalog.jsonb) WITH ORDINALITY AS o(stratum_r, stratum_n)," +
		" LATERAL pg_catalog.jsonb_populate_record(NULL::" + table + ", o.stratum_r) AS p) AS k" +
		" JOIN " + table + " AS t ON " + strings.Join(on, " AND ")
}
