package tiercache_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tiercache/tiercache"
)

// blockingTask returns a task that signals started, then waits for release.
func blockingTask(started chan<- struct{}, release <-chan struct{}) func(context.Context) {
	return func(context.Context) {
		if started != nil {
			started <- struct{}{}
		}
		<-release
	}
}

// gate returns a channel that blocks tasks until unblock is called. A test
// that fails before calling unblock has it called at cleanup, so that a
// failure never leaves tasks blocked.
func gate(t *testing.T) (release <-chan struct{}, unblock func()) {
	ch := make(chan struct{})
	unblock = sync.OnceFunc(func() { close(ch) })
	t.Cleanup(unblock)
	return ch, unblock
}

// closePool closes p and fails the test if Close fails.
func closePool(t *testing.T, p *tiercache.OffloadPool) {
	t.Helper()
	require.NoError(t, p.Close(context.Background()))
}

func TestOffloadFunc(t *testing.T) {
	var gotKind string
	off := tiercache.OffloadFunc(func(kind string, task func(context.Context)) bool {
		gotKind = kind
		task(context.Background())
		return kind != "refuse"
	})
	ran := 0
	require.True(t, off.Go("refill", func(context.Context) { ran++ }))
	require.Equal(t, "refill", gotKind)
	require.Equal(t, 1, ran, "the adapter must call the function, which ran the task")
	require.False(t, off.Go("refuse", func(context.Context) { ran++ }))
	require.Equal(t, 2, ran)
}

func TestOffloadPoolRunsTasksAndCounts(t *testing.T) {
	p := tiercache.NewOffloadPool(tiercache.OffloadOptions{MaxConcurrent: 2, MaxQueued: 10})
	t.Cleanup(func() { closePool(t, p) })

	started := make(chan struct{}, 5)
	release, unblock := gate(t)
	var ran atomic.Int32
	for range 5 {
		require.True(t, p.Go("test", func(ctx context.Context) {
			blockingTask(started, release)(ctx)
			ran.Add(1)
		}))
	}
	<-started
	<-started

	s := p.Stats()
	require.Equal(t, tiercache.OffloadStats{Accepted: 5, Running: 2, Queued: 3}, s)

	unblock()
	// The three queued tasks start once slots free up.
	for range 3 {
		<-started
	}
	require.NoError(t, p.Wait(context.Background()))
	require.Equal(t, int32(5), ran.Load())
	require.Equal(t, tiercache.OffloadStats{Accepted: 5, Completed: 5}, p.Stats())
}

func TestOffloadPoolGaugesFollowProgress(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := tiercache.NewOffloadPool(tiercache.OffloadOptions{MaxConcurrent: 1})
		// Task i runs for i+1 seconds, one after the other.
		for i := range 3 {
			require.True(t, p.Go("test", func(context.Context) {
				time.Sleep(time.Duration(i+1) * time.Second)
			}))
		}
		want := []struct{ running, queued, completed int }{
			{1, 2, 0}, // t=0.5s: first running
			{1, 1, 1}, // t=1.5s: second running
			{1, 1, 1}, // t=2.5s
			{1, 0, 2}, // t=3.5s: third running
			{1, 0, 2},
			{1, 0, 2},
			{0, 0, 3}, // t=6.5s: done
		}
		time.Sleep(500 * time.Millisecond)
		for i, w := range want {
			synctest.Wait()
			s := p.Stats()
			require.Equal(t, w.running, s.Running, "step %d", i)
			require.Equal(t, w.queued, s.Queued, "step %d", i)
			require.Equal(t, uint64(w.completed), s.Completed, "step %d", i)
			time.Sleep(time.Second)
		}
		closePool(t, p)
	})
}

