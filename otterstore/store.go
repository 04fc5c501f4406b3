package otterstore

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/maypok86/otter/v2"

	"github.com/tiercache/tiercache"
)

var _ tiercache.Backend[string] = (*Store[string])(nil)

// Store is a tiercache.Backend kept in process memory by otter: the L1 of a
// tiercache.Cache. Values are kept as they are, without serialization, and
// expire at their own Expire. Beyond the Backend methods it has Flush, Len
// and Close. It is safe for concurrent use. Create it with New and release
// it with Close.
type Store[T any] struct {
	cache  *otter.Cache[string, *entry[T]]
	clock  clock
	tasks  *tasks
	closed atomic.Bool
}

// entry is what a Store keeps in otter for a key: the value, which Get
// returns by pointer, and its Expire as a deadline of the Store's clock.
type entry[T any] struct {
	value    tiercache.CacheValue[T]
	deadline int64 // the clock's time at which value expires, or never
}

// New returns an empty Store configured by opts; nil opts means the
// defaults (see Options). It validates opts, returning an error prefixed
// "otterstore:", and never modifies *opts.
//
// The Store owns a goroutine that removes expired entries once a second, and
// starts short-lived ones for otter's maintenance; Close stops them.
func New[T any](opts *Options[T]) (*Store[T], error) {
	var o Options[T]
	if opts != nil {
		o = *opts
	}
	if err := o.validate(); err != nil {
		return nil, err
	}
	s := &Store[T]{clock: newClock(), tasks: &tasks{}}
	oo := &otter.Options[string, *entry[T]]{
		ExpiryCalculator: otter.ExpiryWritingFunc(s.expiresAfter),
		Executor:         s.tasks.run,
	}
	if o.Weigher != nil {
		weigh := o.Weigher
		oo.MaximumWeight = o.MaximumWeight
		oo.Weigher = func(key string, e *entry[T]) uint32 { return weigh(key, e.value) }
	} else {
		oo.MaximumSize = o.MaximumSize
		if oo.MaximumSize == 0 {
			oo.MaximumSize = DefaultMaximumSize
		}
	}
	c, err := otter.New(oo)
	if err != nil {
		return nil, fmt.Errorf("otterstore: %w", err)
	}
	s.cache = c
	return s, nil
}

// expiresAfter is how long otter keeps an entry: until the value's Expire,
// forever without one. A value that has expired since Set checked it lives
// a nanosecond, because otter reads a non-positive duration as "keep the
// previous deadline".
func (s *Store[T]) expiresAfter(e otter.Entry[string, *entry[T]]) time.Duration {
	if e.Value.deadline == never {
		return never
	}
	return max(time.Duration(e.Value.deadline-s.clock.now()), time.Nanosecond)
}

// Get returns the value stored for key, or (nil, nil) on a miss. A value
// whose Expire has passed is a miss, even before otter removes it.
//
// The returned value is the one the Store holds, shared with every other
// caller: it must not be modified (a tiercache.Cache never does). Get
// allocates nothing.
func (s *Store[T]) Get(ctx context.Context, key string) (*tiercache.CacheValue[T], error) {
	if err := s.check(ctx, "get", key); err != nil {
		return nil, err
	}
	e, ok := s.cache.GetIfPresent(key)
	if !ok || s.clock.passed(e.deadline) {
		return nil, nil
	}
	return &e.value, nil
}

// Set stores a copy of v for key, replacing any value the key had, until
// v.Expire (a zero Expire: until it is evicted for size). A value that has
// already expired is not stored, and the key's old value is removed.
func (s *Store[T]) Set(ctx context.Context, key string, v tiercache.CacheValue[T]) error {
	if err := s.check(ctx, "set", key); err != nil {
		return err
	}
	deadline := s.clock.deadline(v.Expire)
	if s.clock.passed(deadline) {
		s.cache.Invalidate(key)
		return nil
	}
	s.cache.Set(key, &entry[T]{value: v, deadline: deadline})
	return nil
}

// Delete removes key. A missing key is not an error.
func (s *Store[T]) Delete(ctx context.Context, key string) error {
	if err := s.check(ctx, "delete", key); err != nil {
		return err
	}
	s.cache.Invalidate(key)
	return nil
}

// Flush removes every entry.
func (s *Store[T]) Flush(ctx context.Context) error {
	if err := s.check(ctx, "flush", ""); err != nil {
		return err
	}
	s.cache.InvalidateAll()
	return nil
}

// Len returns the number of entries the Store holds, as otter estimates it:
// it may count expired entries that otter has not removed yet, and entries
// that otter's pending maintenance will evict for size.
func (s *Store[T]) Len() int {
	return s.cache.EstimatedSize()
}

// Close stops the Store's goroutines and waits for them to return. Every
// later Get, Set, Delete and Flush returns an error wrapping
// tiercache.ErrClosed. Close a Store after the tiercache.Cache that uses it.
// Close may be called again; it always returns nil (the error is there so
// that a Store is an io.Closer). A Store that is never closed still lets its
// goroutines end, within a second or so of the garbage collector reclaiming it.
func (s *Store[T]) Close() error {
	s.closed.Store(true)
	s.cache.StopAllGoroutines()
	s.tasks.close()
	return nil
}

// check refuses an operation whose ctx has ended or that comes after Close.
// The test that passes is small enough to be inlined into Get.
func (s *Store[T]) check(ctx context.Context, op, key string) error {
	if ctx.Err() == nil && !s.closed.Load() {
		return nil
	}
	return s.refusal(ctx, op, key)
}

// refusal is check's error; it names the key, if there is one.
func (s *Store[T]) refusal(ctx context.Context, op, key string) error {
	err := ctx.Err()
	if err == nil {
		err = tiercache.ErrClosed
	}
	if key == "" {
		return fmt.Errorf("otterstore: %s: %w", op, err)
	}
	return fmt.Errorf("otterstore: %s %q: %w", op, key, err)
}
