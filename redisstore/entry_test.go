package redisstore

import (
	"bytes"
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/tiercache/tiercache"
)

// bytesCodec stores []byte as is: the entry is then a pure function of the
// value, which lets the tests compare bytes.
type bytesCodec struct{}

func (bytesCodec) Marshal(v []byte) ([]byte, error)   { return v, nil }
func (bytesCodec) Unmarshal(b []byte) ([]byte, error) { return bytes.Clone(b), nil }

func TestEntryRoundTrip(t *testing.T) {
	at := time.Date(2025, 11, 27, 3, 4, 5, 678_901_234, time.UTC)
	for _, c := range []struct {
		name string
		v    tiercache.CacheValue[string]
		size int // header size
	}{
		{"data only", tiercache.CacheValue[string]{Data: "plain"}, 4},
		{"empty data", tiercache.CacheValue[string]{}, 4},
		{"expire", tiercache.CacheValue[string]{Data: "x", Expire: at}, 12},
		{"stale", tiercache.CacheValue[string]{Data: "x", Stale: at}, 12},
		{"expire and stale", tiercache.CacheValue[string]{Data: "x", Expire: at, Stale: at.Add(-time.Hour)}, 20},
		{"negative", tiercache.CacheValue[string]{Negative: true}, 4},
		{"negative expire", tiercache.CacheValue[string]{Negative: true, Expire: at}, 12},
		{"negative stale", tiercache.CacheValue[string]{Negative: true, Stale: at}, 12},
		{"negative expire and stale", tiercache.CacheValue[string]{Negative: true, Expire: at, Stale: at}, 20},
		{"before 1970", tiercache.CacheValue[string]{Data: "old", Expire: time.Date(1901, 1, 1, 0, 0, 0, 500_000, time.UTC)}, 12},
		{"unix epoch", tiercache.CacheValue[string]{Data: "epoch", Expire: time.Unix(0, 0), Stale: time.Unix(0, 999_999)}, 20},
		{"range ends", tiercache.CacheValue[string]{Data: "far", Expire: maxEntryTime, Stale: minEntryTime}, 20},
	} {
		t.Run(c.name, func(t *testing.T) {
			h, err := headerOf(&c.v)
			if err != nil {
				t.Fatal(err)
			}
			b, err := encodeEntry[string](tiercache.JSONCodec[string]{}, h, &c.v)
			if err != nil {
				t.Fatal(err)
			}
			if h.size() != c.size {
				t.Errorf("header size %d, want %d", h.size(), c.size)
			}
			if c.v.Negative && len(b) != c.size {
				t.Errorf("negative entry of %d bytes, want the %d-byte header alone", len(b), c.size)
			}
			got, err := decodeEntry[string](tiercache.JSONCodec[string]{}, b)
			if err != nil {
				t.Fatal(err)
			}
			want := c.v
			if !want.Expire.IsZero() {
				want.Expire = time.UnixMilli(want.Expire.UnixMilli())
			}
			if !want.Stale.IsZero() {
				want.Stale = time.UnixMilli(want.Stale.UnixMilli())
			}
			if msg := diffValues(got, want); msg != "" {
				t.Error(msg)
			}
			if want.Expire.IsZero() != got.Expire.IsZero() || want.Stale.IsZero() != got.Stale.IsZero() {
				t.Error("a zero instant did not round-trip as zero, or the reverse")
			}
		})
	}
}

// diffValues says how got differs from want, or "".
func diffValues[T comparable](got, want tiercache.CacheValue[T]) string {
	var d []string
	if got.Data != want.Data {
		d = append(d, "Data")
	}
	if !got.Expire.Equal(want.Expire) {
		d = append(d, "Expire: got "+got.Expire.String()+", want "+want.Expire.String())
	}
	if !got.Stale.Equal(want.Stale) {
		d = append(d, "Stale: got "+got.Stale.String()+", want "+want.Stale.String())
	}
	if got.Negative != want.Negative {
		d = append(d, "Negative")
	}
	return strings.Join(d, "; ")
}

