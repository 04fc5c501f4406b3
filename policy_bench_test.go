package tiercache_test

import (
	"context"
	"testing"
	"time"

	"github.com/tiercache/tiercache"
)

// The policy benchmarks use instant in-memory readers, so that they measure
// the policies' own cost. Beside them run hand-written floors: the least work
// any policy of that shape can do.

var (
	benchL1Value = &tiercache.CacheValue[string]{Data: "l1", Expire: time.Now().Add(24 * time.Hour)}
	benchL2Value = &tiercache.CacheValue[string]{Data: "l2", Expire: time.Now().Add(48 * time.Hour)}
	benchSink    *tiercache.CacheValue[string]
)

func benchHit(v *tiercache.CacheValue[string]) tiercache.ReadFunc[string] {
	return func(context.Context, string) (*tiercache.CacheValue[string], error) { return v, nil }
}

func benchMiss(context.Context, string) (*tiercache.CacheValue[string], error) { return nil, nil }

// floorSequential is the ideal sequential read on an L1 hit: call the
// reader, one clock read for the expiry check and one for the latency.
func floorSequential(ctx context.Context, key string, l1 tiercache.ReadFunc[string]) (*tiercache.CacheValue[string], time.Duration) {
	start := time.Now()
	v, err := l1(ctx, key)
	now := time.Now()
	latency := now.Sub(start)
	if err != nil || v == nil || v.Expired(now) {
		return nil, latency
	}
	return v, latency
}

type floorOutcome struct {
	v   *tiercache.CacheValue[string]
	err error
}

// floorParallel is the ideal parallel read: L1 on the caller's goroutine, L2
// on one new goroutine, one channel to join.
func floorParallel(ctx context.Context, key string, l1, l2 tiercache.ReadFunc[string]) *tiercache.CacheValue[string] {
	ch := make(chan floorOutcome, 1)
	go func() {
		v, err := l2(ctx, key)
		ch <- floorOutcome{v, err}
	}()
	v1, err1 := l1(ctx, key)
	o := <-ch
	if err1 == nil && v1 != nil && (o.v == nil || !v1.Expire.Before(o.v.Expire)) {
		return v1
	}
	return o.v
}

func BenchmarkReadPolicy(b *testing.B) {
	ctx := context.Background()
	l1Hit, l2Hit := benchHit(benchL1Value), benchHit(benchL2Value)
	pool := tiercache.NewOffloadPool(tiercache.OffloadOptions{})
	b.Cleanup(func() { _ = pool.Close(context.Background()) })

	b.Run("impl=floor-sequential/l1=hit", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			benchSink, _ = floorSequential(ctx, "k", l1Hit)
		}
	})
	policies := []struct {
		name   string
		policy tiercache.ReadPolicy[string]
		off    tiercache.Offload
	}{
		{"sequential", tiercache.SequentialReadPolicy[string]{}, nil},
		{"parallel", tiercache.ParallelReadPolicy[string]{}, nil},
		{"race-cancel", tiercache.RaceReadPolicy[string]{Loser: tiercache.LoserCancel}, nil},
		{"race-offload", tiercache.RaceReadPolicy[string]{}, pool},
	}
	for _, p := range policies {
		b.Run("impl="+p.name+"/l1=hit", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				res, _ := p.policy.Read(ctx, "k", l1Hit, l2Hit, p.off)
				benchSink = res.Value
			}
		})
	}
	b.Run("impl=floor-parallel/l1=hit", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			benchSink = floorParallel(ctx, "k", l1Hit, l2Hit)
		}
	})
	for _, p := range policies {
		b.Run("impl="+p.name+"/l1=miss", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				res, _ := p.policy.Read(ctx, "k", benchMiss, l2Hit, p.off)
				benchSink = res.Value
			}
		})
	}
	b.Run("impl=floor-parallel/l1=miss", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			benchSink = floorParallel(ctx, "k", benchMiss, l2Hit)
		}
	})
}
