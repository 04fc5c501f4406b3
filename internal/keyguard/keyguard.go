// Package keyguard keeps a cache's background copies into L1 from undoing a
// newer write of the same key.
//
// A refill copies into L1 a value read from L2; a load writes a value fetched
// from the origin. Both are read at one moment and written later, and a Set
// or Delete of the same key may land in between: written blindly, the older
// value would then sit in L1 until it expires. The guard numbers writes per
// key stripe. A background copy takes the stripe's generation before it
// reads, and writes only if no write to the stripe has begun or ended since,
// and none is under way; it checks and writes under the stripe's lock, which
// a foreground write takes to announce itself, so the two cannot interleave.
//
// Keys are hashed onto a fixed number of stripes, so memory stays bounded
// whatever the keys; two keys sharing a stripe only cost a skipped copy,
// which the next read makes again.
package keyguard

import (
	"hash/maphash"
	"sync"
	"sync/atomic"
)

// Stripes is the number of stripes keys are hashed onto.
const Stripes = 1024

// Guard is the per-cache set of stripes. Use New.
type Guard struct {
	seed    maphash.Seed
	stripes [Stripes]stripe
}

type stripe struct {
	mu      sync.Mutex
	gen     atomic.Uint64 // counts writes begun and ended
	writing int           // foreground writes under way; guarded by mu
	_       [40]byte      // keep stripes on separate cache lines
}

// New returns a Guard.
func New() *Guard { return &Guard{seed: maphash.MakeSeed()} }

func (g *Guard) stripe(key string) *stripe {
	return &g.stripes[maphash.String(g.seed, key)&(Stripes-1)]
}

// Gen returns key's stripe generation, to be taken before reading the value
// a later WriteIf will copy.
func (g *Guard) Gen(key string) uint64 { return g.stripe(key).gen.Load() }

// Begin announces a foreground write of key (Set, Delete, an invalidation).
// Every background copy whose generation was taken before End is then
// skipped. Call End when the write is over, whatever its outcome.
func (g *Guard) Begin(key string) {
	s := g.stripe(key)
	s.mu.Lock()
	s.gen.Add(1)
	s.writing++
	s.mu.Unlock()
}

// End closes a write announced by Begin.
func (g *Guard) End(key string) {
	s := g.stripe(key)
	s.mu.Lock()
	s.gen.Add(1)
	s.writing--
	s.mu.Unlock()
}

// WriteIf runs write under key's stripe lock if the stripe's generation is
// still gen and no foreground write is under way, and reports whether it
// ran. With bump, a write that ran also advances the generation, so that
// older background copies of the key are skipped after it.
func (g *Guard) WriteIf(key string, gen uint64, bump bool, write func()) bool {
	s := g.stripe(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.gen.Load() != gen || s.writing != 0 {
		return false
	}
	write()
	if bump {
		s.gen.Add(1)
	}
	return true
}