func TestEntryLayout(t *testing.T) {
	v := tiercache.CacheValue[[]byte]{Data: []byte("payload"), Expire: time.UnixMilli(0x0102030405060708), Stale: time.UnixMilli(-2), Negative: false}
	h, err := headerOf(&v)
	if err != nil {
		t.Fatal(err)
	}
	b, err := encodeEntry[[]byte](bytesCodec{}, h, &v)
	if err != nil {
		t.Fatal(err)
	}
	want := []byte{
		0xC1, 0x54, // magic
		1,                      // version
		0x06,                   // has Expire, has Stale
		1, 2, 3, 4, 5, 6, 7, 8, // Expire
		0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe, // Stale: -2
		'p', 'a', 'y', 'l', 'o', 'a', 'd',
	}
	if !bytes.Equal(b, want) {
		t.Fatalf("entry\n got % x\nwant % x", b, want)
	}
}

func TestParseHeaderErrors(t *testing.T) {
	for _, c := range []struct {
		name string
		b    []byte
		want string
	}{
		{"nil", nil, "no magic bytes"},
		{"one byte", []byte{0xC1}, "no magic bytes"},
		{"wrong magic", []byte{0xC1, 0x55, 1, 0}, "no magic bytes"},
		{"JSON", []byte(`"text"`), "no magic bytes"},
		{"magic only", []byte{0xC1, 0x54}, "truncated header"},
		{"no flags", []byte{0xC1, 0x54, 1}, "truncated header"},
		{"version 0", []byte{0xC1, 0x54, 0, 0}, "unknown format version 0"},
		{"version 2", []byte{0xC1, 0x54, 2, 0}, "format version 2 is newer than this redisstore reads (1)"},
		{"reserved flag", []byte{0xC1, 0x54, 1, 0x80}, "unknown flags 0x80"},
		{"expire truncated", []byte{0xC1, 0x54, 1, 0x02, 1, 2, 3, 4, 5, 6, 7}, "truncated header (11 bytes, flags need 12)"},
		{"stale truncated", append([]byte{0xC1, 0x54, 1, 0x06}, make([]byte, 15)...), "truncated header (19 bytes, flags need 20)"},
		{"negative with payload", []byte{0xC1, 0x54, 1, 0x01, 'x'}, "negative entry with a 1-byte payload"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, _, err := parseHeader(c.b)
			if !errors.Is(err, ErrInvalidEntry) {
				t.Fatalf("got %v, want an error wrapping ErrInvalidEntry", err)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %q, want it to say %q", err, c.want)
			}
		})
	}
}

func TestEncodeTimeOutOfRange(t *testing.T) {
	for _, c := range []struct {
		name string
		v    tiercache.CacheValue[string]
		want string
	}{
		{"expire after", tiercache.CacheValue[string]{Expire: maxEntryTime.Add(time.Millisecond)}, "expire: "},
		{"expire before", tiercache.CacheValue[string]{Expire: minEntryTime.Add(-time.Nanosecond)}, "expire: "},
		{"stale after", tiercache.CacheValue[string]{Stale: time.Unix(math.MaxInt64/1000+1, 0)}, "stale: "},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := headerOf(&c.v)
			if err == nil || !strings.HasPrefix(err.Error(), c.want) {
				t.Fatalf("got %v, want an error starting %q", err, c.want)
			}
		})
	}
}

type panicCodec struct{ value any }

func (c panicCodec) Marshal(string) ([]byte, error)   { panic(c.value) }
func (c panicCodec) Unmarshal([]byte) (string, error) { panic(c.value) }

func TestCodecPanicsContained(t *testing.T) {
	boom := errors.New("boom")
	for _, value := range []any{"text", boom, nil} {
		codec := panicCodec{value}
		v := tiercache.CacheValue[string]{Data: "x"}
		h, _ := headerOf(&v)
		_, err := encodeEntry[string](codec, h, &v)
		var pe *tiercache.PanicError
		if !errors.As(err, &pe) {
			t.Fatalf("encode with a codec panicking with %v: %v, want a *tiercache.PanicError", value, err)
		}
		if value == boom && !errors.Is(err, boom) {
			t.Errorf("the panic's error is not found in %v", err)
		}
		_, err = decodeEntry[string](codec, []byte{0xC1, 0x54, 1, 0, 'x'})
		if !errors.As(err, &pe) || !errors.Is(err, ErrInvalidEntry) {
			t.Fatalf("decode with a codec panicking with %v: %v, want a *tiercache.PanicError and ErrInvalidEntry", value, err)
		}
	}
}
