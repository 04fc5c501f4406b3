package redisstore

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
)

// decodeAll decodes every message of a batch and returns the keys in order,
// with their subscriptions.
func decodeAll(t testing.TB, origin uint64, msgs []outMessage) []pendingKey {
	t.Helper()
	var got []pendingKey
	for _, m := range msgs {
		d, err := decodeMessage(string(m.payload))
		if err != nil {
			t.Fatalf("decoding an encoded message: %v", err)
		}
		if d.origin != origin || d.flush {
			t.Fatalf("decoded origin %x flush %v; want %x, false", d.origin, d.flush, origin)
		}
		n := 0
		for _, g := range d.groups {
			for _, k := range g.keys {
				got = append(got, pendingKey{sub: g.sub, key: k})
				n++
			}
		}
		if n != m.n {
			t.Fatalf("a message of %d keys decodes to %d", m.n, n)
		}
	}
	return got
}

func TestMessageRoundTrip(t *testing.T) {
	many := make([]pendingKey, 5000)
	for i := range many {
		many[i] = pendingKey{sub: uint64(i % 3), key: fmt.Sprintf("key:%032d", i)}
	}
	tests := []struct {
		name    string
		keys    []pendingKey
		minMsgs int
	}{
		{"one key", []pendingKey{{1, "k"}}, 1},
		{"empty key", []pendingKey{{1, ""}}, 1},
		{"several subscriptions", []pendingKey{{2, "a"}, {1, "b"}, {2, "c"}, {300, "d"}}, 1},
		{"unicode and binary", []pendingKey{{1, "ключ"}, {1, "\x00\xff\xc1\x49"}, {1, strings.Repeat("é", 200)}}, 1},
		{"large subscription id", []pendingKey{{1<<64 - 1, "k"}}, 1},
		{"split", many, 3},
		{"a key larger than a message", []pendingKey{{1, "a"}, {1, strings.Repeat("x", maxMessageBytes*2)}, {1, "b"}}, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			const origin = 0x0102030405060708
			want := slices.Clone(tt.keys)
			slices.SortStableFunc(want, func(a, b pendingKey) int { return cmp.Compare(a.sub, b.sub) })
			msgs := encodeKeys(origin, slices.Clone(tt.keys))
			if len(msgs) < tt.minMsgs {
				t.Fatalf("%d messages, want at least %d", len(msgs), tt.minMsgs)
			}
			for _, m := range msgs {
				if len(m.payload) > maxMessageBytes && m.n > 1 {
					t.Fatalf("a message of %d keys is %d bytes, above %d", m.n, len(m.payload), maxMessageBytes)
				}
			}
			if got := decodeAll(t, origin, msgs); !slices.Equal(got, want) {
				t.Fatalf("round trip: got %d keys, want %d (or in another order)", len(got), len(want))
			}
		})
	}
}

func TestFlushMessage(t *testing.T) {
	m, err := decodeMessage(string(encodeFlush(42)))
	if err != nil || !m.flush || m.origin != 42 || len(m.groups) != 0 {
		t.Fatalf("decode(encodeFlush(42)) = %+v, %v", m, err)
	}
}

