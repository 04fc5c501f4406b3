package otterstore_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tiercache/tiercache"
	"github.com/tiercache/tiercache/otterstore"
)

// newStore returns a Store that the test closes when it ends.
func newStore(t *testing.T, opts *otterstore.Options[string]) *otterstore.Store[string] {
	t.Helper()
	s, err := otterstore.New(opts)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, s.Close()) })
	return s
}

func TestGetMiss(t *testing.T) {
	s := newStore(t, nil)
	v, err := s.Get(t.Context(), "absent")
	require.NoError(t, err)
	require.Nil(t, v)
}

func TestSetGetRoundTrip(t *testing.T) {
	ctx := t.Context()
	s := newStore(t, nil)
	now := time.Now()
	want := tiercache.CacheValue[string]{Data: "v", Expire: now.Add(time.Hour), Stale: now.Add(time.Minute)}
	require.NoError(t, s.Set(ctx, "k", want))
	got, err := s.Get(ctx, "k")
	require.NoError(t, err)
	require.Equal(t, want, *got)

	negative := tiercache.CacheValue[string]{Negative: true}
	require.NoError(t, s.Set(ctx, "k", negative))
	got, err = s.Get(ctx, "k")
	require.NoError(t, err)
	require.Equal(t, negative, *got)
}

func TestSetStoresACopyAndGetSharesIt(t *testing.T) {
	ctx := t.Context()
	type payload struct{ Name string }
	ps, err := otterstore.New[payload](nil)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, ps.Close()) })

	v := tiercache.CacheValue[payload]{Data: payload{Name: "before"}}
	require.NoError(t, ps.Set(ctx, "k", v))
	v.Data.Name = "after" // the caller's copy, not the stored one
	first, err := ps.Get(ctx, "k")
	require.NoError(t, err)
	require.Equal(t, "before", first.Data.Name)

	second, err := ps.Get(ctx, "k")
	require.NoError(t, err)
	require.Same(t, first, second, "Get returns the stored pointer, not a copy")
}

// requireLivesAMinute checks, in a synctest bubble, that key holds want
// until a minute from now and not a nanosecond longer.
func requireLivesAMinute(t *testing.T, s *otterstore.Store[string], key, want string) {
	t.Helper()
	time.Sleep(time.Minute - time.Nanosecond)
	requireHit(t, s, key, want)
	time.Sleep(time.Nanosecond)
	requireMiss(t, s, key)
}

