package tiercache

import "context"

// Backend is one layer of a Cache: an in-process store for L1, a shared one
// (Redis) for L2.
//
// Implementations must be safe for concurrent use and honour ctx: the Cache
// gives every operation the layer's timeout as a deadline, and a timed-out
// operation counts as that layer's failure. The backendtest package checks
// an implementation against this contract.
type Backend[T any] interface {
	// Get returns the value stored for key, or (nil, nil) on a miss. It
	// never returns a value whose Expire has passed.
	Get(ctx context.Context, key string) (*CacheValue[T], error)
	// Set stores v for key as given: Data, Expire, Stale and Negative.
	Set(ctx context.Context, key string, v CacheValue[T]) error
	// Delete removes key. A missing key is not an error.
	Delete(ctx context.Context, key string) error
}