// A snapshot never counts one task twice: a task that has finished has left
// Running (or passed its slot to a queued task) before it shows in
// Completed or Panicked. Tasks are started and finished on one goroutine
// while others take snapshots.
func TestOffloadPoolStatsNeverCountATaskTwice(t *testing.T) {
	p := tiercache.NewOffloadPool(tiercache.OffloadOptions{MaxConcurrent: 2, MaxQueued: 2})
	defer closePool(t, p)
	overcount := func(s tiercache.OffloadStats) bool {
		return s.Completed+s.Panicked+s.Dropped+uint64(s.Running)+uint64(s.Queued) > s.Accepted
	}
	var stop atomic.Bool
	var bad atomic.Int64
	var example atomic.Value
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 0; !stop.Load(); i++ {
			p.Go("t", func(context.Context) {
				if i%7 == 0 {
					panic("counted as panicked")
				}
			})
		}
	})
	for range 3 {
		wg.Go(func() {
			for !stop.Load() {
				if s := p.Stats(); overcount(s) && bad.Add(1) == 1 {
					example.Store(s)
				}
			}
		})
	}
	time.Sleep(300 * time.Millisecond)
	stop.Store(true)
	wg.Wait()
	require.Zero(t, bad.Load(), "snapshots counting more tasks than accepted, e.g. %+v", example.Load())
	require.NoError(t, p.Wait(context.Background()))
	s := p.Stats()
	require.Equal(t, s.Accepted, s.Completed+s.Panicked)
	require.NotZero(t, s.Panicked)
}

func TestOffloadPoolMaxConcurrent(t *testing.T) {
	for _, limit := range []int{1, 3, 8} {
		t.Run(fmt.Sprint(limit), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				p := tiercache.NewOffloadPool(tiercache.OffloadOptions{MaxConcurrent: limit})
				var cur, peak atomic.Int32
				const tasks = 50
				for range tasks {
					require.True(t, p.Go("test", func(context.Context) {
						n := cur.Add(1)
						for {
							m := peak.Load()
							if n <= m || peak.CompareAndSwap(m, n) {
								break
							}
						}
						time.Sleep(time.Millisecond)
						cur.Add(-1)
					}))
				}
				synctest.Wait()
				require.Equal(t, limit, p.Stats().Running)
				require.Equal(t, tasks-limit, p.Stats().Queued)

				require.NoError(t, p.Wait(context.Background()))
				require.Equal(t, int32(limit), peak.Load(), "never more than MaxConcurrent at once, and that many when busy")
				require.Equal(t, uint64(tasks), p.Stats().Completed)
				closePool(t, p)
			})
		})
	}
}

func TestOffloadPoolCapacity(t *testing.T) {
	tests := []struct {
		name        string
		opts        tiercache.OffloadOptions
		wantRunning int
		wantQueued  int
	}{
		{name: "configured", opts: tiercache.OffloadOptions{MaxConcurrent: 2, MaxQueued: 3}, wantRunning: 2, wantQueued: 3},
		{name: "negative MaxQueued means no queue", opts: tiercache.OffloadOptions{MaxConcurrent: 2, MaxQueued: -1}, wantRunning: 2, wantQueued: 0},
		{name: "zero options use the defaults", opts: tiercache.OffloadOptions{}, wantRunning: tiercache.DefaultOffloadConcurrency, wantQueued: tiercache.DefaultOffloadQueue},
		{name: "negative MaxConcurrent uses the default", opts: tiercache.OffloadOptions{MaxConcurrent: -5, MaxQueued: 1}, wantRunning: tiercache.DefaultOffloadConcurrency, wantQueued: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := tiercache.NewOffloadPool(tt.opts)
			accepted := tt.wantRunning + tt.wantQueued
			started := make(chan struct{}, accepted)
			release, unblock := gate(t)
			for i := range accepted {
				require.True(t, p.Go("test", blockingTask(started, release)), "task %d", i)
			}
			for range tt.wantRunning {
				<-started
			}

			var rejectedRan atomic.Bool
			require.False(t, p.Go("test", func(context.Context) { rejectedRan.Store(true) }), "one past the capacity is rejected")
			require.False(t, p.Go("test", func(context.Context) { rejectedRan.Store(true) }))

			s := p.Stats()
			require.Equal(t, tt.wantRunning, s.Running)
			require.Equal(t, tt.wantQueued, s.Queued)
			require.Equal(t, uint64(accepted), s.Accepted)
			require.Equal(t, uint64(2), s.Rejected)

			unblock()
			closePool(t, p)
			require.False(t, rejectedRan.Load(), "a rejected task must never run")
			require.Equal(t, uint64(accepted), p.Stats().Completed)
		})
	}
}

