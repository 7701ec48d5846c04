package wire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"testing"
)

// fuzzMax is the message size limit the fuzz target reads with.
const fuzzMax = 4096

// FuzzReader feeds arbitrary bytes to both framing entry points and checks
// each answer against the framing rules applied to the input directly: a
// message returned is exactly the bytes its length prefix covers (type byte
// and length included, within the size limit), and nothing else is consumed;
// otherwise the error is the one the prefix calls for: ErrBadLength below
// the protocol minimum, ErrMessageTooLarge above the limit, io.EOF at a clean
// end, io.ErrUnexpectedEOF in the middle of a message. A reader fed one byte
// at a time gives the same answers. Nothing panics.
func FuzzReader(f *testing.F) {
	f.Add(msg('Q', "select 1\x00"))
	f.Add([]byte{0, 0, 0, 8, 4, 210, 22, 47})
	f.Add([]byte{'Q', 0x7f, 0xff, 0xff, 0xff})
	f.Add([]byte{0, 0, 0, 16, 4, 210, 22, 46, 0, 0, 0, 1, 0, 0, 0, 2})
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, whole := range []bool{true, false} {
			var rd io.Reader = bytes.NewReader(data)
			if !whole {
				rd = oneByteReader{rd}
			}
			checkStartup(t, NewReader(rd, fuzzMax), data)

			rd = bytes.NewReader(data)
			if !whole {
				rd = oneByteReader{rd}
			}
			r := NewReader(rd, fuzzMax)
			for off := 0; ; {
				want, wantErr := frame(data[off:])
				typ, m, err := r.Next()
				if !sameErr(err, wantErr) {
					t.Fatalf("message at offset %d: error %v, want %v", off, err, wantErr)
				}
				if err != nil {
					break
				}
				if !bytes.Equal(m, want) || typ != want[0] {
					t.Fatalf("message at offset %d: got type %q, %x; want %x", off, typ, m, want)
				}
				off += len(want)
			}
		}
	})
}

// checkStartup compares ReadStartup's answer for data with the framing rules.
func checkStartup(t *testing.T, r *Reader, data []byte) {
	t.Helper()
	var want []byte
	var wantErr error
	switch {
	case len(data) == 0:
		wantErr = io.EOF
	case len(data) < 4:
		wantErr = io.ErrUnexpectedEOF
	default:
		switch l := int(binary.BigEndian.Uint32(data)); {
		case l < 8:
			wantErr = ErrBadLength
		case l > maxStartupSize:
			wantErr = ErrMessageTooLarge
		case len(data) < l:
			wantErr = io.ErrUnexpectedEOF
		default:
			want = data[:l]
		}
	}
	m, err := r.ReadStartup()
	if !sameErr(err, wantErr) {
		t.Fatalf("startup: error %v, want %v", err, wantErr)
	}
	if err == nil && !bytes.Equal(m, want) {
		t.Fatalf("startup: got %x, want %x", m, want)
	}
}

// frame is what Next must answer for a stream that continues with rest:
// the message the length prefix covers, or the error it calls for.
func frame(rest []byte) ([]byte, error) {
	if len(rest) == 0 {
		return nil, io.EOF
	}
	if len(rest) < 5 {
		return nil, io.ErrUnexpectedEOF
	}
	l := int(binary.BigEndian.Uint32(rest[1:]))
	switch {
	case l < 4:
		return nil, ErrBadLength
	case l+1 > fuzzMax:
		return nil, ErrMessageTooLarge
	case len(rest) < l+1:
		return nil, io.ErrUnexpectedEOF
	}
	return rest[:l+1], nil
}

// sameErr reports whether err is of the class want (nil for nil).
func sameErr(err, want error) bool {
	if want == nil || err == nil {
		return err == want
	}
	return errors.Is(err, want)
}