// The expiry tests run in a synctest bubble: the Store's clock and otter's
// are the bubble's, so time.Sleep moves both without waiting.
func TestExpiry(t *testing.T) {
	tests := []struct {
		name string
		run  func(t *testing.T, s *otterstore.Store[string])
	}{
		{"an entry expires at its Expire", func(t *testing.T, s *otterstore.Store[string]) {
			expire := time.Now().Add(time.Minute)
			requireSet(t, s, "k", tiercache.CacheValue[string]{Data: "v", Expire: expire})
			requireLivesAMinute(t, s, "k", "v")
			time.Sleep(2 * time.Second) // otter's periodic clean-up removes it
			require.False(t, s.HoldsRaw("k"))
			require.Zero(t, s.Len())
		}},
		{"an Expire without a monotonic reading, as decoded from L2", func(t *testing.T, s *otterstore.Store[string]) {
			expire := time.Now().Add(time.Minute).Round(0) // wall clock only
			requireSet(t, s, "k", tiercache.CacheValue[string]{Data: "v", Expire: expire})
			requireLivesAMinute(t, s, "k", "v")
		}},
		{"an Expire decoded from L2 after the system clock stepped forward", func(t *testing.T, s *otterstore.Store[string]) {
			s.StepWallClock(time.Hour)
			expire := time.Now().Add(time.Hour + time.Minute).Round(0) // a minute from the stepped clock
			requireSet(t, s, "k", tiercache.CacheValue[string]{Data: "v", Expire: expire})
			requireLivesAMinute(t, s, "k", "v")
			time.Sleep(2 * time.Second) // otter's periodic clean-up removes it
			require.False(t, s.HoldsRaw("k"))
		}},
		{"an Expire decoded from L2 after the system clock stepped back", func(t *testing.T, s *otterstore.Store[string]) {
			s.StepWallClock(-time.Hour)
			expire := time.Now().Add(-time.Hour + time.Minute).Round(0) // a minute from the stepped clock
			requireSet(t, s, "k", tiercache.CacheValue[string]{Data: "v", Expire: expire})
			requireLivesAMinute(t, s, "k", "v")
		}},
		{"a step of the system clock after Set does not move an Expire decoded from L2", func(t *testing.T, s *otterstore.Store[string]) {
			expire := time.Now().Add(time.Minute).Round(0)
			requireSet(t, s, "k", tiercache.CacheValue[string]{Data: "v", Expire: expire})
			s.StepWallClock(time.Hour)
			requireLivesAMinute(t, s, "k", "v")
		}},
		{"an Expire centuries away", func(t *testing.T, s *otterstore.Store[string]) {
			far := time.Date(9999, 12, 31, 0, 0, 0, 0, time.UTC) // no monotonic reading
			time.Sleep(time.Second)                              // the clock is past its epoch: adding to it may overflow
			requireSet(t, s, "k", tiercache.CacheValue[string]{Data: "v", Expire: far})
			time.Sleep(time.Hour)
			s.CleanUp()
			requireHit(t, s, "k", "v")
		}},
		{"a zero Expire lives on", func(t *testing.T, s *otterstore.Store[string]) {
			requireSet(t, s, "k", tiercache.CacheValue[string]{Data: "v"})
			time.Sleep(time.Hour)
			s.CleanUp()
			requireHit(t, s, "k", "v")
		}},
		{"an entry past its Expire is not returned before otter removes it", func(t *testing.T, s *otterstore.Store[string]) {
			requireSet(t, s, "k", tiercache.CacheValue[string]{Data: "v", Expire: time.Now().Add(time.Second)})
			s.ExtendOtterExpiry("k", time.Hour)
			time.Sleep(time.Second)
			require.True(t, s.HoldsRaw("k"), "otter should still hold the entry")
			requireMiss(t, s, "k")
		}},
		{"an overwrite without Expire never expires", func(t *testing.T, s *otterstore.Store[string]) {
			requireSet(t, s, "k", tiercache.CacheValue[string]{Data: "short", Expire: time.Now().Add(time.Second)})
			requireSet(t, s, "k", tiercache.CacheValue[string]{Data: "forever"})
			time.Sleep(time.Hour)
			s.CleanUp()
			requireHit(t, s, "k", "forever")
		}},
		{"an overwrite with a shorter Expire expires sooner", func(t *testing.T, s *otterstore.Store[string]) {
			requireSet(t, s, "k", tiercache.CacheValue[string]{Data: "long", Expire: time.Now().Add(time.Hour)})
			requireSet(t, s, "k", tiercache.CacheValue[string]{Data: "short", Expire: time.Now().Add(time.Second)})
			time.Sleep(3 * time.Second)
			require.False(t, s.HoldsRaw("k"), "otter should have removed the entry")
			requireMiss(t, s, "k")
		}},
		{"a value already expired is not stored and removes the old one", func(t *testing.T, s *otterstore.Store[string]) {
			requireSet(t, s, "k", tiercache.CacheValue[string]{Data: "live"})
			requireSet(t, s, "k", tiercache.CacheValue[string]{Data: "dead", Expire: time.Now().Add(-time.Nanosecond)})
			requireMiss(t, s, "k")
			require.False(t, s.HoldsRaw("k"))
			requireSet(t, s, "j", tiercache.CacheValue[string]{Data: "dead", Expire: time.Now()})
			requireMiss(t, s, "j")
			require.Zero(t, s.Len())
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				tt.run(t, newStore(t, nil))
			})
		})
	}
}

func TestDelete(t *testing.T) {
	ctx := t.Context()
	s := newStore(t, nil)
	requireSet(t, s, "gone", tiercache.CacheValue[string]{Data: "x"})
	requireSet(t, s, "kept", tiercache.CacheValue[string]{Data: "y"})
	require.NoError(t, s.Delete(ctx, "gone"))
	requireMiss(t, s, "gone")
	requireHit(t, s, "kept", "y")
	require.NoError(t, s.Delete(ctx, "gone"), "deleting a missing key")
	require.NoError(t, s.Delete(ctx, "never-set"), "deleting a missing key")
}

