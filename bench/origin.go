package main

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// originDelay is how long one origin load takes.
const originDelay = time.Millisecond

// Origin is the data source behind every cache: a load sleeps delay and
// returns the Product a key names, a batch load (LoadMany) sleeps delay
// once and returns the Products of every key it is asked for. It counts its
// calls and the keys they asked for, the loads of each key when tracking is
// on, and the calls made with a context of withPageLoads. It is safe for
// concurrent use.
type Origin struct {
	delay time.Duration
	calls atomic.Int64
	keys  atomic.Int64

	mu     sync.Mutex
	perKey map[string]int // nil unless tracking
}

// newOrigin returns an Origin whose loads take delay.
func newOrigin(delay time.Duration) *Origin { return &Origin{delay: delay} }

// Load returns the Product of key, a key made by productKey, after the
// origin's delay, or ctx's error if ctx ends first.
func (o *Origin) Load(ctx context.Context, key string) (Product, error) {
	o.count(ctx, key)
	id, err := productID(key)
	if err != nil {
		return Product{}, err
	}
	if err := o.wait(ctx); err != nil {
		return Product{}, err
	}
	return newProduct(id, 1), nil
}

// LoadMany returns the Products of keys, keys made by productKey, in one
// call: one delay for the whole batch (one query for a page's missing
// products), or ctx's error if ctx ends first. It counts one call and
// len(keys) keys.
func (o *Origin) LoadMany(ctx context.Context, keys []string) (map[string]Product, error) {
	o.count(ctx, keys...)
	ps := make(map[string]Product, len(keys))
	for _, key := range keys {
		id, err := productID(key)
		if err != nil {
			return nil, err
		}
		ps[key] = newProduct(id, 1)
	}
	if err := o.wait(ctx); err != nil {
		return nil, err
	}
	return ps, nil
}

// count counts one call, made with ctx, asking for keys.
func (o *Origin) count(ctx context.Context, keys ...string) {
	o.calls.Add(1)
	o.keys.Add(int64(len(keys)))
	if n, ok := ctx.Value(pageLoadsKey{}).(*atomic.Int64); ok {
		n.Add(1)
	}
	o.mu.Lock()
	if o.perKey != nil {
		for _, key := range keys {
			o.perKey[key]++
		}
	}
	o.mu.Unlock()
}

// wait waits for the origin's delay, or for ctx to end.
func (o *Origin) wait(ctx context.Context) error {
	t := time.NewTimer(o.delay)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Calls returns the number of calls so far, Load and LoadMany alike.
func (o *Origin) Calls() int64 { return o.calls.Load() }

// Keys returns the number of keys the calls so far asked for: one per Load,
// len(keys) per LoadMany.
func (o *Origin) Keys() int64 { return o.keys.Load() }

// pageLoadsKey is the context key of withPageLoads's counter.
type pageLoadsKey struct{}

// withPageLoads returns a copy of ctx carrying n, which every Origin call
// made with it, or with a context that keeps its values, adds one to: the
// origin calls of a page. A library loads with its caller's context (the
// values of the first caller, where callers share a load), so a call counts
// for the page that started it.
func withPageLoads(ctx context.Context, n *atomic.Int64) context.Context {
	return context.WithValue(ctx, pageLoadsKey{}, n)
}

// Track starts counting loads per key, from zero.
func (o *Origin) Track() {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.perKey = make(map[string]int)
}

// Untrack stops counting loads per key and returns the counts.
func (o *Origin) Untrack() map[string]int {
	o.mu.Lock()
	defer o.mu.Unlock()
	m := o.perKey
	o.perKey = nil
	return m
}

// productKey is the cache key of product id in a key space named space
// ("p" for the shared key space, "s" for the stampede's).
func productKey(space string, id int) string { return space + ":" + strconv.Itoa(id) }

// productID parses the id out of a key made by productKey.
func productID(key string) (int, error) {
	i := strings.IndexByte(key, ':')
	if i < 0 {
		return 0, fmt.Errorf("origin: key %q has no id", key)
	}
	id, err := strconv.Atoi(key[i+1:])
	if err != nil {
		return 0, fmt.Errorf("origin: key %q: %w", key, err)
	}
	return id, nil
}
