package tiercache_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tiercache/tiercache"
)

// fakeBus is a hand-written in-process Invalidator: announcements are
// delivered at once, on the announcing goroutine, to every other
// subscriber. Its transport can be taken down and brought back.
type fakeBus struct {
	mu        sync.Mutex
	subs      []*fakeSub
	down      bool
	announced [][]string
}

type fakeSub struct {
	bus     *fakeBus
	handler func(tiercache.InvalidationEvent)
	closed  bool
}

func (b *fakeBus) Subscribe(h func(tiercache.InvalidationEvent)) (tiercache.Subscription, error) {
	s := &fakeSub{bus: b, handler: h}
	b.mu.Lock()
	b.subs = append(b.subs, s)
	down := b.down
	b.mu.Unlock()
	if down {
		h(tiercache.InvalidationEvent{Kind: tiercache.SubscriptionLost})
	} else {
		h(tiercache.InvalidationEvent{Kind: tiercache.SubscriptionRestored})
	}
	return s, nil
}

func (s *fakeSub) Announce(_ context.Context, keys ...string) error {
	b := s.bus
	b.mu.Lock()
	if b.down {
		b.mu.Unlock()
		return errors.New("bus down")
	}
	b.announced = append(b.announced, keys)
	var others []*fakeSub
	for _, o := range b.subs {
		if o != s && !o.closed {
			others = append(others, o)
		}
	}
	b.mu.Unlock()
	for _, o := range others {
		o.handler(tiercache.InvalidationEvent{Kind: tiercache.KeysChanged, Keys: keys})
	}
	return nil
}

func (s *fakeSub) Close() error {
	s.bus.mu.Lock()
	defer s.bus.mu.Unlock()
	s.closed = true
	return nil
}

// setDown takes the transport down (up=false) or brings it back, telling
// every subscriber.
func (b *fakeBus) setDown(down bool) {
	b.mu.Lock()
	b.down = down
	subs := append([]*fakeSub(nil), b.subs...)
	b.mu.Unlock()
	kind := tiercache.SubscriptionRestored
	if down {
		kind = tiercache.SubscriptionLost
	}
	for _, s := range subs {
		if !s.closed {
			s.handler(tiercache.InvalidationEvent{Kind: kind})
		}
	}
}

func (b *fakeBus) announcements() [][]string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([][]string(nil), b.announced...)
}

// flushBackend is a fakeBackend that can be flushed, as an L1 must be to
// take part in invalidation.
type flushBackend struct {
	*fakeBackend
	mu      sync.Mutex
	flushes int
}

var _ tiercache.Flusher = (*flushBackend)(nil)

func newFlushBackend() *flushBackend { return &flushBackend{fakeBackend: newFakeBackend()} }

func (b *flushBackend) Flush(context.Context) error {
	b.fakeBackend.configure(func(fb *fakeBackend) { clear(fb.m) })
	b.mu.Lock()
	defer b.mu.Unlock()
	b.flushes++
	return nil
}

func (b *flushBackend) flushCount() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.flushes
}

// replicas returns two caches with L1s of their own over one L2, both on
// bus, with background work run inline.
func replicas(t *testing.T, bus *fakeBus, opts tiercache.Options[string]) (a, b *tiercache.Cache[string], l1a, l1b *flushBackend, l2 *fakeBackend) {
	t.Helper()
	l1a, l1b, l2 = newFlushBackend(), newFlushBackend(), newFakeBackend()
	opts.Invalidator = bus
	if opts.Offload == nil {
		opts.Offload = &inlineOffload{}
	}
	a = openCache(t, l1a, l2, &opts)
	b = openCache(t, l1b, l2, &opts)
	return a, b, l1a, l1b, l2
}

func TestInvalidatorNeedsAFlusherL1(t *testing.T) {
	_, err := tiercache.New[string](newFakeBackend(), newFakeBackend(), &tiercache.Options[string]{Invalidator: &fakeBus{}})
	require.ErrorContains(t, err, "tiercache:")
	require.ErrorContains(t, err, "Flusher")
}

func TestInvalidatorSubscribeError(t *testing.T) {
	boom := errors.New("no bus today")
	inv := tiercache.InvalidatorFunc(func(func(tiercache.InvalidationEvent)) (tiercache.Subscription, error) { return nil, boom })
	_, err := tiercache.New[string](newFlushBackend(), newFakeBackend(), &tiercache.Options[string]{Invalidator: inv})
	require.ErrorIs(t, err, boom)
}

