package redisstore_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/tiercache/tiercache/redisstore"
	"github.com/tiercache/tiercache/redisstore/internal/redistest"
	"go.uber.org/goleak"
)

// TestMain checks for leaked goroutines once the tests have ended and the
// Redis servers they shared have been stopped.
func TestMain(m *testing.M) { goleak.VerifyTestMain(redistest.Main(m)) }

// prefixes numbers the key prefixes handed out by newPrefix.
var prefixes atomic.Int64

// newPrefix returns a key prefix no other test uses, also on a server shared
// with other runs (REDIS_ADDR), and deletes the keys under it when t ends.
func newPrefix(t testing.TB, client redis.UniversalClient) string {
	prefix := fmt.Sprintf("redisstore-test:%d:%d:%d:", os.Getpid(), time.Now().UnixNano(), prefixes.Add(1))
	t.Cleanup(func() { deletePrefix(t, client, prefix) })
	return prefix
}

// deletePrefix deletes every key under prefix, on every master of a cluster.
func deletePrefix(t testing.TB, client redis.UniversalClient, prefix string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	del := func(ctx context.Context, c *redis.Client) error {
		iter := c.Scan(ctx, 0, prefix+"*", 1000).Iterator()
		for iter.Next(ctx) {
			if err := c.Del(ctx, iter.Val()).Err(); err != nil {
				return err
			}
		}
		return iter.Err()
	}
	var err error
	switch c := client.(type) {
	case *redis.ClusterClient:
		err = c.ForEachMaster(ctx, del)
	case *redis.Client:
		err = del(ctx, c)
	}
	if err != nil && !strings.Contains(err.Error(), "closed") {
		t.Logf("deleting the keys under %q: %v", prefix, err)
	}
}

// newClient returns a client of the shared server with go-redis's default
// options, closed when t ends.
func newClient(t testing.TB) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: redistest.Addr(t)})
	t.Cleanup(func() { c.Close() })
	return c
}

// newClusterClient returns a client of the shared cluster, closed when t
// ends.
func newClusterClient(t testing.TB) *redis.ClusterClient {
	t.Helper()
	c := redis.NewClusterClient(&redis.ClusterOptions{Addrs: redistest.ClusterAddrs(t)})
	t.Cleanup(func() { c.Close() })
	return c
}

// newStore returns a Store of client under a fresh prefix (opts.KeyPrefix
// is replaced), closed when t ends, and its prefix.
func newStore[T any](t testing.TB, client redis.UniversalClient, opts redisstore.Options[T]) (*redisstore.Store[T], string) {
	t.Helper()
	opts.KeyPrefix = newPrefix(t, client)
	s, err := redisstore.New(client, &opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(context.Background()); err != nil {
			t.Error(err)
		}
	})
	return s, opts.KeyPrefix
}
