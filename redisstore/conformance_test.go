package redisstore_test

import (
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/tiercache/tiercache"
	"github.com/tiercache/tiercache/backendtest"
	"github.com/tiercache/tiercache/redisstore"
	"github.com/tiercache/tiercache/redisstore/internal/redistest"
)

// TestConformance runs the Backend conformance suite against a single node,
// through both paths: the guarded one (go-redis's default options) and the
// direct one (ContextTimeoutEnabled).
func TestConformance(t *testing.T) {
	for _, c := range []struct {
		name string
		opts *redis.Options
	}{
		{"default options", &redis.Options{}},
		{"ContextTimeoutEnabled", &redis.Options{ContextTimeoutEnabled: true}},
	} {
		t.Run(c.name, func(t *testing.T) {
			opts := *c.opts
			opts.Addr = redistest.Addr(t)
			client := redis.NewClient(&opts)
			t.Cleanup(func() { client.Close() })
			backendtest.Run(t, func(t *testing.T) tiercache.Backend[string] {
				s, _ := newStore(t, client, redisstore.Options[string]{})
				return s
			})
		})
	}
}

// TestConformanceCluster runs the Backend conformance suite against a
// three-node Redis Cluster through a redis.ClusterClient.
func TestConformanceCluster(t *testing.T) {
	client := newClusterClient(t)
	backendtest.Run(t, func(t *testing.T) tiercache.Backend[string] {
		s, _ := newStore(t, client, redisstore.Options[string]{})
		return s
	})
}
