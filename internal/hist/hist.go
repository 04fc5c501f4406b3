// Package hist is a lock-free latency histogram: recording is a single
// atomic add into a log-linear bucket, and counts, the mean and quantiles are
// read from a snapshot.
//
// Buckets split every power of two of nanoseconds into eight, so a quantile
// is accurate to within 12.5% of its value, from 1 ns to 2^40 ns (about 18
// minutes); longer durations land in the last bucket.
package hist

import (
	"math/bits"
	"sync/atomic"
	"time"
)

const (
	subBits    = 3 // eight buckets per power of two
	subBuckets = 1 << subBits
	powers     = 38 // bucket rows: 0-7 ns one by one, then 2^3 up to 2^40 ns (about 18 minutes)
	numBuckets = powers * subBuckets
)

// Histogram counts durations. The zero value is ready to use; it must not be
// copied after first use.
type Histogram struct {
	buckets [numBuckets]atomic.Uint64
}

// bucket returns the index of d's bucket.
func bucket(d time.Duration) int {
	n := uint64(max(d, 0))
	if n < subBuckets {
		return int(n)
	}
	p := bits.Len64(n) - 1 // n is in [2^p, 2^(p+1))
	sub := int(n>>(p-subBits)) & (subBuckets - 1)
	i := (p-subBits+1)*subBuckets + sub
	return min(i, numBuckets-1)
}

// lowerBound returns the smallest duration of bucket i.
func lowerBound(i int) time.Duration {
	if i < subBuckets {
		return time.Duration(i)
	}
	p := i/subBuckets + subBits - 1
	sub := uint64(i % subBuckets)
	return time.Duration((1 << p) | sub<<(p-subBits))
}

// Record counts one duration; a negative one counts as zero.
func (h *Histogram) Record(d time.Duration) {
	h.buckets[bucket(d)].Add(1)
}

// Snapshot is a copy of histograms' counts at one moment.
type Snapshot struct {
	counts [numBuckets]uint64
	total  uint64
}

// Snapshot copies the counts. Records made while it copies may or may not be
// included.
func (h *Histogram) Snapshot() *Snapshot {
	s := new(Snapshot)
	s.Add(h)
	return s
}

// Add adds h's counts to s, so that one snapshot can summarise several
// histograms.
func (s *Snapshot) Add(h *Histogram) {
	for i := range h.buckets {
		c := h.buckets[i].Load()
		s.counts[i] += c
		s.total += c
	}
}

// Count is the number of durations recorded.
func (s *Snapshot) Count() uint64 { return s.total }

// Mean estimates the mean from the buckets' midpoints, within the buckets'
// 12.5% accuracy; zero when nothing was recorded.
func (s *Snapshot) Mean() time.Duration {
	if s.total == 0 {
		return 0
	}
	var sum float64
	for i, c := range s.counts {
		if c == 0 {
			continue
		}
		lo, hi := lowerBound(i), lowerBound(min(i+1, numBuckets-1))
		sum += float64(c) * (float64(lo) + float64(hi-lo)/2)
	}
	return time.Duration(sum / float64(s.total))
}

// Quantile returns an upper estimate of the q-quantile (q in [0, 1]): the
// upper edge of the bucket holding it. Zero when nothing was recorded.
func (s *Snapshot) Quantile(q float64) time.Duration {
	if s.total == 0 {
		return 0
	}
	q = min(max(q, 0), 1)
	rank := uint64(q*float64(s.total) + 0.5)
	rank = min(max(rank, 1), s.total)
	var seen uint64
	for i, c := range s.counts {
		seen += c
		if seen >= rank {
			if i+1 < numBuckets {
				return lowerBound(i+1) - 1
			}
			return lowerBound(i)
		}
	}
	return lowerBound(numBuckets - 1)
}
