package tiercache_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tiercache/tiercache"
)

// The convergence stress tests: several goroutines Set, Delete, Get,
// GetOrLoad, GetMany and GetOrLoadMany over a few keys against fakes with
// small random delays, keeping an origin and the cache consistent as an
// application does (the origin is written first, then the cache, one writer
// of a key at a time). Once every writer has stopped and the cache is
// closed (which waits for its background work), every value either layer
// holds must be the origin's: the last Set of its key, or the absence the
// last Delete left. TIERCACHE_STRESS_SEED replays a configuration.

const stressKeys = 8

func stressKey(i int) string { return "k" + strconv.Itoa(i) }

// stressOrigin is the source of truth the loaders read. Writers of one key
// take turns through keyMu, as they would through a row lock.
type stressOrigin struct {
	keyMu [stressKeys]sync.Mutex
	mu    sync.Mutex
	ver   [stressKeys]int  // the version of the key's last write
	live  [stressKeys]bool // false: the key does not exist
}

func stressValue(key string, ver int) string { return key + "@" + strconv.Itoa(ver) }

// parseStressValue splits a value into its key and version.
func parseStressValue(t *testing.T, v string) (string, int) {
	t.Helper()
	key, ver, ok := strings.Cut(v, "@")
	require.True(t, ok, "value %q", v)
	n, err := strconv.Atoi(ver)
	require.NoError(t, err, "value %q", v)
	return key, n
}

func keyIndex(key string) int { n, _ := strconv.Atoi(key[1:]); return n }

// read returns key's value as the origin has it now.
func (o *stressOrigin) read(key string) (string, bool) {
	i := keyIndex(key)
	o.mu.Lock()
	defer o.mu.Unlock()
	return stressValue(key, o.ver[i]), o.live[i]
}

// write records a new version of key (live) or its deletion; the caller
// holds keyMu.
func (o *stressOrigin) write(key string, live bool) string {
	i := keyIndex(key)
	o.mu.Lock()
	defer o.mu.Unlock()
	o.ver[i]++
	o.live[i] = live
	return stressValue(key, o.ver[i])
}

func (o *stressOrigin) version(key string) (int, bool) {
	i := keyIndex(key)
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.ver[i], o.live[i]
}

// stressStore is what the checks need of a fake: both fakes have it.
type stressStore interface {
	tiercache.Backend[string]
	peek(key string) (tiercache.CacheValue[string], bool)
	configure(f func(b *fakeBackend))
	calls() backendCalls
}

// batchReads returns the keys a batch fake was asked for in GetMany calls.
func batchReads(s stressStore) int {
	b, ok := s.(*fakeBatchBackend)
	if !ok {
		return 0
	}
	n := 0
	for _, keys := range b.getManyCalls() {
		n += len(keys)
	}
	return n
}

type stressPolicy struct {
	name   string
	policy tiercache.ReadPolicy[string]
}

var stressPolicies = []stressPolicy{
	{"sequential", tiercache.SequentialReadPolicy[string]{}},
	{"parallel", tiercache.ParallelReadPolicy[string]{}},
	{"race-offload", tiercache.RaceReadPolicy[string]{Loser: tiercache.LoserOffload}},
	{"race-cancel", tiercache.RaceReadPolicy[string]{Loser: tiercache.LoserCancel}},
}

var stressKinds = []struct {
	name string
	l1   func() stressStore // a Flusher, so that it can serve with an Invalidator
	l2   func() stressStore
}{
	{"plain", func() stressStore { return newFlushBackend() }, func() stressStore { return newFakeBackend() }},
	{"batch", func() stressStore { return newFakeBatchBackend() }, func() stressStore { return newFakeBatchBackend() }},
}

// stressSeed is TIERCACHE_STRESS_SEED, or a fresh seed.
func stressSeed(t *testing.T) uint64 {
	if s := os.Getenv("TIERCACHE_STRESS_SEED"); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		require.NoError(t, err)
		return n
	}
	return rand.Uint64()
}

