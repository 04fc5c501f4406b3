// Package workers reuses goroutines: a task goes to a worker that has just
// finished one, when there is such a worker, or to a new goroutine.
//
// A new goroutine starts with a small stack and grows it by copying as the
// task calls deeper (a Redis client's call path is deep): a cache that
// starts a goroutine per background task pays that copy every time. A
// worker keeps its grown stack for the next task. A worker waits for its
// next task for IdleTimeout, then exits, so an idle pool ends up holding
// no goroutine.
package workers

import (
	"sync"
	"time"
)

// Pool runs tasks on reused goroutines. It bounds nothing: its user bounds
// the tasks. Use New; Close stops it.
type Pool struct {
	idleTimeout time.Duration
	handoff     chan func() // to a worker that is idle
	quit        chan struct{}
	wg          sync.WaitGroup

	mu     sync.Mutex
	idle   int // workers waiting for a task and not yet claimed
	closed bool
}

// New returns a Pool whose workers wait idleTimeout for a next task.
func New(idleTimeout time.Duration) *Pool {
	return &Pool{idleTimeout: idleTimeout, handoff: make(chan func()), quit: make(chan struct{})}
}

// Go runs task on an idle worker, or on a new goroutine. task must not
// panic; runtime.Goexit in it ends its worker. After Close, Go starts a new
// goroutine every time.
func (p *Pool) Go(task func()) {
	p.mu.Lock()
	if p.idle > 0 && !p.closed {
		p.idle-- // this worker is ours: it will take the task
		p.mu.Unlock()
		p.handoff <- task
		return
	}
	p.wg.Add(1)
	p.mu.Unlock()
	go p.work(task)
}

func (p *Pool) work(task func()) {
	defer p.wg.Done()
	timer := time.NewTimer(p.idleTimeout)
	timer.Stop()
	for {
		task()
		p.mu.Lock()
		if p.closed || p.idleTimeout <= 0 {
			p.mu.Unlock()
			return
		}
		p.idle++
		p.mu.Unlock()
		timer.Reset(p.idleTimeout)
		select {
		case task = <-p.handoff:
			timer.Stop()
			continue
		case <-timer.C:
		case <-p.quit:
			timer.Stop()
		}
		p.mu.Lock()
		if p.idle > 0 { // nobody claimed a worker: this one leaves
			p.idle--
			p.mu.Unlock()
			return
		}
		p.mu.Unlock()
		task = <-p.handoff // claimed meanwhile: the task is on its way
	}
}

// Stop makes the idle workers exit, and the busy ones once their task is
// done, without waiting for them.
func (p *Pool) Stop() {
	p.mu.Lock()
	if !p.closed {
		p.closed = true
		close(p.quit)
	}
	p.mu.Unlock()
}

// Close is Stop, then waits for every worker to exit.
func (p *Pool) Close() {
	p.Stop()
	p.wg.Wait()
}
