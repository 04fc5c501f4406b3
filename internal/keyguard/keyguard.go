// Package keyguard keeps a cache's copies into L1 and L2 from undoing a
// newer write or an invalidation of the same key.
//
// A refill copies into L1 a value read from L2; a load writes a value fetched
// from the origin into both layers. Both are read at one moment and written
// later, and a Set or Delete of the same key, or an invalidation sent by
// another process, may land in between: written blindly, the older value
// would then sit in the cache until it expires. The guard numbers writes per
// key stripe. A background write takes a Ticket before it reads, and writes
// only if no foreground write to the stripe has begun or ended since, none
// is under way, and L1 has not been flushed; a refill (a Copy) also gives
// way to a loaded value stored since (a Store), which may be newer than the
// L2 copy it read. Stores do not give way to one another: one key is
// loaded by one flight at a time, and a Store of another key sharing the
// stripe must not cost a load its write. It checks and writes under the
// stripe's lock. A foreground write takes the same lock to announce itself (Begin),
// so a copy in progress finishes first and the foreground write lands after
// it. Begin gives up when the write's ctx ends: a background copy stuck on a
// slow backend delays a foreground write of the same stripe at most until
// the write's deadline, never past it.
//
// Background writes that reach L2 (StoreL2) take a second lock of the
// stripe, which only foreground writes and other such writes wait for: a
// slow L2 write holds back neither the L1 writes of the stripe (refills,
// loaded values, invalidations) nor the callers waiting for them. Copies
// give way to a StoreL2 under way.
//
// A foreground write (Set) writes L1 itself, after L2. An invalidation of
// its key that arrives in between means another process wrote the key too,
// in an order this process cannot know: WriteUnlessInvalidated then skips
// the L1 write, leaving L1 without the key, which is always safe.
//
// Keys are hashed onto a fixed number of stripes, so memory stays bounded
// whatever the keys; two keys sharing a stripe only cost a skipped refill,
// which the next read makes again.
package keyguard

import (
	"context"
	"hash/maphash"
	"slices"
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
	lock    chan struct{} // a one-slot semaphore: holding it is a send
	l2lock  chan struct{} // the same, for StoreL2 writes, which reach L2
	gen     atomic.Uint64 // counts writes begun and ended, and invalidations
	stored  atomic.Uint64 // counts Store writes: loaded values, evictions
	inval   atomic.Uint64 // counts invalidations
	writing atomic.Int64  // foreground writes under way
	storing atomic.Int64  // StoreL2 writes under way
	_       [8]byte       // keep stripes on separate cache lines
}

// Ticket is what a copy takes before it reads the value it will write.
type Ticket struct {
	gen, stored, epoch uint64
}

// Mode is what a background write is, which decides what voids its
// ticket.
type Mode uint8

const (
	// Copy is a copy into L1 of a value read from L2 (a refill): any write
	// of its stripe since its ticket voids it, the Stores of other keys
	// included, since the copy may be older than a value loaded meanwhile.
	Copy Mode = iota
	// Store is the write of a value loaded from the origin (into L1 or
	// L2), or the eviction of a key a refresh found gone: foreground writes,
	// invalidations and flushes void it, the Stores of other keys of the
	// stripe do not (one key is loaded by one flight at a time). A Store
	// that ran voids the Copies of its stripe whose tickets were taken
	// before it.
	Store
	// StoreL2 is a Store that reaches L2: the L2 write of a loaded value,
	// or the eviction from both layers of a key a refresh found gone. It
	// runs under the stripe's L2 lock rather than its L1 lock, so that a
	// slow L2 delays only foreground writes of the stripe (which must land
	// after it) and other StoreL2 writes; a Copy that checks while one is
	// under way gives way to it.
	StoreL2
)

// WriteTicket is what a foreground write takes when it begins.
type WriteTicket struct {
	inval, epoch uint64
}

// New returns a Guard.
func New() *Guard {
	g := &Guard{seed: maphash.MakeSeed()}
	for i := range g.stripes {
		g.stripes[i].lock = make(chan struct{}, 1)
		g.stripes[i].l2lock = make(chan struct{}, 1)
	}
	return g
}

func (g *Guard) index(key string) int { return int(maphash.String(g.seed, key) & (Stripes - 1)) }

func (g *Guard) stripe(key string) *stripe { return &g.stripes[g.index(key)] }