// stressOptions draws a configuration: freshness options, refill and write
// policies. No timeouts and no failures: every Set and Delete succeeds, so
// the last write of a key is what the cache must converge to.
func stressOptions(rng *rand.Rand, policy tiercache.ReadPolicy[string]) tiercache.Options[string] {
	o := tiercache.Options[string]{ReadPolicy: policy}
	if rng.IntN(2) == 0 {
		o.DefaultTTL = time.Duration(20+rng.IntN(40)) * time.Millisecond
	}
	if rng.IntN(2) == 0 {
		o.StaleAfter = time.Duration(1+rng.IntN(4)) * time.Millisecond
	}
	if rng.IntN(2) == 0 {
		o.NegativeTTL = time.Duration(10+rng.IntN(40)) * time.Millisecond
	}
	if rng.IntN(3) == 0 {
		o.L1MaxTTL = time.Duration(2+rng.IntN(10)) * time.Millisecond
	}
	if rng.IntN(3) == 0 {
		o.TTLJitter = 0.5
	}
	o.Refill = tiercache.RefillPolicy(rng.IntN(3))
	if rng.IntN(2) == 0 {
		o.WritePolicy = tiercache.ParallelWritePolicy{}
	}
	return o
}

// describe names the options stressOptions draws.
func describe(o tiercache.Options[string]) string {
	return fmt.Sprintf("ttl=%v stale=%v neg=%v l1max=%v jitter=%v refill=%v write=%T",
		o.DefaultTTL, o.StaleAfter, o.NegativeTTL, o.L1MaxTTL, o.TTLJitter, o.Refill, o.WritePolicy)
}

