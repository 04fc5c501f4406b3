package main

import "math/rand/v2"

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
