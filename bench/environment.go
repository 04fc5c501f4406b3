package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"runtime"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// environment is what results.md says about the run and the machine.
type environment struct {
	Date        time.Time
	Duration    time.Duration
	Rounds      int
	Sizes       sizes
	CPU         string
	CPUs        int
	GOMAXPROCS  int
	GoVersion   string
	Platform    string
	RedisVer    string
	RedisSource string
	PoolSize    int
	ValueBytes  map[string]int64 // bytes Redis holds for one value, by family
}

// describeEnvironment gathers the environment of a finished run.
func describeEnvironment(ctx context.Context, b *bench, rounds int, external bool, d time.Duration) environment {
	env := environment{
		Date:        time.Now().UTC(),
		Duration:    d,
		Rounds:      rounds,
		Sizes:       b.sizes,
		CPU:         cpuModel(),
		CPUs:        runtime.NumCPU(),
		GOMAXPROCS:  runtime.GOMAXPROCS(0),
		GoVersion:   runtime.Version(),
		Platform:    runtime.GOOS + "/" + runtime.GOARCH,
		RedisVer:    redisVersion(ctx, b.admin),
		RedisSource: "started by the benchmark on a free loopback port (`--save \"\" --appendonly no`)",
		ValueBytes:  make(map[string]int64),
	}
	probe := newRedisClient(libConfig{Addr: b.addr})
	env.PoolSize = probe.Options().PoolSize
	probe.Close()
	if external {
		env.RedisSource = "the Redis at `REDIS_ADDR`"
	}
	for family, db := range familyDB {
		c := redis.NewClient(&redis.Options{Addr: b.addr, DB: db})
		if n, err := c.StrLen(ctx, b.keys[len(b.keys)/2]).Result(); err == nil && n > 0 {
			env.ValueBytes[family] = n
		}
		c.Close()
	}
	return env
}

// cpuModel returns the processor's model name from /proc/cpuinfo, or
// GOARCH where there is none.
func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return runtime.GOARCH
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if name, value, ok := strings.Cut(s.Text(), ":"); ok && strings.TrimSpace(name) == "model name" {
			return strings.TrimSpace(value)
		}
	}
	return runtime.GOARCH
}

// machine returns a one-line summary of the machine.
func (e environment) machine() string {
	return fmt.Sprintf("%s, %d CPUs (GOMAXPROCS %d), %s, %s, Redis %s", e.CPU, e.CPUs, e.GOMAXPROCS, e.Platform, e.GoVersion, e.RedisVer)
}
