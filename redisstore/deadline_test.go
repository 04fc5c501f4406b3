package redisstore_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/tiercache/tiercache"
	"github.com/tiercache/tiercache/redisstore"
	"github.com/tiercache/tiercache/redisstore/internal/redistest"
)

const (
	// opDeadline is the deadline of each operation against a frozen server.
	opDeadline = 100 * time.Millisecond
	// lateBy is how much later than its ctx's end an operation may return,
	// the end as a goroutine waiting for it sees it (see timeOp).
	lateBy = 50 * time.Millisecond
	// frozenReadTimeout is the clients' ReadTimeout in these tests: well
	// above opDeadline+lateBy, so that only the Store can explain a return
	// in time, and short, so that the test ends quickly if it fails.
	frozenReadTimeout = 2 * time.Second
	// cancelAfter is when the ctx of each operation against a frozen server
	// is cancelled, in the tests of cancellation.
	cancelAfter = 50 * time.Millisecond
)

// timeOp runs run with ctx, then cancels ctx with cancel, and returns how
// long run took, how long after its start a goroutine waiting for ctx's
// end saw it end, and run's error. On a loaded machine that goroutine, like
// the one run returns on, wakes up after the deadline or the cancellation,
// by up to hundreds of milliseconds: an operation is late by as much as it
// returns after ended.
func timeOp(ctx context.Context, cancel context.CancelFunc, run func(context.Context) error) (took, ended time.Duration, err error) {
	start := time.Now()
	seen := make(chan time.Duration, 1)
	go func() {
		<-ctx.Done()
		seen <- time.Since(start)
	}()
	err = run(ctx)
	took = time.Since(start)
	cancel() // for an operation that returned before ctx's end
	return took, <-seen, err
}

// storeOp is an operation of a Store on one key.
type storeOp struct {
	name string
	run  func(ctx context.Context) error
}

// getSetDelete returns Get, Set and Delete of key on s.
func getSetDelete(s *redisstore.Store[string], key string) []storeOp {
	return []storeOp{
		{"Get", func(ctx context.Context) error { _, err := s.Get(ctx, key); return err }},
		{"Set", func(ctx context.Context) error {
			return s.Set(ctx, key, tiercache.CacheValue[string]{Data: "v", Expire: time.Now().Add(time.Hour)})
		}},
		{"Delete", func(ctx context.Context) error { return s.Delete(ctx, key) }},
	}
}

// checkOpsReturnByDeadline runs Get, Set and Delete of key on s, each with
// an opDeadline deadline, and checks that each returns by then (give or
// take lateBy, after the deadline as timeOp sees it) with an error wrapping
// context.DeadlineExceeded that names the Redis key; or, when answered is
// true, that it may also succeed.
func checkOpsReturnByDeadline(t *testing.T, s *redisstore.Store[string], prefix, key string, answered bool) {
	t.Helper()
	for _, op := range getSetDelete(s, key) {
		ctx, cancel := context.WithTimeout(context.Background(), opDeadline)
		took, ended, err := timeOp(ctx, cancel, op.run)
		assert.LessOrEqual(t, took, max(ended, opDeadline)+lateBy, "%s of %q took %v, its ctx seen ended after %v", op.name, key, took, ended)
		if err == nil && answered {
			continue
		}
		if assert.Error(t, err, "%s of %q", op.name, key) {
			assert.ErrorIs(t, err, context.DeadlineExceeded, "%s of %q", op.name, key)
			assert.Contains(t, err.Error(), prefix+key, "%s", op.name)
		}
	}
}

