package tiercache_test

import (
	"context"
	"errors"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/tiercache/tiercache"
)

func TestRefillPolicyString(t *testing.T) {
	for p, want := range map[tiercache.RefillPolicy]string{
		tiercache.RefillAlways:     "always",
		tiercache.RefillNever:      "never",
		tiercache.RefillInline:     "inline",
		tiercache.RefillInline + 1: "RefillPolicy(3)",
	} {
		require.Equal(t, want, p.String())
	}
}

// refillReads are the reads that copy an L2 hit of "k" into L1, each
// checking that it got the value. L2Timeout is an hour in these tests:
// GetOrLoad's first caller reads L2 itself unless its deadline is nearer.
var refillReads = []struct {
	name string
	read func(t *testing.T, c *tiercache.Cache[string])
}{
	{"Get", func(t *testing.T, c *tiercache.Cache[string]) {
		got, ok, err := c.Get(t.Context(), "k")
		require.NoError(t, err)
		require.True(t, ok)
		require.Equal(t, "v", got)
	}},
	{"GetOrLoad", func(t *testing.T, c *tiercache.Cache[string]) {
		got, err := c.GetOrLoad(t.Context(), "k", neverLoad)
		require.NoError(t, err)
		require.Equal(t, "v", got)
	}},
	{"GetOrLoad, deadline nearer than L2Timeout", func(t *testing.T, c *tiercache.Cache[string]) {
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute) // the L2 read runs on a goroutine of its own
		defer cancel()
		got, err := c.GetOrLoad(ctx, "k", neverLoad)
		require.NoError(t, err)
		require.Equal(t, "v", got)
	}},
	{"GetMany", func(t *testing.T, c *tiercache.Cache[string]) {
		got, err := c.GetMany(t.Context(), []string{"k"})
		require.NoError(t, err)
		require.Equal(t, map[string]string{"k": "v"}, got)
	}},
	{"GetOrLoadMany", func(t *testing.T, c *tiercache.Cache[string]) {
		got, err := c.GetOrLoadMany(t.Context(), []string{"k"}, func(context.Context, []string) (map[string]string, error) {
			return nil, errors.New("loaded: the key is in L2")
		})
		require.NoError(t, err)
		require.Equal(t, map[string]string{"k": "v"}, got)
	}},
}

func neverLoad(context.Context) (string, error) { return "", errors.New("loaded: the key is in L2") }

var refillPolicies = []struct {
	name   string
	policy tiercache.ReadPolicy[string]
}{
	{"Sequential", nil},
	{"Parallel", tiercache.ParallelReadPolicy[string]{}},
	{"Race", tiercache.RaceReadPolicy[string]{Loser: tiercache.LoserCancel}},
}

// Under RefillInline an L2 hit is in L1 when the read returns, whatever the
// read and the policy, and no refill goes to the Offload; under
// RefillAlways the copy waits for the Offload.
func TestRefillInline(t *testing.T) {
	for _, p := range refillPolicies {
		for _, r := range refillReads {
			for _, refill := range []tiercache.RefillPolicy{tiercache.RefillInline, tiercache.RefillAlways} {
				t.Run(p.name+"/"+r.name+"/"+refill.String(), func(t *testing.T) {
					l1, l2 := newFakeBackend(), newFakeBackend()
					l2.put("k", tiercache.CacheValue[string]{Data: "v"})
					off := &heldOffload{}
					c := openCache(t, l1, l2, &tiercache.Options[string]{
						ReadPolicy: p.policy, Refill: refill, Offload: off, L2Timeout: time.Hour,
					})
					t.Cleanup(func() { off.run() }) // Close waits for what the Offload holds

					r.read(t, c)
					_, inL1 := l1.peek("k")
					held := off.run()
					if refill == tiercache.RefillInline {
						require.True(t, inL1, "L1 holds the value when the read returns")
						require.NotContains(t, held, tiercache.OffloadKindRefill)
					} else {
						require.False(t, inL1, "L1 waits for the Offload")
						require.Contains(t, held, tiercache.OffloadKindRefill)
					}
					got, ok := l1.peek("k")
					require.True(t, ok)
					require.Equal(t, "v", got.Data)
					require.Equal(t, uint64(1), c.Stats().Refills)
				})
			}
		}
	}
}

