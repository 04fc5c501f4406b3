package hist

import (
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestBucketsAreContiguous(t *testing.T) {
	require.Equal(t, 0, bucket(-5))
	for i := 0; i < numBuckets-1; i++ {
		lo, next := lowerBound(i), lowerBound(i+1)
		require.Less(t, lo, next, "bucket %d", i)
		require.Equal(t, i, bucket(lo), "lower bound of %d", i)
		require.Equal(t, i, bucket(next-1), "upper bound of %d", i)
	}
	require.Equal(t, numBuckets-1, bucket(time.Duration(1<<62)))
}

func TestQuantilesWithinBucketError(t *testing.T) {
	var h Histogram
	r := rand.New(rand.NewPCG(1, 2))
	var all []time.Duration
	for range 100_000 {
		d := time.Duration(r.ExpFloat64() * float64(200*time.Microsecond))
		all = append(all, d)
		h.Record(d)
	}
	slices.Sort(all)
	s := h.Snapshot()
	require.Equal(t, uint64(len(all)), s.Count())
	for _, q := range []float64{0.5, 0.9, 0.99, 0.999} {
		exact := all[int(q*float64(len(all)))-1]
		got := s.Quantile(q)
		require.GreaterOrEqual(t, got, exact, "q=%v is an upper estimate", q)
		require.LessOrEqual(t, float64(got), float64(exact)*1.13, "q=%v within a bucket", q)
	}
	var sum time.Duration
	for _, d := range all {
		sum += d
	}
	mean := float64(sum / time.Duration(len(all)))
	require.InEpsilon(t, mean, float64(s.Mean()), 0.07, "mean from bucket midpoints")
}

func TestSnapshotAddsHistograms(t *testing.T) {
	var a, b Histogram
	a.Record(time.Millisecond)
	b.Record(time.Second)
	b.Record(time.Second)
	s := a.Snapshot()
	s.Add(&b)
	require.Equal(t, uint64(3), s.Count())
	require.Greater(t, s.Quantile(0.5), 900*time.Millisecond)
	require.Less(t, s.Quantile(0.2), 2*time.Millisecond)
}

func TestEmptyAndConcurrent(t *testing.T) {
	var h Histogram
	require.Zero(t, h.Snapshot().Quantile(0.99))
	require.Zero(t, h.Snapshot().Mean())
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 1000 {
				h.Record(time.Millisecond)
			}
		})
	}
	wg.Wait()
	s := h.Snapshot()
	require.Equal(t, uint64(8000), s.Count())
	require.InDelta(t, float64(time.Millisecond), float64(s.Quantile(0.5)), float64(time.Millisecond)/8)
}

// The buckets tell durations apart up to 2^40 ns, as the package says;
// longer ones share the last bucket.
func TestBucketRange(t *testing.T) {
	if a, b := bucket(1<<39), bucket(1<<40-1); a == b || b != numBuckets-1 {
		t.Errorf("2^39 ns in bucket %d, 2^40-1 ns in %d: want distinct, the second the last (%d)", a, b, numBuckets-1)
	}
	if got := bucket(1 << 50); got != numBuckets-1 {
		t.Errorf("2^50 ns in bucket %d, want the last, %d", got, numBuckets-1)
	}
}