// checkOpsReturnOnCancel runs Get, Set, Delete, GetMany and SetMany of key
// on s, a Store of a frozen server, each with a ctx cancelled after
// cancelAfter: one without a deadline, and one whose deadline is a minute
// away. It checks that each returns by then (give or take lateBy, after the
// cancellation as timeOp sees it) with an error wrapping context.Canceled
// that names the Redis key.
func checkOpsReturnOnCancel(t *testing.T, s *redisstore.Store[string], prefix, key string) {
	t.Helper()
	ops := append(getSetDelete(s, key),
		storeOp{"GetMany", func(ctx context.Context) error { _, err := s.GetMany(ctx, []string{key}); return err }},
		storeOp{"SetMany", func(ctx context.Context) error {
			return s.SetMany(ctx, []string{key}, []tiercache.CacheValue[string]{{Data: "v", Expire: time.Now().Add(time.Hour)}})
		}},
	)
	for _, op := range ops {
		for _, withDeadline := range []bool{false, true} {
			ctx, cancel := context.WithCancel(context.Background())
			if withDeadline {
				ctx, cancel = context.WithTimeout(context.Background(), time.Minute)
			}
			timer := time.AfterFunc(cancelAfter, cancel)
			took, ended, err := timeOp(ctx, cancel, op.run)
			timer.Stop()
			assert.LessOrEqual(t, took, max(ended, cancelAfter)+lateBy, "%s of %q (deadline: %v) took %v, its ctx seen ended after %v", op.name, key, withDeadline, took, ended)
			if assert.Error(t, err, "%s of %q (deadline: %v)", op.name, key, withDeadline) {
				assert.ErrorIs(t, err, context.Canceled, "%s of %q (deadline: %v)", op.name, key, withDeadline)
				assert.Contains(t, err.Error(), prefix+key, "%s", op.name)
			}
		}
	}
}

// TestCancelFrozenServer freezes a redis-server with SIGSTOP and checks
// that every operation returns when its ctx is cancelled, before the ctx's
// deadline if it has one, over the clients a Store calls on the caller's
// goroutine with a ctx that cannot end (a *redis.Client or *redis.Ring
// with ContextTimeoutEnabled) and over the same with go-redis's default
// options. go-redis sets socket deadlines from ctx's deadline only, with
// ContextTimeoutEnabled, and never watches its cancellation: only the
// Store can explain a return in time.
func TestCancelFrozenServer(t *testing.T) {
	srv := redistest.Start(t)
	for _, c := range []struct {
		name   string
		client func() redis.UniversalClient
	}{
		{"Client/default options", func() redis.UniversalClient {
			return redis.NewClient(&redis.Options{Addr: srv.Addr, ReadTimeout: frozenReadTimeout})
		}},
		{"Client/ContextTimeoutEnabled", func() redis.UniversalClient {
			return redis.NewClient(&redis.Options{Addr: srv.Addr, ContextTimeoutEnabled: true, ReadTimeout: frozenReadTimeout})
		}},
		{"Ring/default options", func() redis.UniversalClient {
			return redis.NewRing(&redis.RingOptions{Addrs: map[string]string{"a": srv.Addr}, ReadTimeout: frozenReadTimeout})
		}},
		{"Ring/ContextTimeoutEnabled", func() redis.UniversalClient {
			return redis.NewRing(&redis.RingOptions{Addrs: map[string]string{"a": srv.Addr}, ContextTimeoutEnabled: true, ReadTimeout: frozenReadTimeout})
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			client := c.client()
			defer client.Close()
			const prefix = "cancel:"
			s, err := redisstore.New[string](client, &redisstore.Options[string]{KeyPrefix: prefix})
			require.NoError(t, err)
			// A warm connection: the commands below wait for the answer.
			require.NoError(t, s.Set(context.Background(), "k", tiercache.CacheValue[string]{Data: "v"}))
			require.NoError(t, srv.Freeze())
			thawed := false
			defer func() {
				if !thawed {
					_ = srv.Thaw()
				}
			}()

			checkOpsReturnOnCancel(t, s, prefix, "k")

			require.NoError(t, srv.Thaw())
			thawed = true
			ctx, cancel := context.WithTimeout(context.Background(), 2*frozenReadTimeout)
			defer cancel()
			require.NoError(t, s.Close(ctx))
		})
	}
}

