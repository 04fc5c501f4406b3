package main

import (
	"context"
	"errors"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/viccon/sturdyc"
)

// sturdycStorage is a sturdyc.DistributedStorage kept in Redis: one string
// per key, written with the cache's TTL (sturdyc leaves expiry to the
// storage). The interface returns no errors: a failed read is a miss and a
// failed write is dropped, both counted in failures.
type sturdycStorage struct {
	client   redis.Cmdable
	ttl      time.Duration
	failures atomic.Uint64
}

var _ sturdyc.DistributedStorage = (*sturdycStorage)(nil)

func newSturdycStorage(client redis.Cmdable, ttl time.Duration) *sturdycStorage {
	return &sturdycStorage{client: client, ttl: ttl}
}

// Get is one GET; a missing key, or a failure, is (nil, false).
func (s *sturdycStorage) Get(ctx context.Context, key string) ([]byte, bool) {
	b, err := s.client.Get(ctx, key).Bytes()
	if err != nil {
		if !errors.Is(err, redis.Nil) {
			s.failures.Add(1)
		}
		return nil, false
	}
	return b, true
}

// Set is one SET with the TTL.
func (s *sturdycStorage) Set(ctx context.Context, key string, value []byte) {
	_ = s.set(ctx, key, value)
}

func (s *sturdycStorage) set(ctx context.Context, key string, value []byte) error {
	err := s.client.Set(ctx, key, value, s.ttl).Err()
	if err != nil {
		s.failures.Add(1)
	}
	return err
}

// GetBatch is one MGET; the map holds the keys Redis has.
func (s *sturdycStorage) GetBatch(ctx context.Context, keys []string) map[string][]byte {
	records := make(map[string][]byte, len(keys))
	if len(keys) == 0 {
		return records
	}
	values, err := s.client.MGet(ctx, keys...).Result()
	if err != nil {
		s.failures.Add(1)
		return records
	}
	for i, v := range values {
		if str, ok := v.(string); ok {
			records[keys[i]] = []byte(str)
		}
	}
	return records
}

// SetBatch writes every record with the TTL in one pipelined round trip.
func (s *sturdycStorage) SetBatch(ctx context.Context, records map[string][]byte) {
	if len(records) == 0 {
		return
	}
	pipe := s.client.Pipeline()
	for key, value := range records {
		pipe.Set(ctx, key, value, s.ttl)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		s.failures.Add(1)
	}
}
