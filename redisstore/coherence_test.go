package redisstore_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/tiercache/tiercache"
	"github.com/tiercache/tiercache/otterstore"
	"github.com/tiercache/tiercache/redisstore"
	"github.com/tiercache/tiercache/redisstore/internal/redistest"
)

// Cross-instance coherence over real Redis: caches with L1s of their own
// (otterstore), one L2 (redisstore, one KeyPrefix), each replica with its
// own Invalidator on one channel.

// evictionL1 is an otterstore L1 that records when each key is deleted
// from it, so that a test sees an invalidation land.
type evictionL1 struct {
	*otterstore.Store[string]
	mu      sync.Mutex
	deleted map[string]time.Time
	notify  chan struct{} // capacity 1: a key was deleted
}

var (
	_ tiercache.Backend[string] = (*evictionL1)(nil)
	_ tiercache.Flusher         = (*evictionL1)(nil)
)

func newEvictionL1(t testing.TB) *evictionL1 {
	t.Helper()
	s, err := otterstore.New(&otterstore.Options[string]{MaximumSize: 10_000})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, s.Close()) })
	return &evictionL1{Store: s, deleted: map[string]time.Time{}, notify: make(chan struct{}, 1)}
}

func (l *evictionL1) Delete(ctx context.Context, key string) error {
	err := l.Store.Delete(ctx, key)
	now := time.Now()
	l.mu.Lock()
	l.deleted[key] = now
	l.mu.Unlock()
	select {
	case l.notify <- struct{}{}:
	default:
	}
	return err
}

// deletedAt returns when key was last deleted.
func (l *evictionL1) deletedAt(key string) (time.Time, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	at, ok := l.deleted[key]
	return at, ok
}

// holds reports whether the L1 holds key with value v.
func (l *evictionL1) holds(key, v string) bool {
	got, err := l.Store.Get(context.Background(), key)
	return err == nil && got != nil && got.Data == v
}

// replica is one process of a service: a Cache over its own L1 and the
// shared L2, with its own Invalidator.
type replica struct {
	cache *tiercache.Cache[string]
	inv   *redisstore.Invalidator
	l1    *evictionL1
	trust *trustObserver // the cache's Observer
}

// trustObserver is an Observer that counts the SubscriptionLost and
// SubscriptionRestored a cache has acted on: a cache observes
// EventSubscriptionRestored once it uses L1 again, and the two alternate
// (the first event, a Lost before any Restored, is not observed).
type trustObserver struct{ lost, restored atomic.Int64 }

// observeTrust makes a trustObserver the Observer of opts.
func observeTrust(opts *tiercache.Options[string]) *trustObserver {
	o := &trustObserver{}
	opts.Observer = o
	return o
}

func (o *trustObserver) Observe(_ context.Context, e tiercache.Event) {
	switch e.Kind {
	case tiercache.EventSubscriptionLost:
		o.lost.Add(1)
	case tiercache.EventSubscriptionRestored:
		o.restored.Add(1)
	}
}

// trusted reports whether the cache uses its L1: it has acted on a
// Restored since the last Lost.
func (o *trustObserver) trusted() bool {
	lost := o.lost.Load()
	return o.restored.Load() > lost
}

// newCoherentReplica makes a replica whose L2 goes through l2Client under prefix
// and whose Invalidator goes through invClient on channel.
func newCoherentReplica(t testing.TB, l2Client, invClient redis.UniversalClient, prefix, channel string, opts tiercache.Options[string]) *replica {
	t.Helper()
	return newCoherentReplicaWindow(t, l2Client, invClient, prefix, channel, 0, opts)
}

// newCoherentReplicaWindow is newCoherentReplica with the Invalidator's
// BatchWindow.
func newCoherentReplicaWindow(t testing.TB, l2Client, invClient redis.UniversalClient, prefix, channel string, window time.Duration, opts tiercache.Options[string]) *replica {
	t.Helper()
	r := &replica{l1: newEvictionL1(t)}
	r.inv = newInvalidator(t, invClient, redisstore.InvalidatorOptions{Channel: channel, BatchWindow: window})
	l2, err := redisstore.New(l2Client, &redisstore.Options[string]{KeyPrefix: prefix})
	require.NoError(t, err)
	opts.Invalidator = r.inv
	r.trust = observeTrust(&opts)
	r.cache, err = tiercache.New[string](r.l1, l2, &opts)
	require.NoError(t, err)
	t.Cleanup(func() {
		require.NoError(t, r.cache.Close(context.Background()))
		require.NoError(t, l2.Close(context.Background()))
	})
	return r
}

