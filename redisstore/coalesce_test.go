package redisstore_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tiercache/tiercache"
	"github.com/tiercache/tiercache/redisstore"
	"github.com/tiercache/tiercache/redisstore/internal/redistest"
)

// gate records the batches a hook sees, and the single commands (a
// request a Store sent alone, on its caller's goroutine) apart. While
// holding, it holds each batch until next lets one go or open lets all go,
// and each single command until open; a held batch or command signals
// entered. The hooks built on it (mgetGate, pipeGate) say what a batch is.
type gate struct {
	mu      sync.Mutex
	batches [][]string
	singles []string
	holding bool
	panics  bool // a batch panics instead

	step    chan struct{} // a send lets one held batch go
	all     chan struct{} // closed by open
	entered chan struct{}
	once    sync.Once
}

func newGate() *gate {
	return &gate{holding: true, step: make(chan struct{}), all: make(chan struct{}), entered: make(chan struct{}, 16)}
}

// pass records batch, then panics or holds it as the gate says.
func (g *gate) pass(batch []string) {
	g.mu.Lock()
	g.batches = append(g.batches, batch)
	holding, panics := g.holding, g.panics
	g.mu.Unlock()
	if panics {
		panic("hook panics")
	}
	if holding {
		g.entered <- struct{}{}
		select {
		case <-g.step:
		case <-g.all:
		}
	}
}

// passSingle records a single command, then holds it until open if the
// gate holds.
func (g *gate) passSingle(cmd string) {
	g.mu.Lock()
	g.singles = append(g.singles, cmd)
	holding := g.holding
	g.mu.Unlock()
	if holding {
		g.entered <- struct{}{}
		<-g.all
	}
}

// next lets one held batch go.
func (g *gate) next() { g.step <- struct{}{} }

// open lets every batch go, now and later.
func (g *gate) open() {
	g.mu.Lock()
	g.holding = false
	g.mu.Unlock()
	g.once.Do(func() { close(g.all) })
}

// setPanics makes the batches that follow panic, or not.
func (g *gate) setPanics(on bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.panics = on
}

// waitEntered waits until a batch is held at the gate.
func (g *gate) waitEntered(t *testing.T) {
	t.Helper()
	select {
	case <-g.entered:
	case <-time.After(10 * time.Second):
		t.Fatal("no batch reached the gate")
	}
}

func (g *gate) recorded() [][]string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return slices.Clone(g.batches)
}

func (g *gate) recordedSingles() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return slices.Clone(g.singles)
}

// mgetGate is a go-redis hook that passes every MGET, as the list of its
// keys, and every GET, as its key, through its gate. Other commands pass.
type mgetGate struct{ *gate }

func newMGETGate() *mgetGate { return &mgetGate{newGate()} }

func (g *mgetGate) DialHook(next redis.DialHook) redis.DialHook { return next }

func (g *mgetGate) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		switch strings.ToLower(cmd.Name()) {
		case "mget":
			var keys []string
			for _, a := range cmd.Args()[1:] {
				keys = append(keys, fmt.Sprint(a))
			}
			g.pass(keys)
		case "get":
			g.passSingle(fmt.Sprint(cmd.Args()[1]))
		}
		return next(ctx, cmd)
	}
}

func (g *mgetGate) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// coalescingStore returns a Store with one dispatcher of coalesced Gets
// over a client with gate, and its prefix: a Get goes out alone while no
// other is in flight, and is queued otherwise.
func coalescingStore(t *testing.T, gate *mgetGate) (*redisstore.Store[string], string, *redis.Client) {
	t.Helper()
	client := newClient(t)
	client.AddHook(gate)
	s, prefix := newStore(t, client, redisstore.Options[string]{CoalesceGets: 1})
	return s, prefix, client
}

// holdDispatcher makes the Store's one dispatcher busy: a Get of key
// "alone", sent alone as the only Get in flight, is held at the gate until
// open; a Get of key "first", queued behind it, is taken by the dispatcher
// and its MGET held at the gate. It returns the channels the results of
// "first" and "alone" arrive on.
func holdDispatcher(t *testing.T, s *redisstore.Store[string], gate *mgetGate) (first, alone <-chan error) {
	t.Helper()
	alone = getAsync(context.Background(), s, "alone")
	gate.waitEntered(t)
	first = getAsync(context.Background(), s, "first")
	gate.waitEntered(t)
	return first, alone
}

