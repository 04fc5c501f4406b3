package redisstore_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tiercache/tiercache"
	"github.com/tiercache/tiercache/redisstore"
	"github.com/tiercache/tiercache/redisstore/internal/redistest"
)

// Timeouts of the waits in these tests: generous, for a loaded CI machine.
const (
	waitFor = 10 * time.Second
	tick    = 2 * time.Millisecond
)

// channels numbers the channels handed out by newChannel.
var channels atomic.Int64

// newChannel returns a pub/sub channel no other test uses, also on a server
// shared with other runs.
func newChannel() string {
	return fmt.Sprintf("redisstore-test:inv:%d:%d:%d", os.Getpid(), time.Now().UnixNano(), channels.Add(1))
}

// newInvalidator returns an Invalidator closed when t ends.
func newInvalidator(t testing.TB, client redis.UniversalClient, opts redisstore.InvalidatorOptions) *redisstore.Invalidator {
	t.Helper()
	inv, err := redisstore.NewInvalidator(client, &opts)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, inv.Close()) })
	return inv
}

// newTimeoutClient returns a client of addr built as the package
// documentation advises, closed when t ends.
func newTimeoutClient(t testing.TB, addr string) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: addr, ContextTimeoutEnabled: true})
	t.Cleanup(func() { c.Close() })
	return c
}

// recorder is a subscription handler that records what it is told.
type recorder struct {
	mu      sync.Mutex
	events  []tiercache.InvalidationEvent
	keys    []string
	block   chan struct{} // when not nil, every call waits for it to be closed
	entered chan struct{} // when not nil, a call about to wait for block signals it (if it has room)
}

func (r *recorder) handle(e tiercache.InvalidationEvent) {
	if r.block != nil {
		if r.entered != nil {
			select {
			case r.entered <- struct{}{}:
			default:
			}
		}
		<-r.block
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, e)
	r.keys = append(r.keys, e.Keys...)
}

// subscribe subscribes r to inv, closing the subscription when t ends.
func (r *recorder) subscribe(t testing.TB, inv *redisstore.Invalidator) tiercache.Subscription {
	t.Helper()
	sub, err := inv.Subscribe(r.handle)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, sub.Close()) })
	return sub
}

// kinds returns the kinds of the events so far.
func (r *recorder) kinds() []tiercache.InvalidationKind {
	r.mu.Lock()
	defer r.mu.Unlock()
	var kinds []tiercache.InvalidationKind
	for _, e := range r.events {
		kinds = append(kinds, e.Kind)
	}
	return kinds
}

// gotKeys returns the keys received so far, sorted.
func (r *recorder) gotKeys() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Sorted(slices.Values(r.keys))
}

// has reports whether every key has been received.
func (r *recorder) has(keys ...string) bool {
	got := r.gotKeys()
	for _, k := range keys {
		if _, found := slices.BinarySearch(got, k); !found {
			return false
		}
	}
	return true
}

// last returns the kind of the last event, and false before any.
func (r *recorder) last() (tiercache.InvalidationKind, bool) {
	kinds := r.kinds()
	if len(kinds) == 0 {
		return 0, false
	}
	return kinds[len(kinds)-1], true
}

// waitRestored waits until r has been told SubscriptionRestored last.
func (r *recorder) waitRestored(t testing.TB) {
	t.Helper()
	require.Eventually(t, func() bool {
		k, ok := r.last()
		return ok && k == tiercache.SubscriptionRestored
	}, waitFor, tick, "SubscriptionRestored never came; events: %v", r.kinds())
}

// waitSubscribed waits until every Invalidator's subscription is confirmed.
func waitSubscribed(t testing.TB, invs ...*redisstore.Invalidator) {
	t.Helper()
	for _, inv := range invs {
		require.Eventually(t, func() bool { return inv.Stats().Subscribed }, waitFor, tick)
	}
}

// waitPublished waits until inv has counted n keys published: it counts
// them once PUBLISH has returned, which may be after a subscriber got them.
func waitPublished(t testing.TB, inv *redisstore.Invalidator, n uint64) {
	t.Helper()
	require.Eventually(t, func() bool { return inv.Stats().KeysPublished == n }, waitFor, tick)
}

// onPublish is a go-redis hook that calls at, when set, as each PUBLISH
// begins, with its number from 1: at may record what a test needs, hold
// the PUBLISH, or refuse it by returning an error, which the PUBLISH then
// fails with. With detach, a PUBLISH is sent without its ctx's deadline,
// which a hold would otherwise use up.
type onPublish struct {
	at     func(ctx context.Context, n int64) error
	detach bool
	n      atomic.Int64
}

func (h *onPublish) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *onPublish) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if cmd.Name() == "publish" {
			n := h.n.Add(1)
			if h.at != nil {
				if err := h.at(ctx, n); err != nil {
					cmd.SetErr(err)
					return err
				}
			}
			if h.detach {
				ctx = context.WithoutCancel(ctx)
			}
		}
		return next(ctx, cmd)
	}
}

func (h *onPublish) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

var errPublishRefused = errors.New("onPublish: refused")

// publishRefuser refuses every PUBLISH while failing is set, and counts
// those it refused; its refuse is an onPublish's at.
type publishRefuser struct {
	failing atomic.Bool
	refused atomic.Int64
}

func (r *publishRefuser) refuse(context.Context, int64) error {
	if !r.failing.Load() {
		return nil
	}
	r.refused.Add(1)
	return errPublishRefused
}

