package otterstore

import (
	"context"
	"fmt"
	"math"

	"github.com/tiercache/tiercache"
)

var _ tiercache.BatchBackend[string] = (*Store[string])(nil)

// GetMany returns the values stored for keys, in a slice of len(keys) in
// the same order: the value of keys[i] at index i, nil for a miss. A value
// whose Expire has passed is a miss, as for Get; expiry is judged at one
// instant, read once during the call. A key may appear more than once.
//
// GetMany fails only as a whole, before reading anything: when ctx has
// already ended (an error wrapping ctx's error, for which errors.Is(err,
// ctx.Err()) holds) or after Close (tiercache.ErrClosed). The slice is then
// nil; otherwise the error is nil, so a nil entry is always a miss.
//
// As with Get, the values are the ones the Store holds, shared with every
// other caller, and must not be modified. GetMany allocates the returned
// slice and nothing else.
func (s *Store[T]) GetMany(ctx context.Context, keys []string) ([]*tiercache.CacheValue[T], error) {
	if err := s.check(ctx, "get many", ""); err != nil {
		return nil, err
	}
	values := make([]*tiercache.CacheValue[T], len(keys))
	now := int64(math.MinInt64) // the clock, read at the first entry that expires
	for i, key := range keys {
		e, ok := s.cache.GetIfPresent(key)
		if !ok {
			continue
		}
		if e.deadline != never {
			if now == math.MinInt64 {
				now = s.clock.now()
			}
			if now >= e.deadline {
				continue
			}
		}
		values[i] = &e.value
	}
	return values, nil
}

// SetMany stores values[i] under keys[i] for every i, as Set does: a copy
// of each value, until its Expire; a value that has already expired is not
// stored and removes the key's old value. When a key appears more than
// once, its last value wins.
//
// SetMany fails only as a whole, writing nothing: when keys and values
// differ in length, when ctx has already ended (an error for which
// errors.Is(err, ctx.Err()) holds) or after Close (tiercache.ErrClosed).
func (s *Store[T]) SetMany(ctx context.Context, keys []string, values []tiercache.CacheValue[T]) error {
	if len(keys) != len(values) {
		return fmt.Errorf("otterstore: set many: %d keys but %d values; nothing written", len(keys), len(values))
	}
	if err := s.check(ctx, "set many", ""); err != nil {
		return err
	}
	now := int64(math.MinInt64) // the clock, read at the first value that expires
	for i, key := range keys {
		deadline := s.clock.deadline(values[i].Expire)
		if deadline != never {
			if now == math.MinInt64 {
				now = s.clock.now()
			}
			if now >= deadline {
				s.cache.Invalidate(key)
				continue
			}
		}
		s.cache.Set(key, &entry[T]{value: values[i], deadline: deadline})
	}
	return nil
}
