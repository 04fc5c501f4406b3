package redisstore

// QueuedGets returns the number of coalesced Gets of s waiting for a
// dispatcher, for tests that need a batch to have formed.
func QueuedGets[T any](s *Store[T]) int {
	if s.gets == nil {
		return 0
	}
	return s.gets.queued()
}

// QueuedWrites returns the number of coalesced writes of s waiting for a
// dispatcher.
func QueuedWrites[T any](s *Store[T]) int {
	if s.writes == nil {
		return 0
	}
	return s.writes.queued()
}

// Coalescers returns the number of dispatchers s has for Gets and for
// writes (0: no coalescing).
func Coalescers[T any](s *Store[T]) (gets, writes int) {
	if s.gets != nil {
		gets = s.gets.max
	}
	if s.writes != nil {
		writes = s.writes.max
	}
	return gets, writes
}