// waitTrusted waits until every replica's cache trusts its L1 again: it
// has observed SubscriptionRestored since the last SubscriptionLost (its
// time without a subscription stops growing a moment before it uses L1),
// and that time has stopped growing.
func waitTrusted(t testing.TB, replicas ...*replica) {
	t.Helper()
	for _, r := range replicas {
		require.Eventually(t, func() bool {
			first := r.cache.Stats().Unsubscribed
			return r.trust.trusted() && r.cache.Stats().Unsubscribed == first // the current period would have grown
		}, waitFor, tick, "the cache never trusted its L1")
	}
}

// mustGet returns the value of key in c, "" for a miss.
func mustGet(t testing.TB, c *tiercache.Cache[string], key string) string {
	t.Helper()
	v, ok, err := c.Get(context.Background(), key)
	require.NoError(t, err)
	if !ok {
		return ""
	}
	return v
}

// readInto reads key from r.cache until the value is in r's L1. A refill
// is skipped, rightly, when an invalidation of the key lands while it reads
// L2: the announcement of the write that put the value in L2 may land after
// the first read.
func readInto(t testing.TB, r *replica, key, want string) {
	t.Helper()
	require.Eventually(t, func() bool {
		if got := mustGet(t, r.cache, key); got != want {
			t.Fatalf("read %q, want %q", got, want)
		}
		time.Sleep(5 * time.Millisecond) // the refill runs in the background
		return r.l1.holds(key, want)
	}, waitFor, tick, "the value was not copied into L1")
}

// deployments are the Redis set-ups the coherence tests run on.
var deployments = []struct {
	name   string
	client func(t *testing.T) redis.UniversalClient
}{
	{"single node", func(t *testing.T) redis.UniversalClient { return newTimeoutClient(t, redistest.Addr(t)) }},
	{"cluster", func(t *testing.T) redis.UniversalClient { return newClusterClient(t) }},
}

// twoReplicas returns two replicas over one L2 prefix and one channel, each
// with clients of its own, both trusting their L1s.
func twoReplicas(t *testing.T, client func(t *testing.T) redis.UniversalClient, opts tiercache.Options[string]) (a, b *replica) {
	t.Helper()
	clientA, clientB := client(t), client(t)
	prefix, channel := newPrefix(t, clientA), newChannel()
	a = newCoherentReplica(t, clientA, clientA, prefix, channel, opts)
	b = newCoherentReplica(t, clientB, clientB, prefix, channel, opts)
	waitTrusted(t, a, b)
	return a, b
}

// A Set in one replica evicts the key from the other's L1, which then reads
// the new value.
func TestCoherenceSet(t *testing.T) {
	for _, d := range deployments {
		t.Run(d.name, func(t *testing.T) {
			ctx := context.Background()
			a, b := twoReplicas(t, d.client, tiercache.Options[string]{})
			require.NoError(t, a.cache.Set(ctx, "k", "v1", 0))
			readInto(t, b, "k", "v1")

			require.NoError(t, a.cache.Set(ctx, "k", "v2", 0))
			require.Eventually(t, func() bool { return mustGet(t, b.cache, "k") == "v2" }, waitFor, tick)
			// Counted once the key is out of L1, which a Get may see first;
			// and v1's eviction may land after readInto, when B's Get then
			// reads v2 from L2 before v2's lands.
			require.Eventually(t, func() bool { return b.cache.Stats().InvalidationEvictions == 2 }, waitFor, tick,
				"one for each Set: %d", b.cache.Stats().InvalidationEvictions)
			require.Equal(t, uint64(2), a.cache.Stats().InvalidationsSent)
		})
	}
}

// A Delete in one replica evicts the key from the other's L1.
func TestCoherenceDelete(t *testing.T) {
	for _, d := range deployments {
		t.Run(d.name, func(t *testing.T) {
			ctx := context.Background()
			a, b := twoReplicas(t, d.client, tiercache.Options[string]{})
			require.NoError(t, a.cache.Set(ctx, "k", "v1", 0))
			readInto(t, b, "k", "v1")

			require.NoError(t, a.cache.Delete(ctx, "k"))
			require.Eventually(t, func() bool { return mustGet(t, b.cache, "k") == "" }, waitFor, tick)
			require.False(t, b.l1.holds("k", "v1"))
		})
	}
}