// windowEnds returns a channel closed, from a goroutine of its own, when a
// timer of d started now fires. Started before the announcement that opens
// a batch window, it is the reference for "did not wait for the window":
// it closes no sooner than the window ends, and late by as much as the
// machine's load makes timers late, so that an event seen before it
// closes did not wait for the window whatever that load.
func windowEnds(d time.Duration) <-chan struct{} {
	ended := make(chan struct{})
	time.AfterFunc(d, func() { close(ended) })
	return ended
}

// isClosed reports whether c is closed.
func isClosed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

func TestNewInvalidator(t *testing.T) {
	client := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"}) // nothing listens there
	defer client.Close()

	t.Run("nil client", func(t *testing.T) {
		_, err := redisstore.NewInvalidator(nil, nil)
		require.ErrorContains(t, err, "redisstore:")
	})
	// A nil pointer of a client type is refused too, before any goroutine
	// of the Invalidator could use it.
	for name, nilClient := range map[string]redis.UniversalClient{
		"nil *redis.Client":        (*redis.Client)(nil),
		"nil *redis.ClusterClient": (*redis.ClusterClient)(nil),
		"nil *redis.Ring":          (*redis.Ring)(nil),
	} {
		t.Run(name, func(t *testing.T) {
			inv, err := redisstore.NewInvalidator(nilClient, nil)
			if inv != nil {
				defer inv.Close()
			}
			require.ErrorContains(t, err, "redisstore: NewInvalidator: nil client")
		})
	}
	for _, c := range []struct {
		name string
		opts redisstore.InvalidatorOptions
		ok   bool
	}{
		{"zero", redisstore.InvalidatorOptions{}, true},
		{"no batch window", redisstore.InvalidatorOptions{BatchWindow: -1}, true},
		{"batch window at most", redisstore.InvalidatorOptions{BatchWindow: redisstore.MaxBatchWindow}, true},
		{"batch window too long", redisstore.InvalidatorOptions{BatchWindow: redisstore.MaxBatchWindow + 1}, false},
		{"MaxPendingKeys negative", redisstore.InvalidatorOptions{MaxPendingKeys: -1}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			inv, err := redisstore.NewInvalidator(client, &c.opts)
			if !c.ok {
				require.Error(t, err)
				assert.True(t, strings.HasPrefix(err.Error(), "redisstore: InvalidatorOptions."), err)
				return
			}
			require.NoError(t, err)
			require.NoError(t, inv.Close())
		})
	}
	t.Run("options not modified", func(t *testing.T) {
		opts := &redisstore.InvalidatorOptions{}
		inv, err := redisstore.NewInvalidator(client, opts)
		require.NoError(t, err)
		require.NoError(t, inv.Close())
		assert.Equal(t, redisstore.InvalidatorOptions{}, *opts)
	})
	t.Run("nil handler", func(t *testing.T) {
		inv := newInvalidator(t, client, redisstore.InvalidatorOptions{})
		_, err := inv.Subscribe(nil)
		require.ErrorContains(t, err, "redisstore:")
	})
}

// Until the subscription is confirmed, a subscriber is told
// SubscriptionLost; once it is, SubscriptionRestored. One that subscribes
// later hears Restored first.
func TestInvalidatorFirstEvent(t *testing.T) {
	t.Run("Redis unreachable", func(t *testing.T) {
		client := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
		defer client.Close()
		inv := newInvalidator(t, client, redisstore.InvalidatorOptions{})
		r := &recorder{}
		r.subscribe(t, inv)
		// The first attempt to subscribe fails at once, but on a goroutine
		// that a loaded machine may not run for a while.
		require.Eventually(t, func() bool { return len(r.kinds()) > 0 && inv.Stats().SubscribeFailures > 0 }, waitFor, tick)
		time.Sleep(100 * time.Millisecond) // time for a wrong Restored to show
		require.Equal(t, []tiercache.InvalidationKind{tiercache.SubscriptionLost}, r.kinds())
		s := inv.Stats()
		require.False(t, s.Subscribed)
		require.NotZero(t, s.SubscribeFailures)
		require.NotZero(t, s.Unsubscribed)
		require.Zero(t, s.SubscriptionDrops, "never subscribed, so never dropped")
	})
	t.Run("Redis up", func(t *testing.T) {
		client := newTimeoutClient(t, redistest.Addr(t))
		inv := newInvalidator(t, client, redisstore.InvalidatorOptions{Channel: newChannel()})
		early := &recorder{}
		early.subscribe(t, inv)
		early.waitRestored(t)
		kinds := early.kinds()
		require.Contains(t, [][]tiercache.InvalidationKind{
			{tiercache.SubscriptionRestored},                             // subscribed before Subscribe
			{tiercache.SubscriptionLost, tiercache.SubscriptionRestored}, // or after
		}, kinds)
		late := &recorder{}
		late.subscribe(t, inv)
		late.waitRestored(t)
		require.Equal(t, []tiercache.InvalidationKind{tiercache.SubscriptionRestored}, late.kinds())
		require.True(t, inv.Stats().Subscribed)
	})
}

