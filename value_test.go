package tiercache_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tiercache/tiercache"
)

func TestCacheValueTimes(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	tests := []struct {
		name    string
		v       tiercache.CacheValue[int]
		ttl     time.Duration
		expires bool
		expired bool
		stale   bool
	}{
		{name: "zero times never expire nor go stale", v: tiercache.CacheValue[int]{Data: 1}},
		{name: "future expire", v: tiercache.CacheValue[int]{Expire: now.Add(time.Minute)}, ttl: time.Minute, expires: true},
		{name: "expire one nanosecond ahead", v: tiercache.CacheValue[int]{Expire: now.Add(time.Nanosecond)}, ttl: time.Nanosecond, expires: true},
		{name: "expire exactly now is expired", v: tiercache.CacheValue[int]{Expire: now}, ttl: 0, expires: true, expired: true},
		{name: "past expire clamps TTL to zero", v: tiercache.CacheValue[int]{Expire: now.Add(-time.Hour)}, ttl: 0, expires: true, expired: true},
		{name: "stale exactly now", v: tiercache.CacheValue[int]{Stale: now}, stale: true},
		{name: "stale in the past, expire in the future", v: tiercache.CacheValue[int]{Stale: now.Add(-time.Second), Expire: now.Add(time.Second)}, ttl: time.Second, expires: true, stale: true},
		{name: "stale one nanosecond ahead", v: tiercache.CacheValue[int]{Stale: now.Add(time.Nanosecond)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ttl, expires := tt.v.TTL(now)
			require.Equal(t, tt.ttl, ttl)
			require.Equal(t, tt.expires, expires)
			require.Equal(t, tt.expired, tt.v.Expired(now))
			require.Equal(t, tt.stale, tt.v.IsStale(now))
		})
	}
}
