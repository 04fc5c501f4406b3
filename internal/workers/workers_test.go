package workers

import (
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func goroutineID() uint64 { return curID() }

// A task that follows another runs on the same, idle, worker.
func TestReusesIdleWorker(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := New(time.Second)
		defer p.Close()
		ids := make(chan uint64, 2)
		p.Go(func() { ids <- goroutineID() })
		first := <-ids
		synctest.Wait() // the worker is idle now
		p.Go(func() { ids <- goroutineID() })
		require.Equal(t, first, <-ids)
	})
}

// An idle worker exits after IdleTimeout.
func TestIdleWorkerExits(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := New(time.Second)
		defer p.Close()
		done := make(chan struct{})
		p.Go(func() { close(done) })
		<-done
		synctest.Wait()
		p.mu.Lock()
		require.Equal(t, 1, p.idle)
		p.mu.Unlock()
		time.Sleep(time.Second)
		synctest.Wait()
		p.mu.Lock()
		require.Zero(t, p.idle)
		p.mu.Unlock()
	})
}

// Close ends idle workers at once and busy ones after their task.
func TestCloseWaits(t *testing.T) {
	p := New(time.Hour)
	release := make(chan struct{})
	var ran atomic.Int32
	p.Go(func() { ran.Add(1) })
	p.Go(func() { <-release; ran.Add(1) })
	go func() { time.Sleep(10 * time.Millisecond); close(release) }()
	p.Close()
	require.Equal(t, int32(2), ran.Load())
	p.Go(func() { ran.Add(1) }) // after Close: a goroutine of its own
	p.wg.Wait()
	require.Equal(t, int32(3), ran.Load())
}

func TestConcurrent(t *testing.T) {
	p := New(time.Millisecond)
	var n atomic.Int32
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 500 {
				done := make(chan struct{})
				p.Go(func() { n.Add(1); close(done) })
				<-done
			}
		})
	}
	wg.Wait()
	p.Close()
	require.Equal(t, int32(4000), n.Load())
}