func TestOffloadPoolFIFO(t *testing.T) {
	p := tiercache.NewOffloadPool(tiercache.OffloadOptions{MaxConcurrent: 1})
	started := make(chan struct{})
	release, unblock := gate(t)
	require.True(t, p.Go("blocker", blockingTask(started, release)))
	<-started

	var order []int // written by the single worker only
	for i := range 20 {
		require.True(t, p.Go("test", func(context.Context) { order = append(order, i) }))
	}
	unblock()
	require.NoError(t, p.Wait(context.Background()))

	want := make([]int, 20)
	for i := range want {
		want[i] = i
	}
	require.Equal(t, want, order)
	closePool(t, p)
}

// TestOffloadPoolFIFORingWraps keeps the queue non-empty while tasks are
// pushed and popped, so the ring's head walks around the buffer many times,
// and grows the queue while the ring is wrapped.
func TestOffloadPoolFIFORingWraps(t *testing.T) {
	const total = 2000
	p := tiercache.NewOffloadPool(tiercache.OffloadOptions{MaxConcurrent: 1, MaxQueued: 1000})
	started := make(chan struct{})
	release, unblock := gate(t)
	require.True(t, p.Go("blocker", blockingTask(started, release)))
	<-started

	var (
		mu     sync.Mutex
		order  []int
		nextID int
		submit func()
	)
	// children says how many tasks task id submits when it runs: the queue
	// grows by one per task for 50 tasks, holds steady for 50, shrinks by one
	// for 50, and so on, never emptying until the end.
	children := func(id int) int {
		switch (id / 50) % 3 {
		case 0:
			return 2
		case 1:
			return 1
		default:
			return 0
		}
	}
	submit = func() {
		mu.Lock()
		id := nextID
		if id >= total {
			mu.Unlock()
			return
		}
		nextID++
		mu.Unlock()
		ok := p.Go("test", func(context.Context) {
			mu.Lock()
			order = append(order, id)
			mu.Unlock()
			for range children(id) {
				submit()
			}
		})
		if !ok {
			t.Errorf("task %d rejected", id)
		}
	}
	for range 5 {
		submit()
	}
	unblock()

	// Let the chain run dry; if any task got lost, Wait still returns but
	// the order is short.
	require.NoError(t, p.Wait(context.Background()))
	closePool(t, p)

	mu.Lock()
	defer mu.Unlock()
	require.Len(t, order, total)
	for i, id := range order {
		if id != i {
			require.Failf(t, "tasks ran out of order", "position %d ran task %d; order around it: %v", i, id, order[max(0, i-5):min(len(order), i+5)])
		}
	}
	require.Equal(t, uint64(total+1), p.Stats().Completed)
}

func TestOffloadPoolRejectsNilTask(t *testing.T) {
	p := tiercache.NewOffloadPool(tiercache.OffloadOptions{})
	defer closePool(t, p)

	require.False(t, p.Go("nil", nil))
	require.Equal(t, tiercache.OffloadStats{Rejected: 1}, p.Stats())
}

// panicker's run method is the panicking task, so that the reported stack can
// be checked for its name.
type panicker struct{ value any }

func (p panicker) run(context.Context) { panic(p.value) }

type panicRecord struct {
	kind      string
	recovered any
	stack     string
}