// Keys one subscription announces reach every other subscription, of this
// process and of the others, and never the one that announced them.
func TestInvalidatorDelivery(t *testing.T) {
	for _, c := range []struct {
		name   string
		client func(t *testing.T) redis.UniversalClient
	}{
		{"single node", func(t *testing.T) redis.UniversalClient { return newTimeoutClient(t, redistest.Addr(t)) }},
		{"cluster", func(t *testing.T) redis.UniversalClient { return newClusterClient(t) }},
	} {
		t.Run(c.name, func(t *testing.T) {
			channel := newChannel()
			invA := newInvalidator(t, c.client(t), redisstore.InvalidatorOptions{Channel: channel})
			invB := newInvalidator(t, c.client(t), redisstore.InvalidatorOptions{Channel: channel})
			a1, a2, b1, b2 := &recorder{}, &recorder{}, &recorder{}, &recorder{}
			subA1 := a1.subscribe(t, invA)
			a2.subscribe(t, invA)
			b1.subscribe(t, invB)
			b2.subscribe(t, invB)
			for _, r := range []*recorder{a1, a2, b1, b2} {
				r.waitRestored(t)
			}

			require.NoError(t, subA1.Announce(context.Background(), "k1", "k2"))
			for _, r := range []*recorder{a2, b1, b2} {
				require.Eventually(t, func() bool { return r.has("k1", "k2") }, waitFor, tick)
			}
			// The echo of A's message comes back to A and is dropped.
			require.Eventually(t, func() bool { return invA.Stats().EchoesDropped == 1 }, waitFor, tick)
			require.Empty(t, a1.gotKeys(), "no self-echo")
			require.Equal(t, []string{"k1", "k2"}, a2.gotKeys(), "delivered once, locally, not again from Redis")
			require.Equal(t, []string{"k1", "k2"}, b1.gotKeys())

			waitPublished(t, invA, 2)
			sa, sb := invA.Stats(), invB.Stats()
			require.Equal(t, uint64(2), sa.KeysAnnounced)
			require.Equal(t, uint64(1), sa.MessagesPublished)
			require.Equal(t, uint64(2), sa.KeysPublished)
			require.Equal(t, uint64(1), sb.MessagesReceived)
			require.Equal(t, uint64(2), sb.KeysReceived)
			require.Zero(t, sa.MessagesReceived)
			require.Zero(t, sb.MessagesMalformed)
		})
	}
}

// Classic pub/sub is cluster-wide: a message published through any node
// reaches subscribers connected to every node.
func TestInvalidatorClusterWide(t *testing.T) {
	addrs := redistest.ClusterAddrs(t)
	channel := newChannel()
	publisher := newInvalidator(t, newClusterClient(t), redisstore.InvalidatorOptions{Channel: channel})
	from := &recorder{}
	sub := from.subscribe(t, publisher)
	var rs []*recorder
	for _, addr := range addrs {
		inv := newInvalidator(t, newTimeoutClient(t, addr), redisstore.InvalidatorOptions{Channel: channel})
		r := &recorder{}
		r.subscribe(t, inv)
		rs = append(rs, r)
	}
	from.waitRestored(t)
	for _, r := range rs {
		r.waitRestored(t)
	}
	for n := range 3 { // PUBLISH goes to a node chosen at random each time
		key := fmt.Sprint("k", n)
		require.NoError(t, sub.Announce(context.Background(), key))
		for i, r := range rs {
			require.Eventually(t, func() bool { return r.has(key) }, waitFor, tick, "subscriber on %s", addrs[i])
		}
	}
}

// Over a Ring, PUBLISH goes to the shard its channel's name hashes to (a
// Ring has no cluster bus), and a Ring refuses a Subscribe without a
// channel with a panic: the Invalidator subscribes on that shard, so that
// every Invalidator over the same shards gets the others' keys. Two shards
// on two servers, so that a subscription on the other one would hear
// nothing.
func TestInvalidatorRing(t *testing.T) {
	addrs := map[string]string{"a": redistest.Addr(t), "b": redistest.Start(t).Addr}
	newRing := func() *redis.Ring {
		r := redis.NewRing(&redis.RingOptions{Addrs: addrs, ContextTimeoutEnabled: true})
		t.Cleanup(func() { r.Close() })
		return r
	}
	for n := range 4 { // channels that hash to either shard
		channel := fmt.Sprint(newChannel(), ":", n)
		invA := newInvalidator(t, newRing(), redisstore.InvalidatorOptions{Channel: channel})
		invB := newInvalidator(t, newRing(), redisstore.InvalidatorOptions{Channel: channel})
		a, b := &recorder{}, &recorder{}
		subA := a.subscribe(t, invA)
		b.subscribe(t, invB)
		a.waitRestored(t)
		b.waitRestored(t)
		require.NoError(t, subA.Announce(context.Background(), "k1", "k2"))
		require.Eventually(t, func() bool { return b.has("k1", "k2") }, waitFor, tick, "channel %q", channel)
		require.Eventually(t, func() bool { return invA.Stats().EchoesDropped == 1 }, waitFor, tick, "the echo comes back on the same shard")
	}
}

