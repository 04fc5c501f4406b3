package tiercache

import "time"

// CacheValue is what every layer stores for a key: the data and the instants
// that govern its life.
//
// The zero Expire and Stale mean "never". Times are compared as exact
// instants; methods take the current time as a parameter so that callers read
// the clock once and tests can pass any instant.
type CacheValue[T any] struct {
	// Data is the cached value. It is the zero value when Negative is set.
	Data T
	// Expire is the instant the value stops existing. Zero: never expires.
	Expire time.Time
	// Stale is the instant past which the value is still served but is due
	// for a refresh. Zero: never stale.
	Stale time.Time
	// Negative marks a remembered absence (a negative-cache entry): the
	// origin said there is no such thing, and that answer is cached.
	Negative bool
}

// TTL returns the time left until Expire. The boolean is false when the value
// never expires; once Expire has passed it returns (0, true).
func (v CacheValue[T]) TTL(now time.Time) (time.Duration, bool) {
	if v.Expire.IsZero() {
		return 0, false
	}
	left := v.Expire.Sub(now)
	if left < 0 {
		left = 0
	}
	return left, true
}

// Expired reports whether Expire is set and not after now. An expired value
// is never returned by a read policy.
func (v CacheValue[T]) Expired(now time.Time) bool {
	return !v.Expire.IsZero() && !v.Expire.After(now)
}

// IsStale reports whether Stale is set and not after now.
func (v CacheValue[T]) IsStale(now time.Time) bool {
	return !v.Stale.IsZero() && !v.Stale.After(now)
}
