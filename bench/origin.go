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
// returns the Product a key names. It counts its calls, and per key when
// tracking is on. It is safe for concurrent use.
type Origin struct {
	delay time.Duration
	calls atomic.Int64

	mu     sync.Mutex
	perKey map[string]int // nil unless tracking
}

// newOrigin returns an Origin whose loads take delay.
func newOrigin(delay time.Duration) *Origin { return &Origin{delay: delay} }

// Load returns the Product of key, a key made by productKey, after the
// origin's delay, or ctx's error if ctx ends first.
func (o *Origin) Load(ctx context.Context, key string) (Product, error) {
	o.calls.Add(1)
	o.mu.Lock()
	if o.perKey != nil {
		o.perKey[key]++
	}
	o.mu.Unlock()
	id, err := productID(key)
	if err != nil {
		return Product{}, err
	}
	t := time.NewTimer(o.delay)
	defer t.Stop()
	select {
	case <-t.C:
		return newProduct(id, 1), nil
	case <-ctx.Done():
		return Product{}, ctx.Err()
	}
}

// Calls returns the number of loads so far.
func (o *Origin) Calls() int64 { return o.calls.Load() }

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
