package main

import (
	"math/rand/v2"
	"time"
)

// op is one call of a workload: GetOrLoad of key, or Set when set is true.
type op struct {
	key int32
	set bool
}

// plan is a workload's calls, one slice per worker goroutine, drawn before
// the run so that every library gets exactly the same calls and the random
// draws are not measured.
type plan [][]op

// zipfPlan draws ops calls over keys keys spread over workers: keys by
// Zipf(s) (key 0 the most frequent), and a Set with probability setRatio.
func zipfPlan(seed uint64, ops, workers, keys int, s, setRatio float64) plan {
	p := make(plan, workers)
	for w := range p {
		r := rand.New(rand.NewPCG(seed, uint64(w)))
		z := rand.NewZipf(r, s, 1, uint64(keys-1))
		calls := make([]op, share(ops, workers, w))
		for i := range calls {
			calls[i] = op{key: int32(z.Uint64()), set: r.Float64() < setRatio}
		}
		p[w] = calls
	}
	return p
}

// uniformPlan draws ops GetOrLoad calls over keys keys, uniformly, spread
// over workers.
func uniformPlan(seed uint64, ops, workers, keys int) plan {
	p := make(plan, workers)
	for w := range p {
		r := rand.New(rand.NewPCG(seed, uint64(w)))
		calls := make([]op, share(ops, workers, w))
		for i := range calls {
			calls[i] = op{key: int32(r.IntN(keys))}
		}
		p[w] = calls
	}
	return p
}

// share is worker w's part of n calls spread over workers.
func share(n, workers, w int) int {
	s := n / workers
	if w < n%workers {
		s++
	}
	return s
}

// pagePlan is a batch workload's pages, one slice per worker goroutine,
// drawn before the run like a plan: each page is the keys of one
// GetOrLoadMany call.
type pagePlan [][][]string

// zipfPages draws pages pages of size distinct keys each out of keys, spread
// over workers: every key of a page is drawn by Zipf(s) over keys (index 0
// the most frequent), and drawn again when the page already has it, so that
// a page lists size different products, as a page of a shop would. The
// page's slice is its own; the libraries only read it.
func zipfPages(seed uint64, pages, workers, size int, s float64, keys []string) pagePlan {
	size = min(size, len(keys))
	p := make(pagePlan, workers)
	for w := range p {
		r := rand.New(rand.NewPCG(seed, uint64(w)))
		z := rand.NewZipf(r, s, 1, uint64(len(keys)-1))
		calls := make([][]string, share(pages, workers, w))
		seen := make(map[uint64]bool, size)
		for i := range calls {
			page := make([]string, 0, size)
			clear(seen)
			for len(page) < size {
				if k := z.Uint64(); !seen[k] {
					seen[k] = true
					page = append(page, keys[k])
				}
			}
			calls[i] = page
		}
		p[w] = calls
	}
	return p
}

// keys returns the keys of every page of p.
func (p pagePlan) keys() int {
	n := 0
	for _, pages := range p {
		for _, page := range pages {
			n += len(page)
		}
	}
	return n
}

// slots returns one latency slot per call of p, for runPlan: allocated
// before the measured phase, so that its allocations are not the phase's.
func (p plan) slots() []time.Duration {
	n := 0
	for _, calls := range p {
		n += len(calls)
	}
	return make([]time.Duration, n)
}

// slots returns one latency slot per page of p, for runPages.
func (p pagePlan) slots() []time.Duration {
	n := 0
	for _, pages := range p {
		n += len(pages)
	}
	return make([]time.Duration, n)
}
