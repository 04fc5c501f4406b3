package otterstore_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/tiercache/tiercache"
	"github.com/tiercache/tiercache/otterstore"
)

// batchSize is the number of keys the batch benchmarks read per operation.
const batchSize = 100

// BenchmarkGetMany reads 100 keys, every one a hit, with one GetMany
// (impl=GetMany) and with 100 Gets in a row (impl=Get-x100); one op is the
// 100 keys. Compare with benchstat -col /impl.
func BenchmarkGetMany(b *testing.B) {
	for _, e := range []struct {
		name   string
		expire time.Time
	}{
		{"none", time.Time{}},
		{"set", time.Now().Add(time.Hour)},
	} {
		s, err := otterstore.New[string](nil)
		if err != nil {
			b.Fatal(err)
		}
		ctx := context.Background()
		keys := make([]string, benchKeys)
		values := make([]tiercache.CacheValue[string], benchKeys)
		for i := range keys {
			keys[i] = fmt.Sprintf("user:%d", i)
			values[i] = tiercache.CacheValue[string]{Data: "Ada Lovelace", Expire: e.expire}
		}
		if err := s.SetMany(ctx, keys, values); err != nil {
			b.Fatal(err)
		}
		s.CleanUp()
		b.Run(fmt.Sprintf("expire=%s/impl=GetMany", e.name), func(b *testing.B) {
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				start := i % (benchKeys / batchSize) * batchSize
				got, err := s.GetMany(ctx, keys[start:start+batchSize])
				if err != nil || got[batchSize-1] == nil {
					b.Fatal("miss", err)
				}
				i++
			}
		})
		b.Run(fmt.Sprintf("expire=%s/impl=Get-x100", e.name), func(b *testing.B) {
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				start := i % (benchKeys / batchSize) * batchSize
				for _, key := range keys[start : start+batchSize] {
					if v, err := s.Get(ctx, key); err != nil || v == nil {
						b.Fatal("miss", err)
					}
				}
				i++
			}
		})
		_ = s.Close()
	}
}