// A write in one cache evicts the key from the other's L1, which then reads
// the new value from L2.
func TestInvalidationEvictsOtherL1(t *testing.T) {
	ctx := context.Background()
	writes := []struct {
		name  string
		write func(c *tiercache.Cache[string]) error
		want  string // "" : a miss
	}{
		{"Set", func(c *tiercache.Cache[string]) error { return c.Set(ctx, "k", "v2", 0) }, "v2"},
		{"Delete", func(c *tiercache.Cache[string]) error { return c.Delete(ctx, "k") }, ""},
	}
	for _, w := range writes {
		t.Run(w.name, func(t *testing.T) {
			bus := &fakeBus{}
			a, b, _, l1b, _ := replicas(t, bus, tiercache.Options[string]{})
			require.NoError(t, a.Set(ctx, "k", "v1", 0))
			v, ok, err := b.Get(ctx, "k") // from L2, refilled into b's L1
			require.NoError(t, err)
			require.True(t, ok)
			require.Equal(t, "v1", v)
			_, inL1 := l1b.peek("k")
			require.True(t, inL1)

			require.NoError(t, w.write(a))
			_, inL1 = l1b.peek("k")
			require.False(t, inL1, "b's L1 copy is evicted")
			v, ok, err = b.Get(ctx, "k")
			require.NoError(t, err)
			require.Equal(t, w.want != "", ok)
			require.Equal(t, w.want, v)
			s := b.Stats()
			require.Equal(t, uint64(2), s.InvalidationsReceived, "both of a's writes")
			require.Equal(t, uint64(2), s.InvalidationEvictions)
		})
	}
}

// A cache does not evict what it has just written itself.
func TestInvalidationNoSelfEcho(t *testing.T) {
	ctx := context.Background()
	bus := &fakeBus{}
	a, _, l1a, _, l2 := replicas(t, bus, tiercache.Options[string]{})
	require.NoError(t, a.Set(ctx, "k", "mine", 0))
	got, inL1 := l1a.peek("k")
	require.True(t, inL1)
	require.Equal(t, "mine", got.Data)
	l2Gets := l2.calls().gets
	v, ok, err := a.Get(ctx, "k")
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, "mine", v)
	require.Equal(t, l2Gets, l2.calls().gets, "served by L1")
	s := a.Stats()
	require.Equal(t, uint64(1), s.InvalidationsSent)
	require.Zero(t, s.InvalidationsReceived)
	require.Zero(t, s.InvalidationEvictions)
}

// Loads and refreshes are announced too, once their value is in L2.
func TestInvalidationAnnouncesLoadsAndRefreshes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		bus := &fakeBus{}
		a, b, _, l1b, _ := replicas(t, bus, tiercache.Options[string]{StaleAfter: time.Minute, DefaultTTL: time.Hour})
		loads := 0
		load := func(context.Context) (string, error) {
			loads++
			return "v" + string(rune('0'+loads)), nil
		}
		v, err := a.GetOrLoad(ctx, "k", load)
		require.NoError(t, err)
		require.Equal(t, "v1", v)
		require.Equal(t, [][]string{{"k"}}, bus.announcements(), "the load is announced")

		_, _, err = b.Get(ctx, "k")
		require.NoError(t, err)
		_, inL1 := l1b.peek("k")
		require.True(t, inL1)

		time.Sleep(2 * time.Minute) // stale now
		v, err = a.GetOrLoad(ctx, "k", load)
		require.NoError(t, err)
		require.Equal(t, "v1", v, "served stale")
		require.Equal(t, 2, loads, "refreshed")
		require.Len(t, bus.announcements(), 2, "the refresh is announced")
		_, inL1 = l1b.peek("k")
		require.False(t, inL1, "b's stale copy is evicted")
		v, _, err = b.Get(ctx, "k")
		require.NoError(t, err)
		require.Equal(t, "v2", v)
	})
}

