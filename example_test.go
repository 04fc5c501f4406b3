package tiercache_test

import (
	"context"
	"fmt"
	"time"

	"github.com/tiercache/tiercache"
)

// memLayer is a map standing in for a real layer in the examples.
type memLayer map[string]tiercache.CacheValue[string]

func (m memLayer) read(_ context.Context, key string) (*tiercache.CacheValue[string], error) {
	v, ok := m[key]
	if !ok {
		return nil, nil // a miss is not an error
	}
	return &v, nil
}

// Read a key through L1 and, on a miss, L2.
func ExampleSequentialReadPolicy() {
	now := time.Now()
	l1 := memLayer{"user:1": {Data: "Ada", Expire: now.Add(time.Minute)}}
	l2 := memLayer{
		"user:1": {Data: "Ada", Expire: now.Add(time.Hour)},
		"user:2": {Data: "Grace", Expire: now.Add(time.Hour)},
	}
	var policy tiercache.SequentialReadPolicy[string]
	for _, key := range []string{"user:1", "user:2", "user:3"} {
		res, err := policy.Read(context.Background(), key, l1.read, l2.read, nil)
		if err != nil {
			fmt.Println("error:", err)
			continue
		}
		if res.Value == nil {
			fmt.Printf("%s: miss (L1 %v, L2 %v)\n", key, res.L1.Status, res.L2.Status)
			continue
		}
		fmt.Printf("%s: %s from %v (L1 %v, L2 %v)\n", key, res.Value.Data, res.Source, res.L1.Status, res.L2.Status)
	}
	// Output:
	// user:1: Ada from L1 (L1 hit, L2 not-run)
	// user:2: Grace from L2 (L1 miss, L2 hit)
	// user:3: miss (L1 miss, L2 miss)
}

// Parallel reads both layers and keeps the value that lives longer: here L2
// holds a fresher copy than L1.
func ExampleParallelReadPolicy() {
	now := time.Now()
	l1 := memLayer{"price": {Data: "10 EUR", Expire: now.Add(time.Second)}}
	l2 := memLayer{"price": {Data: "12 EUR", Expire: now.Add(time.Minute)}}
	res, err := tiercache.ParallelReadPolicy[string]{}.Read(context.Background(), "price", l1.read, l2.read, nil)
	if err != nil {
		panic(err)
	}
	fmt.Println(res.Value.Data, "from", res.Source)
	// Output:
	// 12 EUR from L2
}

// Race takes the first hit. The losing read is handed to the OffloadPool to
// finish in the background instead of being cancelled.
func ExampleRaceReadPolicy() {
	pool := tiercache.NewOffloadPool(tiercache.OffloadOptions{MaxConcurrent: 8})
	defer pool.Close(context.Background())

	slowL1 := func(ctx context.Context, key string) (*tiercache.CacheValue[string], error) {
		select {
		case <-time.After(50 * time.Millisecond): // a stalled L1
			return &tiercache.CacheValue[string]{Data: "from L1"}, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	l2 := memLayer{"k": {Data: "from L2"}}
	policy := tiercache.RaceReadPolicy[string]{Loser: tiercache.LoserOffload}
	res, err := policy.Read(context.Background(), "k", slowL1, l2.read, pool)
	if err != nil {
		panic(err)
	}
	fmt.Println(res.Value.Data, "| L1:", res.L1.Status, "| L2:", res.L2.Status)
	// Output:
	// from L2 | L1: abandoned | L2: hit
}

// TTL, Expired and IsStale take the current time, so the clock is read once.
func ExampleCacheValue() {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	v := tiercache.CacheValue[string]{
		Data:   "report",
		Stale:  now.Add(-time.Minute), // due for a refresh
		Expire: now.Add(9 * time.Minute),
	}
	ttl, expires := v.TTL(now)
	fmt.Println(ttl, expires, v.IsStale(now), v.Expired(now))
	// Output:
	// 9m0s true true false
}