func TestOffloadPoolRecoversPanics(t *testing.T) {
	errBoom := errors.New("boom")
	tests := []struct {
		name  string
		value any
		check func(t *testing.T, recovered any)
	}{
		{name: "string", value: "boom", check: func(t *testing.T, recovered any) {
			require.Equal(t, "boom", recovered)
		}},
		{name: "error", value: errBoom, check: func(t *testing.T, recovered any) {
			err, ok := recovered.(error)
			require.True(t, ok)
			require.ErrorIs(t, err, errBoom)
		}},
		{name: "nil", value: nil, check: func(t *testing.T, recovered any) {
			var pn *runtime.PanicNilError
			err, ok := recovered.(error)
			require.True(t, ok)
			require.ErrorAs(t, err, &pn)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var (
				mu      sync.Mutex
				reports []panicRecord
			)
			// MaxConcurrent 1: the task after the panic only runs if the
			// panicking task gave its slot back.
			p := tiercache.NewOffloadPool(tiercache.OffloadOptions{
				MaxConcurrent: 1,
				OnPanic: func(kind string, recovered any, stack []byte) {
					mu.Lock()
					defer mu.Unlock()
					reports = append(reports, panicRecord{kind, recovered, string(stack)})
				},
			})
			started := make(chan struct{})
			release, unblock := gate(t)
			require.True(t, p.Go("blocker", blockingTask(started, release)))
			<-started
			require.True(t, p.Go("refresh", panicker{tt.value}.run))
			var after atomic.Bool
			require.True(t, p.Go("after", func(context.Context) { after.Store(true) }), "queued behind the panic")
			unblock()
			require.NoError(t, p.Wait(context.Background()))

			require.True(t, after.Load(), "the pool keeps working after a panic")
			s := p.Stats()
			require.Equal(t, uint64(1), s.Panicked)
			require.Equal(t, uint64(2), s.Completed, "a panicked task is not completed")

			mu.Lock()
			require.Len(t, reports, 1)
			r := reports[0]
			mu.Unlock()
			require.Equal(t, "refresh", r.kind)
			tt.check(t, r.recovered)
			require.Contains(t, r.stack, "panicker.run", "the stack names the panicking function")

			// And it keeps working for tasks submitted later.
			done := make(chan struct{})
			require.True(t, p.Go("later", func(context.Context) { close(done) }))
			<-done
			closePool(t, p)
		})
	}
}

func TestOffloadPoolPanicWithoutOnPanic(t *testing.T) {
	p := tiercache.NewOffloadPool(tiercache.OffloadOptions{MaxConcurrent: 1})
	require.True(t, p.Go("refresh", panicker{"boom"}.run))
	require.NoError(t, p.Wait(context.Background()))
	require.Equal(t, tiercache.OffloadStats{Accepted: 1, Panicked: 1}, p.Stats())

	done := make(chan struct{})
	require.True(t, p.Go("later", func(context.Context) { close(done) }))
	<-done
	closePool(t, p)
	require.Equal(t, uint64(1), p.Stats().Completed)
}

func TestOffloadPoolContainsPanicInOnPanic(t *testing.T) {
	var calls atomic.Int32
	p := tiercache.NewOffloadPool(tiercache.OffloadOptions{
		MaxConcurrent: 1,
		OnPanic: func(string, any, []byte) {
			calls.Add(1)
			panic("OnPanic panics too")
		},
	})
	require.True(t, p.Go("refresh", panicker{"boom"}.run))
	require.NoError(t, p.Wait(context.Background()))
	require.Equal(t, int32(1), calls.Load())

	require.True(t, p.Go("refresh", panicker{"boom again"}.run))
	done := make(chan struct{})
	require.True(t, p.Go("later", func(context.Context) { close(done) }))
	<-done
	closePool(t, p)
	require.Equal(t, int32(2), calls.Load())
	s := p.Stats()
	require.Equal(t, uint64(2), s.Panicked)
	require.Equal(t, uint64(1), s.Completed)
}

func TestOffloadPoolTaskContextIsDetached(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := tiercache.NewOffloadPool(tiercache.OffloadOptions{})
		type seen struct {
			hasDeadline bool
			errAtStart  error
			doneLater   bool
		}
		got := make(chan seen, 1)
		require.True(t, p.Go("test", func(ctx context.Context) {
			var s seen
			_, s.hasDeadline = ctx.Deadline()
			s.errAtStart = ctx.Err()
			time.Sleep(1000 * time.Hour)
			select {
			case <-ctx.Done():
				s.doneLater = true
			default:
			}
			got <- s
		}))
		s := <-got
		require.False(t, s.hasDeadline, "no TaskTimeout: no deadline")
		require.NoError(t, s.errAtStart)
		require.False(t, s.doneLater, "no TaskTimeout: the ctx does not end while the task runs")
		closePool(t, p)
	})
}

func TestOffloadPoolTaskTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const timeout = 10 * time.Second
		p := tiercache.NewOffloadPool(tiercache.OffloadOptions{MaxConcurrent: 1, TaskTimeout: timeout})
		type seen struct {
			start, deadline, ended time.Time
			err                    error
		}
		results := make(chan seen, 2)
		task := func(ctx context.Context) {
			s := seen{start: time.Now()}
			s.deadline, _ = ctx.Deadline()
			<-ctx.Done()
			s.ended = time.Now()
			s.err = ctx.Err()
			results <- s
		}
		t0 := time.Now()
		require.True(t, p.Go("first", task))
		require.True(t, p.Go("second", task)) // queued: its timeout starts when it runs

		for i, wantStart := range []time.Time{t0, t0.Add(timeout)} {
			s := <-results
			require.Equal(t, wantStart, s.start, "task %d", i)
			require.Equal(t, s.start.Add(timeout), s.deadline, "task %d: deadline is start+TaskTimeout", i)
			require.Equal(t, s.start.Add(timeout), s.ended, "task %d", i)
			require.ErrorIs(t, s.err, context.DeadlineExceeded, "task %d", i)
		}
		closePool(t, p)
	})
}

func TestOffloadPoolWait(t *testing.T) {
	t.Run("idle pool returns nil at once", func(t *testing.T) {
		p := tiercache.NewOffloadPool(tiercache.OffloadOptions{})
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		require.NoError(t, p.Wait(ctx), "nothing to wait for, even with an ended ctx")

		require.True(t, p.Go("test", func(context.Context) {}))
		require.NoError(t, p.Wait(context.Background()))
		require.NoError(t, p.Wait(ctx), "idle again after the task")
		closePool(t, p)
	})

	t.Run("waits for running and queued tasks", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			p := tiercache.NewOffloadPool(tiercache.OffloadOptions{MaxConcurrent: 1})
			release, unblock := gate(t)
			var ran atomic.Int32
			for range 4 {
				require.True(t, p.Go("test", func(context.Context) {
					<-release
					ran.Add(1)
				}))
			}
			waited := make(chan error, 1)
			go func() { waited <- p.Wait(context.Background()) }()
			synctest.Wait()
			require.Empty(t, waited, "Wait returned while tasks were pending")

			unblock()
			require.NoError(t, <-waited)
			require.Equal(t, int32(4), ran.Load())
			require.Equal(t, uint64(4), p.Stats().Completed)

			// Wait does not stop the pool.
			require.True(t, p.Go("test", func(context.Context) {}))
			closePool(t, p)
		})
	})

	t.Run("waits for tasks accepted while waiting", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			p := tiercache.NewOffloadPool(tiercache.OffloadOptions{MaxConcurrent: 1})
			var secondDone atomic.Bool
			require.True(t, p.Go("first", func(context.Context) {
				time.Sleep(time.Second)
				p.Go("second", func(context.Context) {
					time.Sleep(time.Second)
					secondDone.Store(true)
				})
			}))
			start := time.Now()
			require.NoError(t, p.Wait(context.Background()))
			require.True(t, secondDone.Load())
			require.Equal(t, 2*time.Second, time.Since(start))
			closePool(t, p)
		})
	})

	t.Run("ctx ends first", func(t *testing.T) {
		cancelled, cancel := context.WithCancel(context.Background())
		cancel()
		tests := []struct {
			name    string
			ctx     func() (context.Context, context.CancelFunc)
			wantErr error
			elapsed time.Duration
		}{
			{name: "deadline", ctx: func() (context.Context, context.CancelFunc) {
				return context.WithTimeout(context.Background(), 5*time.Second)
			}, wantErr: context.DeadlineExceeded, elapsed: 5 * time.Second},
			{name: "already cancelled", ctx: func() (context.Context, context.CancelFunc) {
				return cancelled, func() {}
			}, wantErr: context.Canceled},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				synctest.Test(t, func(t *testing.T) {
					p := tiercache.NewOffloadPool(tiercache.OffloadOptions{})
					release, unblock := gate(t)
					require.True(t, p.Go("test", blockingTask(nil, release)))

					ctx, cancel := tt.ctx()
					defer cancel()
					start := time.Now()
					err := p.Wait(ctx)
					require.Error(t, err)
					require.ErrorIs(t, err, ctx.Err())
					require.ErrorIs(t, err, tt.wantErr)
					require.Equal(t, tt.elapsed, time.Since(start))
					require.Equal(t, 1, p.Stats().Running, "Wait does not touch the tasks")

					unblock()
					closePool(t, p)
				})
			})
		}
	})
}

