package redisstore

import (
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
)

// boundsIOByContext trusts a client only when every connection it may use
// sets its socket deadlines from the command's ctx.
func TestBoundsIOByContext(t *testing.T) {
	const addr = "127.0.0.1:1" // nothing listens there; no command is sent
	ring := func(o redis.RingOptions) *redis.Ring {
		o.Addrs = map[string]string{"a": addr, "b": addr}
		return redis.NewRing(&o)
	}
	for _, c := range []struct {
		name   string
		client redis.UniversalClient
		want   bool
	}{
		{"Client, defaults", redis.NewClient(&redis.Options{Addr: addr}), false},
		{"Client, ContextTimeoutEnabled", redis.NewClient(&redis.Options{Addr: addr, ContextTimeoutEnabled: true}), true},
		{"Client, no read deadline", redis.NewClient(&redis.Options{Addr: addr, ContextTimeoutEnabled: true, ReadTimeout: -2}), false},
		{"Client, no write deadline", redis.NewClient(&redis.Options{Addr: addr, ContextTimeoutEnabled: true, WriteTimeout: -2}), false},
		{"Ring, defaults", ring(redis.RingOptions{}), false},
		{"Ring, ContextTimeoutEnabled", ring(redis.RingOptions{ContextTimeoutEnabled: true}), true},
		{"Ring, no read deadline", ring(redis.RingOptions{ContextTimeoutEnabled: true, ReadTimeout: -2}), false},
		{"Ring, shards built otherwise", ring(redis.RingOptions{
			ContextTimeoutEnabled: true,
			NewClient: func(o *redis.Options) *redis.Client {
				o.ContextTimeoutEnabled = false
				return redis.NewClient(o)
			},
		}), false},
		{"Ring, shards built alike", ring(redis.RingOptions{
			ContextTimeoutEnabled: true,
			NewClient:             func(o *redis.Options) *redis.Client { return redis.NewClient(o) },
		}), true},
		{"ClusterClient", redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{addr}, ContextTimeoutEnabled: true}), false},
	} {
		t.Run(c.name, func(t *testing.T) {
			defer c.client.Close()
			require.Equal(t, c.want, boundsIOByContext(c.client))
		})
	}
}
