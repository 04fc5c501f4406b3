package otterstore

import "time"

// CleanUp runs otter's pending maintenance (evictions, expirations) now,
// so that tests can observe the bounds without waiting for it.
func (s *Store[T]) CleanUp() { s.cache.CleanUp() }

// Maximum returns the bound otter was given: entries, or weight.
func (s *Store[T]) Maximum() uint64 { return s.cache.GetMaximum() }

// Weight returns the total weight otter counts, 0 for a store bounded by
// entry count.
func (s *Store[T]) Weight() uint64 { return s.cache.WeightedSize() }

// HoldsRaw reports whether otter still holds key, whatever its Expire.
func (s *Store[T]) HoldsRaw(key string) bool {
	_, ok := s.cache.GetIfPresent(key)
	return ok
}

// ExtendOtterExpiry moves otter's own deadline for key d from now, leaving
// the value's Expire as it is: the entry then outlives its Expire in otter.
func (s *Store[T]) ExtendOtterExpiry(key string, d time.Duration) {
	s.cache.SetExpiresAfter(key, d)
}

// StepWallClock makes the Store's wall clock read d ahead of its monotonic
// clock, as after a step of the system clock by d since New (or a machine
// suspended for d). Call it while no Set or SetMany runs.
func (s *Store[T]) StepWallClock(d time.Duration) {
	s.clock.wall = func() time.Time { return time.Now().Add(d) }
}