// Until the Invalidator first says invalidations flow, and while it says
// they are lost, L1 is flushed, neither read nor written; reads go to L2.
func TestInvalidationDistrustsL1WhileUnsubscribed(t *testing.T) {
	ctx := context.Background()
	bus := &fakeBus{down: true}
	a, _, l1a, _, l2 := replicas(t, bus, tiercache.Options[string]{})

	require.NoError(t, a.Set(ctx, "k", "v1", 0))
	_, inL1 := l1a.peek("k")
	require.False(t, inL1, "not written into a distrusted L1")
	l1a.put("k", tiercache.CacheValue[string]{Data: "planted"}) // whatever L1 holds is not read
	v, ok, err := a.Get(ctx, "k")
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, "v1", v, "read around L1, from L2")
	require.Zero(t, l1a.calls().gets)
	require.Equal(t, uint64(1), a.Stats().InvalidationErrors, "the announcement the bus refused")
	require.Positive(t, a.Stats().Unsubscribed)

	bus.setDown(false)
	_, inL1 = l1a.peek("k")
	require.False(t, inL1, "flushed when invalidations flow again")
	_, _, err = a.Get(ctx, "k")
	require.NoError(t, err)
	_, inL1 = l1a.peek("k")
	require.True(t, inL1, "L1 is used again: the L2 hit was refilled")

	before := l1a.flushCount()
	bus.setDown(true)
	require.Equal(t, before+1, l1a.flushCount(), "flushed at once on the drop")
	_, inL1 = l1a.peek("k")
	require.False(t, inL1)
	require.Equal(t, uint64(1), a.Stats().SubscriptionDrops)
	require.NoError(t, a.Set(ctx, "k", "v2", 0))
	_, inL1 = l1a.peek("k")
	require.False(t, inL1, "not written while the subscription is lost")
	v, _, err = a.Get(ctx, "k")
	require.NoError(t, err)
	require.Equal(t, "v2", v)

	bus.setDown(false)
	require.Equal(t, before+2, l1a.flushCount(), "flushed again on restore")
	require.Equal(t, l2.calls().sets, 2)
}

// A copy from L2 into L1 that was read before an invalidation of its key
// arrived does not reach L1.
func TestInvalidationBeatsRefill(t *testing.T) {
	ctx := context.Background()
	bus := &fakeBus{}
	off := &heldOffload{}
	a, b, l1a, _, l2 := replicas(t, bus, tiercache.Options[string]{Offload: off})
	l2.put("k", tiercache.CacheValue[string]{Data: "old"})
	v, _, err := a.Get(ctx, "k") // reads "old" from L2; its refill is held
	require.NoError(t, err)
	require.Equal(t, "old", v)
	l2.put("k", tiercache.CacheValue[string]{Data: "new"})
	require.NoError(t, b.Delete(ctx, "unrelated"))
	require.NoError(t, bus.subs[1].Announce(ctx, "k")) // b says k changed
	off.run()
	_, inL1 := l1a.peek("k")
	require.False(t, inL1, "the refill read before the invalidation is dropped")
	require.Equal(t, uint64(1), a.Stats().RefillsSkipped)
	v, _, err = a.Get(ctx, "k")
	require.NoError(t, err)
	require.Equal(t, "new", v)
	off.run()
}

// A Set during which another cache invalidates the key leaves it out of L1:
// which of the two writes landed last in L2 is unknown.
func TestInvalidationDuringSet(t *testing.T) {
	ctx := context.Background()
	bus := &fakeBus{}
	var sub tiercache.Subscription
	var l1a *flushBackend
	policy := tiercache.WritePolicyFunc(func(ctx context.Context, key string, l1, l2 tiercache.LayerWriter, _ tiercache.Offload) error {
		if err := l2.Set(ctx); err != nil {
			return err
		}
		require.NoError(t, sub.Announce(ctx, key)) // another replica wrote the key meanwhile
		return l1.Set(ctx)
	})
	a, _, l1a, _, _ := replicas(t, bus, tiercache.Options[string]{WritePolicy: policy})
	sub = bus.subs[1]
	require.NoError(t, a.Set(ctx, "k", "mine", 0))
	_, inL1 := l1a.peek("k")
	require.False(t, inL1)
}

func TestInvalidationClosesSubscription(t *testing.T) {
	bus := &fakeBus{}
	c, err := tiercache.New[string](newFlushBackend(), newFakeBackend(), &tiercache.Options[string]{Invalidator: bus})
	require.NoError(t, err)
	require.NoError(t, c.Close(context.Background()))
	require.True(t, bus.subs[0].closed)
	require.NoError(t, c.Close(context.Background()), "idempotent")
}

func TestInvalidationKindString(t *testing.T) {
	require.Equal(t, "keys-changed", tiercache.KeysChanged.String())
	require.Equal(t, "subscription-lost", tiercache.SubscriptionLost.String())
	require.Equal(t, "subscription-restored", tiercache.SubscriptionRestored.String())
	require.Equal(t, "InvalidationKind(9)", tiercache.InvalidationKind(9).String())
}

