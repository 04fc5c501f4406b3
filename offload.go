package tiercache

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tiercache/tiercache/internal/workers"
)

// Offload runs background work: work a read or write must not wait for, such
// as finishing a losing read, refilling L1 or refreshing a stale value.
//
// Go hands task to the Offload and returns true when it will run; false when
// it was not accepted (the Offload is closed or full) and will never run, so
// the caller can fall back (cancel the work, count it as shed). kind names the
// work for reporting. The ctx a task receives is not the submitter's: it is
// detached from the submitting request and ends only when the Offload decides.
type Offload interface {
	Go(kind string, task func(ctx context.Context)) bool
}

// OffloadFunc adapts a function to the Offload interface. It is handy in
// tests: an OffloadFunc that runs the task at once makes background work
// synchronous.
type OffloadFunc func(kind string, task func(ctx context.Context)) bool

// Go calls f.
func (f OffloadFunc) Go(kind string, task func(ctx context.Context)) bool { return f(kind, task) }

var (
	_ Offload = OffloadFunc(nil)
	_ Offload = (*OffloadPool)(nil)
)

const (
	// DefaultOffloadConcurrency is OffloadOptions.MaxConcurrent when zero.
	DefaultOffloadConcurrency = 64
	// DefaultOffloadQueue is OffloadOptions.MaxQueued when zero.
	DefaultOffloadQueue = 1024
	// DefaultOffloadIdleTimeout is OffloadOptions.IdleTimeout when zero.
	DefaultOffloadIdleTimeout = time.Second
)

// OffloadOptions configures an OffloadPool. The zero value is a valid
// configuration.
type OffloadOptions struct {
	// MaxConcurrent bounds the tasks running at once, each on its own
	// goroutine. Zero or negative: DefaultOffloadConcurrency.
	MaxConcurrent int
	// MaxQueued bounds the accepted tasks waiting for a free slot; past it
	// Go returns false and the rejection is counted. Zero:
	// DefaultOffloadQueue. Negative: no queue, a task runs at once or is
	// rejected.
	MaxQueued int
	// TaskTimeout is the deadline on each task's ctx, counted from when the
	// task starts running. Zero or negative: none.
	TaskTimeout time.Duration
	// IdleTimeout is how long a worker that has run out of tasks waits for
	// another before it exits: a reused worker keeps the stack it grew.
	// Zero: DefaultOffloadIdleTimeout. Negative: workers exit at once.
	IdleTimeout time.Duration
	// OnPanic, when set, is called with the task's kind, the recovered value
	// and the stack of a task that panicked (or, for a task that called
	// runtime.Goexit, an error saying so). A panic inside OnPanic is
	// recovered and ignored. Nil: panics are only counted.
	OnPanic func(kind string, recovered any, stack []byte)
}

// OffloadStats is a snapshot of an OffloadPool's counters.
type OffloadStats struct {
	// Accepted counts tasks Go accepted.
	Accepted uint64
	// Rejected counts tasks Go refused because the pool was full or closed.
	Rejected uint64
	// Completed counts tasks that returned normally.
	Completed uint64
	// Panicked counts tasks that panicked (recovered) or called
	// runtime.Goexit.
	Panicked uint64
	// Dropped counts queued tasks that Close discarded when its ctx ended
	// before they could run.
	Dropped uint64
	// Running is the number of tasks running now.
	Running int
	// Queued is the number of accepted tasks waiting to run now.
	Queued int
}

// OffloadPool is the bounded Offload: at most MaxConcurrent tasks run at
// once, at most MaxQueued more wait, and the rest are shed. Workers are
// goroutines the pool owns: a task arriving with a slot free goes to a
// worker that is waiting for work, or to a new one; a worker drains the
// queue, then waits IdleTimeout for more before it exits, so an idle pool
// soon holds no goroutine. Starting a task allocates nothing.
//
// A RaceReadPolicy hands its losing read to an OffloadPool without a task of
// its own: the read's goroutine is counted as a running task (it holds a
// slot, Close waits for it and cancels it at its deadline) until it ends.
// Likewise a Cache's flight, once its callers have their answer, runs its
// follow-up (the refill of an L2 hit, the L2 write of a loaded value) on its
// own goroutine in a free slot, as a task of the pool; when every slot is
// taken the follow-up is submitted with Go like any task.
//
// Task contexts are detached from the submitter and end only at TaskTimeout
// or when Close's ctx ends first. A panicking task is recovered, counted and
// reported to OnPanic, and the pool keeps working.
//
// Use NewOffloadPool; the zero OffloadPool is not usable.
type OffloadPool struct {
	maxRunning int
	maxQueued  int
	timeout    time.Duration
	onPanic    func(kind string, recovered any, stack []byte)

	base       context.Context // parent of every task's ctx
	cancelBase context.CancelFunc
	startWork  func()           // p.work, bound once so that starting a worker allocates nothing
	handoff    chan offloadTask // first task of each starting worker; room for maxRunning
	workers    *workers.Pool    // the goroutines, reused

	mu      sync.Mutex
	closed  bool
	running int // slots in use: live workers plus adopted goroutines
	queue   taskQueue
	adopted *adoption     // goroutines taken into the accounting, a list
	idle    chan struct{} // made by a waiter; closed when nothing runs or waits

	accepted, rejected, completed, panicked, dropped atomic.Uint64
}

