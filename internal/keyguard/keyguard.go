// Package keyguard keeps a cache's copies into L1 from undoing a newer write
// or an invalidation of the same key.
//
// A refill copies into L1 a value read from L2; a load writes a value fetched
// from the origin. Both are read at one moment and written later, and a Set
// or Delete of the same key, or an invalidation sent by another process, may
// land in between: written blindly, the older value would then sit in L1
// until it expires. The guard numbers writes per key stripe. A background
// copy takes a Ticket before it reads, and writes only if no write to the
// stripe has begun or ended since, none is under way, and L1 has not been
// flushed; it checks and writes under the stripe's lock, which a foreground
// write takes to announce itself, so the two cannot interleave.
//
// A foreground write (Set) writes L1 itself, after L2. An invalidation of
// its key that arrives in between means another process wrote the key too,
// in an order this process cannot know: WriteUnlessInvalidated then skips
// the L1 write, leaving L1 without the key, which is always safe.
//
// Keys are hashed onto a fixed number of stripes, so memory stays bounded
// whatever the keys; two keys sharing a stripe only cost a skipped copy,
// which the next read makes again.
package keyguard

import (
	"hash/maphash"
	"slices"
	"sync"
	"sync/atomic"
)

// Stripes is the number of stripes keys are hashed onto.
const Stripes = 1024

// Guard is the per-cache set of stripes. Use New.
type Guard struct {
	seed    maphash.Seed
	epoch   atomic.Uint64 // advanced by InvalidateAll: every Ticket taken before is void
	stripes [Stripes]stripe
}

type stripe struct {
	mu      sync.Mutex
	gen     atomic.Uint64 // counts writes begun and ended, and invalidations
	inval   uint64        // counts invalidations; guarded by mu
	writing int           // foreground writes under way; guarded by mu
	_       [32]byte      // keep stripes on separate cache lines
}

// Ticket is what a copy into L1 takes before it reads the value it will
// write.
type Ticket struct {
	gen, epoch uint64
}

// WriteTicket is what a foreground write takes when it begins.
type WriteTicket struct {
	inval, epoch uint64
}

// New returns a Guard.
func New() *Guard { return &Guard{seed: maphash.MakeSeed()} }

func (g *Guard) stripe(key string) *stripe {
	return &g.stripes[maphash.String(g.seed, key)&(Stripes-1)]
}

// Ticket returns key's ticket, to be taken before reading the value a later
// WriteIf will copy.
func (g *Guard) Ticket(key string) Ticket {
	return Ticket{gen: g.stripe(key).gen.Load(), epoch: g.epoch.Load()}
}

// Begin announces a foreground write of key (Set, Delete). Every background
// copy whose ticket was taken before End is then skipped. Call End when the
// write is over, whatever its outcome. The WriteTicket lets the write's own
// L1 write find out whether an invalidation arrived meanwhile.
func (g *Guard) Begin(key string) WriteTicket {
	s := g.stripe(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.gen.Add(1)
	s.writing++
	return WriteTicket{inval: s.inval, epoch: g.epoch.Load()}
}

// End closes a write announced by Begin.
func (g *Guard) End(key string) {
	s := g.stripe(key)
	s.mu.Lock()
	s.gen.Add(1)
	s.writing--
	s.mu.Unlock()
}

// WriteIf runs write under key's stripe lock if the stripe's generation and
// the epoch are still those of t and no foreground write is under way, and
// reports whether it ran. With bump, a write that ran also advances the
// generation, so that older background copies of the key are skipped after
// it.
func (g *Guard) WriteIf(key string, t Ticket, bump bool, write func()) bool {
	s := g.stripe(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.gen.Load() != t.gen || g.epoch.Load() != t.epoch || s.writing != 0 {
		return false
	}
	write()
	if bump {
		s.gen.Add(1)
	}
	return true
}

// WriteUnlessInvalidated runs a foreground write's L1 write under key's
// stripe lock, unless key was invalidated, or L1 flushed, since Begin
// returned t. It reports whether it ran.
func (g *Guard) WriteUnlessInvalidated(key string, t WriteTicket, write func()) bool {
	s := g.stripe(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.inval != t.inval || g.epoch.Load() != t.epoch {
		return false
	}
	write()
	return true
}

// Invalidate runs evict under key's stripe lock, after voiding every ticket
// of the stripe taken before: no copy read before the invalidation, and no
// foreground write under way, writes key into L1 after it.
func (g *Guard) Invalidate(key string, evict func()) {
	s := g.stripe(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.gen.Add(1)
	s.inval++
	evict()
}

// InvalidateAll voids every ticket taken before it, of every key: L1 is
// about to be flushed.
func (g *Guard) InvalidateAll() { g.epoch.Add(1) }

// WriteManyIf is WriteIf for several keys at once: it locks the stripes of
// keys (each once, in a fixed order), finds the keys whose ticket still
// holds, runs write with their indexes into keys when there is one, and
// returns those indexes. With bump, the stripes of the keys written advance
// their generation.
func (g *Guard) WriteManyIf(keys []string, tickets []Ticket, bump bool, write func(ok []int)) []int {
	idx := make([]int, len(keys))
	for i, key := range keys {
		idx[i] = int(maphash.String(g.seed, key) & (Stripes - 1))
	}
	order := slices.Clone(idx)
	slices.Sort(order)
	order = slices.Compact(order)
	for _, s := range order {
		g.stripes[s].mu.Lock()
	}
	defer func() {
		for _, s := range order {
			g.stripes[s].mu.Unlock()
		}
	}()
	epoch := g.epoch.Load()
	var ok []int
	for i := range keys {
		s := &g.stripes[idx[i]]
		if s.gen.Load() == tickets[i].gen && epoch == tickets[i].epoch && s.writing == 0 {
			ok = append(ok, i)
		}
	}
	if len(ok) == 0 {
		return nil
	}
	write(ok)
	if bump {
		bumped := make(map[int]bool, len(ok))
		for _, i := range ok {
			if !bumped[idx[i]] {
				bumped[idx[i]] = true
				g.stripes[idx[i]].gen.Add(1)
			}
		}
	}
	return ok
}