func TestOffloadPoolClose(t *testing.T) {
	t.Run("stops accepting", func(t *testing.T) {
		p := tiercache.NewOffloadPool(tiercache.OffloadOptions{})
		closePool(t, p)

		var ran atomic.Bool
		require.False(t, p.Go("late", func(context.Context) { ran.Store(true) }))
		require.False(t, ran.Load())
		require.Equal(t, tiercache.OffloadStats{Rejected: 1}, p.Stats())
	})

	t.Run("runs queued tasks and waits for running ones", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			p := tiercache.NewOffloadPool(tiercache.OffloadOptions{MaxConcurrent: 1})
			release, unblock := gate(t)
			var (
				mu      sync.Mutex
				order   []string
				ctxErrs []error
			)
			record := func(name string) func(context.Context) {
				return func(ctx context.Context) {
					<-release
					mu.Lock()
					order = append(order, name)
					ctxErrs = append(ctxErrs, ctx.Err())
					mu.Unlock()
				}
			}
			for _, name := range []string{"running", "queued-1", "queued-2"} {
				require.True(t, p.Go(name, record(name)))
			}

			closed := make(chan error, 1)
			go func() { closed <- p.Close(context.Background()) }()
			synctest.Wait()
			require.Empty(t, closed, "Close returned before the tasks finished")

			require.False(t, p.Go("during-close", record("during-close")), "Close stops accepting at once")

			unblock()
			require.NoError(t, <-closed)
			mu.Lock()
			require.Equal(t, []string{"running", "queued-1", "queued-2"}, order)
			require.Equal(t, []error{nil, nil, nil}, ctxErrs, "the tasks Close waits for keep a live ctx")
			mu.Unlock()
			require.Equal(t, tiercache.OffloadStats{Accepted: 3, Rejected: 1, Completed: 3}, p.Stats())
		})
	})

	t.Run("ctx ends first", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			p := tiercache.NewOffloadPool(tiercache.OffloadOptions{MaxConcurrent: 1})
			runningErr := make(chan error, 1)
			require.True(t, p.Go("running", func(ctx context.Context) {
				<-ctx.Done()
				runningErr <- ctx.Err()
			}))
			var queuedRan atomic.Int32
			for range 2 {
				require.True(t, p.Go("queued", func(context.Context) { queuedRan.Add(1) }))
			}

			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			start := time.Now()
			err := p.Close(ctx)
			require.Error(t, err)
			require.ErrorIs(t, err, context.DeadlineExceeded)
			require.Equal(t, 5*time.Second, time.Since(start))

			require.ErrorIs(t, <-runningErr, context.Canceled, "Close cancels the running tasks' ctx")
			require.NoError(t, p.Wait(context.Background()))
			require.Equal(t, int32(0), queuedRan.Load(), "dropped tasks must never run")
			require.Equal(t, tiercache.OffloadStats{Accepted: 3, Completed: 1, Dropped: 2}, p.Stats())

			require.NoError(t, p.Close(context.Background()), "a second Close returns nil once idle")
			require.False(t, p.Go("late", func(context.Context) { queuedRan.Add(1) }))
		})
	})

	t.Run("task ignoring its ctx outlives a failed Close", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			p := tiercache.NewOffloadPool(tiercache.OffloadOptions{})
			release, unblock := gate(t)
			require.True(t, p.Go("stubborn", blockingTask(nil, release)))

			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			require.ErrorIs(t, p.Close(ctx), context.DeadlineExceeded)
			require.Equal(t, 1, p.Stats().Running)

			waited := make(chan error, 1)
			go func() { waited <- p.Wait(context.Background()) }()
			synctest.Wait()
			require.Empty(t, waited, "a later Wait still sees the running task")
			unblock()
			require.NoError(t, <-waited)
			require.NoError(t, p.Close(context.Background()))
			require.Equal(t, uint64(1), p.Stats().Completed)
		})
	})

	t.Run("idempotent", func(t *testing.T) {
		p := tiercache.NewOffloadPool(tiercache.OffloadOptions{})
		require.True(t, p.Go("test", func(context.Context) {}))
		require.NoError(t, p.Close(context.Background()))
		require.NoError(t, p.Close(context.Background()))
		require.Equal(t, tiercache.OffloadStats{Accepted: 1, Completed: 1}, p.Stats())
	})
}