// A subscription of the same process gets the keys at once: it does not
// wait for the batch window nor for Redis. Judged by events, not by a
// wall-clock bound: the handler gets the keys before the window ends, as a
// timer started before the message that opened it sees it, and before
// their PUBLISH begins.
func TestInvalidatorLocalDeliveryDoesNotWait(t *testing.T) {
	var ended <-chan struct{} // set before the first Announce
	published := make(chan struct{}, 1)
	hook := &onPublish{at: func(_ context.Context, n int64) error {
		if n == 1 {
			published <- struct{}{}
		}
		return nil
	}}
	client := newTimeoutClient(t, redistest.Addr(t))
	client.AddHook(hook)
	inv := newInvalidator(t, client, redisstore.InvalidatorOptions{Channel: newChannel(), BatchWindow: redisstore.MaxBatchWindow})
	from, to := &recorder{}, &recorder{}
	sub := from.subscribe(t, inv)
	waitSubscribed(t, inv)

	// A message goes out, which holds the next one back for a second.
	ended = windowEnds(redisstore.MaxBatchWindow)
	require.NoError(t, sub.Announce(context.Background(), "first"))
	receive(t, published, "the PUBLISH of the first key")

	// Subscribed only now, so that nothing but Restored is queued before k.
	type seen struct {
		windowEnded bool
		publishes   int64 // PUBLISHes begun
	}
	gotK := make(chan seen, 1)
	toSub, err := inv.Subscribe(func(e tiercache.InvalidationEvent) {
		if slices.Contains(e.Keys, "k") {
			gotK <- seen{isClosed(ended), hook.n.Load()}
		}
		to.handle(e)
	})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, toSub.Close()) })
	require.NoError(t, sub.Announce(context.Background(), "k"))
	s := receive(t, gotK, "the local delivery of k")
	require.False(t, s.windowEnded, "delivered before the window closed")
	require.Equal(t, int64(1), s.publishes, "delivered before its PUBLISH began")
	require.Equal(t, []tiercache.InvalidationKind{tiercache.SubscriptionRestored, tiercache.KeysChanged}, to.kinds())
	require.Equal(t, []string{"k"}, to.gotKeys())
	require.Eventually(t, func() bool { return inv.Stats().MessagesPublished == 2 }, waitFor, tick, "k published at the window's end")
}

// Keys announced within one window go out in one message, each once; a
// key announced after a quiet window goes at once. The first PUBLISH is
// held until the other keys are announced, so that they wait for the
// window it opened however slow the machine; and it must begin before that
// window ends, as a timer started before the first Announce sees it.
func TestInvalidatorBatching(t *testing.T) {
	const window = 200 * time.Millisecond
	var ended <-chan struct{} // set before the first Announce
	late := make(chan bool, 1)
	hold := make(chan struct{})
	release := sync.OnceFunc(func() { close(hold) })
	hook := &onPublish{detach: true, at: func(_ context.Context, n int64) error {
		if n == 1 {
			late <- isClosed(ended)
			<-hold
		}
		return nil
	}}
	clientA := newTimeoutClient(t, redistest.Addr(t))
	clientA.AddHook(hook)
	channel := newChannel()
	invA := newInvalidator(t, clientA, redisstore.InvalidatorOptions{Channel: channel, BatchWindow: window})
	t.Cleanup(release) // before invA's Close
	invB := newInvalidator(t, newTimeoutClient(t, redistest.Addr(t)), redisstore.InvalidatorOptions{Channel: channel})
	from, to := &recorder{}, &recorder{}
	sub := from.subscribe(t, invA)
	to.subscribe(t, invB)
	to.waitRestored(t)
	waitSubscribed(t, invA)

	ended = windowEnds(window)
	start := time.Now()
	require.NoError(t, sub.Announce(context.Background(), "alone"))
	require.False(t, receive(t, late, `the PUBLISH of "alone"`), "the first key after a quiet window does not wait")

	want := []string{"alone"}
	for n := range 100 { // while the first message is held, within the window it opened
		key := fmt.Sprint("k", n)
		want = append(want, key)
		require.NoError(t, sub.Announce(context.Background(), key, key)) // twice
	}
	release()
	require.Eventually(t, func() bool { return to.has(want...) }, waitFor, tick)
	require.GreaterOrEqual(t, time.Since(start), window, "the batch waited for the window to end")
	slices.Sort(want)
	require.Equal(t, want, to.gotKeys(), "each key once")
	require.Eventually(t, func() bool { return invA.Stats().MessagesPublished == 2 }, waitFor, tick) // counted once PUBLISH returns
	sa := invA.Stats()
	require.Equal(t, uint64(201), sa.KeysAnnounced)
	require.Equal(t, uint64(101), sa.KeysPublished)
	require.Equal(t, uint64(2), invB.Stats().MessagesReceived)
	require.Equal(t, int64(2), hook.n.Load(), "no PUBLISH failed")
}

// A batch larger than a message holds goes out in several messages.
func TestInvalidatorSplitsLargeBatches(t *testing.T) {
	client := newTimeoutClient(t, redistest.Addr(t))
	channel := newChannel()
	invA := newInvalidator(t, client, redisstore.InvalidatorOptions{Channel: channel, BatchWindow: 200 * time.Millisecond})
	invB := newInvalidator(t, client, redisstore.InvalidatorOptions{Channel: channel})
	from, to := &recorder{}, &recorder{}
	sub := from.subscribe(t, invA)
	to.subscribe(t, invB)
	to.waitRestored(t)

	var keys []string
	for n := range 2000 {
		keys = append(keys, fmt.Sprintf("%0100d", n)) // 200 KB of keys
	}
	huge := strings.Repeat("h", 100<<10) // one key larger than a message
	keys = append(keys, huge)
	require.NoError(t, sub.Announce(context.Background(), keys...))
	require.Eventually(t, func() bool { return to.has(keys...) }, waitFor, tick)
	waitPublished(t, invA, uint64(len(keys)))
	s := invA.Stats()
	require.GreaterOrEqual(t, s.MessagesPublished, uint64(4))
	require.Equal(t, s.MessagesPublished, invB.Stats().MessagesReceived)
	t.Logf("%d keys, %d bytes, in %d messages", len(keys), 2000*101+len(huge), s.MessagesPublished)
}

