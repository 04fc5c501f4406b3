package redisstore

import (
	"testing"
	"time"

	"github.com/tiercache/tiercache"
)

// benchUser is a struct value of about 200 bytes in JSON.
type benchUser struct {
	ID      int64    `json:"id"`
	Name    string   `json:"name"`
	Email   string   `json:"email"`
	Roles   []string `json:"roles"`
	Active  bool     `json:"active"`
	Balance float64  `json:"balance"`
	Bio     string   `json:"bio"`
}

var benchValue = tiercache.CacheValue[benchUser]{
	Data: benchUser{
		ID: 42, Name: "Ada Lovelace", Email: "ada@example.com", Roles: []string{"admin", "analyst"},
		Active: true, Balance: 1815.12, Bio: "Wrote the first algorithm intended for a machine; saw that it could do more than arithmetic.",
	},
	Expire: time.Now().Add(time.Hour),
	Stale:  time.Now().Add(time.Minute),
}

// BenchmarkEncode encodes benchValue into an entry (layer=entry: header and
// JSON payload) beside the JSON codec alone (layer=codec).
func BenchmarkEncode(b *testing.B) {
	codec := JSONCodec[benchUser]{}
	b.Run("layer=codec", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := codec.Marshal(benchValue.Data); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("layer=entry", func(b *testing.B) {
		b.ReportAllocs()
		var n int
		for b.Loop() {
			h, err := headerOf(&benchValue)
			if err != nil {
				b.Fatal(err)
			}
			e, err := encodeEntry[benchUser](codec, h, &benchValue)
			if err != nil {
				b.Fatal(err)
			}
			n = len(e)
		}
		b.ReportMetric(float64(n), "entry-bytes")
	})
}

// BenchmarkDecode decodes the entry of benchValue (layer=entry) beside the
// JSON codec alone (layer=codec).
func BenchmarkDecode(b *testing.B) {
	codec := JSONCodec[benchUser]{}
	h, err := headerOf(&benchValue)
	if err != nil {
		b.Fatal(err)
	}
	entry, err := encodeEntry[benchUser](codec, h, &benchValue)
	if err != nil {
		b.Fatal(err)
	}
	payload := entry[h.size():]
	b.Run("layer=codec", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := codec.Unmarshal(payload); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("layer=entry", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := decodeEntry[benchUser](codec, entry); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkJSONCodec decodes and encodes benchValue's Data with the
// Store's default codec (codec=redisstore, JSONCodec) beside
// encoding/json's (codec=tiercache, tiercache.JSONCodec), which writes the
// same bytes. Compare with benchstat -col /codec.
func BenchmarkJSONCodec(b *testing.B) {
	raw, err := tiercache.JSONCodec[benchUser]{}.Marshal(benchValue.Data)
	if err != nil {
		b.Fatal(err)
	}
	for _, c := range []struct {
		name  string
		codec tiercache.Codec[benchUser]
	}{
		{"codec=tiercache", tiercache.JSONCodec[benchUser]{}},
		{"codec=redisstore", JSONCodec[benchUser]{}},
	} {
		b.Run("op=decode/"+c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := c.codec.Unmarshal(raw); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("op=encode/"+c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := c.codec.Marshal(benchValue.Data); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
