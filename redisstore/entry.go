package redisstore

import (
	"encoding/binary"
	"fmt"
	"math"
	"runtime/debug"
	"strings"
	"time"

	"github.com/tiercache/tiercache"
)

// The entry format: what a Store writes as the value of a Redis key.
//
//	offset   size  field
//	0        2     magic 0xC1 0x54: 0xC1 never occurs in UTF-8 and is "never
//	               used" in MessagePack, so neither text, JSON nor msgpack
//	               written by anyone else starts with it
//	2        1     format version: 1
//	3        1     flags: 0x01 negative, 0x02 has Expire, 0x04 has Stale;
//	               the other bits are reserved and must be zero
//	4        8     Expire, unix milliseconds, big-endian int64 (only with 0x02)
//	4 or 12  8     Stale, unix milliseconds, big-endian int64 (only with 0x04)
//	4 to 20  rest  the codec's payload, empty when the entry is negative
//
// A header is 4, 12 or 20 bytes. A change that an older reader would
// misread bumps the version; a reader refuses versions it does not know.
const (
	entryMagic0   byte = 0xC1
	entryMagic1   byte = 0x54 // 'T'
	entryVersion  byte = 1
	flagNegative  byte = 0x01
	flagHasExpire byte = 0x02
	flagHasStale  byte = 0x04
	knownFlags         = flagNegative | flagHasExpire | flagHasStale
	headerFixed        = 4 // magic, version, flags
)

// The instants an entry can hold: those whose unix milliseconds fit in an
// int64 (some 292 million years either side of 1970).
var (
	minEntryTime = time.UnixMilli(math.MinInt64)
	maxEntryTime = time.UnixMilli(math.MaxInt64)
)

// header is an entry's header: the CacheValue without its Data, with the
// instants in unix milliseconds.
type header struct {
	negative  bool
	hasExpire bool
	hasStale  bool
	expire    int64 // unix ms; meaningful only with hasExpire
	stale     int64 // unix ms; meaningful only with hasStale
}

// size returns the number of bytes appendHeader writes for h.
func (h header) size() int {
	n := headerFixed
	if h.hasExpire {
		n += 8
	}
	if h.hasStale {
		n += 8
	}
	return n
}

// appendHeader appends h in the entry format to dst.
func appendHeader(dst []byte, h header) []byte {
	flags := byte(0)
	if h.negative {
		flags |= flagNegative
	}
	if h.hasExpire {
		flags |= flagHasExpire
	}
	if h.hasStale {
		flags |= flagHasStale
	}
	dst = append(dst, entryMagic0, entryMagic1, entryVersion, flags)
	if h.hasExpire {
		dst = binary.BigEndian.AppendUint64(dst, uint64(h.expire))
	}
	if h.hasStale {
		dst = binary.BigEndian.AppendUint64(dst, uint64(h.stale))
	}
	return dst
}

// parseHeader reads the header at the start of b and returns it with the
// payload that follows. Every error wraps ErrInvalidEntry.
func parseHeader(b []byte) (header, []byte, error) {
	var h header
	if len(b) < 2 || b[0] != entryMagic0 || b[1] != entryMagic1 {
		return h, nil, fmt.Errorf("%w: no magic bytes (foreign or corrupt value of %d bytes)", ErrInvalidEntry, len(b))
	}
	if len(b) < headerFixed {
		return h, nil, fmt.Errorf("%w: truncated header (%d bytes)", ErrInvalidEntry, len(b))
	}
	switch v := b[2]; {
	case v > entryVersion:
		return h, nil, fmt.Errorf("%w: format version %d is newer than this redisstore reads (%d)", ErrInvalidEntry, v, entryVersion)
	case v != entryVersion:
		return h, nil, fmt.Errorf("%w: unknown format version %d", ErrInvalidEntry, v)
	}
	flags := b[3]
	if flags&^knownFlags != 0 {
		return h, nil, fmt.Errorf("%w: unknown flags %#02x", ErrInvalidEntry, flags&^knownFlags)
	}
	h.negative = flags&flagNegative != 0
	h.hasExpire = flags&flagHasExpire != 0
	h.hasStale = flags&flagHasStale != 0
	if len(b) < h.size() {
		return h, nil, fmt.Errorf("%w: truncated header (%d bytes, flags need %d)", ErrInvalidEntry, len(b), h.size())
	}
	rest := b[headerFixed:]
	if h.hasExpire {
		h.expire = int64(binary.BigEndian.Uint64(rest))
		rest = rest[8:]
	}
	if h.hasStale {
		h.stale = int64(binary.BigEndian.Uint64(rest))
		rest = rest[8:]
	}
	if h.negative && len(rest) != 0 {
		return h, nil, fmt.Errorf("%w: negative entry with a %d-byte payload", ErrInvalidEntry, len(rest))
	}
	return h, rest, nil
}

