package wire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"testing"
	"time"
)

func msg(typ byte, body string) []byte {
	b := []byte{typ, 0, 0, 0, 0}
	binary.BigEndian.PutUint32(b[1:], uint32(4+len(body)))
	return append(b, body...)
}

// oneByteReader returns at most one byte per Read, to exercise partial reads.
type oneByteReader struct{ r io.Reader }

func (o oneByteReader) Read(p []byte) (int, error) {
	if len(p) > 1 {
		p = p[:1]
	}
	return o.r.Read(p)
}

func TestReaderFramesMessages(t *testing.T) {
	big := bytes.Repeat([]byte("x"), 100_000)
	var stream []byte
	stream = append(stream, msg('Q', "select 1\x00")...)
	stream = append(stream, msg('S', "")...)
	stream = append(stream, msg('d', string(big))...)
	for _, tc := range []struct {
		name string
		rd   io.Reader
	}{
		{"whole", bytes.NewReader(stream)},
		{"byte at a time", oneByteReader{bytes.NewReader(stream)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := NewReader(tc.rd, 0)
			want := []struct {
				typ byte
				n   int
			}{{'Q', 14}, {'S', 5}, {'d', 100_005}}
			for _, w := range want {
				typ, m, err := r.Next()
				if err != nil {
					t.Fatalf("next: %v", err)
				}
				if typ != w.typ || len(m) != w.n {
					t.Fatalf("got %q len %d, want %q len %d", typ, len(m), w.typ, w.n)
				}
			}
			if _, _, err := r.Next(); err != io.EOF {
				t.Fatalf("at end: got %v, want EOF", err)
			}
		})
	}
}

func TestReaderRejectsBadLengths(t *testing.T) {
	huge := []byte{'Q', 0x7f, 0xff, 0xff, 0xff}
	r := NewReader(bytes.NewReader(huge), 1<<20)
	if _, _, err := r.Next(); !errors.Is(err, ErrMessageTooLarge) {
		t.Fatalf("2 GB prefix: got %v, want ErrMessageTooLarge", err)
	}
	r = NewReader(bytes.NewReader([]byte{'Q', 0, 0, 0, 3}), 0)
	if _, _, err := r.Next(); !errors.Is(err, ErrBadLength) {
		t.Fatalf("length 3: got %v, want ErrBadLength", err)
	}
	r = NewReader(bytes.NewReader([]byte{0, 0, 0, 4}), 0)
	if _, err := r.ReadStartup(); !errors.Is(err, ErrBadLength) {
		t.Fatalf("startup length 4: got %v, want ErrBadLength", err)
	}
	r = NewReader(bytes.NewReader([]byte{0x7f, 0, 0, 0}), 0)
	if _, err := r.ReadStartup(); !errors.Is(err, ErrMessageTooLarge) {
		t.Fatalf("startup 2 GB: got %v, want ErrMessageTooLarge", err)
	}
	r = NewReader(bytes.NewReader(msg('Q', "abc")[:6]), 0)
	if _, _, err := r.Next(); err != io.ErrUnexpectedEOF {
		t.Fatalf("truncated: got %v, want ErrUnexpectedEOF", err)
	}
}

// TestReaderResumesAfterDeadline checks that a read cut short by a deadline
// consumes nothing, so the message is returned whole by a later call.
func TestReaderResumesAfterDeadline(t *testing.T) {
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	defer pw.Close()
	r := NewReader(pr, 0)
	m := msg('D', "hello world")
	if _, err := pw.Write(m[:7]); err != nil {
		t.Fatal(err)
	}
	pr.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	if _, _, err := r.Next(); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("got %v, want deadline exceeded", err)
	}
	pr.SetReadDeadline(time.Time{})
	if _, err := pw.Write(m[7:]); err != nil {
		t.Fatal(err)
	}
	typ, got, err := r.Next()
	if err != nil || typ != 'D' || !bytes.Equal(got, m) {
		t.Fatalf("after resume: %q %q %v", typ, got, err)
	}
}

// TestReaderReadMore checks that ReadMore keeps what it reads for Next, up
// to its limit, and reports the peer's end.
func TestReaderReadMore(t *testing.T) {
	m1, m2 := msg('Q', "SELECT 1\x00"), msg('X', "")
	var in bytes.Buffer
	in.Write(m1)
	in.Write(m2)
	r := NewReaderSize(oneByteReader{&in}, 64, 0)
	for r.Buffered() < len(m1) {
		if err := r.ReadMore(len(m1)); err != nil {
			t.Fatalf("ReadMore: %v", err)
		}
	}
	if err := r.ReadMore(len(m1)); !errors.Is(err, ErrBufferFull) {
		t.Fatalf("ReadMore at the limit: %v, want ErrBufferFull", err)
	}
	for err := error(nil); err == nil; err = r.ReadMore(1 << 10) {
	}
	for _, want := range [][]byte{m1, m2} {
		if _, got, err := r.Next(); err != nil || !bytes.Equal(got, want) {
			t.Fatalf("Next: %q %v, want %q", got, err, want)
		}
	}
	if err := r.ReadMore(1 << 10); !errors.Is(err, io.EOF) {
		t.Fatalf("ReadMore at the end: %v, want EOF", err)
	}
}