// A read whose ctx ends between its L2 read and the refill leaves the copy
// to the Offload under RefillInline too: nothing is lost, and nothing is
// written with a ctx that has ended.
func TestRefillInlineAfterCtxEnds(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	l1 := newFakeBackend()
	l2 := &hookedBackend{fakeBackend: newFakeBackend(), afterGet: func(context.Context) error {
		cancel() // the caller leaves once L2 has answered
		return nil
	}}
	l2.put("k", tiercache.CacheValue[string]{Data: "v"})
	off := &heldOffload{}
	c := openCache(t, l1, l2, &tiercache.Options[string]{Refill: tiercache.RefillInline, Offload: off})
	t.Cleanup(func() { off.run() })

	got, ok, err := c.Get(ctx, "k")
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, "v", got)
	require.Zero(t, l1.calls().sets, "no L1 write with the ended ctx")
	require.Equal(t, []string{tiercache.OffloadKindRefill}, off.run())
	v, inL1 := l1.peek("k")
	require.True(t, inL1)
	require.Equal(t, "v", v.Data)
	require.Equal(t, uint64(1), c.Stats().Refills)
}

// An L1 whose Set panics or fails costs an inline refill its copy, counted,
// never the read: the caller gets the value from L2.
func TestRefillInlineL1WriteFails(t *testing.T) {
	for _, tt := range []struct {
		name  string
		setup func(b *fakeBackend)
	}{
		{"panics", func(b *fakeBackend) { b.panics = "L1 is broken" }},
		{"fails", func(b *fakeBackend) { b.setErr = errors.New("L1 is full") }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			l1, l2 := newFakeBackend(), newFakeBackend()
			l1.configure(tt.setup)
			l2.put("k", tiercache.CacheValue[string]{Data: "v"})
			var (
				mu     sync.Mutex
				events []tiercache.Event
			)
			c := openCache(t, l1, l2, &tiercache.Options[string]{
				Refill: tiercache.RefillInline, Offload: &heldOffload{},
				Observer: tiercache.ObserverFunc(func(_ context.Context, e tiercache.Event) {
					mu.Lock()
					defer mu.Unlock()
					events = append(events, e)
				}),
			})

			got, err := c.GetOrLoad(t.Context(), "k", neverLoad)
			require.NoError(t, err)
			require.Equal(t, "v", got)
			st := c.Stats()
			require.Equal(t, uint64(1), st.WriteErrors)
			require.Zero(t, st.Refills)
			mu.Lock()
			defer mu.Unlock()
			require.True(t, slices.ContainsFunc(events, func(e tiercache.Event) bool {
				return e.Kind == tiercache.EventWriteFailed && e.Layer == tiercache.L1
			}), "the failed copy is reported")
		})
	}
}

// A runtime.Goexit in L1's Set during an inline refill ends the goroutine
// that called it, never the answer of the callers sharing the read: they
// get the value L2 gave, without a load.
func TestRefillInlineGoexitInL1Set(t *testing.T) {
	for _, tt := range []struct {
		name     string
		deadline time.Duration // of the first caller; 0: none
	}{
		{"first caller reads L2", 0},
		{"flight reads L2", time.Minute}, // nearer than L2Timeout
	} {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				gate, open := loadGate(t)
				var gets, sets atomic.Int32
				l2 := &hookedBackend{fakeBackend: newFakeBackend(), afterGet: func(context.Context) error {
					if gets.Add(1) == 1 {
						<-gate
					}
					return nil
				}}
				l2.put("k", tiercache.CacheValue[string]{Data: "v"})
				l1 := &hookedBackend{fakeBackend: newFakeBackend(), beforeSet: func(context.Context) error {
					if sets.Add(1) == 1 {
						runtime.Goexit()
					}
					return nil
				}}
				c := newLoadTestCacheOver(t, l1, l2, &tiercache.Options[string]{Refill: tiercache.RefillInline, L2Timeout: time.Hour})
				loader := countLoads(func(context.Context, int) (string, error) { return "loaded", nil })

				ctx := context.Background()
				if tt.deadline > 0 {
					var cancel context.CancelFunc
					ctx, cancel = context.WithTimeout(ctx, tt.deadline)
					defer cancel()
				}
				r := goexitThenWaiter(t, ctx, c, loader.load, open)
				require.NoError(t, r.err)
				require.Equal(t, "v", r.v)
				require.Zero(t, loader.n())
				require.Equal(t, int32(1), gets.Load(), "one L2 read for both callers")
			})
		})
	}
}