// acquire takes lock, one of s's, giving up with ctx's error when ctx
// ends first.
func acquire(ctx context.Context, lock chan struct{}) error {
	select {
	case lock <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// lockFor returns the lock of s that writes of mode m take.
func (s *stripe) lockFor(m Mode) chan struct{} {
	if m == StoreL2 {
		return s.l2lock
	}
	return s.lock
}

// hold takes s's lock for mode m, waiting as long as it takes: background
// copies and invalidations hold the L1 lock only for an L1 write.
func (s *stripe) hold(m Mode) { s.lockFor(m) <- struct{}{} }

func (s *stripe) release(m Mode) { <-s.lockFor(m) }

// Ticket returns key's ticket, to be taken before reading the value a later
// WriteIf will copy.
func (g *Guard) Ticket(key string) Ticket {
	s := g.stripe(key)
	return Ticket{gen: s.gen.Load(), stored: s.stored.Load(), epoch: g.epoch.Load()}
}

// Begin announces a foreground write of key (Set, Delete). Every background
// copy whose ticket was taken before End is then skipped. It waits for a
// copy in progress on the key's stripe, giving up with ctx's error when ctx
// ends first (then nothing is announced and End must not be called). After
// a nil error, call End when the write is over, whatever its outcome. The
// WriteTicket lets the write's own L1 write find out whether an
// invalidation arrived meanwhile.
func (g *Guard) Begin(ctx context.Context, key string) (WriteTicket, error) {
	s := g.stripe(key)
	if err := acquire(ctx, s.l2lock); err != nil {
		return WriteTicket{}, err
	}
	defer s.release(StoreL2)
	if err := acquire(ctx, s.lock); err != nil {
		return WriteTicket{}, err
	}
	defer s.release(Copy)
	s.writing.Add(1)
	s.gen.Add(1)
	return WriteTicket{inval: s.inval.Load(), epoch: g.epoch.Load()}, nil
}

// End closes a write announced by Begin.
func (g *Guard) End(key string) {
	s := g.stripe(key)
	s.gen.Add(1)
	s.writing.Add(-1)
}

// holds reports whether t still holds for s and a write of mode m: no
// write begun or ended, no invalidation, no flush since it was taken, no
// Store either for a Copy, and no write under way.
func (g *Guard) holds(s *stripe, t Ticket, m Mode) bool {
	return s.gen.Load() == t.gen && g.epoch.Load() == t.epoch && s.writing.Load() == 0 &&
		(m != Copy || s.stored.Load() == t.stored && s.storing.Load() == 0)
}

// Holds reports whether t still holds for key and a write of mode m, as
// WriteIf would find it, without the lock: a value read under t is still
// as new as anything written to key since.
func (g *Guard) Holds(key string, t Ticket, m Mode) bool { return g.holds(g.stripe(key), t, m) }

// WriteIf runs write, a background write of mode m, under key's stripe
// lock if t still holds for it, and reports whether it ran. A Store that
// ran voids the older Copies of its stripe.
func (g *Guard) WriteIf(key string, t Ticket, m Mode, write func()) bool {
	s := g.stripe(key)
	s.hold(m)
	defer s.release(m)
	if !g.holds(s, t, m) {
		return false
	}
	if m == StoreL2 {
		s.storing.Add(1)
		defer s.storing.Add(-1) // after stored moves: a Copy checking meanwhile sees one or the other
	}
	write()
	if m != Copy {
		s.stored.Add(1)
	}
	return true
}

// WriteUnlessInvalidated runs a foreground write's L1 write under key's
// stripe lock, unless key was invalidated, or L1 flushed, since Begin
// returned t. It reports whether it ran, and gives up with ctx's error when
// ctx ends before it gets the lock.
func (g *Guard) WriteUnlessInvalidated(ctx context.Context, key string, t WriteTicket, write func()) (bool, error) {
	s := g.stripe(key)
	if err := acquire(ctx, s.lock); err != nil {
		return false, err
	}
	defer s.release(Copy)
	if s.inval.Load() != t.inval || g.epoch.Load() != t.epoch {
		return false, nil
	}
	write()
	return true, nil
}

// Invalidate runs evict under key's stripe lock, after voiding every ticket
// of the stripe taken before: no copy read before the invalidation, and no
// foreground write under way, writes key into L1 after it.
func (g *Guard) Invalidate(key string, evict func()) {
	s := g.stripe(key)
	s.hold(Copy)
	defer s.release(Copy)
	s.gen.Add(1)
	s.inval.Add(1)
	evict()
}

// InvalidateAll voids every ticket taken before it, of every key: L1 is
// about to be flushed. It then waits for the L1 writes under way, which
// found their tickets good before, so that none of them lands after the
// flush.
func (g *Guard) InvalidateAll() {
	g.epoch.Add(1)
	for i := range g.stripes {
		g.stripes[i].hold(Copy)
		g.stripes[i].release(Copy)
	}
}

// WriteManyIf is WriteIf for several keys at once: it locks the stripes of
// keys (each once, in a fixed order), finds the keys whose ticket still
// holds for mode m, runs write with their indexes into keys when there is
// one, and returns those indexes. Stores void the older Copies of the
// stripes of the keys written.
func (g *Guard) WriteManyIf(keys []string, tickets []Ticket, m Mode, write func(ok []int)) []int {
	idx := make([]int, len(keys))
	for i, key := range keys {
		idx[i] = g.index(key)
	}
	order := slices.Clone(idx)
	slices.Sort(order)
	order = slices.Compact(order)
	for _, s := range order {
		g.stripes[s].hold(m)
	}
	defer func() {
		for _, s := range order {
			g.stripes[s].release(m)
		}
	}()
	var ok []int
	for i := range keys {
		if g.holds(&g.stripes[idx[i]], tickets[i], m) {
			ok = append(ok, i)
		}
	}
	if len(ok) == 0 {
		return nil
	}
	if m == StoreL2 {
		for _, s := range order {
			g.stripes[s].storing.Add(1)
		}
		defer func() {
			for _, s := range order {
				g.stripes[s].storing.Add(-1)
			}
		}()
	}
	write(ok)
	if m != Copy {
		for _, i := range ok {
			// A stripe may be advanced more than once: a count only needs
			// to change.
			g.stripes[idx[i]].stored.Add(1)
		}
	}
	return ok
}