// Anything on the channel that is not an invalidation message is counted
// and ignored; the subscription carries on.
func TestInvalidatorMalformedMessages(t *testing.T) {
	client := newTimeoutClient(t, redistest.Addr(t))
	channel := newChannel()
	inv := newInvalidator(t, client, redisstore.InvalidatorOptions{Channel: channel})
	r := &recorder{}
	r.subscribe(t, inv)
	r.waitRestored(t)

	origin := []byte{1, 2, 3, 4, 5, 6, 7, 8}
	header := append([]byte{0xC1, 0x49, 1, 1}, origin...)
	malformed := map[string][]byte{
		"empty":               {},
		"text":                []byte("hello"),
		"json":                []byte(`{"keys":["k"]}`),
		"magic only":          {0xC1, 0x49},
		"version 0":           append([]byte{0xC1, 0x49, 0, 1}, origin...),
		"truncated header":    header[:7],
		"no keys":             header,
		"unknown kind":        append(append([]byte{0xC1, 0x49, 1, 9}, origin...), 1, 1, 1, 'k'),
		"flush with trailing": append(append([]byte{0xC1, 0x49, 1, 2}, origin...), 0),
		"zero keys":           append(slices.Clone(header), 1, 0),
		"count too large":     append(slices.Clone(header), 1, 200, 1, 'k'),
		"length too large":    append(slices.Clone(header), 1, 1, 50, 'k'),
		"truncated uvarint":   append(slices.Clone(header), 0x80),
		"overlong uvarint":    append(slices.Clone(header), 0x81, 0x00, 1, 1, 'k'),
		"garbage":             {0xC1, 0x49, 1, 1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff},
	}
	ctx := context.Background()
	for name, payload := range malformed {
		require.NoError(t, client.Publish(ctx, channel, payload).Err(), name)
	}
	valid := append(slices.Clone(header), 7, 1, 5, 'v', 'a', 'l', 'i', 'd')
	require.NoError(t, client.Publish(ctx, channel, valid).Err())

	require.Eventually(t, func() bool { return r.has("valid") }, waitFor, tick)
	s := inv.Stats()
	require.Equal(t, uint64(len(malformed)), s.MessagesMalformed)
	require.Equal(t, uint64(1), s.MessagesReceived)
	require.Zero(t, s.SubscriptionDrops)
	require.True(t, s.Subscribed)
	require.Equal(t, []string{"valid"}, r.gotKeys())
	require.Equal(t, []tiercache.InvalidationKind{tiercache.SubscriptionRestored, tiercache.KeysChanged}, r.kinds()[len(r.kinds())-2:])
}

// A message of a newer format version may carry invalidations this version
// cannot read: every subscriber is told to flush (Lost, then Restored).
func TestInvalidatorNewerVersionFlushes(t *testing.T) {
	client := newTimeoutClient(t, redistest.Addr(t))
	channel := newChannel()
	inv := newInvalidator(t, client, redisstore.InvalidatorOptions{Channel: channel})
	r := &recorder{}
	r.subscribe(t, inv)
	r.waitRestored(t)
	before := len(r.kinds())

	require.NoError(t, client.Publish(context.Background(), channel, []byte{0xC1, 0x49, 2, 1, 'w', 'h', 'a', 't', 'e', 'v', 'e', 'r'}).Err())
	require.Eventually(t, func() bool { return len(r.kinds()) == before+2 }, waitFor, tick)
	require.Equal(t, []tiercache.InvalidationKind{tiercache.SubscriptionLost, tiercache.SubscriptionRestored}, r.kinds()[before:])
	s := inv.Stats()
	require.Equal(t, uint64(1), s.MessagesUnsupported)
	require.Zero(t, s.MessagesMalformed)
	require.Zero(t, s.SubscriptionDrops, "the subscription itself held")
}

// A PUBLISH that fails keeps its keys, which go out once PUBLISH works
// again.
func TestInvalidatorPublishRetries(t *testing.T) {
	channel := newChannel()
	hook := &publishRefuser{}
	clientA := newTimeoutClient(t, redistest.Addr(t))
	clientA.AddHook(&onPublish{at: hook.refuse})
	invA := newInvalidator(t, clientA, redisstore.InvalidatorOptions{Channel: channel})
	invB := newInvalidator(t, newTimeoutClient(t, redistest.Addr(t)), redisstore.InvalidatorOptions{Channel: channel})
	from, to := &recorder{}, &recorder{}
	sub := from.subscribe(t, invA)
	to.subscribe(t, invB)
	to.waitRestored(t)

	hook.failing.Store(true)
	require.NoError(t, sub.Announce(context.Background(), "k1"))
	// Refused, not merely attempted: an attempt counted just before failing
	// is cleared below may still go through.
	require.Eventually(t, func() bool { return hook.refused.Load() >= 3 }, waitFor, tick, "retried with backoff")
	require.NoError(t, sub.Announce(context.Background(), "k2")) // joins the waiting keys
	require.Empty(t, to.gotKeys())
	hook.failing.Store(false)
	require.Eventually(t, func() bool { return to.has("k1", "k2") }, waitFor, tick)
	waitPublished(t, invA, 2)
	s := invA.Stats()
	require.GreaterOrEqual(t, s.PublishErrors, uint64(3))
	require.Zero(t, s.QueueOverflows)
	require.Zero(t, s.SubscriptionDrops, "a failed PUBLISH alone is not a lost subscription")
	t.Logf("%d failed attempts before the keys went out", s.PublishErrors)
}