// getAsync starts a Get and returns the channel its error arrives on.
func getAsync(ctx context.Context, s *redisstore.Store[string], key string) <-chan error {
	done := make(chan error, 1)
	go func() {
		_, err := s.Get(ctx, key)
		done <- err
	}()
	return done
}

// receive returns what arrives on ch, failing t if nothing does within
// waitFor.
func receive[T any](t testing.TB, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(waitFor):
		t.Fatalf("%s: still waiting", what)
		var zero T
		return zero
	}
}

// waitQueued waits until n Gets are queued for the dispatcher.
func waitQueued(t *testing.T, s *redisstore.Store[string], n int) {
	t.Helper()
	waitCount(t, "queued Gets", func() int { return redisstore.QueuedGets(s) }, n)
}

// waitCount waits until count returns n.
func waitCount(t *testing.T, what string, count func() int, n int) {
	t.Helper()
	require.Eventually(t, func() bool { return count() == n }, 10*time.Second, time.Millisecond, "%s: %d, want %d", what, count(), n)
}

// TestCoalescedGetsShareOneMGET checks that Gets queued while the
// dispatcher is busy go out in one MGET that reads each distinct key once,
// and that each Get gets its own key's answer.
func TestCoalescedGetsShareOneMGET(t *testing.T) {
	gate := newMGETGate()
	s, prefix, client := coalescingStore(t, gate)
	ctx := batchCtx(t)
	for i := range 10 {
		require.NoError(t, s.Set(ctx, fmt.Sprint("k", i), tiercache.CacheValue[string]{Data: fmt.Sprint("v", i)}))
	}
	require.NoError(t, client.Set(ctx, prefix+"foreign", "not an entry", 0).Err())
	first, alone := holdDispatcher(t, s, gate)

	// 40 Gets over 10 stored keys, a missing one and a bad entry.
	keys := []string{"missing", "foreign"}
	for i := range 38 {
		keys = append(keys, fmt.Sprint("k", i%10))
	}
	type answer struct {
		v   *tiercache.CacheValue[string]
		err error
	}
	answers := make([]answer, len(keys))
	var wg sync.WaitGroup
	for i, k := range keys {
		wg.Go(func() {
			v, err := s.Get(ctx, k)
			answers[i] = answer{v, err}
		})
	}
	waitQueued(t, s, len(keys))
	gate.open()
	wg.Wait()
	require.NoError(t, <-first)
	require.NoError(t, <-alone)

	batches := gate.recorded()
	require.Len(t, batches, 2, "the held Get's MGET and one for every Get queued behind it")
	assert.Equal(t, []string{prefix + "alone"}, gate.recordedSingles(), "the one Get in flight went alone, the others queued")
	assert.Len(t, batches[1], 12, "each distinct key once: %v", batches[1])
	for i, k := range keys {
		a := answers[i]
		switch k {
		case "missing":
			assert.NoError(t, a.err)
			assert.Nil(t, a.v)
		case "foreign":
			assert.Nil(t, a.v)
			assert.ErrorIs(t, a.err, redisstore.ErrInvalidEntry, "a bad entry fails its own Gets only")
			assert.Contains(t, fmt.Sprint(a.err), prefix+"foreign")
		default:
			require.NoError(t, a.err, k)
			require.NotNil(t, a.v, k)
			assert.Equal(t, "v"+strings.TrimPrefix(k, "k"), a.v.Data)
		}
	}
}

// TestCoalescedGetLeavesWhenItsCtxEnds checks that a Get whose ctx ends
// while it is queued, or while its batch is in flight, returns ctx's error
// at once; that a queued Get whose caller left is not sent; and that a
// caller leaving does not fail the others of its batch.
func TestCoalescedGetLeavesWhenItsCtxEnds(t *testing.T) {
	gate := newMGETGate()
	s, _, _ := coalescingStore(t, gate)
	first, alone := holdDispatcher(t, s, gate)

	leaverCtx, cancelLeaver := context.WithCancelCause(context.Background())
	lateCtx, cancelLate := context.WithCancel(context.Background())
	defer cancelLate()
	leaver := getAsync(leaverCtx, s, "leaver")
	waitQueued(t, s, 1)
	late := getAsync(lateCtx, s, "late")
	stayer := getAsync(batchCtx(t), s, "stayer")
	waitQueued(t, s, 3)

	cause := errors.New("the request went away")
	cancelLeaver(cause)
	err := receive(t, leaver, "a queued Get whose ctx ended")
	require.ErrorIs(t, err, context.Canceled)
	assert.ErrorIs(t, err, cause)
	assert.True(t, strings.HasPrefix(err.Error(), "redisstore: get "), err)

	gate.next() // the first batch goes; the second (late, stayer) is held
	require.NoError(t, receive(t, first, "the first Get"))
	gate.waitEntered(t)
	cancelLate()
	assert.ErrorIs(t, receive(t, late, "a Get whose ctx ended in flight"), context.Canceled)

	gate.open()
	assert.NoError(t, receive(t, stayer, "the Get that stayed"), "a caller that left does not fail its batch")
	assert.NoError(t, receive(t, alone, "the Get sent alone"))
	batches := gate.recorded()
	require.Len(t, batches, 2)
	assert.ElementsMatch(t, []string{"late", "stayer"}, trimPrefixes(batches[1]), "the caller that left while queued is not sent")
}