func TestDecodeMessageRefuses(t *testing.T) {
	header := string(appendMsgHeader(nil, 7, msgKindKeys))
	tests := []struct {
		name    string
		payload string
		want    error
	}{
		{"empty", "", errMalformed},
		{"text", "hello", errMalformed},
		{"an entry of the store", "\xC1\x54\x01\x00payload", errMalformed},
		{"magic only", "\xC1\x49", errMalformed},
		{"version 0", "\xC1\x49\x00\x01" + header[4:], errMalformed},
		{"version 2", "\xC1\x49\x02", errNewerVersion},
		{"version 255", "\xC1\x49\xff\x01anything", errNewerVersion},
		{"truncated origin", header[:11], errMalformed},
		{"no group", header, errMalformed},
		{"kind 0", "\xC1\x49\x01\x00" + header[4:] + "\x01\x01\x01k", errMalformed},
		{"kind 3", "\xC1\x49\x01\x03" + header[4:] + "\x01\x01\x01k", errMalformed},
		{"flush with a group", string(encodeFlush(7)) + "\x01\x01\x01k", errMalformed},
		{"group without keys", header + "\x01\x00", errMalformed},
		{"count above the bytes left", header + "\x01\x03\x01k", errMalformed},
		{"length above the bytes left", header + "\x01\x01\x05k", errMalformed},
		{"missing count", header + "\x01", errMalformed},
		{"truncated uvarint", header + "\x80", errMalformed},
		{"overlong uvarint", header + "\x81\x00\x01\x01k", errMalformed},
		{"uvarint above 64 bits", header + "\xff\xff\xff\xff\xff\xff\xff\xff\xff\x02\x01\x01k", errMalformed},
		{"trailing byte after a group", header + "\x01\x01\x01k\x01", errMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := decodeMessage(tt.payload)
			if !errors.Is(err, tt.want) {
				t.Fatalf("decode: %+v, %v; want %v", m, err, tt.want)
			}
		})
	}
}

func TestReadUvarint(t *testing.T) {
	for _, x := range []uint64{0, 1, 127, 128, 300, 1<<32 - 1, 1<<63 + 5, 1<<64 - 1} {
		b := string(appendUvarintForTest(x))
		if len(b) != uvarintLen(x) {
			t.Fatalf("uvarintLen(%d) = %d, encoded in %d bytes", x, uvarintLen(x), len(b))
		}
		s := b + "rest"
		got, ok := readUvarint(&s)
		if !ok || got != x || s != "rest" {
			t.Fatalf("readUvarint(%q) = %d, %v, rest %q", b, got, ok, s)
		}
	}
}

func appendUvarintForTest(x uint64) []byte {
	var b []byte
	for x >= 0x80 {
		b = append(b, byte(x)|0x80)
		x >>= 7
	}
	return append(b, byte(x))
}

// FuzzMessageDecode feeds the message decoder with what anyone may publish
// on the channel:
//
//	go test -run '^$' -fuzz FuzzMessageDecode -fuzztime 60s
//
// Decoding never panics, fails only with errMalformed or errNewerVersion,
// and whatever decodes encodes back to the same keys; a message with its
// groups in order of subscription, each subscription once, encodes back to
// the same bytes.
func FuzzMessageDecode(f *testing.F) {
	f.Add(string(encodeFlush(1)))
	for _, m := range encodeKeys(0xfeedface, []pendingKey{{1, "a"}, {2, "bc"}, {2, ""}}) {
		f.Add(string(m.payload))
	}
	f.Add("\xC1\x49\x02")
	f.Add("hello")
	f.Fuzz(func(t *testing.T, payload string) {
		m, err := decodeMessage(payload)
		if err != nil {
			if !errors.Is(err, errMalformed) && !errors.Is(err, errNewerVersion) {
				t.Fatalf("unexpected error %v", err)
			}
			return
		}
		if m.flush {
			if string(encodeFlush(m.origin)) != payload {
				t.Fatalf("a flush does not encode back to its bytes")
			}
			return
		}
		var keys []pendingKey
		canonical := true
		for j, g := range m.groups {
			if j > 0 && g.sub <= m.groups[j-1].sub {
				canonical = false
			}
			for _, k := range g.keys {
				keys = append(keys, pendingKey{g.sub, k})
			}
		}
		want := slices.Clone(keys)
		slices.SortStableFunc(want, func(a, b pendingKey) int { return cmp.Compare(a.sub, b.sub) })
		msgs := encodeKeys(m.origin, keys)
		if got := decodeAll(t, m.origin, msgs); !slices.Equal(got, want) {
			t.Fatalf("the decoded keys do not encode back to themselves")
		}
		if canonical && len(msgs) == 1 && string(msgs[0].payload) != payload {
			t.Fatalf("a canonical message does not encode back to its bytes")
		}
	})
}
