package tiercache_test

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tiercache/tiercache"
)

// fakeWriter is a hand-made LayerWriter for one layer: it records its calls
// in a log shared by both layers and fails as told.
type fakeWriter struct {
	name     string
	log      *opLog
	setErr   error
	evictErr error
	delay    time.Duration // how long Set takes; use in a synctest bubble
	// evictCtx receives the ctx each Evict was called with; nil: not kept.
	evictCtx chan context.Context
}

func (w *fakeWriter) writer() tiercache.LayerWriter {
	return tiercache.LayerWriter{
		Set: func(ctx context.Context) error {
			w.log.add(w.name + ".Set")
			if w.delay > 0 {
				time.Sleep(w.delay)
			}
			return w.setErr
		},
		Evict: func(ctx context.Context) error {
			w.log.add(w.name + ".Evict")
			if w.evictCtx != nil {
				w.evictCtx <- ctx
			}
			return w.evictErr
		},
	}
}

func TestWritePolicyFunc(t *testing.T) {
	errPolicy := errors.New("policy says no")
	var log opLog
	l1 := &fakeWriter{name: "L1", log: &log}
	l2 := &fakeWriter{name: "L2", log: &log}
	off := &inlineOffload{}
	type key struct{}
	ctx := context.WithValue(t.Context(), key{}, "trace")

	var gotKey string
	f := tiercache.WritePolicyFunc(func(ctx context.Context, k string, w1, w2 tiercache.LayerWriter, o tiercache.Offload) error {
		gotKey = k
		require.Equal(t, "trace", ctx.Value(key{}))
		require.Same(t, off, o)
		require.NoError(t, w2.Set(ctx))
		require.NoError(t, w1.Evict(ctx))
		return errPolicy
	})
	err := f.Write(ctx, "k", l1.writer(), l2.writer(), off)
	require.ErrorIs(t, err, errPolicy)
	require.Equal(t, "k", gotKey)
	require.Equal(t, []string{"L2.Set", "L1.Evict"}, log.list())
}

// A Cache writes through Options.WritePolicy, with writers bound to its
// layers, and returns the policy's error naming the key.
func TestCacheWritesThroughWritePolicy(t *testing.T) {
	errPolicy := errors.New("policy says no")
	l1, l2 := newFakeBackend(), newFakeBackend()
	l2.put("k", tiercache.CacheValue[string]{Data: "old"})
	var calls int
	onlyL1 := tiercache.WritePolicyFunc(func(ctx context.Context, key string, w1, _ tiercache.LayerWriter, _ tiercache.Offload) error {
		calls++
		require.Equal(t, "k", key)
		require.NoError(t, w1.Set(ctx))
		return errPolicy
	})
	c := openCache(t, l1, l2, &tiercache.Options[string]{WritePolicy: onlyL1})

	err := c.Set(t.Context(), "k", "new", 0)
	require.ErrorIs(t, err, errPolicy)
	require.ErrorContains(t, err, "tiercache:")
	require.ErrorContains(t, err, `"k"`)
	require.Equal(t, 1, calls)
	requireHolds(t, l1, "k", tiercache.CacheValue[string]{Data: "new"})
	requireHolds(t, l2, "k", tiercache.CacheValue[string]{Data: "old"})
	require.Zero(t, l2.calls().sets)
}

func TestSequentialWritePolicyWriters(t *testing.T) {
	errL1 := errors.New("L1 is down")
	errL2 := errors.New("L2 is down")
	errEvict := errors.New("L1 evict failed")
	tests := []struct {
		name                  string
		l1Set, l2Set, l1Evict error
		want                  []string
		wantErrs              []error
	}{
		{name: "both succeed", want: []string{"L2.Set", "L1.Set"}},
		{name: "L2 fails: evict L1, do not write it", l2Set: errL2, want: []string{"L2.Set", "L1.Evict"}, wantErrs: []error{errL2}},
		{name: "L1 fails: evict it", l1Set: errL1, want: []string{"L2.Set", "L1.Set", "L1.Evict"}, wantErrs: []error{errL1}},
		{name: "L2 fails and so does the evict", l2Set: errL2, l1Evict: errEvict, want: []string{"L2.Set", "L1.Evict"}, wantErrs: []error{errL2, errEvict}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var log opLog
			l1 := &fakeWriter{name: "L1", log: &log, setErr: tt.l1Set, evictErr: tt.l1Evict}
			l2 := &fakeWriter{name: "L2", log: &log, setErr: tt.l2Set}

			err := tiercache.SequentialWritePolicy{}.Write(t.Context(), "k", l1.writer(), l2.writer(), nil)
			require.Equal(t, tt.want, log.list())
			if len(tt.wantErrs) == 0 {
				require.NoError(t, err)
			}
			for _, want := range tt.wantErrs {
				require.ErrorIs(t, err, want)
			}
		})
	}
}