// TestDeadlineFrozenServer freezes a redis-server with SIGSTOP and checks
// that every operation returns by its ctx's deadline: through the direct
// path (ContextTimeoutEnabled) and through the guarded one (go-redis's
// default options, which ignore ctx deadlines on socket I/O), over a
// *redis.Client and a *redis.Ring, on a cold client (the connection is
// dialled to the frozen server) and on a warm one.
func TestDeadlineFrozenServer(t *testing.T) {
	for _, c := range []struct {
		name   string
		client func(addr string) redis.UniversalClient
	}{
		{"Client/default options", func(addr string) redis.UniversalClient {
			return redis.NewClient(&redis.Options{Addr: addr, ReadTimeout: frozenReadTimeout})
		}},
		{"Client/ContextTimeoutEnabled", func(addr string) redis.UniversalClient {
			return redis.NewClient(&redis.Options{Addr: addr, ContextTimeoutEnabled: true, ReadTimeout: frozenReadTimeout})
		}},
		{"Ring/default options", func(addr string) redis.UniversalClient {
			return redis.NewRing(&redis.RingOptions{Addrs: map[string]string{"a": addr}, ReadTimeout: frozenReadTimeout})
		}},
		{"Ring/ContextTimeoutEnabled", func(addr string) redis.UniversalClient {
			return redis.NewRing(&redis.RingOptions{Addrs: map[string]string{"a": addr}, ContextTimeoutEnabled: true, ReadTimeout: frozenReadTimeout})
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			srv := redistest.Start(t)
			client := c.client(srv.Addr)
			defer client.Close()
			for _, warm := range []bool{false, true} {
				name := "cold"
				if warm {
					name = "warm"
				}
				t.Run(name, func(t *testing.T) {
					prefix := fmt.Sprintf("frozen:%s:", name)
					s, err := redisstore.New[string](client, &redisstore.Options[string]{KeyPrefix: prefix})
					require.NoError(t, err)
					if warm {
						require.NoError(t, s.Set(context.Background(), "k", tiercache.CacheValue[string]{Data: "v"}))
						_, err := s.Get(context.Background(), "k")
						require.NoError(t, err)
					}
					require.NoError(t, srv.Freeze())
					thawed := false
					defer func() {
						if !thawed {
							_ = srv.Thaw()
						}
					}()

					checkOpsReturnByDeadline(t, s, prefix, "k", false)

					// Once thawed, the abandoned commands end and Close
					// returns: no goroutine is left behind (goleak checks).
					require.NoError(t, srv.Thaw())
					thawed = true
					ctx, cancel := context.WithTimeout(context.Background(), 2*frozenReadTimeout)
					defer cancel()
					require.NoError(t, s.Close(ctx))
				})
			}
		})
	}
}