// A stale value refreshed in the background by one replica is evicted from
// the other's L1, which then reads the refreshed value.
func TestCoherenceRefresh(t *testing.T) {
	for _, d := range deployments {
		t.Run(d.name, func(t *testing.T) {
			ctx := context.Background()
			const staleAfter = 200 * time.Millisecond
			a, b := twoReplicas(t, d.client, tiercache.Options[string]{StaleAfter: staleAfter, DefaultTTL: time.Hour})
			load := func(v string) func(context.Context) (string, error) {
				return func(context.Context) (string, error) { return v, nil }
			}
			v, err := a.cache.GetOrLoad(ctx, "k", load("v1"))
			require.NoError(t, err)
			require.Equal(t, "v1", v)
			require.Eventually(t, func() bool { return mustGet(t, b.cache, "k") == "v1" }, waitFor, tick) // the L2 write is in the background
			readInto(t, b, "k", "v1")

			time.Sleep(staleAfter)
			v, err = a.cache.GetOrLoad(ctx, "k", load("v2"))
			require.NoError(t, err)
			require.Equal(t, "v1", v, "the stale value, served while the refresh runs")
			require.Eventually(t, func() bool { return mustGet(t, b.cache, "k") == "v2" }, waitFor, tick)
			// Counted by the refresh's goroutine after it starts the load,
			// which may have written L2 and announced the key by then.
			require.Eventually(t, func() bool { return a.cache.Stats().Refreshes == 1 }, waitFor, tick,
				"refreshes: %d", a.cache.Stats().Refreshes)
		})
	}
}

// A replica does not evict what it wrote itself: its next Get is an L1 hit.
func TestCoherenceNoSelfEcho(t *testing.T) {
	ctx := context.Background()
	a, b := twoReplicas(t, deployments[0].client, tiercache.Options[string]{})
	require.NoError(t, a.cache.Set(ctx, "k", "mine", 0))
	// The message came back from Redis to A, and reached B.
	require.Eventually(t, func() bool { return a.inv.Stats().EchoesDropped == 1 }, waitFor, tick)
	require.Eventually(t, func() bool { return b.inv.Stats().KeysReceived == 1 }, waitFor, tick)

	before := a.cache.Stats()
	require.Equal(t, "mine", mustGet(t, a.cache, "k"))
	after := a.cache.Stats()
	require.Equal(t, before.L1.Hits+1, after.L1.Hits, "an L1 hit")
	require.Equal(t, before.L2.Latency.Count, after.L2.Latency.Count, "L2 not read")
	require.Zero(t, after.InvalidationsReceived)
	require.Zero(t, after.InvalidationEvictions)
	require.True(t, a.l1.holds("k", "mine"))
}

// Several caches of one process on one Invalidator: a Set in one evicts the
// key from the other, directly, and neither evicts its own.
func TestCoherenceCachesSharingAnInvalidator(t *testing.T) {
	ctx := context.Background()
	client := newTimeoutClient(t, redistest.Addr(t))
	prefix := newPrefix(t, client)
	inv := newInvalidator(t, client, redisstore.InvalidatorOptions{Channel: newChannel()})
	caches := make([]*replica, 2)
	for n := range caches {
		r := &replica{l1: newEvictionL1(t), inv: inv}
		l2, err := redisstore.New(client, &redisstore.Options[string]{KeyPrefix: prefix})
		require.NoError(t, err)
		opts := tiercache.Options[string]{Invalidator: inv}
		r.trust = observeTrust(&opts)
		r.cache, err = tiercache.New[string](r.l1, l2, &opts)
		require.NoError(t, err)
		t.Cleanup(func() { require.NoError(t, r.cache.Close(ctx)) })
		caches[n] = r
	}
	one, two := caches[0], caches[1]
	waitTrusted(t, one, two)

	// Each write's message goes out before the next write (waitPublished),
	// so that no two merge: three messages.
	require.NoError(t, one.cache.Set(ctx, "k", "v1", 0))
	waitPublished(t, inv, 1)
	readInto(t, two, "k", "v1")
	require.NoError(t, one.cache.Set(ctx, "k", "v2", 0))
	waitPublished(t, inv, 2)
	require.Eventually(t, func() bool { return mustGet(t, two.cache, "k") == "v2" }, waitFor, tick)
	require.True(t, one.l1.holds("k", "v2"), "no self-echo")

	require.NoError(t, two.cache.Delete(ctx, "k"))
	waitPublished(t, inv, 3)
	require.Eventually(t, func() bool { return !one.l1.holds("k", "v2") }, waitFor, tick)
	require.Equal(t, "", mustGet(t, one.cache, "k"))
	// The messages came back from Redis, and were dropped.
	require.Eventually(t, func() bool { return inv.Stats().EchoesDropped == 3 }, waitFor, tick)
	s := inv.Stats()
	require.Equal(t, s.MessagesPublished, s.EchoesDropped)
	require.Zero(t, s.MessagesReceived, "nothing came from another process")
}

