package tiercache

import (
	"context"
	"fmt"
	"runtime/debug"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tiercache/tiercache/internal/readctx"
)

// RaceReadPolicy reads both layers concurrently and returns the first hit.
//
// Both layers start at once, or, with HedgeAfter set, L2 starts only if L1
// has not hit within that delay; an L1 miss or failure before then starts L2
// at once. The first hit wins immediately; a miss or failure waits for the
// other layer. The layer still running when the race is decided is the loser,
// reported as StatusAbandoned, and Loser decides its fate.
//
// Readers always see the caller's context values (trace IDs) and deadline.
// Under LoserOffload they do not inherit the caller's cancellation, so that a
// losing read can finish after Read has returned: the policy cancels them
// itself when the caller's ctx ends before an answer, and ends them at the
// caller's deadline.
//
// Choose it when L1 may be cold or slow and latency matters more than L2
// load; a HedgeAfter a little above L1's usual latency keeps L2 reads for
// the cases where L1 is slow. The zero value is ready to use.
type RaceReadPolicy[T any] struct {
	// Loser says what happens to the losing read. Zero: LoserOffload.
	Loser LoserPolicy
	// HedgeAfter delays the start of L2: 0 starts both layers at once; a
	// positive delay starts L2 only if L1 has not hit by then. Negative is
	// an error, as is a Loser not declared below.
	HedgeAfter time.Duration
}

// LoserPolicy says what a race does with the read that lost.
type LoserPolicy uint8

const (
	// LoserOffload leaves the losing read running, neither cancelled when
	// Read returns nor when the caller's ctx is cancelled afterwards; it
	// finishes as an Offload task, so connection pools are not churned by
	// cancelled requests. With a nil Offload, or one that refuses the task,
	// the loser is cancelled instead. This layout costs two goroutines per
	// read, one per layer.
	LoserOffload LoserPolicy = iota
	// LoserCancel cancels the losing read at once. L1 is read on the calling
	// goroutine and L2 on one new goroutine, so a win by L2 returns as soon
	// as the L1 reader honours its cancelled ctx.
	LoserCancel
)

// String returns "offload" or "cancel".
func (p LoserPolicy) String() string {
	switch p {
	case LoserOffload:
		return "offload"
	case LoserCancel:
		return "cancel"
	}
	return "LoserPolicy(" + strconv.Itoa(int(p)) + ")"
}

// OffloadKindRaceLoser is the kind under which a race hands its losing read
// to the Offload.
const OffloadKindRaceLoser = "tiercache.race-loser"

// The states of L2 in a race.
const (
	l2Pending uint32 = iota // waiting for the hedge delay
	l2Started
	l2Skipped // the race was decided before L2 started
)

// raceCall is the state of one race, shared with the goroutines it starts.
type raceCall[T any] struct {
	rctx        readctx.Ctx // the readers' ctx
	key         string
	l1, l2      ReadFunc[T]
	signal      chan struct{} // one token per layer read on a goroutine
	body        func()        // the goroutines' body, shared: each claims the next layer
	claimed     atomic.Uint32 // layers claimed by goroutines so far
	l2state     atomic.Uint32
	cancelOnWin bool // the first hit cancels the other read at once

	mu      sync.Mutex
	out     [2]raceOutcome[T] // by layer: L1, L2
	winner  Layer
	decided bool         // Read has answered
	pool    *OffloadPool // holds the losing read's goroutine, until it ends
	adopted adoption     // its entry in pool's list, guarded by pool's mutex
}

type raceOutcome[T any] struct {
	v    *CacheValue[T]
	rep  LayerReport
	done bool
	late bool // finished after the race was decided
}

// Read races the two layers for key. See ReadPolicy for the error contract.
// A policy with an unknown Loser or a negative HedgeAfter reads nothing and
// returns an error.
func (p RaceReadPolicy[T]) Read(ctx context.Context, key string, l1, l2 ReadFunc[T], off Offload) (ReadResult[T], error) {
	if err := checkRead(ctx, key, l1, l2); err != nil {
		return ReadResult[T]{}, err
	}
	if err := p.validate(); err != nil {
		return ReadResult[T]{}, fmt.Errorf("tiercache: %w", err)
	}
	rc := &raceCall[T]{key: key, l1: l1, l2: l2}
	if p.Loser == LoserOffload && off != nil {
		return rc.raceOffload(ctx, p.HedgeAfter, off)
	}
	return rc.raceCancel(ctx, p.HedgeAfter)
}