// When more keys wait to be published than MaxPendingKeys, they are
// replaced by one flush message: the other processes' caches flush their
// L1s, which covers every key.
func TestInvalidatorPublishQueueOverflow(t *testing.T) {
	channel := newChannel()
	// The first PUBLISH is held until released (or its ctx ends), then
	// refused; the others go through.
	hold := make(chan struct{})
	release := sync.OnceFunc(func() { close(hold) })
	t.Cleanup(release)
	hook := &onPublish{at: func(ctx context.Context, n int64) error {
		if n > 1 {
			return nil
		}
		select {
		case <-hold:
		case <-ctx.Done():
		}
		return errPublishRefused
	}}
	clientA := newTimeoutClient(t, redistest.Addr(t))
	clientA.AddHook(hook)
	invA := newInvalidator(t, clientA, redisstore.InvalidatorOptions{Channel: channel, MaxPendingKeys: 4})
	invB := newInvalidator(t, newTimeoutClient(t, redistest.Addr(t)), redisstore.InvalidatorOptions{Channel: channel})
	from, to := &recorder{}, &recorder{}
	sub := from.subscribe(t, invA)
	to.subscribe(t, invB)
	to.waitRestored(t)
	before := len(to.kinds())

	// k0 goes out at once; its PUBLISH hangs, so that the keys announced
	// meanwhile outgrow MaxPendingKeys, and then fails.
	require.NoError(t, sub.Announce(context.Background(), "k0"))
	require.Eventually(t, func() bool { return hook.n.Load() == 1 }, waitFor, tick)
	for n := range 9 {
		require.NoError(t, sub.Announce(context.Background(), fmt.Sprint("k", n+1)), "Announce never blocks nor fails")
	}
	require.Equal(t, uint64(1), invA.Stats().QueueOverflows)
	release()

	require.Eventually(t, func() bool { return len(to.kinds()) >= before+2 }, waitFor, tick)
	require.Equal(t, []tiercache.InvalidationKind{tiercache.SubscriptionLost, tiercache.SubscriptionRestored}, to.kinds()[before:],
		"invA: %+v, invB: %+v", invA.Stats(), invB.Stats())
	require.Eventually(t, func() bool { return invA.Stats().FlushesPublished == 1 }, waitFor, tick)
	sa, sb := invA.Stats(), invB.Stats()
	require.Zero(t, sa.KeysPublished)
	require.Equal(t, uint64(1), sb.FlushesReceived)
}

// When the keys waiting for a slow handler outgrow MaxPendingKeys, they are
// replaced by Lost then Restored, which makes the cache flush its L1.
func TestInvalidatorDeliveryOverflow(t *testing.T) {
	client := newTimeoutClient(t, redistest.Addr(t))
	inv := newInvalidator(t, client, redisstore.InvalidatorOptions{Channel: newChannel(), MaxPendingKeys: 4})
	from := &recorder{}
	sub := from.subscribe(t, inv)
	slow := &recorder{}
	slow.subscribe(t, inv)
	slow.waitRestored(t)

	slow.entered = make(chan struct{}, 1)
	slow.block = make(chan struct{})
	// Cleaned up before the subscription, whose Close waits for the handler.
	release := sync.OnceFunc(func() { close(slow.block) })
	t.Cleanup(release)
	require.NoError(t, sub.Announce(context.Background(), "first")) // the handler blocks on it
	// Once the handler holds "first", the keys below are all that wait.
	select {
	case <-slow.entered:
	case <-time.After(waitFor):
		t.Fatal("the handler was never called with the first keys")
	}
	for n := range 5 { // the fifth would make 5 keys waiting
		require.NoError(t, sub.Announce(context.Background(), fmt.Sprint("k", n)))
	}
	before := len(slow.kinds())
	release()
	require.Eventually(t, func() bool { return len(slow.kinds()) == before+3 }, waitFor, tick)
	time.Sleep(50 * time.Millisecond) // time for a wrong event to show
	require.Equal(t, []tiercache.InvalidationKind{
		tiercache.KeysChanged, tiercache.SubscriptionLost, tiercache.SubscriptionRestored,
	}, slow.kinds()[before:])
	require.Equal(t, []string{"first"}, slow.gotKeys())
	require.Equal(t, uint64(1), inv.Stats().DeliveryOverflows)
}

// A handler that panics is counted and called again with the next events.
// One that panicked on keys may not have evicted them: it is told to flush.
func TestInvalidatorHandlerPanic(t *testing.T) {
	client := newTimeoutClient(t, redistest.Addr(t))
	inv := newInvalidator(t, client, redisstore.InvalidatorOptions{Channel: newChannel()})
	from, r := &recorder{}, &recorder{}
	sub := from.subscribe(t, inv)
	panicky, err := inv.Subscribe(func(e tiercache.InvalidationEvent) {
		if e.Kind == tiercache.KeysChanged && e.Keys[0] == "boom" {
			panic("boom")
		}
		r.handle(e)
	})
	require.NoError(t, err)
	defer panicky.Close()
	r.waitRestored(t)
	before := len(r.kinds())

	require.NoError(t, sub.Announce(context.Background(), "boom"))
	require.Eventually(t, func() bool { return len(r.kinds()) == before+2 }, waitFor, tick)
	require.NoError(t, sub.Announce(context.Background(), "after"))
	require.Eventually(t, func() bool { return r.has("after") }, waitFor, tick)
	require.Equal(t, []tiercache.InvalidationKind{
		tiercache.SubscriptionLost, tiercache.SubscriptionRestored, tiercache.KeysChanged,
	}, r.kinds()[before:])
	require.Equal(t, uint64(1), inv.Stats().HandlerPanics)
}