// stressRun drives caches with workers goroutines of ops operations each,
// and a chaos goroutine that changes the fakes' delays and gates. It
// returns when every worker is done and the fakes answer at once again.
func stressRun(t *testing.T, seed uint64, caches []*tiercache.Cache[string], origin *stressOrigin, stores []stressStore, workers, ops int) {
	stop := make(chan struct{})
	chaosDone := make(chan struct{})
	go func() {
		defer close(chaosDone)
		rng := rand.New(rand.NewPCG(seed, 99))
		for {
			for _, s := range stores {
				delay := time.Duration(0)
				if rng.IntN(2) == 0 {
					delay = time.Duration(rng.IntN(200)) * time.Microsecond
				}
				var gate chan struct{}
				if rng.IntN(8) == 0 {
					gate = make(chan struct{})
					time.AfterFunc(time.Duration(rng.IntN(500))*time.Microsecond, func() { close(gate) })
				}
				s.configure(func(b *fakeBackend) { b.delay, b.gate = delay, gate })
			}
			select {
			case <-stop:
				for _, s := range stores {
					s.configure(func(b *fakeBackend) { b.delay, b.gate = 0, nil })
				}
				return
			case <-time.After(time.Duration(200+rng.IntN(800)) * time.Microsecond):
			}
		}
	}()

	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(seed, uint64(w)))
			for range ops {
				c := caches[rng.IntN(len(caches))]
				if err := stressOp(rng, c, origin, len(caches) == 1); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(stop)
	<-chaosDone
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// stressPause is how long a loader sleeps after reading the origin, up to
// 150µs, so that writes land while loads run.
func stressPause(rng *rand.Rand) time.Duration {
	return time.Duration(rng.IntN(4)*rng.IntN(50)) * time.Microsecond
}

// checkServed checks a value a read returned: one of key's, and no newer
// than the origin's.
func checkServed(op, key, v string, origin *stressOrigin) error {
	k, ver, ok := strings.Cut(v, "@")
	n, err := strconv.Atoi(ver)
	if !ok || err != nil || k != key {
		return fmt.Errorf("%s(%s) returned %q, not a value of %s", op, key, v, key)
	}
	if latest, _ := origin.version(key); n > latest {
		return fmt.Errorf("%s(%s) returned %q, newer than the origin's version %d", op, key, v, latest)
	}
	return nil
}

// stressOp runs one random operation on c and checks what it answered.
// With ryw (a single cache), a writer then reads its own write back.
func stressOp(rng *rand.Rand, c *tiercache.Cache[string], origin *stressOrigin, ryw bool) error {
	key := stressKey(rng.IntN(stressKeys))
	ctx := context.Background()
	cancelled := rng.IntN(5) == 0 // a read with a tight deadline, which may end in the middle
	if cancelled {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, time.Duration(rng.IntN(400))*time.Microsecond)
		defer cancel()
	}
	// A read may fail only when its ctx ended (a policy may see the
	// deadline pass before ctx does): no layer ever fails here.
	readErr := func(op string, err error) error {
		if err == nil || ctx.Err() != nil && errors.Is(err, ctx.Err()) {
			return nil
		}
		if d, ok := ctx.Deadline(); ok && !time.Now().Before(d) && errors.Is(err, context.DeadlineExceeded) {
			return nil
		}
		return fmt.Errorf("%s(%s): %w", op, key, err)
	}
	// Loaders may run on other goroutines after the call has returned:
	// they sleep for a time drawn now.
	pause := stressPause(rng)
	load := func(context.Context) (string, error) {
		v, live := origin.read(key)
		time.Sleep(pause)
		if !live {
			return "", tiercache.ErrNotFound
		}
		return v, nil
	}
	loadMany := func(_ context.Context, missing []string) (map[string]string, error) {
		out := make(map[string]string, len(missing))
		for _, k := range missing {
			if v, live := origin.read(k); live {
				out[k] = v
			}
		}
		time.Sleep(pause)
		return out, nil
	}
	keys := func() []string {
		ks := make([]string, 1+rng.IntN(4))
		for i := range ks {
			ks[i] = stressKey(rng.IntN(stressKeys))
		}
		return ks
	}

	switch p := rng.IntN(100); {
	case p < 15, p < 22: // Set, Delete: origin first, then the cache
		live := p < 15
		i := keyIndex(key)
		origin.keyMu[i].Lock()
		defer origin.keyMu[i].Unlock()
		v := origin.write(key, live)
		if live {
			if err := c.Set(context.Background(), key, v, 0); err != nil {
				return fmt.Errorf("Set(%s): %w", key, err)
			}
		} else if err := c.Delete(context.Background(), key); err != nil {
			return fmt.Errorf("Delete(%s): %w", key, err)
		}
		if !ryw {
			return nil
		}
		// Read your own write, while no other write of key can land: a
		// background copy read before it must not have undone it.
		got, ok, err := c.Get(context.Background(), key)
		switch {
		case err != nil:
			return fmt.Errorf("Get(%s) after a write: %w", key, err)
		case !live && ok:
			return fmt.Errorf("Get(%s) after Delete returned %q", key, got)
		case live && ok && got != v:
			return fmt.Errorf("Get(%s) after Set(%q) returned %q", key, v, got)
		}
	case p < 42:
		v, ok, err := c.Get(ctx, key)
		if err := readErr("Get", err); err != nil {
			return err
		}
		if ok {
			return checkServed("Get", key, v, origin)
		}
	case p < 67:
		v, err := c.GetOrLoad(ctx, key, load)
		if errors.Is(err, tiercache.ErrNotFound) {
			return nil
		}
		if err := readErr("GetOrLoad", err); err != nil {
			return err
		}
		if err == nil {
			return checkServed("GetOrLoad", key, v, origin)
		}
	case p < 82:
		got, err := c.GetMany(ctx, keys())
		if err := readErr("GetMany", err); err != nil {
			return err
		}
		for k, v := range got {
			if err := checkServed("GetMany", k, v, origin); err != nil {
				return err
			}
		}
	default:
		got, err := c.GetOrLoadMany(ctx, keys(), loadMany)
		if err := readErr("GetOrLoadMany", err); err != nil {
			return err
		}
		for k, v := range got {
			if err := checkServed("GetOrLoadMany", k, v, origin); err != nil {
				return err
			}
		}
	}
	return nil
}