// trimPrefixes returns the keys with their test prefix (up to the last
// ':') removed.
func trimPrefixes(keys []string) []string {
	out := make([]string, len(keys))
	for i, k := range keys {
		out[i] = k[strings.LastIndex(k, ":")+1:]
	}
	return out
}

// TestCoalescedGetOfNonStringIsAMiss checks that a queued Get of a key
// holding something other than a string reads as a miss, as a Get sent
// alone does on a Store that coalesces, on every kind of client: a batch
// is an MGET, which answers nil for it, on a single node and a Cluster,
// but one GET per key on a Ring, which Redis answers with WRONGTYPE.
func TestCoalescedGetOfNonStringIsAMiss(t *testing.T) {
	for _, c := range []struct {
		name   string
		client func(t *testing.T) redis.UniversalClient
	}{
		{"Client", func(t *testing.T) redis.UniversalClient { return newClient(t) }},
		{"ClusterClient", func(t *testing.T) redis.UniversalClient { return newClusterClient(t) }},
		{"Ring", func(t *testing.T) redis.UniversalClient {
			ring := redis.NewRing(&redis.RingOptions{Addrs: map[string]string{"a": redistest.Addr(t)}})
			t.Cleanup(func() { ring.Close() })
			return ring
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			client := c.client(t)
			hold := newHoldGet("alone")
			client.AddHook(hold)
			s, prefix := newBatchStore(t, batchClient{c.name, client}, redisstore.Options[string]{CoalesceGets: 1})
			ctx := batchCtx(t)
			require.NoError(t, client.LPush(ctx, prefix+"list", "x").Err())

			alone := getAsync(ctx, s, "alone")
			hold.waitHeld(t) // the GET of "alone" is in flight: the next Get queues
			got, err := s.Get(ctx, "list")
			close(hold.release)
			require.NoError(t, receive(t, alone, "the Get sent alone"))
			assert.Equal(t, []string{prefix + "alone"}, hold.singles(), "the Get of the list was queued, not sent alone")
			assert.NoError(t, err, "a miss")
			assert.Nil(t, got)
		})
	}
}

// holdGet is a go-redis hook that holds every GET of a key ending with
// suffix, sent as a command of its own, until release is closed, and
// signals held when one arrives. It records the keys of every GET sent as
// a command of its own; other commands, and pipelines, pass.
type holdGet struct {
	suffix  string
	held    chan struct{}
	release chan struct{}

	mu   sync.Mutex
	gets []string
}

func newHoldGet(suffix string) *holdGet {
	return &holdGet{suffix: suffix, held: make(chan struct{}, 1), release: make(chan struct{})}
}

// waitHeld waits until a GET is held.
func (h *holdGet) waitHeld(t *testing.T) {
	t.Helper()
	select {
	case <-h.held:
	case <-time.After(10 * time.Second):
		t.Fatal("no GET reached the hook")
	}
}

// singles returns the keys of the GETs sent as commands of their own.
func (h *holdGet) singles() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.gets)
}

func (h *holdGet) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *holdGet) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if strings.ToLower(cmd.Name()) == "get" {
			key := fmt.Sprint(cmd.Args()[1])
			h.mu.Lock()
			h.gets = append(h.gets, key)
			h.mu.Unlock()
			if strings.HasSuffix(key, h.suffix) {
				h.held <- struct{}{}
				<-h.release
			}
		}
		return next(ctx, cmd)
	}
}

func (h *holdGet) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}
