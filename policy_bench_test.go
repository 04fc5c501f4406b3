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

// floorRace is the least a race that reads each layer on its own goroutine
// can cost: two goroutines and one channel to join the first.
func floorRace(ctx context.Context, key string, l1, l2 tiercache.ReadFunc[string]) *tiercache.CacheValue[string] {
	ch := make(chan floorOutcome, 2)
	read := func(r tiercache.ReadFunc[string]) {
		v, err := r(ctx, key)
		ch <- floorOutcome{v, err}
	}
	go read(l1)
	go read(l2)
	o := <-ch
	return o.v
}

// BenchmarkReadPolicy calls each policy through its concrete type, as the
// floors are called, so that no interface dispatch is counted on either
// side. Names are benchstat-friendly: impl=... and l1=hit|miss.
func BenchmarkReadPolicy(b *testing.B) {
	ctx := context.Background()
	l2Hit := benchHit(benchL2Value)
	pool := tiercache.NewOffloadPool(tiercache.OffloadOptions{})
	b.Cleanup(func() { _ = pool.Close(context.Background()) })
	var (
		sequential  tiercache.SequentialReadPolicy[string]
		parallel    tiercache.ParallelReadPolicy[string]
		raceCancel  = tiercache.RaceReadPolicy[string]{Loser: tiercache.LoserCancel}
		raceOffload tiercache.RaceReadPolicy[string]
	)
	for _, l1Case := range []struct {
		name string
		read tiercache.ReadFunc[string]
	}{{"hit", benchHit(benchL1Value)}, {"miss", benchMiss}} {
		l1 := l1Case.read
		run := func(impl string, f func()) {
			b.Run("impl="+impl+"/l1="+l1Case.name, func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					f()
				}
			})
		}
		run("floor-sequential", func() { benchSink, _ = floorSequential(ctx, "k", l1) })
		run("sequential", func() {
			res, _ := sequential.Read(ctx, "k", l1, l2Hit, nil)
			benchSink = res.Value
		})
		run("floor-parallel", func() { benchSink = floorParallel(ctx, "k", l1, l2Hit) })
		run("parallel", func() {
			res, _ := parallel.Read(ctx, "k", l1, l2Hit, nil)
			benchSink = res.Value
		})
		run("race-cancel", func() {
			res, _ := raceCancel.Read(ctx, "k", l1, l2Hit, nil)
			benchSink = res.Value
		})
		run("floor-race", func() { benchSink = floorRace(ctx, "k", l1, l2Hit) })
		run("race-offload", func() {
			res, _ := raceOffload.Read(ctx, "k", l1, l2Hit, pool)
			benchSink = res.Value
		})
	}
}

// BenchmarkReadPolicyInterface is the same sequential L1 hit called through
// the ReadPolicy interface, as a cache holding a policy calls it.
func BenchmarkReadPolicyInterface(b *testing.B) {
	ctx := context.Background()
	l1, l2 := benchHit(benchL1Value), benchHit(benchL2Value)
	var policy tiercache.ReadPolicy[string] = tiercache.SequentialReadPolicy[string]{}
	b.ReportAllocs()
	for b.Loop() {
		res, _ := policy.Read(ctx, "k", l1, l2, nil)
		benchSink = res.Value
	}
}
