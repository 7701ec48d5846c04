package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// DefaultMaxMessageSize is the largest message a Reader accepts unless told
// otherwise: large enough for big COPY rows and bind parameters, small enough that
// a hostile length prefix cannot make us allocate gigabytes.
const DefaultMaxMessageSize = 64 << 20

// ErrMessageTooLarge is returned by Next when a length prefix exceeds the maximum.
var ErrMessageTooLarge = errors.New("message too large")

// ErrBadLength is returned by Next when a length prefix is below the protocol minimum.
var ErrBadLength = errors.New("invalid message length")

// Reader reads typed protocol messages (one type byte, an int32 length that counts
// itself, the body) from an underlying reader into its own buffer.
//
// Next is resumable: when the underlying read fails (a deadline, say) nothing is
// consumed, so a later call continues where the failed one stopped. The slice Next
// returns is valid only until the next call.
type Reader struct {
	rd         io.Reader
	buf        []byte
	start, end int // buf[start:end] holds unread bytes
	maxSize    int
	initial    int
}

// NewReader returns a Reader over rd with a 16 KiB buffer. maxSize bounds a
// message's total length (header included); zero means DefaultMaxMessageSize.
func NewReader(rd io.Reader, maxSize int) *Reader { return NewReaderSize(rd, 16<<10, maxSize) }

// NewReaderSize is NewReader with a chosen initial buffer size: small for the
// many mostly idle client connections, larger for busy backend connections.
// The buffer grows for large messages and Shrink returns it to this size.
func NewReaderSize(rd io.Reader, initial, maxSize int) *Reader {
	if maxSize <= 0 {
		maxSize = DefaultMaxMessageSize
	}
	if initial < 64 {
		initial = 64
	}
	return &Reader{rd: rd, buf: make([]byte, initial), maxSize: maxSize, initial: initial}
}

// Buffered reports how many unread bytes are buffered. Zero means the next Next
// will block on the underlying reader: the moment to flush any pending writes.
func (r *Reader) Buffered() int { return r.end - r.start }

// HasMessage reports whether a whole message is already buffered.
func (r *Reader) HasMessage() bool {
	n := r.end - r.start
	if n < 5 {
		return false
	}
	l := int(binary.BigEndian.Uint32(r.buf[r.start+1:]))
	return l >= 4 && n >= l+1
}

// Next returns the next whole message: its type byte and the raw bytes (type,
// length and body) ready to forward. A length below 4 gives ErrBadLength and one
// above the maximum gives ErrMessageTooLarge; neither is recoverable.
func (r *Reader) Next() (typ byte, msg []byte, err error) {
	if err := r.fill(5); err != nil {
		return 0, nil, err
	}
	l := int(binary.BigEndian.Uint32(r.buf[r.start+1:]))
	if l < 4 {
		return 0, nil, fmt.Errorf("%w: %d", ErrBadLength, l)
	}
	if l+1 > r.maxSize {
		return 0, nil, fmt.Errorf("%w: %d bytes (limit %d)", ErrMessageTooLarge, l+1, r.maxSize)
	}
	if err := r.fill(l + 1); err != nil {
		return 0, nil, err
	}
	msg = r.buf[r.start : r.start+l+1]
	r.start += l + 1
	return msg[0], msg, nil
}

// ReadStartup reads an untyped startup-phase message (int32 length, then body)
// such as StartupMessage, SSLRequest or CancelRequest. It returns the whole raw
// message including the length.
func (r *Reader) ReadStartup() ([]byte, error) {
	if err := r.fill(4); err != nil {
		return nil, err
	}
	l := int(binary.BigEndian.Uint32(r.buf[r.start:]))
	if l < 8 {
		return nil, fmt.Errorf("%w: startup packet of %d bytes", ErrBadLength, l)
	}
	if l > maxStartupSize {
		return nil, fmt.Errorf("%w: startup packet of %d bytes (limit %d)", ErrMessageTooLarge, l, maxStartupSize)
	}
	if err := r.fill(l); err != nil {
		return nil, err
	}
	msg := r.buf[r.start : r.start+l]
	r.start += l
	return msg, nil
}

// maxStartupSize is PostgreSQL's own limit on a startup packet: its
// MAX_STARTUP_PACKET_LENGTH (10000) bounds the packet without its length
// word, so the whole packet may have 10004 bytes.
const maxStartupSize = 10000 + 4

// fill makes sure at least n unread bytes are buffered.
func (r *Reader) fill(n int) error {
	if r.end-r.start >= n {
		return nil
	}
	if r.start+n > len(r.buf) {
		// Compact, then grow if the message does not fit.
		copy(r.buf, r.buf[r.start:r.end])
		r.end -= r.start
		r.start = 0
		if n > len(r.buf) {
			nb := make([]byte, max(n, 2*len(r.buf)))
			copy(nb, r.buf[:r.end])
			r.buf = nb
		}
	}
	for r.end-r.start < n {
		m, err := r.rd.Read(r.buf[r.end:])
		r.end += m
		if err != nil {
			if r.end-r.start >= n {
				return nil
			}
			if err == io.EOF && r.end > r.start {
				return io.ErrUnexpectedEOF
			}
			return err
		}
	}
	return nil
}

// ErrBufferFull is returned by ReadMore when the buffer holds its limit.
var ErrBufferFull = errors.New("read buffer full")

// ReadMore reads once from the underlying reader into the buffer, consuming
// nothing: Next returns what it read. A caller that waits for something else
// learns so whether the peer has gone (the read's error: io.EOF, a reset)
// while what the peer sent meanwhile is kept. It reads nothing and returns
// ErrBufferFull when limit bytes are buffered already.
func (r *Reader) ReadMore(limit int) error {
	if r.end-r.start >= limit {
		return ErrBufferFull
	}
	if r.end == len(r.buf) {
		copy(r.buf, r.buf[r.start:r.end])
		r.end -= r.start
		r.start = 0
		if r.end == len(r.buf) {
			nb := make([]byte, min(2*len(r.buf), limit))
			copy(nb, r.buf[:r.end])
			r.buf = nb
		}
	}
	m, err := r.rd.Read(r.buf[r.end:min(len(r.buf), r.start+limit)])
	r.end += m
	return err
}

// Shrink drops an oversized buffer back to its initial size when it holds no
// unread data, so one huge message does not pin memory for a whole session.
func (r *Reader) Shrink() {
	if r.start == r.end && len(r.buf) > 4*r.initial && len(r.buf) > 64<<10 {
		r.buf = make([]byte, r.initial)
		r.start, r.end = 0, 0
	}
}