// validate checks the policy's settings; the error names the field, the
// caller adds the package's prefix.
func (p RaceReadPolicy[T]) validate() error {
	if p.Loser > LoserCancel {
		return fmt.Errorf("RaceReadPolicy.Loser: unknown %v", p.Loser)
	}
	if p.HedgeAfter < 0 {
		return fmt.Errorf("RaceReadPolicy.HedgeAfter is negative (%v)", p.HedgeAfter)
	}
	return nil
}

// raceCancel runs L1 on the calling goroutine and L2 on one goroutine, and
// cancels whichever loses.
func (rc *raceCall[T]) raceCancel(ctx context.Context, hedgeAfter time.Duration) (ReadResult[T], error) {
	rc.rctx.Init(ctx, true)
	rc.cancelOnWin = true
	defer rc.rctx.Cancel(context.Canceled)
	rc.signal = make(chan struct{}, 1)
	rc.claimed.Store(uint32(L1)) // L1 is read here; a goroutine claims L2
	var hedge *time.Timer
	if hedgeAfter <= 0 {
		rc.l2state.Store(l2Started)
		rc.goRead()
	} else {
		hedge = time.AfterFunc(hedgeAfter, func() {
			if rc.l2state.CompareAndSwap(l2Pending, l2Started) {
				defer rc.signalDone()
				rc.read(L2)
			}
		})
		defer hedge.Stop()
	}
	rc.read(L1)
	rc.mu.Lock()
	won := rc.winner != NoLayer
	rc.mu.Unlock()
	switch {
	case won:
		rc.l2state.CompareAndSwap(l2Pending, l2Skipped)
	case ctx.Err() != nil:
		rc.l2state.CompareAndSwap(l2Pending, l2Skipped) // a hedge firing now must not start L2
		return rc.finish(ctx)
	case rc.l2state.CompareAndSwap(l2Pending, l2Started):
		rc.read(L2) // L1 missed before the hedge delay: read L2 here and now
		return rc.finish(ctx)
	default:
		select {
		case <-rc.signal:
		case <-ctx.Done():
			return rc.finish(ctx)
		}
	}
	return rc.finish(ctx)
}

// raceOffload runs each layer on its own goroutine, so that the loser can
// outlive Read as an Offload task.
func (rc *raceCall[T]) raceOffload(ctx context.Context, hedgeAfter time.Duration, off Offload) (ReadResult[T], error) {
	rc.rctx.Init(ctx, false)
	rc.signal = make(chan struct{}, 2)
	rc.goRead()
	pool, _ := off.(*OffloadPool)
	var hedgeC <-chan time.Time
	if hedgeAfter <= 0 {
		rc.l2state.Store(l2Started)
		rc.goRead()
	} else {
		hedge := time.NewTimer(hedgeAfter)
		defer hedge.Stop()
		hedgeC = hedge.C
	}
	for {
		select {
		case <-rc.signal:
		case <-hedgeC:
			hedgeC = nil
			// Unless L1 has hit in the meantime: its token is then waiting.
			if rc.l2state.CompareAndSwap(l2Pending, l2Started) {
				rc.goRead()
			}
			continue
		case <-ctx.Done():
			res, err := rc.finish(ctx)
			// The readers see the caller's reason: DeadlineExceeded at its
			// deadline, as a ctx derived from the caller's would.
			rc.rctx.Cancel(ctx.Err())
			return res, err
		}
		rc.mu.Lock()
		winner, l1Done, l2Done := rc.winner, rc.out[0].done, rc.out[1].done
		rc.mu.Unlock()
		l2On := rc.l2state.Load() == l2Started
		switch {
		case winner != NoLayer:
			loserRunning := (winner == L2 && !l1Done) || (winner == L1 && l2On && !l2Done)
			if !l2On {
				rc.l2state.Store(l2Skipped)
			}
			res, err := rc.finish(ctx)
			if !loserRunning || !rc.handOff(pool, off) {
				rc.rctx.Cancel(context.Canceled)
			}
			return res, err
		case !l2On:
			// L1 missed or failed before the hedge delay: start L2 now.
			hedgeC = nil
			if rc.l2state.CompareAndSwap(l2Pending, l2Started) {
				rc.goRead()
			}
		case l1Done && l2Done:
			rc.rctx.Cancel(context.Canceled)
			return rc.finish(ctx)
		}
	}
}

// handOff gives the losing read to the Offload and reports whether it took
// it. An OffloadPool adopts the read's goroutine as a running task; any other
// Offload gets a task that waits for the read, and the read is cancelled if
// that Offload drops the task unrun. A read that has finished in the
// meantime needs neither.
func (rc *raceCall[T]) handOff(pool *OffloadPool, off Offload) bool {
	if pool == nil {
		return offloadGo(off, OffloadKindRaceLoser, rc.awaitLoser, rc.cancelAdopted)
	}
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if rc.out[0].done && rc.out[1].done {
		return false
	}
	if !pool.adopt(rc) {
		return false
	}
	rc.pool = pool
	return true
}

