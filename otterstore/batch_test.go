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

// getMany returns the Data of each value GetMany returns, "<miss>" for a
// nil entry, and checks the slice's length.
func getMany(t *testing.T, s *otterstore.Store[string], keys ...string) []string {
	t.Helper()
	values, err := s.GetMany(context.Background(), keys)
	require.NoError(t, err)
	require.NotNil(t, values)
	require.Len(t, values, len(keys))
	got := make([]string, len(values))
	for i, v := range values {
		if v == nil {
			got[i] = "<miss>"
			continue
		}
		got[i] = v.Data
	}
	return got
}

func setMany(t *testing.T, s *otterstore.Store[string], keys []string, values ...tiercache.CacheValue[string]) {
	t.Helper()
	require.NoError(t, s.SetMany(context.Background(), keys, values))
}

func value(data string) tiercache.CacheValue[string] { return tiercache.CacheValue[string]{Data: data} }

func TestBatch(t *testing.T) {
	tests := []struct {
		name string
		run  func(t *testing.T, s *otterstore.Store[string])
	}{
		{"no keys", func(t *testing.T, s *otterstore.Store[string]) {
			require.Empty(t, getMany(t, s))
			setMany(t, s, nil)
			require.Zero(t, s.Len())
		}},
		{"order, misses and repeated keys", func(t *testing.T, s *otterstore.Store[string]) {
			setMany(t, s, []string{"a", "b", "c"}, value("A"), value("B"), value("C"))
			require.Equal(t, []string{"C", "<miss>", "A", "A", "B", "<miss>"}, getMany(t, s, "c", "x", "a", "a", "b", ""))
		}},
		{"every field round-trips", func(t *testing.T, s *otterstore.Store[string]) {
			now := time.Now()
			want := []tiercache.CacheValue[string]{
				{Data: "v", Expire: now.Add(time.Hour), Stale: now.Add(time.Minute)},
				{Negative: true, Expire: now.Add(time.Hour)},
				{Data: "forever"},
			}
			keys := []string{"v", "negative", "forever"}
			setMany(t, s, keys, want...)
			got, err := s.GetMany(t.Context(), keys)
			require.NoError(t, err)
			for i := range want {
				require.Equal(t, want[i], *got[i], keys[i])
			}
		}},
		{"a Set and a SetMany are read alike by Get and GetMany", func(t *testing.T, s *otterstore.Store[string]) {
			requireSet(t, s, "one", value("by Set"))
			setMany(t, s, []string{"two"}, value("by SetMany"))
			require.Equal(t, []string{"by Set", "by SetMany"}, getMany(t, s, "one", "two"))
			requireHit(t, s, "two", "by SetMany")
		}},
		{"GetMany shares the stored values, SetMany stores copies", func(t *testing.T, s *otterstore.Store[string]) {
			values := []tiercache.CacheValue[string]{value("before")}
			setMany(t, s, []string{"k"}, values...)
			values[0].Data = "after" // the caller's slice, not the store
			first, err := s.GetMany(t.Context(), []string{"k", "k"})
			require.NoError(t, err)
			require.Equal(t, "before", first[0].Data)
			require.Same(t, first[0], first[1])
			single, err := s.Get(t.Context(), "k")
			require.NoError(t, err)
			require.Same(t, single, first[0], "GetMany returns the pointer Get returns")
		}},
		{"the last value of a repeated key wins", func(t *testing.T, s *otterstore.Store[string]) {
			setMany(t, s, []string{"k", "j", "k"}, value("first"), value("j"), value("last"))
			require.Equal(t, []string{"last", "j"}, getMany(t, s, "k", "j"))
			// An expired last value deletes, whatever came before it.
			setMany(t, s, []string{"k", "k"}, value("live"), tiercache.CacheValue[string]{Data: "dead", Expire: time.Now().Add(-time.Second)})
			require.Equal(t, []string{"<miss>"}, getMany(t, s, "k"))
		}},
		{"an expired value is not stored and removes the old one", func(t *testing.T, s *otterstore.Store[string]) {
			setMany(t, s, []string{"dead", "live"}, value("old"), value("old"))
			setMany(t, s, []string{"dead", "live", "never"},
				tiercache.CacheValue[string]{Data: "new", Expire: time.Now().Add(-time.Nanosecond)},
				tiercache.CacheValue[string]{Data: "new", Expire: time.Now().Add(time.Hour)},
				tiercache.CacheValue[string]{Data: "new", Expire: time.Now()},
			)
			require.Equal(t, []string{"<miss>", "new", "<miss>"}, getMany(t, s, "dead", "live", "never"))
			require.False(t, s.HoldsRaw("dead"))
			require.False(t, s.HoldsRaw("never"))
		}},
		{"keys and values of different lengths write nothing", func(t *testing.T, s *otterstore.Store[string]) {
			setMany(t, s, []string{"a"}, value("old"))
			for _, c := range []struct {
				keys   []string
				values []tiercache.CacheValue[string]
			}{
				{[]string{"a", "b"}, []tiercache.CacheValue[string]{value("new")}},
				{[]string{"a"}, []tiercache.CacheValue[string]{value("new"), value("new")}},
				{nil, []tiercache.CacheValue[string]{value("new")}},
			} {
				err := s.SetMany(t.Context(), c.keys, c.values)
				require.Error(t, err)
				require.True(t, strings.HasPrefix(err.Error(), "otterstore: set many:"), err)
				require.Contains(t, err.Error(), fmt.Sprintf("%d keys but %d values", len(c.keys), len(c.values)))
			}
			require.Equal(t, []string{"old", "<miss>"}, getMany(t, s, "a", "b"))
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.run(t, newStore(t, nil))
		})
	}
}

