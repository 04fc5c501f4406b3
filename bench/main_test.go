package main

import (
	"os"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// sturdyc starts a goroutine per client that it never stops (it has
		// no Close): its eviction loop, idle on a ticker.
		goleak.IgnoreAnyFunction("github.com/viccon/sturdyc.(*Client[...]).performContinuousEvictions.func1"),
	)
}

// redisForTest returns the address of a Redis to test against: REDIS_ADDR,
// or a redis-server started for the test. Without either it skips, or
// fails when CI is set.
func redisForTest(t *testing.T) string {
	t.Helper()
	if addr := os.Getenv("REDIS_ADDR"); addr != "" {
		return addr
	}
	srv, err := startRedisServer()
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	t.Cleanup(srv.Stop)
	return srv.Addr
}