// cancelAdopted is called by the OffloadPool holding the losing read when
// the read's time is up.
func (rc *raceCall[T]) cancelAdopted() { rc.rctx.Cancel(context.Canceled) }

// adoption returns the race's entry in the list of the OffloadPool that
// holds its losing read.
func (rc *raceCall[T]) adoption() *adoption { return &rc.adopted }

// awaitLoser is the Offload task that owns a losing read until it finishes,
// or cancels it when the task's own ctx ends first.
func (rc *raceCall[T]) awaitLoser(ctx context.Context) {
	select {
	case <-rc.signal:
	case <-ctx.Done():
	}
	rc.rctx.Cancel(context.Canceled)
}

// goRead starts a goroutine that reads the next layer (L1, then L2), ends
// when the reader returns, and leaves a token on rc.signal. Both goroutines
// share one body, so a race allocates a single closure for them.
func (rc *raceCall[T]) goRead() {
	if rc.body == nil {
		rc.body = func() {
			defer rc.signalDone()
			rc.read(Layer(rc.claimed.Add(1)))
		}
	}
	go rc.body()
}

// signalDone leaves the token of a finished read; deferred, so that a reader
// calling runtime.Goexit still reports.
func (rc *raceCall[T]) signalDone() { rc.signal <- struct{}{} }

// read reads layer l and records the outcome. A losing read adopted by an
// OffloadPool leaves the pool when it ends.
func (rc *raceCall[T]) read(l Layer) {
	read := rc.l1
	if l == L2 {
		read = rc.l2
	}
	v, rep := (*CacheValue[T])(nil), goexitReport
	defer rc.record(l, &v, &rep)
	v, rep = readLayer(&rc.rctx, rc.key, read)
}

// record stores the outcome of layer l's read; the first hit wins. It runs
// deferred, so that a reader calling runtime.Goexit is recorded as failed.
// A losing read held by an OffloadPool leaves it, counted as a task that
// panicked (and reported to OnPanic) when its reader panicked or called
// runtime.Goexit: nobody else sees a loser's report.
func (rc *raceCall[T]) record(l Layer, vp **CacheValue[T], repp *LayerReport) {
	v, rep := *vp, *repp
	rc.mu.Lock()
	o := &rc.out[l-1]
	o.v, o.rep, o.done = v, rep, true
	o.late = rc.decided || rc.winner != NoLayer
	won := v != nil && !o.late
	if won {
		rc.winner = l
		// A hedge timer firing from now on must not start L2.
		if rc.l2state.Load() == l2Pending {
			rc.l2state.CompareAndSwap(l2Pending, l2Skipped)
		}
	}
	pool := rc.pool
	rc.mu.Unlock()
	if won && rc.cancelOnWin {
		rc.rctx.Cancel(context.Canceled)
	}
	if pool != nil {
		rc.rctx.Cancel(context.Canceled)
		perr, panicked := rep.Err.(*PanicError)
		switch {
		case panicked:
			pool.reportPanic(OffloadKindRaceLoser, perr.Value, perr.Stack)
		case rep.Err == errGoexit: // deferred during the Goexit: the reader is still on the stack
			pool.reportPanic(OffloadKindRaceLoser, errGoexit, debug.Stack())
		default:
			pool.release(rc, true)
			return
		}
		pool.release(rc, false)
	}
}

// finish decides the race and builds the result. A layer that had not
// finished by then is reported abandoned. When no layer hit and the caller's
// ctx has ended, the read ends with ctx's error whatever the layers reported.
func (rc *raceCall[T]) finish(ctx context.Context) (ReadResult[T], error) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.decided = true
	var res ReadResult[T]
	l2On := rc.l2state.Load() == l2Started
	for i, l := range [...]Layer{L1, L2} {
		o, rep := &rc.out[i], res.report(l)
		switch {
		case l == L2 && !l2On:
		case o.done && !o.late:
			*rep = o.rep
		default:
			rep.Status = StatusAbandoned
		}
	}
	if w := rc.winner; w != NoLayer {
		res.Value, res.Source = rc.out[w-1].v, w
		return res, nil
	}
	if err := ctxEnded(ctx); err != nil {
		return res, readCanceled(rc.key, err)
	}
	return res, missOrFailure(rc.key, &res)
}

// ctxEnded returns ctx.Err(), or DeadlineExceeded once ctx's deadline has
// passed even if ctx has not noticed yet: a detached reader ctx enforces the
// same deadline and may see it first.
func ctxEnded(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if d, ok := ctx.Deadline(); ok && !time.Now().Before(d) {
		return context.DeadlineExceeded
	}
	return nil
}