// adoptee is a goroutine that is already running and that an OffloadPool
// takes into its accounting instead of running a task to wait for it: a
// race's losing read. The pool calls cancelAdopted when the goroutine's time
// is up (TaskTimeout, or Close's ctx ending).
type adoptee interface {
	cancelAdopted()
	// adoption returns the adoptee's entry in the pool's list, which the
	// adoptee holds so that adopting and releasing it allocate nothing.
	adoption() *adoption
}

// adoption is an adopted goroutine's entry in its pool's list of adoptees,
// guarded by the pool's mutex.
type adoption struct {
	prev, next *adoption
	owner      adoptee     // nil when not in a list
	timer      *time.Timer // its TaskTimeout, if any
}

type offloadTask struct {
	kind    string
	run     func(ctx context.Context)
	dropped func() // called when Close discards the task unrun; may be nil
}

// dropNotifier is an Offload that tells the submitter of a task it accepted
// and then discarded unrun: an OffloadPool whose Close ran out of time drops
// its queued tasks. Work that must be released when its task never runs (a
// count of pending work, a losing read to cancel) is submitted through
// offloadGo, which uses it when the Offload has it.
type dropNotifier interface {
	goOrDrop(kind string, task func(ctx context.Context), dropped func()) bool
}

var (
	_ dropNotifier = (*OffloadPool)(nil)
	_ dropNotifier = trackedOffload[int]{}
)

// offloadGo hands task to off. dropped, when not nil, is called if off
// accepts the task and later discards it without running it; an Offload
// that cannot say so must run every task it accepts, as Offload requires.
func offloadGo(off Offload, kind string, task func(ctx context.Context), dropped func()) bool {
	if d, ok := off.(dropNotifier); ok {
		return d.goOrDrop(kind, task, dropped)
	}
	return off.Go(kind, task)
}

// NewOffloadPool returns a pool configured by opts, normalised as each field
// documents.
func NewOffloadPool(opts OffloadOptions) *OffloadPool {
	p := &OffloadPool{
		maxRunning: opts.MaxConcurrent,
		maxQueued:  opts.MaxQueued,
		timeout:    opts.TaskTimeout,
		onPanic:    opts.OnPanic,
	}
	if p.maxRunning <= 0 {
		p.maxRunning = DefaultOffloadConcurrency
	}
	switch {
	case p.maxQueued == 0:
		p.maxQueued = DefaultOffloadQueue
	case p.maxQueued < 0:
		p.maxQueued = 0
	}
	p.base, p.cancelBase = context.WithCancel(context.Background())
	p.startWork = p.work
	p.handoff = make(chan offloadTask, p.maxRunning)
	idle := opts.IdleTimeout
	if idle == 0 {
		idle = DefaultOffloadIdleTimeout
	}
	p.workers = workers.New(idle)
	return p
}

// Go runs task on a pool goroutine, now if a slot is free, or later if the
// queue has room. It returns false, and counts a rejection, when the pool is
// closed or full; the task then never runs. A nil task is rejected, and a nil
// pool rejects every task.
//
// An accepted task runs unless Close's ctx ends while it is still queued:
// Close then drops it (see Close).
func (p *OffloadPool) Go(kind string, task func(ctx context.Context)) bool {
	return p.goOrDrop(kind, task, nil)
}

// goOrDrop is Go, with dropped called if Close drops the task unrun.
func (p *OffloadPool) goOrDrop(kind string, task func(ctx context.Context), dropped func()) bool {
	if p == nil {
		return false
	}
	if task == nil {
		p.rejected.Add(1)
		return false
	}
	p.mu.Lock()
	switch {
	case p.closed:
	case p.running < p.maxRunning:
		p.running++
		p.accepted.Add(1)
		p.handoff <- offloadTask{kind, task, dropped} // never blocks: one slot per running worker
		p.mu.Unlock()
		p.workers.Go(p.startWork)
		return true
	case p.queue.len() < p.maxQueued:
		p.accepted.Add(1)
		p.queue.push(offloadTask{kind, task, dropped})
		p.mu.Unlock()
		return true
	}
	p.mu.Unlock()
	p.rejected.Add(1)
	return false
}