// While the subscription is down L1 is not read, and a read that goes
// around it counts no L1 read (Stats), as a batch read does not, under
// every policy.
func TestDistrustedL1CountsNoRead(t *testing.T) {
	eachLoadPolicy(t, func(t *testing.T, lp loadPolicy) {
		l1, l2 := newFlushBackend(), newFakeBackend()
		l1.put("a", tiercache.CacheValue[string]{Data: "a1"})
		l2.put("b", tiercache.CacheValue[string]{Data: "b2"})
		c := openCache(t, l1, l2, &tiercache.Options[string]{
			ReadPolicy: lp.policy, Invalidator: &fakeBus{down: true}, Offload: &inlineOffload{},
		})
		_, ok, err := c.Get(context.Background(), "a")
		require.NoError(t, err)
		require.False(t, ok, "L1 is distrusted: not read")
		v, _, err := c.Get(context.Background(), "b")
		require.NoError(t, err)
		require.Equal(t, "b2", v)
		v, err = c.GetOrLoad(context.Background(), "c", func(context.Context) (string, error) { return "c", nil })
		require.NoError(t, err)
		require.Equal(t, "c", v)
		s := c.Stats()
		require.Zero(t, s.L1.Hits+s.L1.Misses+s.L1.Failures, "L1 was not read")
		require.EqualValues(t, 3, s.L2.Hits+s.L2.Misses)
	})
}

// Stats.Unsubscribed only grows, also read while the subscription is lost
// and restored over and over: a period that ends is never missing from a
// reading taken as it ends.
func TestUnsubscribedNeverDecreases(t *testing.T) {
	var handler func(tiercache.InvalidationEvent)
	inv := tiercache.InvalidatorFunc(func(h func(tiercache.InvalidationEvent)) (tiercache.Subscription, error) {
		handler = h
		return &fakeSub{bus: &fakeBus{}}, nil
	})
	c := openCache(t, newFlushBackend(), newFakeBackend(), &tiercache.Options[string]{Invalidator: inv, Offload: &inlineOffload{}})
	stop := make(chan struct{})
	toggled := make(chan struct{})
	go func() {
		defer close(toggled)
		for {
			select {
			case <-stop:
				return
			default:
			}
			handler(tiercache.InvalidationEvent{Kind: tiercache.SubscriptionRestored})
			handler(tiercache.InvalidationEvent{Kind: tiercache.SubscriptionLost})
		}
	}()
	defer func() { close(stop); <-toggled }()
	last := c.Stats().Unsubscribed
	for range 20_000 {
		d := c.Stats().Unsubscribed
		require.GreaterOrEqual(t, d, last, "Unsubscribed went back")
		last = d
	}
}

// panicFlushBackend is an L1 whose Flush panics.
type panicFlushBackend struct{ *fakeBackend }

func (panicFlushBackend) Flush(context.Context) error { panic("flush bug") }

// panicAnnounceSub is a Subscription whose Announce panics.
type panicAnnounceSub struct{}

func (panicAnnounceSub) Announce(context.Context, ...string) error { panic("announce bug") }
func (panicAnnounceSub) Close() error                              { return nil }

// A Flusher or a Subscription that panics is that call's failure, counted
// where a failure of it is, never a crash of the goroutine that called it.
func TestPanickingFlushAndAnnounceAreFailures(t *testing.T) {
	ctx := context.Background()
	var handler func(tiercache.InvalidationEvent)
	inv := tiercache.InvalidatorFunc(func(h func(tiercache.InvalidationEvent)) (tiercache.Subscription, error) {
		handler = h
		return panicAnnounceSub{}, nil
	})
	c := openCache(t, panicFlushBackend{newFakeBackend()}, newFakeBackend(), &tiercache.Options[string]{Invalidator: inv, Offload: &inlineOffload{}})
	handler(tiercache.InvalidationEvent{Kind: tiercache.SubscriptionRestored}) // flushes L1
	require.Equal(t, uint64(1), c.Stats().WriteErrors, "the flush that panicked")
	require.NoError(t, c.Set(ctx, "k", "v", 0), "the value is written; only its announcement failed")
	require.Equal(t, uint64(1), c.Stats().InvalidationErrors, "the announcement that panicked")
	v, ok, err := c.Get(ctx, "k")
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, "v", v)
}

