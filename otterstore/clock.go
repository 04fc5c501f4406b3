package otterstore

import (
	"math"
	"time"
)

// never is the deadline of a value that does not expire, and the lifetime
// otter gives it: otter takes math.MaxInt64 as "never expires".
const never = math.MaxInt64

// clock measures time as the monotonic time elapsed since the Store was
// made, so that Get's expiry check costs one read of the monotonic clock
// (time.Now reads the wall clock too) and one integer comparison.
//
// A deadline taken from an Expire made by time.Now, which carries a
// monotonic reading, falls exactly when Expire is no longer after
// time.Now(). One taken from an Expire with only a wall reading (one
// decoded from L2) falls when the wall clock reaches Expire as it read when
// the value was stored, however the wall clock has moved relative to the
// monotonic one before that (a step of the system clock, a suspended
// machine); a later step does not move it, as it does not move otter's own
// deadlines.
type clock struct {
	epoch time.Time
	// wall reads the wall clock: time.Now, which tests replace to step it.
	wall func() time.Time
}

func newClock() clock { return clock{epoch: time.Now(), wall: time.Now} }

// now returns the time elapsed since the epoch, in nanoseconds.
func (c clock) now() int64 { return int64(time.Since(c.epoch)) }

// passed reports whether deadline has come. It reads the clock only for a
// deadline that is not never.
func (c clock) passed(deadline int64) bool {
	return deadline != never && c.now() >= deadline
}

// deadline returns the time of the clock (see now) at which expire comes:
// never for the zero Expire, and for an Expire more than about 292 years
// away. It reads the clock only for an Expire without a monotonic reading.
func (c clock) deadline(expire time.Time) int64 {
	if expire.IsZero() {
		return never
	}
	if expire == expire.Round(0) { // no monotonic reading, which Round strips
		return c.wallDeadline(expire)
	}
	return int64(expire.Sub(c.epoch)) // saturated: math.MaxInt64 far in the future
}

// wallDeadline is deadline for an Expire without a monotonic reading. Only
// the wall clock relates it to now, and the epoch's wall reading is as old
// as the Store, so it reads both clocks: the monotonic one first, so that a
// delay between the reads brings the deadline forward, never back.
func (c clock) wallDeadline(expire time.Time) int64 {
	now := c.now()
	left := int64(expire.Sub(c.wall())) // saturated, as is the sum
	if left > math.MaxInt64-now {
		return never
	}
	return now + left
}