// TestOffloadPoolIdleWorkersExit ends a synctest bubble without Close:
// synctest.Test fails if a pool worker is left blocked in the bubble. Idle
// workers wait IdleTimeout for more work, then exit.
func TestOffloadPoolIdleWorkersExit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := tiercache.NewOffloadPool(tiercache.OffloadOptions{MaxConcurrent: 4})
		for range 20 {
			require.True(t, p.Go("test", func(context.Context) { time.Sleep(time.Millisecond) }))
		}
		require.NoError(t, p.Wait(context.Background()))
		require.Equal(t, uint64(20), p.Stats().Completed)
		time.Sleep(tiercache.DefaultOffloadIdleTimeout)
		synctest.Wait()
	})
}

// A task arriving while a worker waits for work runs on that worker, which
// keeps the stack it grew.
func TestOffloadPoolReusesWorkers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := tiercache.NewOffloadPool(tiercache.OffloadOptions{MaxConcurrent: 1})
		defer p.Close(context.Background())
		ids := make(chan uint64, 2)
		require.True(t, p.Go("a", func(context.Context) { ids <- goroutineID() }))
		first := <-ids
		synctest.Wait()
		require.True(t, p.Go("b", func(context.Context) { ids <- goroutineID() }))
		require.Equal(t, first, <-ids)
	})
}

func TestOffloadPoolConcurrentGo(t *testing.T) {
	const (
		submitters = 32
		perG       = 200
	)
	p := tiercache.NewOffloadPool(tiercache.OffloadOptions{MaxConcurrent: 4, MaxQueued: 16})
	var (
		ran, accepted, rejected atomic.Uint64
		wg                      sync.WaitGroup
	)
	stopObservers := make(chan struct{})
	var observers sync.WaitGroup
	observers.Go(func() {
		for {
			select {
			case <-stopObservers:
				return
			default:
			}
			s := p.Stats()
			if s.Running > 4 || s.Queued > 16 || s.Running < 0 || s.Queued < 0 {
				t.Errorf("gauges out of bounds: %+v", s)
			}
			runtime.Gosched()
		}
	})
	for g := range submitters {
		wg.Go(func() {
			for i := range perG {
				if p.Go(fmt.Sprintf("g%d", g), func(context.Context) {
					ran.Add(1)
					if i%7 == 0 {
						runtime.Gosched()
					}
				}) {
					accepted.Add(1)
				} else {
					rejected.Add(1)
				}
			}
		})
	}
	wg.Wait()
	require.NoError(t, p.Wait(context.Background()))
	close(stopObservers)
	observers.Wait()

	s := p.Stats()
	require.Equal(t, uint64(submitters*perG), s.Accepted+s.Rejected)
	require.Equal(t, accepted.Load(), s.Accepted)
	require.Equal(t, rejected.Load(), s.Rejected)
	require.Equal(t, s.Accepted, s.Completed)
	require.Equal(t, s.Accepted, ran.Load())
	require.Zero(t, s.Running)
	require.Zero(t, s.Queued)
	closePool(t, p)
}

// A task that calls runtime.Goexit (t.FailNow in a test, say) is counted
// and reported like a panic, and its slot goes to the next task.
func TestOffloadPoolSurvivesGoexit(t *testing.T) {
	var reported []any
	var mu sync.Mutex
	pool := tiercache.NewOffloadPool(tiercache.OffloadOptions{
		MaxConcurrent: 1,
		OnPanic: func(kind string, recovered any, _ []byte) {
			mu.Lock()
			defer mu.Unlock()
			reported = append(reported, recovered)
		},
	})
	ran := make(chan struct{})
	require.True(t, pool.Go("exit", func(context.Context) { runtime.Goexit() }))
	require.True(t, pool.Go("next", func(context.Context) { close(ran) }))
	<-ran
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	require.NoError(t, pool.Close(ctx))
	s := pool.Stats()
	require.Equal(t, uint64(1), s.Panicked)
	require.Equal(t, uint64(1), s.Completed)
	require.Zero(t, s.Running)
	mu.Lock()
	defer mu.Unlock()
	require.Len(t, reported, 1)
	require.ErrorContains(t, reported[0].(error), "Goexit")
}
