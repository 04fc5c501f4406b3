package redisstore

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"
	"time"

	"github.com/tiercache/tiercache"
)

// FuzzDecode feeds bytes to the decoder, as a hostile or corrupt Redis
// would. The seed corpus is in testdata/fuzz/FuzzDecode: entries of every
// flag combination, truncated ones, foreign values, a future version.
//
//	go test -run '^$' -fuzz FuzzDecode -fuzztime 60s
//
// It checks that decoding never panics; that whatever decodes encodes back
// to the same bytes (the format has one encoding per value); and, reading
// the same bytes as a recipe for a valid value, that decode(encode(v)) == v.
func FuzzDecode(f *testing.F) {
	f.Add([]byte{0xC1, 0x54, 1, 0x02, 0, 0, 1, 0x9a, 0xc0, 0x5b, 0x2a, 0x00, '"', 'x', '"'})
	f.Fuzz(func(t *testing.T, data []byte) {
		// Whatever the bytes, decoding returns a value or an error.
		v, err := decodeEntry[[]byte](bytesCodec{}, data)
		if err != nil {
			if !errors.Is(err, ErrInvalidEntry) {
				t.Fatalf("decode error %v does not wrap ErrInvalidEntry", err)
			}
		} else {
			h, err := headerOf(&v)
			if err != nil {
				t.Fatalf("a decoded value does not encode: %v", err)
			}
			again, err := encodeEntry[[]byte](bytesCodec{}, h, &v)
			if err != nil {
				t.Fatalf("a decoded value does not encode: %v", err)
			}
			if !bytes.Equal(again, data) {
				t.Fatalf("decode then encode changed the entry\n got % x\nwant % x", again, data)
			}
		}
		// The real codecs must fail cleanly too.
		_, _ = decodeEntry[string](tiercache.JSONCodec[string]{}, data)
		_, _ = decodeEntry[map[string]any](tiercache.JSONCodec[map[string]any]{}, data)

		// The bytes as a recipe for a valid value: flags, Expire, Stale, a
		// sub-millisecond part, then Data.
		want := recipe(data)
		h, err := headerOf(&want)
		if err != nil {
			return // an instant outside the range an entry holds
		}
		b, err := encodeEntry[[]byte](bytesCodec{}, h, &want)
		if err != nil {
			t.Fatalf("encode %+v: %v", want, err)
		}
		got, err := decodeEntry[[]byte](bytesCodec{}, b)
		if err != nil {
			t.Fatalf("decode(encode(%+v)): %v", want, err)
		}
		if !want.Expire.IsZero() {
			want.Expire = time.UnixMilli(want.Expire.UnixMilli())
		}
		if !want.Stale.IsZero() {
			want.Stale = time.UnixMilli(want.Stale.UnixMilli())
		}
		if want.Negative {
			want.Data = nil
		}
		if !bytes.Equal(got.Data, want.Data) || got.Negative != want.Negative ||
			!got.Expire.Equal(want.Expire) || got.Expire.IsZero() != want.Expire.IsZero() ||
			!got.Stale.Equal(want.Stale) || got.Stale.IsZero() != want.Stale.IsZero() {
			t.Fatalf("decode(encode(v)) = %+v, want %+v", got, want)
		}
	})
}

// recipe reads a CacheValue out of data: a flags byte (bit 0 negative, bit
// 1 Expire, bit 2 Stale), 8 bytes of Expire and 8 of Stale in unix ms, 2
// bytes of nanoseconds added to both, and the rest as Data.
func recipe(data []byte) tiercache.CacheValue[[]byte] {
	take := func(n int) []byte {
		b := make([]byte, n)
		m := copy(b, data)
		data = data[m:]
		return b
	}
	flags := take(1)[0]
	expire := int64(binary.BigEndian.Uint64(take(8)))
	stale := int64(binary.BigEndian.Uint64(take(8)))
	sub := time.Duration(binary.BigEndian.Uint16(take(2))) * 13 * time.Microsecond // < 1 s
	v := tiercache.CacheValue[[]byte]{Data: data, Negative: flags&1 != 0}
	if flags&2 != 0 {
		v.Expire = time.UnixMilli(expire).Add(sub)
	}
	if flags&4 != 0 {
		v.Stale = time.UnixMilli(stale).Add(sub)
	}
	return v
}