// An idle subscription is checked with a PING every 500 ms, whose answer
// keeps it up, with RESP2 and RESP3 alike (their PONGs differ).
func TestInvalidatorIdleSubscriptionStays(t *testing.T) {
	for _, protocol := range []int{2, 3} {
		t.Run(fmt.Sprint("RESP", protocol), func(t *testing.T) {
			client := redis.NewClient(&redis.Options{Addr: redistest.Addr(t), Protocol: protocol, ContextTimeoutEnabled: true})
			t.Cleanup(func() { client.Close() })
			channel := newChannel()
			inv := newInvalidator(t, client, redisstore.InvalidatorOptions{Channel: channel})
			from := newInvalidator(t, newTimeoutClient(t, redistest.Addr(t)), redisstore.InvalidatorOptions{Channel: channel})
			r, other := &recorder{}, &recorder{}
			r.subscribe(t, inv)
			sub := other.subscribe(t, from)
			r.waitRestored(t)
			time.Sleep(2200 * time.Millisecond) // four PINGs
			require.NoError(t, sub.Announce(context.Background(), "k"))
			require.Eventually(t, func() bool { return r.has("k") }, waitFor, tick)
			s := inv.Stats()
			require.Zero(t, s.SubscriptionDrops)
			require.True(t, s.Subscribed)
		})
	}
}

// A PING unanswered (a frozen Redis, a connection gone half-open) counts as
// a lost subscription within healthInterval + pongTimeout (1.5 s).
func TestInvalidatorDetectsHalfOpenConnection(t *testing.T) {
	srv := redistest.Start(t)
	inv := newInvalidator(t, newTimeoutClient(t, srv.Addr), redisstore.InvalidatorOptions{Channel: newChannel()})
	r := &recorder{}
	r.subscribe(t, inv)
	r.waitRestored(t)

	require.NoError(t, srv.Freeze())
	frozen := time.Now()
	require.Eventually(t, func() bool {
		k, _ := r.last()
		return k == tiercache.SubscriptionLost
	}, waitFor, tick)
	detected := time.Since(frozen)
	require.NoError(t, srv.Thaw())
	t.Logf("a frozen Redis was reported lost after %v", detected)
	require.Less(t, detected, 3*time.Second)
	r.waitRestored(t)
	require.Equal(t, uint64(1), inv.Stats().SubscriptionDrops)
}

// A subscription connection closed by Redis is reported lost at once, once,
// and restored when a new SUBSCRIBE is confirmed.
func TestInvalidatorSubscriptionKilled(t *testing.T) {
	srv := redistest.Start(t)
	inv := newInvalidator(t, newTimeoutClient(t, srv.Addr), redisstore.InvalidatorOptions{Channel: newChannel()})
	r := &recorder{}
	r.subscribe(t, inv)
	r.waitRestored(t)
	before := len(r.kinds())

	killed, err := srv.Do("CLIENT", "KILL", "TYPE", "pubsub")
	require.NoError(t, err)
	require.Equal(t, "1", killed)
	require.Eventually(t, func() bool { return len(r.kinds()) == before+2 }, waitFor, tick)
	require.Equal(t, []tiercache.InvalidationKind{tiercache.SubscriptionLost, tiercache.SubscriptionRestored}, r.kinds()[before:])
	s := inv.Stats()
	require.Equal(t, uint64(1), s.SubscriptionDrops)
	require.True(t, s.Subscribed)
}

// Redis killed and started again: Lost once, Restored when it is back.
func TestInvalidatorRedisRestart(t *testing.T) {
	srv := redistest.Start(t)
	inv := newInvalidator(t, newTimeoutClient(t, srv.Addr), redisstore.InvalidatorOptions{Channel: newChannel()})
	r := &recorder{}
	r.subscribe(t, inv)
	r.waitRestored(t)
	before := len(r.kinds())

	require.NoError(t, srv.Kill())
	require.Eventually(t, func() bool {
		k, _ := r.last()
		return k == tiercache.SubscriptionLost
	}, waitFor, tick)
	time.Sleep(500 * time.Millisecond) // a few failed attempts to resubscribe
	require.NoError(t, srv.Restart())
	r.waitRestored(t)
	require.Equal(t, []tiercache.InvalidationKind{tiercache.SubscriptionLost, tiercache.SubscriptionRestored}, r.kinds()[before:])
	s := inv.Stats()
	require.Equal(t, uint64(1), s.SubscriptionDrops)
	require.NotZero(t, s.SubscribeFailures)
	require.Greater(t, s.Unsubscribed, 500*time.Millisecond)
}