// millis returns t in unix milliseconds, rounded down, or an error when t
// is outside the range an entry holds.
func millis(t time.Time) (int64, error) {
	if t.Before(minEntryTime) || t.After(maxEntryTime) {
		return 0, fmt.Errorf("time %v outside the range an entry holds", t)
	}
	return t.UnixMilli(), nil
}

// headerOf returns the header of v: its instants rounded down to the
// millisecond.
func headerOf[T any](v *tiercache.CacheValue[T]) (header, error) {
	h := header{negative: v.Negative, hasExpire: !v.Expire.IsZero(), hasStale: !v.Stale.IsZero()}
	var err error
	if h.hasExpire {
		if h.expire, err = millis(v.Expire); err != nil {
			return h, fmt.Errorf("expire: %w", err)
		}
	}
	if h.hasStale {
		if h.stale, err = millis(v.Stale); err != nil {
			return h, fmt.Errorf("stale: %w", err)
		}
	}
	return h, nil
}

// encodeEntry returns the entry of v with header h (headerOf(v)): the header,
// then codec's encoding of v.Data, or nothing when v is negative. A codec
// that panics is an error wrapping a *tiercache.PanicError.
func encodeEntry[T any](codec tiercache.Codec[T], h header, v *tiercache.CacheValue[T]) ([]byte, error) {
	if h.negative {
		return appendHeader(make([]byte, 0, h.size()), h), nil
	}
	payload, err := marshal(codec, v.Data)
	if err != nil {
		return nil, fmt.Errorf("codec: %w", &codecError{err})
	}
	b := make([]byte, 0, h.size()+len(payload))
	return append(appendHeader(b, h), payload...), nil
}

// decodeEntry decodes b, an entry, into a CacheValue. The instants come back
// as time.UnixMilli values; a negative entry has the zero Data and the codec
// is not called. Errors about the format wrap ErrInvalidEntry; a codec that
// fails or panics (a *tiercache.PanicError) is an error wrapping both
// ErrInvalidEntry and the codec's error.
func decodeEntry[T any](codec tiercache.Codec[T], b []byte) (tiercache.CacheValue[T], error) {
	h, payload, err := parseHeader(b)
	if err != nil {
		return tiercache.CacheValue[T]{}, err
	}
	return decodePayload(codec, h, payload)
}

// decodePayload completes decodeEntry once the header is parsed, so that a
// caller can look at the header (an expired entry) before paying for the
// codec.
func decodePayload[T any](codec tiercache.Codec[T], h header, payload []byte) (tiercache.CacheValue[T], error) {
	v := tiercache.CacheValue[T]{Negative: h.negative}
	if h.hasExpire {
		v.Expire = time.UnixMilli(h.expire)
	}
	if h.hasStale {
		v.Stale = time.UnixMilli(h.stale)
	}
	if h.negative {
		return v, nil
	}
	data, err := unmarshal(codec, payload)
	if err != nil {
		return tiercache.CacheValue[T]{}, fmt.Errorf("%w: codec cannot decode the %d-byte payload: %w", ErrInvalidEntry, len(payload), &codecError{err})
	}
	v.Data = data
	return v, nil
}

// codecError is a Codec's error inside a Store's error, which names the
// package already: its message drops the "redisstore: " that JSONCodec's
// errors start with (they stand alone when the codec is used alone), so
// that it is not said twice. It unwraps to the Codec's error.
type codecError struct{ err error }

func (e *codecError) Error() string { return strings.TrimPrefix(e.err.Error(), "redisstore: ") }
func (e *codecError) Unwrap() error { return e.err }

// marshal calls codec.Marshal, turning a panic into an error.
func marshal[T any](codec tiercache.Codec[T], v T) (b []byte, err error) {
	defer func() {
		if r := recover(); r != nil {
			b, err = nil, &tiercache.PanicError{Value: r, Stack: debug.Stack()}
		}
	}()
	return codec.Marshal(v)
}

// unmarshal calls codec.Unmarshal, turning a panic into an error.
func unmarshal[T any](codec tiercache.Codec[T], b []byte) (v T, err error) {
	defer func() {
		if r := recover(); r != nil {
			var zero T
			v, err = zero, &tiercache.PanicError{Value: r, Stack: debug.Stack()}
		}
	}()
	return codec.Unmarshal(b)
}