// heldSetL1 is an L1 whose Sets wait, once held, until released: an L1
// write in progress for as long as a test needs.
type heldSetL1 struct {
	*flushBackend
	mu   sync.Mutex
	gate chan struct{} // nil: Sets go through
}

func (b *heldSetL1) hold() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.gate = make(chan struct{})
}

func (b *heldSetL1) release() {
	b.mu.Lock()
	defer b.mu.Unlock()
	close(b.gate)
	b.gate = nil
}

func (b *heldSetL1) Set(ctx context.Context, key string, v tiercache.CacheValue[string]) error {
	b.mu.Lock()
	gate := b.gate
	b.mu.Unlock()
	if gate != nil {
		<-gate
	}
	return b.flushBackend.Set(ctx, key, v)
}

// An L1 write of this cache that is under way while the subscription is
// lost and restored (another cache writing the key meanwhile, its
// announcement lost) does not land after the flushes: L1 does not keep a
// value read, loaded or written before the loss once it is trusted again.
func TestFlushWaitsForL1WriteInProgress(t *testing.T) {
	ctx := context.Background()
	writes := []struct {
		name  string
		write func(c *tiercache.Cache[string], l2 *fakeBackend) error
	}{
		{"refill", func(c *tiercache.Cache[string], l2 *fakeBackend) error {
			l2.put("k", tiercache.CacheValue[string]{Data: "old"})
			_, _, err := c.Get(ctx, "k")
			return err
		}},
		{"load", func(c *tiercache.Cache[string], _ *fakeBackend) error {
			_, err := c.GetOrLoad(ctx, "k", func(context.Context) (string, error) { return "old", nil })
			return err
		}},
		{"Set", func(c *tiercache.Cache[string], _ *fakeBackend) error { return c.Set(ctx, "k", "old", 0) }},
	}
	for _, w := range writes {
		t.Run(w.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				bus := &fakeBus{}
				l1a := &heldSetL1{flushBackend: newFlushBackend()}
				l2 := newFakeBackend()
				opts := tiercache.Options[string]{Invalidator: bus, Offload: &inlineOffload{}}
				a := openCache(t, l1a, l2, &opts)
				b := openCache(t, newFlushBackend(), l2, &opts)

				l1a.hold()
				wrote := make(chan error)
				go func() { wrote <- w.write(a, l2) }()
				synctest.Wait() // a's L1 write is under way

				outage := make(chan struct{})
				go func() {
					defer close(outage)
					bus.setDown(true)
					require.NoError(t, b.Set(ctx, "k", "new", 0)) // its announcement is lost
					bus.setDown(false)
				}()
				synctest.Wait()
				l1a.release()
				require.NoError(t, <-wrote)
				<-outage

				v, ok, err := a.Get(ctx, "k")
				require.NoError(t, err)
				require.True(t, ok)
				require.Equal(t, "new", v, "a's L1 kept a value from before the loss")
			})
		})
	}
}

// landedL2 is an L2 whose Sets, once failing, store the value and then
// report a timeout: a write that timed out on the client but landed.
type landedL2 struct {
	*fakeBackend
	failing atomic.Bool
}

func (b *landedL2) Set(ctx context.Context, key string, v tiercache.CacheValue[string]) error {
	if err := b.fakeBackend.Set(ctx, key, v); err != nil || !b.failing.Load() {
		return err
	}
	return context.DeadlineExceeded
}