// requireConverged checks, once everything has settled, that what each
// layer holds of every key (unexpired) is the origin's: the value of the
// key's last Set, or, after a Delete, nothing or a remembered absence. A
// value loaded before the last write, or copied from L2 before it, is a
// value the cache should have dropped.
func requireConverged(t *testing.T, origin *stressOrigin, layers map[string]stressStore) {
	t.Helper()
	now := time.Now()
	for i := range stressKeys {
		key := stressKey(i)
		ver, live := origin.version(key)
		for name, s := range layers {
			v, ok := s.peek(key)
			if !ok || v.Expired(now) {
				continue
			}
			if v.Negative {
				require.False(t, live, "%s holds a remembered absence of %s, which exists (version %d)", name, key, ver)
				continue
			}
			k, n := parseStressValue(t, v.Data)
			require.Equal(t, key, k, "%s holds %q under %s", name, v.Data, key)
			require.True(t, live && n == ver, "%s holds %q; the origin has version %d of %s (exists: %v)", name, v.Data, ver, key, live)
		}
	}
}

// requireL1sAgree checks that every L1 holding a key (unexpired) holds
// what L2 holds of it, when L2 holds it.
func requireL1sAgree(t *testing.T, l2 stressStore, l1s ...stressStore) {
	t.Helper()
	now := time.Now()
	for i := range stressKeys {
		key := stressKey(i)
		in2, ok2 := l2.peek(key)
		ok2 = ok2 && !in2.Expired(now)
		for j, l1 := range l1s {
			in1, ok1 := l1.peek(key)
			if !ok1 || in1.Expired(now) || !ok2 {
				continue
			}
			require.True(t, in1.Data == in2.Data && in1.Negative == in2.Negative,
				"L1 #%d holds %+v of %s, L2 %+v", j, in1, key, in2)
		}
	}
}

// requireReadsCounted checks that every read of a layer the fake saw is
// counted once in Stats: a hit, a miss, a failure or an abandoned read. A
// LoserCancel race does not wait for its losing read, which no Close waits
// for either: the counts agree once that read has returned.
func requireReadsCounted(t *testing.T, c *tiercache.Cache[string], l1, l2 stressStore) {
	t.Helper()
	sum := func(s tiercache.LayerStats) uint64 { return s.Hits + s.Misses + s.Failures + s.Abandoned }
	reads := func(s stressStore) uint64 { return uint64(s.calls().gets + batchReads(s)) }
	agree := func() bool {
		s := c.Stats()
		return reads(l1) == sum(s.L1) && reads(l2) == sum(s.L2)
	}
	if !assert.Eventually(t, agree, 2*time.Second, time.Millisecond) {
		s := c.Stats()
		t.Errorf("reads seen by L1 %d, counted %+v; by L2 %d, counted %+v", reads(l1), s.L1, reads(l2), s.L2)
	}
}

// stressSize is the number of workers and of operations each runs;
// TIERCACHE_STRESS_OPS raises the latter for a longer exploration.
func stressSize(t *testing.T) (workers, ops int) {
	if s := os.Getenv("TIERCACHE_STRESS_OPS"); s != "" {
		n, err := strconv.Atoi(s)
		require.NoError(t, err)
		return 4, n
	}
	if testing.Short() {
		return 3, 60
	}
	return 4, 150
}

// newStressOrigin returns an origin where about half the keys exist.
func newStressOrigin(rng *rand.Rand) *stressOrigin {
	o := &stressOrigin{}
	for i := range stressKeys {
		o.live[i] = rng.IntN(2) == 0
	}
	return o
}