func TestFlush(t *testing.T) {
	ctx := t.Context()
	s := newStore(t, nil)
	for i := range 100 {
		requireSet(t, s, fmt.Sprint(i), tiercache.CacheValue[string]{Data: "v", Expire: time.Now().Add(time.Hour)})
	}
	require.Equal(t, 100, s.Len())
	require.NoError(t, s.Flush(ctx))
	require.Zero(t, s.Len())
	for i := range 100 {
		requireMiss(t, s, fmt.Sprint(i))
	}
	requireSet(t, s, "after", tiercache.CacheValue[string]{Data: "v"})
	requireHit(t, s, "after", "v")
	require.NoError(t, s.Flush(ctx), "flushing again")
}

func TestEndedContext(t *testing.T) {
	cancelled, cancel := context.WithCancel(t.Context())
	cancel()
	past, cancelPast := context.WithDeadline(t.Context(), time.Now().Add(-time.Second))
	defer cancelPast()

	ops := []struct {
		name string
		op   func(ctx context.Context, s *otterstore.Store[string]) error
	}{
		{"Get", func(ctx context.Context, s *otterstore.Store[string]) error {
			v, err := s.Get(ctx, "k")
			if v != nil {
				return errors.New("Get returned a value")
			}
			return err
		}},
		{"Set", func(ctx context.Context, s *otterstore.Store[string]) error {
			return s.Set(ctx, "k", tiercache.CacheValue[string]{Data: "after"})
		}},
		{"Delete", func(ctx context.Context, s *otterstore.Store[string]) error { return s.Delete(ctx, "k") }},
		{"Flush", func(ctx context.Context, s *otterstore.Store[string]) error { return s.Flush(ctx) }},
	}
	ctxs := []struct {
		name string
		ctx  context.Context
		want error
	}{
		{"cancelled", cancelled, context.Canceled},
		{"past its deadline", past, context.DeadlineExceeded},
	}
	for _, c := range ctxs {
		for _, o := range ops {
			t.Run(c.name+"/"+o.name, func(t *testing.T) {
				s := newStore(t, nil)
				requireSet(t, s, "k", tiercache.CacheValue[string]{Data: "before"})
				err := o.op(c.ctx, s)
				require.ErrorIs(t, err, c.want)
				require.True(t, strings.HasPrefix(err.Error(), "otterstore:"), "%q lacks the package prefix", err)
				requireHit(t, s, "k", "before") // the work was not done
			})
		}
	}
}

func TestClose(t *testing.T) {
	ctx := t.Context()
	s, err := otterstore.New[string](nil)
	require.NoError(t, err)
	requireSet(t, s, "k", tiercache.CacheValue[string]{Data: "v", Expire: time.Now().Add(time.Hour)})
	require.NoError(t, s.Close())
	require.NoError(t, s.Close(), "closing again")

	_, err = s.Get(ctx, "k")
	require.ErrorIs(t, err, tiercache.ErrClosed)
	require.ErrorIs(t, s.Set(ctx, "k", tiercache.CacheValue[string]{Data: "w"}), tiercache.ErrClosed)
	require.ErrorIs(t, s.Delete(ctx, "k"), tiercache.ErrClosed)
	require.ErrorIs(t, s.Flush(ctx), tiercache.ErrClosed)
}

func TestCloseConcurrentWithWrites(t *testing.T) {
	s, err := otterstore.New(&otterstore.Options[string]{MaximumSize: 10})
	require.NoError(t, err)
	var wg, started sync.WaitGroup
	for w := range 4 {
		started.Add(1)
		wg.Go(func() {
			for i := 0; ; i++ {
				if i == 100 {
					started.Done()
				}
				err := s.Set(t.Context(), fmt.Sprintf("%d-%d", w, i), tiercache.CacheValue[string]{Data: "v", Expire: time.Now().Add(time.Hour)})
				if err != nil {
					if !errors.Is(err, tiercache.ErrClosed) {
						t.Errorf("Set: %v, want ErrClosed", err)
					}
					if i < 100 {
						started.Done()
					}
					return
				}
			}
		})
	}
	started.Wait() // every writer is under way
	require.NoError(t, s.Close())
	wg.Wait()
}