// work takes a task from the handoff, runs it, then runs queued tasks until
// the queue is empty. A task that calls runtime.Goexit ends the worker; its
// slot then passes to the next queued task on a new worker.
func (p *OffloadPool) work() {
	t := <-p.handoff
	returned := false
	defer func() {
		if !returned { // the task called runtime.Goexit
			p.freeSlot(false)
		}
	}()
	for {
		ok := p.run(t)
		p.mu.Lock()
		p.countDoneLocked(ok)
		next, more := p.queue.pop()
		if !more {
			p.running--
			p.signalIdleLocked()
			p.mu.Unlock()
			returned = true
			return
		}
		p.mu.Unlock()
		t = next
	}
}

// countDoneLocked counts a task that has ended, in the same critical
// section that frees its slot or passes it on: Stats reads these counters
// before the slots, so a snapshot never counts a task both as finished and
// as running or queued, and a Wait that has returned sees it counted.
// Called with p.mu held.
func (p *OffloadPool) countDoneLocked(returned bool) {
	if returned {
		p.completed.Add(1)
	} else {
		p.panicked.Add(1)
	}
}

// freeSlot counts the task that held a slot as ended (returned or not) and
// hands the slot to the next queued task, on a new worker, or returns it to
// the pool.
func (p *OffloadPool) freeSlot(returned bool) {
	p.mu.Lock()
	p.countDoneLocked(returned)
	next, ok := p.queue.pop()
	if !ok {
		p.running--
		p.signalIdleLocked()
		p.mu.Unlock()
		return
	}
	p.handoff <- next
	p.mu.Unlock()
	p.workers.Go(p.startWork)
}

// adopt takes a running goroutine into the pool's accounting as a running
// task: it holds a slot until release, Close waits for it, and TaskTimeout
// or Close's deadline cancel it. It returns false, counting a rejection,
// when the pool is closed or every slot is taken: an adoptee is never queued.
func (p *OffloadPool) adopt(a adoptee) bool {
	p.mu.Lock()
	if p.closed || p.running >= p.maxRunning {
		p.mu.Unlock()
		p.rejected.Add(1)
		return false
	}
	p.running++
	p.accepted.Add(1)
	e := a.adoption()
	e.owner, e.timer = a, nil
	if p.timeout > 0 {
		e.timer = time.AfterFunc(p.timeout, a.cancelAdopted)
	}
	e.prev, e.next = nil, p.adopted
	if p.adopted != nil {
		p.adopted.prev = e
	}
	p.adopted = e
	p.mu.Unlock()
	return true
}

// release ends the adoption of a, counting it completed when returned or
// panicked when not, and hands its slot to a queued task if one waits.
func (p *OffloadPool) release(a adoptee, returned bool) {
	e := a.adoption()
	p.mu.Lock()
	if e.owner == nil { // not adopted, or released already
		p.mu.Unlock()
		return
	}
	if e.prev != nil {
		e.prev.next = e.next
	} else {
		p.adopted = e.next
	}
	if e.next != nil {
		e.next.prev = e.prev
	}
	timer := e.timer
	*e = adoption{}
	p.mu.Unlock()
	if timer != nil {
		timer.Stop()
	}
	p.freeSlot(returned)
}

// runHere runs task on the calling goroutine as one of the pool's tasks,
// when a slot is free: counted, under TaskTimeout and Close's deadline, a
// panic contained, the slot handed on to a queued task when it ends. It
// reports false, running and counting nothing, when the pool is closed or
// every slot is taken. A cache goroutine whose own work is done (a flight
// that has answered its callers) runs its follow-up this way instead of
// waking a worker for it: the same bound, without the hand-off.
func (p *OffloadPool) runHere(kind string, task func(ctx context.Context)) bool {
	p.mu.Lock()
	if p.closed || p.running >= p.maxRunning {
		p.mu.Unlock()
		return false
	}
	p.running++
	p.accepted.Add(1)
	p.mu.Unlock()
	ok := false
	defer func() { p.freeSlot(ok) }()
	ok = p.run(offloadTask{kind: kind, run: task})
	return true
}

// errGoexit is what a task or reader that called runtime.Goexit is reported
// as.
var errGoexit = errors.New("tiercache: runtime.Goexit called in user code")