// The L2 write of a refreshed value is announced even when it fails, as a
// Set's is: it may have landed, and another cache's L1 must not keep the
// old value beside it.
func TestInvalidationAnnouncesFailedL2WriteOfLoad(t *testing.T) {
	loads := []struct {
		name string
		get  func(c *tiercache.Cache[string], n *int) (string, error)
	}{
		{"GetOrLoad", func(c *tiercache.Cache[string], n *int) (string, error) {
			return c.GetOrLoad(context.Background(), "k", func(context.Context) (string, error) {
				*n++
				return "v" + string(rune('0'+*n)), nil
			})
		}},
		{"GetOrLoadMany", func(c *tiercache.Cache[string], n *int) (string, error) {
			m, err := c.GetOrLoadMany(context.Background(), []string{"k"}, func(context.Context, []string) (map[string]string, error) {
				*n++
				return map[string]string{"k": "v" + string(rune('0'+*n))}, nil
			})
			return m["k"], err
		}},
	}
	for _, l := range loads {
		t.Run(l.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				ctx := context.Background()
				bus := &fakeBus{}
				l2 := &landedL2{fakeBackend: newFakeBackend()}
				opts := tiercache.Options[string]{Invalidator: bus, Offload: &inlineOffload{}, StaleAfter: time.Minute, DefaultTTL: time.Hour}
				a := openCache(t, newFlushBackend(), l2, &opts)
				l1b := newFlushBackend()
				b := openCache(t, l1b, l2, &opts)
				n := 0
				v, err := l.get(a, &n)
				require.NoError(t, err)
				require.Equal(t, "v1", v)
				v, _, err = b.Get(ctx, "k") // refilled into b's L1
				require.NoError(t, err)
				require.Equal(t, "v1", v)

				time.Sleep(2 * time.Minute) // stale now
				l2.failing.Store(true)
				v, err = l.get(a, &n)
				require.NoError(t, err)
				require.Equal(t, "v1", v, "served stale")
				require.Equal(t, 2, n, "refreshed")
				got, _ := l2.peek("k")
				require.Equal(t, "v2", got.Data, "the refresh's L2 write landed, though it failed")
				_, inL1 := l1b.peek("k")
				require.False(t, inL1, "b's old copy is evicted")
				v, _, err = b.Get(ctx, "k")
				require.NoError(t, err)
				require.Equal(t, "v2", v)
			})
		})
	}
}

// take removes the first task of kind held and returns it.
func (o *heldOffload) take(kind string) func(context.Context) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for i, k := range o.kinds {
		if k == kind {
			task := o.tasks[i]
			o.tasks, o.kinds = append(o.tasks[:i:i], o.tasks[i+1:]...), append(o.kinds[:i:i], o.kinds[i+1:]...)
			return task
		}
	}
	return nil
}

// A refill of a key that checked its ticket before a refresh found the key
// gone, and is still writing L1 while the refresh evicts it, does not land
// after the eviction: L1 does not keep the value L2 no longer has.
func TestRefreshEvictionWaitsForRefillInProgress(t *testing.T) {
	serves := []struct {
		name  string
		serve func(c *tiercache.Cache[string]) (string, error)
	}{
		{"GetOrLoad", func(c *tiercache.Cache[string]) (string, error) {
			return c.GetOrLoad(context.Background(), "k", func(context.Context) (string, error) { return "", tiercache.ErrNotFound })
		}},
		{"GetOrLoadMany", func(c *tiercache.Cache[string]) (string, error) {
			m, err := c.GetOrLoadMany(context.Background(), []string{"k"}, func(context.Context, []string) (map[string]string, error) { return nil, nil })
			return m["k"], err
		}},
	}
	for _, sv := range serves {
		t.Run(sv.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				ctx := context.Background()
				off := &heldOffload{}
				l1 := &heldSetL1{flushBackend: newFlushBackend()}
				l2 := newFakeBackend()
				c := openCache(t, l1, l2, &tiercache.Options[string]{Invalidator: &fakeBus{}, Offload: off, StaleAfter: time.Minute, DefaultTTL: time.Hour})
				require.NoError(t, c.Set(ctx, "k", "old", 0))
				require.NoError(t, l1.Delete(ctx, "k"))
				time.Sleep(2 * time.Minute) // stale now

				_, _, err := c.Get(ctx, "k") // from L2: its refill is held
				require.NoError(t, err)
				refill := off.take(tiercache.OffloadKindRefill)
				require.NotNil(t, refill)
				v, err := sv.serve(c)
				require.NoError(t, err)
				require.Equal(t, "old", v, "served stale; its refresh is held")
				refresh := off.take(tiercache.OffloadKindRefresh)
				require.NotNil(t, refresh)

				l1.hold()
				refilled := make(chan struct{})
				go func() { defer close(refilled); refill(ctx) }()
				synctest.Wait() // the refill is writing L1
				refreshed := make(chan struct{})
				go func() { defer close(refreshed); refresh(ctx) }() // finds k gone and evicts it
				synctest.Wait()
				l1.release()
				<-refilled
				<-refreshed
				off.run()

				_, inL2 := l2.peek("k")
				require.False(t, inL2, "evicted from L2")
				_, ok, err := c.Get(ctx, "k")
				require.NoError(t, err)
				require.False(t, ok, "L1 kept the value the refresh evicted")
				off.run()
			})
		})
	}
}