// watcher reads key from a cache in a loop and records every value it gets
// after a moment the test marks, so that the test can tell whether an old
// value was ever returned.
type watcher struct {
	cache    *tiercache.Cache[string]
	key, old string
	stop     chan struct{}
	done     chan struct{}
	armed    atomic.Bool // set once old must never be returned again
	reads    atomic.Int64
	mu       sync.Mutex
	stale    []string // what was returned while armed that was old
}

func watch(c *tiercache.Cache[string], key, old string) *watcher {
	w := &watcher{cache: c, key: key, old: old, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		for {
			select {
			case <-w.stop:
				return
			default:
			}
			armed := w.armed.Load() // before the read: the read starts after the moment
			v, ok, _ := c.Get(context.Background(), key)
			w.reads.Add(1)
			if armed && ok && v == old {
				w.mu.Lock()
				w.stale = append(w.stale, fmt.Sprintf("read %d: %q", w.reads.Load(), v))
				w.mu.Unlock()
			}
			time.Sleep(100 * time.Microsecond)
		}
	}()
	return w
}

// finish stops the watcher and fails t if an old value was read while
// armed.
func (w *watcher) finish(t testing.TB) {
	t.Helper()
	close(w.stop)
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	require.Empty(t, w.stale, "the old value was returned")
	t.Logf("the watcher read %q %d times", w.key, w.reads.Load())
}

// Redis crashes (SIGKILL) and comes back, empty, on the same port. While it
// is down, A's Set fails; once it is back, A sets the key again. B, which
// held the old value in L1, never returns it after the drop: it flushed L1
// when the subscription dropped, read around it while Redis was down, and
// flushed it again when the subscription came back.
func TestCoherenceRedisRestart(t *testing.T) {
	ctx := context.Background()
	srv := redistest.Start(t)
	client := func(t *testing.T) redis.UniversalClient { return newTimeoutClient(t, srv.Addr) }
	a, b := twoReplicas(t, client, tiercache.Options[string]{L2Timeout: 200 * time.Millisecond})
	require.NoError(t, a.cache.Set(ctx, "k", "v1", 0))
	readInto(t, a, "k", "v1")
	readInto(t, b, "k", "v1")
	w := watch(b.cache, "k", "v1")
	defer w.finish(t)

	require.NoError(t, srv.Kill())
	require.Eventually(t, func() bool { return b.cache.Stats().SubscriptionDrops == 1 }, waitFor, tick)
	w.armed.Store(true) // from now on, v1 is the old value
	require.Eventually(t, func() bool { return a.cache.Stats().SubscriptionDrops == 1 }, waitFor, tick)
	require.Error(t, a.cache.Set(ctx, "k", "v2", 0), "L2 is down")
	require.False(t, a.l1.holds("k", "v1"), "a failed Set evicts the key from the writer's L1")
	require.Equal(t, "", mustGet(t, b.cache, "k"), "L1 read around, L2 down: a miss")
	time.Sleep(300 * time.Millisecond)

	require.NoError(t, srv.Restart())
	require.Eventually(t, func() bool { return a.cache.Set(ctx, "k", "v2", 0) == nil }, waitFor, 10*time.Millisecond)
	waitTrusted(t, a, b)
	require.Eventually(t, func() bool { return mustGet(t, b.cache, "k") == "v2" }, waitFor, tick)
	require.Eventually(t, func() bool { return b.l1.holds("k", "v2") }, waitFor, tick, "B trusts and fills its L1 again")
	time.Sleep(100 * time.Millisecond)
	require.Equal(t, "v2", mustGet(t, b.cache, "k"))

	sb := b.cache.Stats()
	require.Equal(t, uint64(1), sb.SubscriptionDrops)
	require.Greater(t, sb.Unsubscribed, 300*time.Millisecond)
	require.Equal(t, uint64(1), b.inv.Stats().SubscriptionDrops)
}

