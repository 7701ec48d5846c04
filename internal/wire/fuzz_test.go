package wire

import (
	"bytes"
	"testing"
)

// FuzzReader feeds arbitrary bytes to both framing entry points: they must return
// messages whose length matches their prefix, or an error, and never panic.
func FuzzReader(f *testing.F) {
	f.Add(msg('Q', "select 1\x00"))
	f.Add([]byte{0, 0, 0, 8, 4, 210, 22, 47})
	f.Add([]byte{'Q', 0x7f, 0xff, 0xff, 0xff})
	f.Add([]byte{0, 0, 0, 16, 4, 210, 22, 46, 0, 0, 0, 1, 0, 0, 0, 2})
	f.Fuzz(func(t *testing.T, data []byte) {
		r := NewReader(bytes.NewReader(data), 4096)
		if m, err := r.ReadStartup(); err == nil && len(m) < 8 {
			t.Fatalf("startup message of %d bytes accepted", len(m))
		}
		r = NewReader(bytes.NewReader(data), 4096)
		for i := 0; i < 100; i++ {
			_, m, err := r.Next()
			if err != nil {
				return
			}
			if len(m) < 5 || len(m) > 4096 {
				t.Fatalf("message of %d bytes returned", len(m))
			}
		}
	})
}