func TestBoundBySize(t *testing.T) {
	const maximum = 100
	s := newStore(t, &otterstore.Options[string]{MaximumSize: maximum})
	for i := range 2 * maximum {
		requireSet(t, s, fmt.Sprint(i), tiercache.CacheValue[string]{Data: fmt.Sprint(i)})
	}
	s.CleanUp()
	require.LessOrEqual(t, s.Len(), maximum)
	hits := countHits(t, s, 2*maximum)
	require.LessOrEqual(t, hits, maximum)
	require.Positive(t, hits)
}

func TestBoundByWeight(t *testing.T) {
	const maximumWeight = 1000
	var mu sync.Mutex
	weighed := map[string]string{}
	s := newStore(t, &otterstore.Options[string]{
		MaximumWeight: maximumWeight,
		Weigher: func(key string, v tiercache.CacheValue[string]) uint32 {
			mu.Lock()
			weighed[key] = v.Data
			mu.Unlock()
			return uint32(len(v.Data))
		},
	})
	const n = 200 // 200 entries of weight 10: twice the bound
	for i := range n {
		requireSet(t, s, fmt.Sprint(i), tiercache.CacheValue[string]{Data: fmt.Sprintf("%010d", i)})
	}
	s.CleanUp()
	require.LessOrEqual(t, s.Weight(), uint64(maximumWeight))
	hits := countHits(t, s, n)
	require.LessOrEqual(t, hits*10, maximumWeight)
	require.Positive(t, hits)
	mu.Lock()
	defer mu.Unlock()
	require.Len(t, weighed, n)
	require.Equal(t, "0000000042", weighed["42"], "the Weigher sees the key and the value")
}

func TestConcurrent(t *testing.T) {
	s := newStore(t, &otterstore.Options[string]{MaximumSize: 64})
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			ctx := context.Background()
			for i := range 2000 {
				key := fmt.Sprint(i % 100)
				var err error
				switch (w + i) % 10 {
				case 0:
					err = s.Delete(ctx, key)
				case 1, 2, 3:
					var expire time.Time
					if i%2 == 0 {
						expire = time.Now().Add(time.Duration(i%7) * time.Millisecond)
					}
					err = s.Set(ctx, key, tiercache.CacheValue[string]{Data: "v" + key, Expire: expire})
				case 4:
					if i%100 == 4 {
						err = s.Flush(ctx)
					}
				default:
					var v *tiercache.CacheValue[string]
					before := time.Now()
					v, err = s.Get(ctx, key)
					if err == nil && v != nil {
						if v.Data != "v"+key {
							err = fmt.Errorf("Get(%s) = %q", key, v.Data)
						} else if v.Expired(before) {
							err = fmt.Errorf("Get(%s) returned a value that had expired before the Get", key)
						}
					}
				}
				if err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	s.CleanUp()
	require.LessOrEqual(t, s.Len(), 64)
}

func requireSet(t *testing.T, s *otterstore.Store[string], key string, v tiercache.CacheValue[string]) {
	t.Helper()
	require.NoError(t, s.Set(context.Background(), key, v))
}

func requireHit(t *testing.T, s *otterstore.Store[string], key, data string) {
	t.Helper()
	v, err := s.Get(context.Background(), key)
	require.NoError(t, err)
	require.NotNil(t, v, "Get(%s): a miss", key)
	require.Equal(t, data, v.Data)
}

func requireMiss(t *testing.T, s *otterstore.Store[string], key string) {
	t.Helper()
	v, err := s.Get(context.Background(), key)
	require.NoError(t, err)
	require.Nil(t, v, "Get(%s): want a miss", key)
}

// countHits returns how many of the keys "0" to "n-1" s returns.
func countHits(t *testing.T, s *otterstore.Store[string], n int) int {
	t.Helper()
	hits := 0
	for i := range n {
		v, err := s.Get(context.Background(), fmt.Sprint(i))
		require.NoError(t, err)
		if v != nil {
			hits++
		}
	}
	return hits
}
