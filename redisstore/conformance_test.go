package redisstore_test

import (
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/tiercache/tiercache"
	"github.com/tiercache/tiercache/backendtest"
	"github.com/tiercache/tiercache/redisstore"
	"github.com/tiercache/tiercache/redisstore/internal/redistest"
)

// coalescing is the Store options the conformance suite runs with: each
// command on its own, the defaults (coalescing under load on a single
// node, off on a Cluster), and two dispatchers each.
var coalescing = []struct {
	name string
	opts redisstore.Options[string]
}{
	{"commands", redisstore.Options[string]{CoalesceGets: redisstore.CoalesceOff, CoalesceWrites: redisstore.CoalesceOff}},
	{"default", redisstore.Options[string]{}},
	{"coalesced", redisstore.Options[string]{CoalesceGets: 2, CoalesceWrites: 2}},
}

// TestConformance runs the Backend conformance suite against a single node,
// with go-redis's default options and with ContextTimeoutEnabled (the
// direct path for a ctx that cannot end), with and without coalescing.
func TestConformance(t *testing.T) {
	for _, c := range []struct {
		name string
		opts *redis.Options
	}{
		{"default options", &redis.Options{}},
		{"ContextTimeoutEnabled", &redis.Options{ContextTimeoutEnabled: true}},
	} {
		for _, co := range coalescing {
			t.Run(c.name+"/"+co.name, func(t *testing.T) {
				opts := *c.opts
				opts.Addr = redistest.Addr(t)
				client := redis.NewClient(&opts)
				t.Cleanup(func() { client.Close() })
				backendtest.Run(t, func(t *testing.T) tiercache.Backend[string] {
					s, _ := newStore(t, client, co.opts)
					return s
				})
			})
		}
	}
}

// TestConformanceCluster runs the Backend conformance suite against a
// three-node Redis Cluster through a redis.ClusterClient, with and without
// coalescing.
func TestConformanceCluster(t *testing.T) {
	client := newClusterClient(t)
	for _, co := range coalescing {
		t.Run(co.name, func(t *testing.T) {
			backendtest.Run(t, func(t *testing.T) tiercache.Backend[string] {
				s, _ := newStore(t, client, co.opts)
				return s
			})
		})
	}
}
