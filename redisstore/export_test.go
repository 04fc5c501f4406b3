package redisstore

// QueuedGets returns the number of coalesced Gets of s waiting for a
// dispatcher, for tests that need a batch to have formed.
func QueuedGets[T any](s *Store[T]) int {
	if s.gets == nil {
		return 0
	}
	return len(s.gets.queue)
}

// QueuedWrites returns the number of coalesced writes of s waiting for a
// dispatcher.
func QueuedWrites[T any](s *Store[T]) int {
	if s.writes == nil {
		return 0
	}
	return len(s.writes.queue)
}