// TestDeadlineFrozenCluster freezes every node of a cluster whose client
// knows the slots without asking (ClusterOptions.ClusterSlots) and has
// ContextTimeoutEnabled: go-redis then fetches COMMAND info from a frozen
// node under a timeout of its own, not ctx's, which is why a Store never
// calls a ClusterClient on the caller's goroutine.
func TestDeadlineFrozenCluster(t *testing.T) {
	cluster := redistest.StartCluster(t)
	probe := redis.NewClient(&redis.Options{Addr: cluster.Nodes[0].Addr})
	shards, err := probe.ClusterShards(context.Background()).Result()
	probe.Close()
	require.NoError(t, err)
	var slots []redis.ClusterSlot
	for _, shard := range shards {
		var nodes []redis.ClusterNode
		for _, n := range shard.Nodes {
			nodes = append(nodes, redis.ClusterNode{ID: n.ID, Addr: net.JoinHostPort(n.IP, strconv.FormatInt(n.Port, 10))})
		}
		for _, r := range shard.Slots {
			slots = append(slots, redis.ClusterSlot{Start: int(r.Start), End: int(r.End), Nodes: nodes})
		}
	}
	require.NotEmpty(t, slots)

	client := redis.NewClusterClient(&redis.ClusterOptions{
		Addrs:                 cluster.Addrs(),
		ClusterSlots:          func(context.Context) ([]redis.ClusterSlot, error) { return slots, nil },
		ContextTimeoutEnabled: true,
		ReadTimeout:           frozenReadTimeout,
	})
	defer client.Close()
	s, err := redisstore.New[string](client, &redisstore.Options[string]{KeyPrefix: "frozen-cluster:"})
	require.NoError(t, err)

	for _, n := range cluster.Nodes {
		require.NoError(t, n.Freeze())
	}
	thawed := false
	defer func() {
		if !thawed {
			for _, n := range cluster.Nodes {
				_ = n.Thaw()
			}
		}
	}()
	for i := range 3 {
		checkOpsReturnByDeadline(t, s, "frozen-cluster:", fmt.Sprint("k", i), false)
	}
	checkOpsReturnOnCancel(t, s, "frozen-cluster:", "k0")
	// With go-redis's default options too (a ClusterClient is never
	// trusted, whatever its options).
	plain := redis.NewClusterClient(&redis.ClusterOptions{
		Addrs:        cluster.Addrs(),
		ClusterSlots: func(context.Context) ([]redis.ClusterSlot, error) { return slots, nil },
		ReadTimeout:  frozenReadTimeout,
	})
	defer plain.Close()
	sp, err := redisstore.New[string](plain, &redisstore.Options[string]{KeyPrefix: "frozen-cluster:"})
	require.NoError(t, err)
	checkOpsReturnOnCancel(t, sp, "frozen-cluster:", "k1")
	for _, n := range cluster.Nodes {
		require.NoError(t, n.Thaw())
	}
	thawed = true
	ctx, cancel := context.WithTimeout(context.Background(), 4*frozenReadTimeout)
	defer cancel()
	require.NoError(t, s.Close(ctx))
	require.NoError(t, sp.Close(ctx))
}

// TestCloseWaitsForAbandoned checks that Close waits for a command left
// running by a caller whose ctx ended, and gives up at its own deadline.
func TestCloseWaitsForAbandoned(t *testing.T) {
	srv := redistest.Start(t)
	client := redis.NewClient(&redis.Options{Addr: srv.Addr, ReadTimeout: frozenReadTimeout})
	defer client.Close()
	s, err := redisstore.New[string](client, nil)
	require.NoError(t, err)
	require.NoError(t, srv.Freeze())
	defer srv.Thaw()

	ctx, cancel := context.WithTimeout(context.Background(), opDeadline)
	_, err = s.Get(ctx, "k")
	cancel()
	require.ErrorIs(t, err, context.DeadlineExceeded)

	short, cancel := context.WithTimeout(context.Background(), opDeadline)
	err = s.Close(short)
	cancel()
	assert.ErrorIs(t, err, context.DeadlineExceeded, "Close while the abandoned GET waits for the frozen server")
	_, err = s.Get(context.Background(), "k")
	assert.ErrorIs(t, err, redisstore.ErrClosed)

	require.NoError(t, srv.Thaw())
	long, cancel := context.WithTimeout(context.Background(), 2*frozenReadTimeout)
	defer cancel()
	start := time.Now()
	require.NoError(t, s.Close(long))
	assert.Less(t, time.Since(start), frozenReadTimeout, "the GET ended when the server answered, not at ReadTimeout")
}

// TestPanicInClientContained checks that a panic in the client (here a
// hook) on the goroutine of a guarded command becomes the command's error.
func TestPanicInClientContained(t *testing.T) {
	client := redis.NewClient(&redis.Options{Addr: redistest.Addr(t)})
	defer client.Close()
	client.AddHook(panicHook{})
	s, err := redisstore.New[string](client, nil)
	require.NoError(t, err)
	defer s.Close(context.Background())
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute) // a ctx that can end: the guarded path
	defer cancel()
	_, err = s.Get(ctx, "k")
	var pe *tiercache.PanicError
	require.ErrorAs(t, err, &pe)
	assert.True(t, errors.Is(err, errHook))
}

var errHook = errors.New("hook exploded")

type panicHook struct{}

func (panicHook) DialHook(next redis.DialHook) redis.DialHook { return next }
func (panicHook) ProcessHook(redis.ProcessHook) redis.ProcessHook {
	return func(context.Context, redis.Cmder) error { panic(errHook) }
}
func (panicHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}
