package otterstore

import "sync"

// tasks is the Executor a Store gives otter, so that the goroutines otter's
// maintenance runs on have an owner: each task runs on a goroutine of its
// own, counted, and close waits for them. The zero value is ready to use.
//
// Once close has begun, a task runs on the goroutine that submits it, which
// otter supports (see otter.Options.Executor): no goroutine is started that
// close would not wait for. The Store sets neither loaders nor deletion
// listeners, so the only tasks are maintenance passes, which are short.
type tasks struct {
	mu     sync.Mutex
	closed bool
	wg     sync.WaitGroup
}

// run is the otter.Options.Executor.
func (t *tasks) run(fn func()) {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		fn()
		return
	}
	t.wg.Add(1)
	t.mu.Unlock()
	go func() {
		defer t.wg.Done()
		fn()
	}()
}

// close makes later tasks run on their submitter's goroutine and waits for
// the goroutines already started. It may be called again.
func (t *tasks) close() {
	t.mu.Lock()
	t.closed = true
	t.mu.Unlock()
	t.wg.Wait()
}
