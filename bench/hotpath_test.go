package bench

import (
	"bufio"
	"encoding/binary"
	"io"
	"strconv"
	"testing"

	"github.com/stratum-hq/stratum-proxy/internal/wire"
	"github.com/stratum-hq/stratum-proxy/rewrite"
)

// loopReader replays one byte stream forever, so a single wire.Reader (one per
// session in the proxy) can be benchmarked in its steady state.
type loopReader struct {
	data []byte
	off  int
}

func (l *loopReader) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		c := copy(p[n:], l.data[l.off:])
		n += c
		l.off = (l.off + c) % len(l.data)
	}
	return n, nil
}

// appendMsg appends a typed protocol message with body.
func appendMsg(b []byte, typ byte, body []byte) []byte {
	b = append(b, typ, 0, 0, 0, 0)
	binary.BigEndian.PutUint32(b[len(b)-4:], uint32(4+len(body)))
	return append(b, body...)
}

// dataRow is a DataRow with the given text column values.
func dataRow(cols ...string) []byte {
	body := binary.BigEndian.AppendUint16(nil, uint16(len(cols)))
	for _, c := range cols {
		body = binary.BigEndian.AppendUint32(body, uint32(len(c)))
		body = append(body, c...)
	}
	return appendMsg(nil, 'D', body)
}

// forward is what the proxy's relay loops do per message: frame it, write it
// raw to a buffered writer, flush when nothing more is buffered.
func forward(b *testing.B, rd *wire.Reader, w *bufio.Writer, n int) {
	for range n {
		_, msg, err := rd.Next()
		if err != nil {
			b.Fatal(err)
		}
		if _, err := w.Write(msg); err != nil {
			b.Fatal(err)
		}
		if !rd.HasMessage() {
			if err := w.Flush(); err != nil {
				b.Fatal(err)
			}
		}
	}
	if err := w.Flush(); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkWireForward100DataRows frames a 100-row result (pgbench_accounts
// shaped rows: aid, bid, abalance, an 84-character filler) and forwards it to
// io.Discard through a bufio.Writer. One op is the 100 messages.
func BenchmarkWireForward100DataRows(b *testing.B) {
	var stream []byte
	filler := string(make([]byte, 84))
	for i := range 100 {
		stream = append(stream, dataRow(strconv.Itoa(i+1), "1", "0", filler)...)
	}
	rd := wire.NewReader(&loopReader{data: stream}, 0)
	w := bufio.NewWriterSize(io.Discard, 16<<10)
	b.SetBytes(int64(len(stream)))
	b.ReportAllocs()
	for b.Loop() {
		forward(b, rd, w, 100)
	}
}

// BenchmarkWireForwardSelectOnly forwards the backend's answer to one
// select-only transaction (RowDescription, DataRow, CommandComplete,
// ReadyForQuery): the per-transaction relay work of the pgbench runs.
func BenchmarkWireForwardSelectOnly(b *testing.B) {
	rowDesc := binary.BigEndian.AppendUint16(nil, 1)
	rowDesc = append(rowDesc, "abalance\x00"...)
	rowDesc = binary.BigEndian.AppendUint32(rowDesc, 16385) // table oid
	rowDesc = binary.BigEndian.AppendUint16(rowDesc, 3)     // column number
	rowDesc = binary.BigEndian.AppendUint32(rowDesc, 23)    // int4
	rowDesc = binary.BigEndian.AppendUint16(rowDesc, 4)
	rowDesc = binary.BigEndian.AppendUint32(rowDesc, 0xffffffff)
	rowDesc = binary.BigEndian.AppendUint16(rowDesc, 0)
	var stream []byte
	stream = appendMsg(stream, 'T', rowDesc)
	stream = append(stream, dataRow("0")...)
	stream = appendMsg(stream, 'C', []byte("SELECT 1\x00"))
	stream = appendMsg(stream, 'Z', []byte{'I'})
	rd := wire.NewReader(&loopReader{data: stream}, 0)
	w := bufio.NewWriterSize(io.Discard, 16<<10)
	b.SetBytes(int64(len(stream)))
	b.ReportAllocs()
	for b.Loop() {
		forward(b, rd, w, 4)
	}
}

var sink bool

// BenchmarkMentionsTenantSetting is the pre-check every simple Query and
// Parse message goes through.
func BenchmarkMentionsTenantSetting(b *testing.B) {
	cases := []struct{ name, sql string }{
		{"pgbench_select", "SELECT abalance FROM pgbench_accounts WHERE aid = 48213;"},
		{"orm_query", `SELECT "orders"."id", "orders"."tenant_id", "orders"."item", "orders"."quantity", "orders"."created_at" ` +
			`FROM "orders" WHERE "orders"."created_at" >= $1 AND "orders"."quantity" > $2 ORDER BY "orders"."created_at" DESC LIMIT 50`},
		{"set_tenant", "SET stratum.tenant = 'client_alpha'"},
	}
	for _, c := range cases {
		sql := []byte(c.sql)
		b.Run(c.name, func(b *testing.B) {
			b.SetBytes(int64(len(sql)))
			b.ReportAllocs()
			for b.Loop() {
				sink = rewrite.MentionsTenantSetting(sql)
			}
		})
	}
}

// BenchmarkClassifyTenantCommand is the slow path taken only by statements
// that mention "stratum" (a full parse).
func BenchmarkClassifyTenantCommand(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		cmd, err := rewrite.ClassifyTenantCommand("SET stratum.tenant = 'client_alpha'")
		if err != nil {
			b.Fatal(err)
		}
		sink = cmd.Kind == rewrite.SetTenant
	}
}
