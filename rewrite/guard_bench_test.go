package rewrite

import "testing"

var benchDML = []byte("SELECT o.id, o.total, c.name FROM orders o JOIN customers c ON c.id = o.customer_id WHERE o.id = $1 AND o.created_at > now() - interval '1 day'")

func BenchmarkNeedsFullCheck(b *testing.B) {
	b.ReportAllocs()
	b.SetBytes(int64(len(benchDML)))
	for i := 0; i < b.N; i++ {
		if NeedsFullCheck(benchDML) {
			b.Fatal("plain SELECT needs a full check")
		}
	}
}

func BenchmarkCheckCached(b *testing.B) {
	g := NewGuard(GuardConfig{})
	sql := "SELECT set_config('search_path', 'app', false); SELECT * FROM orders WHERE id = $1"
	g.Check(sql)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if !g.Check(sql).Allow {
			b.Fatal("refused")
		}
	}
}

func BenchmarkCheckUncached(b *testing.B) {
	sql := "WITH d AS (DELETE FROM orders WHERE id = $1 RETURNING *) INSERT INTO archive SELECT * FROM d"
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		checkSQL(sql)
	}
}

func BenchmarkClassify(b *testing.B) {
	g := NewGuard(GuardConfig{})
	for _, bc := range []struct{ name, sql string }{
		{"keyword", string(benchDML)},
		{"cached", "WITH d AS (DELETE FROM orders WHERE id = $1 RETURNING *) INSERT INTO archive SELECT * FROM d"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			g.Classify(bc.sql)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				g.Classify(bc.sql)
			}
		})
	}
}