// gatedDialer dials while open, and refuses while closed.
type gatedDialer struct{ closed atomic.Bool }

func (g *gatedDialer) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	if g.closed.Load() {
		return nil, errors.New("gatedDialer: closed")
	}
	var d net.Dialer
	return d.DialContext(ctx, network, addr)
}

// clientAddr returns the address of the connection named name in CLIENT
// LIST.
func clientAddr(t testing.TB, addr, name string) string {
	t.Helper()
	list, err := redistest.Do(addr, 5*time.Second, "CLIENT", "LIST", "TYPE", "pubsub")
	require.NoError(t, err)
	for line := range strings.Lines(list) {
		fields := strings.Fields(line)
		if slices.Contains(fields, "name="+name) {
			for _, f := range fields {
				if a, ok := strings.CutPrefix(f, "addr="); ok {
					return a
				}
			}
		}
	}
	t.Fatalf("no pub/sub connection named %q in CLIENT LIST:\n%s", name, list)
	return ""
}

// B's subscription connection is killed while Redis stays up, and B cannot
// resubscribe for a while. Meanwhile A writes the key to L2 and announces
// it: the message is lost for B. B never returns the old value: it flushed
// its L1 at the drop, read L2 until it had resubscribed, and flushed again.
func TestCoherenceSubscriptionCut(t *testing.T) {
	ctx := context.Background()
	addr := redistest.Addr(t)
	clientA := newTimeoutClient(t, addr)
	gate := &gatedDialer{}
	const name = "coherence-b-invalidator"
	invClientB := redis.NewClient(&redis.Options{Addr: addr, ContextTimeoutEnabled: true, ClientName: name, Dialer: gate.dial})
	t.Cleanup(func() { invClientB.Close() })
	prefix, channel := newPrefix(t, clientA), newChannel()
	a := newCoherentReplica(t, clientA, clientA, prefix, channel, tiercache.Options[string]{})
	b := newCoherentReplica(t, newTimeoutClient(t, addr), invClientB, prefix, channel, tiercache.Options[string]{})
	waitTrusted(t, a, b)

	require.NoError(t, a.cache.Set(ctx, "k", "v1", 0))
	waitPublished(t, a.inv, 1) // v1's key is not pending when v2's comes: two keys published
	readInto(t, b, "k", "v1")
	w := watch(b.cache, "k", "v1")
	defer w.finish(t)

	gate.closed.Store(true)
	killed, err := redistest.Do(addr, 5*time.Second, "CLIENT", "KILL", "ADDR", clientAddr(t, addr, name))
	require.NoError(t, err)
	require.Equal(t, "1", killed)
	require.Eventually(t, func() bool { return b.cache.Stats().SubscriptionDrops == 1 }, waitFor, tick)

	received := b.inv.Stats().KeysReceived
	require.NoError(t, a.cache.Set(ctx, "k", "v2", 0))
	w.armed.Store(true)
	require.Eventually(t, func() bool { return a.inv.Stats().KeysPublished == 2 }, waitFor, tick, "A announced v2")
	time.Sleep(50 * time.Millisecond)
	require.Equal(t, received, b.inv.Stats().KeysReceived, "the message was lost for B")
	require.Equal(t, "v2", mustGet(t, b.cache, "k"), "read from L2 while unsubscribed")
	require.False(t, b.l1.holds("k", "v1"), "L1 flushed at the drop")

	gate.closed.Store(false)
	waitTrusted(t, b)
	require.True(t, b.inv.Stats().Subscribed)
	require.Equal(t, "v2", mustGet(t, b.cache, "k"))
	require.Eventually(t, func() bool { return b.l1.holds("k", "v2") }, waitFor, tick)
	require.Equal(t, "v2", mustGet(t, b.cache, "k"))
	require.Zero(t, a.inv.Stats().SubscriptionDrops, "A's subscription was not touched")
}