// run runs one task under the pool's ctx, containing a panic or a Goexit,
// which it reports to OnPanic. It returns whether the task returned; the
// caller counts the task as it frees or passes on its slot (after a Goexit,
// run's caller is unwound and counts it in a deferred call).
func (p *OffloadPool) run(t offloadTask) (returned bool) {
	ctx, cancel := p.base, context.CancelFunc(nil)
	if p.timeout > 0 {
		ctx, cancel = context.WithTimeout(p.base, p.timeout)
	}
	defer func() {
		if cancel != nil {
			cancel()
		}
		if r := recover(); r != nil || !returned {
			if r == nil {
				r = errGoexit
			}
			returned = false
			p.reportPanic(t.kind, r, debug.Stack())
		}
	}()
	t.run(ctx)
	return true
}

func (p *OffloadPool) reportPanic(kind string, recovered any, stack []byte) {
	if p.onPanic == nil {
		return
	}
	defer func() { _ = recover() }()
	p.onPanic(kind, recovered, stack)
}

// signalIdleLocked wakes the waiters once nothing runs or waits.
func (p *OffloadPool) signalIdleLocked() {
	if p.running == 0 && p.queue.len() == 0 && p.idle != nil {
		close(p.idle)
		p.idle = nil
	}
}

// Wait blocks until every accepted task has finished, including tasks
// accepted while it waits, or until ctx ends, in which case it returns ctx's
// error. It does not stop the pool.
func (p *OffloadPool) Wait(ctx context.Context) error {
	p.mu.Lock()
	if p.running == 0 && p.queue.len() == 0 {
		p.mu.Unlock()
		return nil
	}
	if p.idle == nil {
		p.idle = make(chan struct{})
	}
	idle := p.idle
	p.mu.Unlock()
	select {
	case <-idle:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("tiercache: offload pool: wait: %w", ctx.Err())
	}
}

// Close stops accepting tasks and waits for the running and queued ones.
// When ctx ends first, Close drops the queued tasks (counted in
// Stats().Dropped; the work tiercache itself queued is released: a Cache no
// longer waits for it, a losing read waiting for its task is cancelled),
// cancels the ctx of the running ones and returns ctx's error without
// waiting further; a task that ignores its ctx keeps its
// goroutine until it returns, and a later Wait still sees it. Close is
// idempotent: every call waits the same way.
func (p *OffloadPool) Close(ctx context.Context) error {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	if err := p.Wait(ctx); err != nil {
		p.mu.Lock()
		n := p.queue.len()
		var dropped []func()
		for t, ok := p.queue.pop(); ok; t, ok = p.queue.pop() {
			if t.dropped != nil {
				dropped = append(dropped, t.dropped)
			}
		}
		p.queue = taskQueue{}
		p.signalIdleLocked()
		var adopted []adoptee
		for e := p.adopted; e != nil; e = e.next {
			adopted = append(adopted, e.owner)
		}
		p.mu.Unlock()
		p.dropped.Add(uint64(n))
		p.cancelBase()
		for _, a := range adopted {
			a.cancelAdopted()
		}
		for _, f := range dropped {
			f()
		}
		p.workers.Stop() // idle workers exit; busy ones once their task returns
		return fmt.Errorf("tiercache: offload pool: close: %w", ctx.Err())
	}
	p.cancelBase()
	p.workers.Close()
	return nil
}

// Stats returns a snapshot of the pool's counters.
func (p *OffloadPool) Stats() OffloadStats {
	// Read what finished before what was accepted, so that a snapshot
	// never shows more tasks finished than accepted.
	s := OffloadStats{
		Completed: p.completed.Load(),
		Panicked:  p.panicked.Load(),
		Dropped:   p.dropped.Load(),
	}
	p.mu.Lock()
	s.Running, s.Queued = p.running, p.queue.len()
	p.mu.Unlock()
	s.Accepted = p.accepted.Load()
	s.Rejected = p.rejected.Load()
	return s
}

// taskQueue is a FIFO ring that grows as needed and shrinks when emptied.
type taskQueue struct {
	buf        []offloadTask
	head, size int
}

func (q *taskQueue) len() int { return q.size }

func (q *taskQueue) push(t offloadTask) {
	if q.size == len(q.buf) {
		grown := make([]offloadTask, max(8, 2*len(q.buf)))
		for i := range q.size {
			grown[i] = q.buf[(q.head+i)%len(q.buf)]
		}
		q.buf, q.head = grown, 0
	}
	q.buf[(q.head+q.size)%len(q.buf)] = t
	q.size++
}

func (q *taskQueue) pop() (offloadTask, bool) {
	if q.size == 0 {
		return offloadTask{}, false
	}
	t := q.buf[q.head]
	q.buf[q.head] = offloadTask{}
	q.head = (q.head + 1) % len(q.buf)
	q.size--
	if q.size == 0 {
		q.head = 0
		if len(q.buf) > 64 {
			q.buf = nil // let a burst's buffer go
		}
	}
	return t, true
}