// stressCase draws the options and the origin of case number n of a run
// with seed, from the random stream stream, with inv as the Invalidator,
// and logs them; it returns the case's seed.
func stressCase(t *testing.T, seed uint64, n int, stream uint64, policy tiercache.ReadPolicy[string], inv tiercache.Invalidator) (uint64, tiercache.Options[string], *stressOrigin) {
	t.Helper()
	caseSeed := seed + uint64(n)
	rng := rand.New(rand.NewPCG(caseSeed, stream))
	opts := stressOptions(rng, policy)
	opts.Invalidator = inv
	t.Logf("seed %d: %v", caseSeed, describe(opts))
	return caseSeed, opts, newStressOrigin(rng)
}

func TestStressConvergence(t *testing.T) {
	seed := stressSeed(t)
	t.Logf("TIERCACHE_STRESS_SEED=%d", seed)
	workers, ops := stressSize(t)
	for pi, p := range stressPolicies {
		for ki, kind := range stressKinds {
			t.Run(p.name+"/"+kind.name, func(t *testing.T) {
				caseSeed, opts, origin := stressCase(t, seed, pi*len(stressKinds)+ki, 0, p.policy, nil)
				l1, l2 := kind.l1(), kind.l2()
				c, err := tiercache.New[string](l1, l2, &opts)
				require.NoError(t, err)
				stressRun(t, caseSeed, []*tiercache.Cache[string]{c}, origin, []stressStore{l1, l2}, workers, ops)
				require.NoError(t, c.Close(context.Background())) // waits for every background write
				if t.Failed() {
					return
				}
				requireConverged(t, origin, map[string]stressStore{"L1": l1, "L2": l2})
				requireL1sAgree(t, l2, l1)
				s := c.Stats()
				t.Logf("loads %d, refreshes %d, refills %d (skipped %d), coalesced %d, L1 %+v, L2 %+v",
					s.Loads, s.Refreshes, s.Refills, s.RefillsSkipped, s.Coalesced, s.L1, s.L2)
				requireReadsCounted(t, c, l1, l2)
			})
		}
	}
}

// lingeringBus is a fakeBus whose subscriptions stay open when a cache
// closes them: of two caches closed one after the other, the first still
// hears what the second's last background writes announce, as it would
// while it ran.
type lingeringBus struct{ bus *fakeBus }

type lingeringSub struct{ tiercache.Subscription }

func (l lingeringBus) Subscribe(h func(tiercache.InvalidationEvent)) (tiercache.Subscription, error) {
	s, err := l.bus.Subscribe(h)
	return lingeringSub{s}, err
}

func (lingeringSub) Close() error { return nil }

// Two caches over one L2, kept coherent by the in-process bus: once
// everything has settled, neither L1 holds a value that differs from
// L2's. L2 itself may hold an older value than the origin, and a writer
// may not read its own write back: a value one cache loaded before
// another's Set can reach L2 after it (the two caches' writes are not
// ordered against each other); its announcement then evicts both L1s.
func TestStressCoherence(t *testing.T) {
	seed := stressSeed(t)
	t.Logf("TIERCACHE_STRESS_SEED=%d", seed)
	workers, ops := stressSize(t)
	for pi, p := range stressPolicies {
		for ki, kind := range stressKinds {
			t.Run(p.name+"/"+kind.name, func(t *testing.T) {
				caseSeed, opts, origin := stressCase(t, seed, pi*len(stressKinds)+ki, 1, p.policy, lingeringBus{&fakeBus{}})
				l1a, l1b, l2 := kind.l1(), kind.l1(), kind.l2()
				a, err := tiercache.New[string](l1a, l2, &opts)
				require.NoError(t, err)
				b, err := tiercache.New[string](l1b, l2, &opts)
				require.NoError(t, err)
				stressRun(t, caseSeed, []*tiercache.Cache[string]{a, b}, origin, []stressStore{l1a, l1b, l2}, workers, ops)
				require.NoError(t, a.Close(context.Background()))
				require.NoError(t, b.Close(context.Background()))
				if t.Failed() {
					return
				}
				requireL1sAgree(t, l2, l1a, l1b)
			})
		}
	}
}