// TestPropagationDelay measures, over 1,000 writes on loopback, the time
// from A's Set returning to the key's eviction from B's L1, twice:
//
//   - back to back: each write waits for its eviction before the next, so
//     the writes come less than a millisecond apart, within the batch
//     window of the message before: each waits for that window to end, the
//     most a write waits;
//   - sparse: 2 ms apart, more than the window: each goes out at once.
//
// The target is a p99 under 5 ms; the test fails only above 50 ms, to stay
// stable on a loaded machine. BenchmarkPropagationDelay measures the same
// for several windows.
func TestPropagationDelay(t *testing.T) {
	if testing.Short() {
		t.Skip("measures 2,000 writes")
	}
	const writes = 1000
	for _, c := range []struct {
		name string
		gap  time.Duration
	}{
		{"back to back", 0},
		{"2 ms apart", 2 * time.Millisecond},
	} {
		p50, p99, worst := quantiles(measurePropagation(t, 0, c.gap, writes))
		t.Logf("propagation, Set returned → evicted from the other L1, %d writes %s, BatchWindow %v: p50 %v, p99 %v, max %v",
			writes, c.name, redisstore.DefaultBatchWindow, p50, p99, worst)
		require.Less(t, p99, 50*time.Millisecond)
	}
}

// BenchmarkPropagationDelay is TestPropagationDelay for several batch
// windows, b.N writes each:
//
//	go test -run '^$' -bench PropagationDelay -benchtime 1000x
func BenchmarkPropagationDelay(b *testing.B) {
	for _, w := range []struct {
		name   string
		window time.Duration
		gap    time.Duration
	}{
		{"window=none", -1, 0},
		{"window=250µs", 250 * time.Microsecond, 0},
		{"window=500µs", 500 * time.Microsecond, 0},
		{"window=1ms(default)", 0, 0},
		{"window=1ms(default)/2ms-apart", 0, 2 * time.Millisecond},
		{"window=5ms", 5 * time.Millisecond, 0},
	} {
		b.Run(w.name, func(b *testing.B) {
			p50, p99, worst := quantiles(measurePropagation(b, w.window, w.gap, b.N))
			b.ReportMetric(float64(p50.Microseconds()), "p50-µs")
			b.ReportMetric(float64(p99.Microseconds()), "p99-µs")
			b.ReportMetric(float64(worst.Microseconds()), "max-µs")
		})
	}
}

// measurePropagation makes two replicas, A with the given batch window,
// writes n keys on A one at a time, gap apart, and returns, for each, the
// time from A's Set returning to the key's eviction from B's L1.
func measurePropagation(t testing.TB, window, gap time.Duration, n int) []time.Duration {
	t.Helper()
	ctx := context.Background()
	addr := redistest.Addr(t)
	clientA, clientB := newTimeoutClient(t, addr), newTimeoutClient(t, addr)
	prefix, channel := newPrefix(t, clientA), newChannel()
	a := newCoherentReplicaWindow(t, clientA, clientA, prefix, channel, window, tiercache.Options[string]{})
	b := newCoherentReplica(t, clientB, clientB, prefix, channel, tiercache.Options[string]{})
	waitTrusted(t, a, b)
	if bb, ok := t.(*testing.B); ok {
		bb.ResetTimer()
	}
	delays := make([]time.Duration, 0, n)
	for i := range n {
		if gap > 0 {
			time.Sleep(gap)
		}
		key := fmt.Sprint("p", i)
		require.NoError(t, a.cache.Set(ctx, key, "v", 0))
		returned := time.Now()
		deadline := time.After(waitFor)
		for {
			if at, ok := b.l1.deletedAt(key); ok {
				delays = append(delays, max(at.Sub(returned), 0))
				break
			}
			select {
			case <-b.l1.notify:
			case <-deadline:
				t.Fatalf("write %d never reached B", i)
			}
		}
	}
	return delays
}

// quantiles returns the median, the 99th percentile and the maximum of d,
// which it sorts.
func quantiles(d []time.Duration) (p50, p99, worst time.Duration) {
	if len(d) == 0 {
		return 0, 0, 0
	}
	slices.Sort(d)
	at := func(q float64) time.Duration { return d[min(int(q*float64(len(d))), len(d)-1)] }
	return at(0.50), at(0.99), d[len(d)-1]
}
