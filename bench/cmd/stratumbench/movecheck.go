package main

import (
	"context"
	"fmt"
	"time"
)

// keyCheck compares, with the writer held, the orders the tenant sees
// through the proxy with the keys the writer committed.
type keyCheck struct {
	when             string
	rows             int // -move-rows: the preloaded orders 1…rows
	committed        int // keys the writer committed so far
	uncertain        int // keys whose COMMIT failed
	uncertainPresent int // of those, present
	lost             int // committed keys not found
	lostKeys         []int64
	dup              int   // rows beyond the first of an id
	extra            int   // ids above the preloaded ones that the writer never wrote
	preloaded        int64 // rows with id ≤ -move-rows (want exactly -move-rows)
	count, want      int64 // all rows; want = preloaded + committed + uncertain present
	took             time.Duration
	err              string
}

func (k keyCheck) ok() bool {
	return k.err == "" && k.lost == 0 && k.dup == 0 && k.extra == 0 && k.count == k.want && k.preloaded == int64(k.rows)
}

func (k keyCheck) String() string {
	if k.err != "" {
		return fmt.Sprintf("%s: check failed: %s", k.when, k.err)
	}
	s := fmt.Sprintf("%s: %d rows (want %d = %d preloaded + %d committed + %d of %d uncertain present), "+
		"%d preloaded rows, %d lost, %d duplicated, %d unknown, %v",
		k.when, k.count, k.want, k.rows, k.committed, k.uncertainPresent, k.uncertain, k.preloaded, k.lost, k.dup, k.extra, verdict(k.ok(), true))
	if len(k.lostKeys) > 0 {
		s += fmt.Sprintf(" (lost keys %v…)", k.lostKeys)
	}
	return s
}

// checkKeys holds the writer, reads the tenant's orders through the proxy
// and compares them with the keys the writer committed.
func (b *bench) checkKeys(ctx context.Context, mb *moveBench, when string) (k keyCheck) {
	committed, uncertain := mb.writer.hold()
	defer mb.writer.release()
	t0 := time.Now()
	k = keyCheck{when: when, rows: mb.rows, committed: len(committed), uncertain: len(uncertain)}
	defer func() {
		k.took = time.Since(t0)
		step("moves: key check %s", k)
	}()
	ids, err := b.moverIDs(ctx, mb, &k)
	if err != nil {
		k.err = err.Error()
		return k
	}
	for _, key := range committed {
		if ids[key] == 0 {
			k.lost++
			if len(k.lostKeys) < 5 {
				k.lostKeys = append(k.lostKeys, key)
			}
		}
		delete(ids, key)
	}
	for _, key := range uncertain {
		if ids[key] > 0 {
			k.uncertainPresent++
		}
		delete(ids, key)
	}
	k.extra = len(ids)
	k.want = int64(mb.rows + k.committed + k.uncertainPresent)
	return k
}

// moverIDs counts mover's orders through the proxy (total, distinct ids,
// preloaded ones, into k) and returns how often each id above the preloaded
// ones occurs.
func (b *bench) moverIDs(ctx context.Context, mb *moveBench, k *keyCheck) (map[int64]int, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	conn, err := b.proxyConn(ctx, moverTenant)
	if err != nil {
		return nil, err
	}
	defer conn.Close(context.Background())
	var distinct int64
	err = conn.QueryRow(ctx, `SELECT count(*), count(DISTINCT id), count(*) FILTER (WHERE id <= $1) FROM orders`,
		mb.rows).Scan(&k.count, &distinct, &k.preloaded)
	if err != nil {
		return nil, err
	}
	k.dup = int(k.count - distinct)
	rows, err := conn.Query(ctx, "SELECT id FROM orders WHERE id > $1", mb.rows)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	ids := map[int64]int{}
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		ids[id]++
	}
	return ids, rows.Err()
}