func TestParallelWritePolicyWriters(t *testing.T) {
	errL1 := errors.New("L1 is down")
	errL2 := errors.New("L2 is down")
	tests := []struct {
		name         string
		l1Set, l2Set error
		want         []string
	}{
		{name: "both succeed", want: []string{"L1.Set", "L2.Set"}},
		{name: "L1 fails: evict L1", l1Set: errL1, want: []string{"L1.Evict", "L1.Set", "L2.Set"}},
		{name: "L2 fails: evict L2", l2Set: errL2, want: []string{"L1.Set", "L2.Evict", "L2.Set"}},
		{name: "both fail: evict both", l1Set: errL1, l2Set: errL2, want: []string{"L1.Evict", "L1.Set", "L2.Evict", "L2.Set"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var log opLog
			l1 := &fakeWriter{name: "L1", log: &log, setErr: tt.l1Set}
			l2 := &fakeWriter{name: "L2", log: &log, setErr: tt.l2Set}

			err := tiercache.ParallelWritePolicy{}.Write(t.Context(), "k", l1.writer(), l2.writer(), nil)
			require.ElementsMatch(t, tt.want, log.list())
			if tt.l1Set == nil && tt.l2Set == nil {
				require.NoError(t, err)
			}
			for _, want := range []error{tt.l1Set, tt.l2Set} {
				if want != nil {
					require.ErrorIs(t, err, want)
				}
			}
		})
	}
}

func TestWritePolicyWritersLatency(t *testing.T) {
	const layerLatency = 30 * time.Millisecond
	tests := []struct {
		name   string
		policy tiercache.WritePolicy
		want   time.Duration
	}{
		{name: "sequential", policy: tiercache.SequentialWritePolicy{}, want: 2 * layerLatency},
		{name: "parallel", policy: tiercache.ParallelWritePolicy{}, want: layerLatency},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var log opLog
				l1 := &fakeWriter{name: "L1", log: &log, delay: layerLatency}
				l2 := &fakeWriter{name: "L2", log: &log, delay: layerLatency}
				start := time.Now()
				require.NoError(t, tt.policy.Write(t.Context(), "k", l1.writer(), l2.writer(), nil))
				require.Equal(t, tt.want, time.Since(start))
			})
		})
	}
}

// The evictions that keep L1 from holding a stale copy must run even when
// the write failed because the caller's ctx ended; they keep its values.
func TestWritePolicyEvictOutlivesCancelledCaller(t *testing.T) {
	errL1 := errors.New("L1 is down")
	tests := []struct {
		name       string
		policy     tiercache.WritePolicy
		l1Set      error // L2's Set fails with the ctx's error
		l2Succeeds bool
		wantEvicts int
	}{
		{name: "sequential, L2 fails", policy: tiercache.SequentialWritePolicy{}, wantEvicts: 1},
		{name: "sequential, L1 fails after L2", policy: tiercache.SequentialWritePolicy{}, l2Succeeds: true, l1Set: errL1, wantEvicts: 1},
		{name: "parallel, both fail", policy: tiercache.ParallelWritePolicy{}, l1Set: errL1, wantEvicts: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			type key struct{}
			ctx, cancel := context.WithCancel(context.WithValue(t.Context(), key{}, "trace"))
			cancel()
			var log opLog
			evicts := make(chan context.Context, 2)
			l1 := &fakeWriter{name: "L1", log: &log, setErr: tt.l1Set, evictCtx: evicts}
			l2 := &fakeWriter{name: "L2", log: &log, setErr: context.Canceled, evictCtx: evicts}
			if tt.l2Succeeds {
				l2.setErr = nil
			}

			err := tt.policy.Write(ctx, "k", l1.writer(), l2.writer(), nil)
			require.Error(t, err)
			require.Len(t, evicts, tt.wantEvicts)
			for range tt.wantEvicts {
				evictCtx := <-evicts
				require.NoError(t, evictCtx.Err(), "the evict's ctx is not cancelled")
				require.Equal(t, "trace", evictCtx.Value(key{}), "the evict's ctx keeps the caller's values")
			}
		})
	}
}