// Close publishes the keys still waiting, ends the subscriptions, refuses
// what comes after, and may be called again. It does not wait for the
// window: the PUBLISH of the waiting key begins before the window ends, as
// a timer started before the message that opened it sees it.
func TestInvalidatorClose(t *testing.T) {
	var ended <-chan struct{} // set before the first Announce
	published := make(chan struct{}, 1)
	inTime := make(chan bool, 1)
	hook := &onPublish{at: func(_ context.Context, n int64) error {
		switch n {
		case 1:
			published <- struct{}{}
		case 2:
			inTime <- !isClosed(ended)
		}
		return nil
	}}
	client := newTimeoutClient(t, redistest.Addr(t))
	client.AddHook(hook)
	channel := newChannel()
	invA, err := redisstore.NewInvalidator(client, &redisstore.InvalidatorOptions{Channel: channel, BatchWindow: redisstore.MaxBatchWindow})
	require.NoError(t, err)
	invB := newInvalidator(t, client, redisstore.InvalidatorOptions{Channel: channel})
	from, to := &recorder{}, &recorder{}
	sub, err := invA.Subscribe(from.handle)
	require.NoError(t, err)
	to.subscribe(t, invB)
	to.waitRestored(t)
	waitSubscribed(t, invA)

	require.Equal(t, int64(2), client.PubSubNumSub(context.Background(), channel).Val()[channel])
	ended = windowEnds(redisstore.MaxBatchWindow)
	require.NoError(t, sub.Announce(context.Background(), "first"))
	receive(t, published, "the PUBLISH of the first key")
	require.NoError(t, sub.Announce(context.Background(), "k")) // waits for the window to end
	require.NoError(t, invA.Close())
	require.True(t, receive(t, inTime, "the PUBLISH of the waiting key"), "Close did not wait for the window")
	require.Eventually(t, func() bool {
		return client.PubSubNumSub(context.Background(), channel).Val()[channel] == 1
	}, waitFor, tick, "A unsubscribed")
	require.Eventually(t, func() bool { return to.has("first", "k") }, waitFor, tick, "the waiting key was published")
	require.NoError(t, invA.Close(), "Close again")
	require.ErrorIs(t, sub.Announce(context.Background(), "late"), tiercache.ErrClosed)
	_, err = invA.Subscribe(from.handle)
	require.ErrorIs(t, err, tiercache.ErrClosed)
	require.NoError(t, sub.Close(), "a subscription closed after its Invalidator")
	s := invA.Stats()
	require.Equal(t, uint64(2), s.KeysPublished)
	require.Zero(t, s.KeysDropped)
}

// Close gives up on keys it cannot publish within its deadline, and counts
// them.
func TestInvalidatorCloseDropsWhatCannotBeSent(t *testing.T) {
	hook := &publishRefuser{}
	client := newTimeoutClient(t, redistest.Addr(t))
	client.AddHook(&onPublish{at: hook.refuse})
	inv, err := redisstore.NewInvalidator(client, &redisstore.InvalidatorOptions{Channel: newChannel()})
	require.NoError(t, err)
	r := &recorder{}
	sub, err := inv.Subscribe(r.handle)
	require.NoError(t, err)
	hook.failing.Store(true)
	require.NoError(t, sub.Announce(context.Background(), "k1", "k2"))
	start := time.Now()
	require.NoError(t, inv.Close())
	require.Less(t, time.Since(start), 3*time.Second)
	require.Equal(t, uint64(2), inv.Stats().KeysDropped)
}

// A subscription closed hears nothing more; the others carry on.
func TestSubscriptionClose(t *testing.T) {
	client := newTimeoutClient(t, redistest.Addr(t))
	inv := newInvalidator(t, client, redisstore.InvalidatorOptions{Channel: newChannel()})
	from, gone, stays := &recorder{}, &recorder{}, &recorder{}
	sub := from.subscribe(t, inv)
	goneSub, err := inv.Subscribe(gone.handle)
	require.NoError(t, err)
	stays.subscribe(t, inv)
	stays.waitRestored(t)
	gone.waitRestored(t)

	require.NoError(t, goneSub.Close())
	require.NoError(t, goneSub.Close(), "Close again")
	require.ErrorIs(t, goneSub.Announce(context.Background(), "x"), tiercache.ErrClosed)
	require.NoError(t, sub.Announce(context.Background(), "k"))
	require.Eventually(t, func() bool { return stays.has("k") }, waitFor, tick)
	require.Empty(t, gone.gotKeys())
}

// Announcements, subscriptions coming and going, and Close, all at once:
// nothing races (under -race), nothing deadlocks, no goroutine is left.
func TestInvalidatorConcurrentUse(t *testing.T) {
	client := newTimeoutClient(t, redistest.Addr(t))
	channel := newChannel()
	inv, err := redisstore.NewInvalidator(client, &redisstore.InvalidatorOptions{Channel: channel, MaxPendingKeys: 64})
	require.NoError(t, err)
	peer := newInvalidator(t, client, redisstore.InvalidatorOptions{Channel: channel})
	seen := &recorder{}
	seen.subscribe(t, peer)

	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			r := &recorder{}
			sub, err := inv.Subscribe(r.handle)
			if err != nil {
				require.ErrorIs(t, err, tiercache.ErrClosed)
				return
			}
			defer sub.Close()
			for n := 0; ; n++ {
				if err := sub.Announce(context.Background(), fmt.Sprint(w, ":", n%100)); err != nil {
					require.ErrorIs(t, err, tiercache.ErrClosed)
					return
				}
				if n%50 == 0 {
					time.Sleep(time.Millisecond)
				}
			}
		})
	}
	wg.Go(func() {
		for {
			r := &recorder{}
			sub, err := inv.Subscribe(r.handle)
			if err != nil {
				require.ErrorIs(t, err, tiercache.ErrClosed)
				return
			}
			time.Sleep(time.Millisecond)
			require.NoError(t, sub.Close())
		}
	})
	time.Sleep(300 * time.Millisecond)
	require.NoError(t, inv.Close())
	wg.Wait()
	require.Eventually(t, func() bool { return len(seen.gotKeys()) > 0 || len(seen.kinds()) > 1 }, waitFor, tick)
	t.Logf("invalidator: %+v", inv.Stats())
}