// TestBatchExpiry runs in a synctest bubble, like TestExpiry.
func TestBatchExpiry(t *testing.T) {
	tests := []struct {
		name string
		run  func(t *testing.T, s *otterstore.Store[string])
	}{
		{"each value expires at its own Expire", func(t *testing.T, s *otterstore.Store[string]) {
			now := time.Now()
			setMany(t, s, []string{"minute", "hour", "wall", "never"},
				tiercache.CacheValue[string]{Data: "m", Expire: now.Add(time.Minute)},
				tiercache.CacheValue[string]{Data: "h", Expire: now.Add(time.Hour)},
				tiercache.CacheValue[string]{Data: "w", Expire: now.Add(time.Minute).Round(0)}, // as decoded from L2
				value("n"),
			)
			keys := []string{"minute", "hour", "wall", "never"}
			time.Sleep(time.Minute - time.Nanosecond)
			require.Equal(t, []string{"m", "h", "w", "n"}, getMany(t, s, keys...))
			time.Sleep(time.Nanosecond)
			require.Equal(t, []string{"<miss>", "h", "<miss>", "n"}, getMany(t, s, keys...))
			time.Sleep(time.Hour)
			require.Equal(t, []string{"<miss>", "<miss>", "<miss>", "n"}, getMany(t, s, keys...))
		}},
		{"an Expire decoded from L2 after the system clock stepped", func(t *testing.T, s *otterstore.Store[string]) {
			s.StepWallClock(time.Hour)
			wall := time.Now().Add(time.Hour).Round(0) // the stepped clock
			setMany(t, s, []string{"minute", "hour"},
				tiercache.CacheValue[string]{Data: "m", Expire: wall.Add(time.Minute)},
				tiercache.CacheValue[string]{Data: "h", Expire: wall.Add(time.Hour)},
			)
			keys := []string{"minute", "hour"}
			time.Sleep(time.Minute - time.Nanosecond)
			require.Equal(t, []string{"m", "h"}, getMany(t, s, keys...))
			time.Sleep(time.Nanosecond)
			require.Equal(t, []string{"<miss>", "h"}, getMany(t, s, keys...))
			time.Sleep(time.Hour)
			require.Equal(t, []string{"<miss>", "<miss>"}, getMany(t, s, keys...))
		}},
		{"an entry past its Expire is not returned before otter removes it", func(t *testing.T, s *otterstore.Store[string]) {
			setMany(t, s, []string{"k", "live"}, tiercache.CacheValue[string]{Data: "v", Expire: time.Now().Add(time.Second)}, value("live"))
			s.ExtendOtterExpiry("k", time.Hour)
			time.Sleep(time.Second)
			require.True(t, s.HoldsRaw("k"), "otter should still hold the entry")
			require.Equal(t, []string{"live", "<miss>"}, getMany(t, s, "live", "k"))
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

func TestBatchEndedContext(t *testing.T) {
	cancelled, cancel := context.WithCancel(t.Context())
	cancel()
	past, cancelPast := context.WithDeadline(t.Context(), time.Now().Add(-time.Second))
	defer cancelPast()

	ops := []struct {
		name string
		op   func(ctx context.Context, s *otterstore.Store[string]) error
	}{
		{"GetMany", func(ctx context.Context, s *otterstore.Store[string]) error {
			values, err := s.GetMany(ctx, []string{"k"})
			if values != nil {
				return errors.New("GetMany returned a slice with its error")
			}
			return err
		}},
		{"SetMany", func(ctx context.Context, s *otterstore.Store[string]) error {
			return s.SetMany(ctx, []string{"k", "j"}, []tiercache.CacheValue[string]{value("after"), value("after")})
		}},
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
				requireSet(t, s, "k", value("before"))
				err := o.op(c.ctx, s)
				require.ErrorIs(t, err, c.want)
				require.True(t, strings.HasPrefix(err.Error(), "otterstore: "), "%q lacks the package prefix", err)
				require.Equal(t, []string{"before", "<miss>"}, getMany(t, s, "k", "j"), "the work was not done")
			})
		}
	}
}

func TestBatchClosed(t *testing.T) {
	s, err := otterstore.New[string](nil)
	require.NoError(t, err)
	setMany(t, s, []string{"k"}, value("v"))
	require.NoError(t, s.Close())
	values, err := s.GetMany(t.Context(), []string{"k"})
	require.ErrorIs(t, err, tiercache.ErrClosed)
	require.Nil(t, values)
	require.ErrorIs(t, s.SetMany(t.Context(), []string{"k"}, []tiercache.CacheValue[string]{value("w")}), tiercache.ErrClosed)
}

// TestGetManyAllocatesOnlyItsResult checks that GetMany allocates the
// returned slice and nothing else, with and without Expire.
func TestGetManyAllocatesOnlyItsResult(t *testing.T) {
	s := newStore(t, nil)
	keys := make([]string, 100)
	values := make([]tiercache.CacheValue[string], len(keys))
	for i := range keys {
		keys[i] = fmt.Sprint("k", i)
		values[i] = value("v")
		if i%2 == 0 {
			values[i].Expire = time.Now().Add(time.Hour)
		}
	}
	setMany(t, s, keys[:90], values[:90]...) // 10 misses
	ctx := context.Background()
	allocs := testing.AllocsPerRun(100, func() {
		if _, err := s.GetMany(ctx, keys); err != nil {
			t.Fatal(err)
		}
	})
	require.Equal(t, 1.0, allocs)
}

// TestBatchConcurrent mixes GetMany, SetMany, Get and Delete on a small
// store under -race: every value read is the one written for its key and
// never one that had expired before the read began.
func TestBatchConcurrent(t *testing.T) {
	s := newStore(t, &otterstore.Options[string]{MaximumSize: 64})
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			ctx := context.Background()
			keys := make([]string, 10)
			values := make([]tiercache.CacheValue[string], len(keys))
			for i := range 500 {
				for j := range keys {
					keys[j] = fmt.Sprint((i + j*7 + w) % 100)
				}
				var err error
				switch (w + i) % 5 {
				case 0:
					err = s.Delete(ctx, keys[0])
				case 1, 2:
					for j, k := range keys {
						values[j] = tiercache.CacheValue[string]{Data: "v" + k}
						if j%2 == 0 {
							values[j].Expire = time.Now().Add(time.Duration(i%5) * time.Millisecond)
						}
					}
					err = s.SetMany(ctx, keys, values)
				default:
					before := time.Now()
					var got []*tiercache.CacheValue[string]
					got, err = s.GetMany(ctx, keys)
					for j, v := range got {
						switch {
						case v == nil:
						case v.Data != "v"+keys[j]:
							err = fmt.Errorf("GetMany: %s = %q", keys[j], v.Data)
						case v.Expired(before):
							err = fmt.Errorf("GetMany: %s had expired before the call", keys[j])
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
