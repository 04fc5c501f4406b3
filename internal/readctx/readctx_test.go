package readctx

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

type ctxKey struct{}

var errOwner = errors.New("owner cancelled")

// closed reports whether ch is closed, without blocking.
func closed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

func TestValueAndDeadlineDelegateToParent(t *testing.T) {
	for _, follow := range []bool{false, true} {
		t.Run(map[bool]string{false: "detached", true: "following"}[follow], func(t *testing.T) {
			deadline := time.Now().Add(time.Hour)
			parent, cancel := context.WithDeadline(context.WithValue(context.Background(), ctxKey{}, "trace-42"), deadline)
			defer cancel()

			var c Ctx
			c.Init(parent, follow)

			require.Equal(t, "trace-42", c.Value(ctxKey{}))
			require.Nil(t, c.Value("absent"))
			got, ok := c.Deadline()
			require.True(t, ok)
			require.Equal(t, deadline, got)

			var noDeadline Ctx
			noDeadline.Init(context.Background(), follow)
			_, ok = noDeadline.Deadline()
			require.False(t, ok)
		})
	}
}

func TestDetachedIgnoresParentCancellation(t *testing.T) {
	tests := []struct {
		name     string
		callDone bool
	}{
		{name: "with Done", callDone: true},
		{name: "Err only", callDone: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				parent, cancel := context.WithCancel(context.Background())
				var c Ctx
				c.Init(parent, false)
				var done <-chan struct{}
				if tt.callDone {
					done = c.Done()
				}

				cancel()
				synctest.Wait()

				require.NoError(t, c.Err())
				if tt.callDone {
					require.False(t, closed(done), "a detached Ctx must not follow its parent's cancellation")
				}
				require.False(t, closed(c.Done()))

				// Only the owner ends it.
				require.Equal(t, errOwner, c.Cancel(errOwner))
				require.True(t, closed(c.Done()))
				require.Equal(t, errOwner, c.Err())
			})
		})
	}
}

func TestDetachedEndsAtParentDeadline(t *testing.T) {
	t.Run("via Done", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			start := time.Now()
			parent, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			var c Ctx
			c.Init(parent, false)
			done := c.Done()

			time.Sleep(10*time.Second - time.Nanosecond)
			synctest.Wait()
			require.False(t, closed(done), "ended before the parent's deadline")
			require.NoError(t, c.Err())

			<-done
			require.Equal(t, 10*time.Second, time.Since(start))
			require.ErrorIs(t, c.Err(), context.DeadlineExceeded)
		})
	})

	t.Run("via Err without Done", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			parent, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			var c Ctx
			c.Init(parent, false)

			time.Sleep(10*time.Second - time.Nanosecond)
			require.NoError(t, c.Err())
			time.Sleep(time.Nanosecond)
			require.ErrorIs(t, c.Err(), context.DeadlineExceeded)

			c.mu.Lock()
			require.Nil(t, c.done, "Err must not need Done to have been called")
			c.mu.Unlock()
			require.True(t, closed(c.Done()), "Done after the deadline is already closed")
		})
	})

	t.Run("parent cancelled early", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			start := time.Now()
			parent, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			var c Ctx
			c.Init(parent, false)
			done := c.Done()

			time.Sleep(time.Second)
			cancel()
			synctest.Wait()
			require.False(t, closed(done))
			require.NoError(t, c.Err())

			<-done
			require.Equal(t, 10*time.Second, time.Since(start))
			require.ErrorIs(t, c.Err(), context.DeadlineExceeded)
		})
	})

	t.Run("deadline already passed at Done", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			parent, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			time.Sleep(2 * time.Second)
			var c Ctx
			c.Init(parent, false)

			<-c.Done()
			require.ErrorIs(t, c.Err(), context.DeadlineExceeded)
		})
	})

	t.Run("no parent deadline", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			var c Ctx
			c.Init(context.Background(), false)
			done := c.Done()
			time.Sleep(1000 * time.Hour)
			synctest.Wait()
			require.False(t, closed(done))
			require.NoError(t, c.Err())
			c.Cancel(errOwner)
			require.True(t, closed(done))
		})
	})
}

func TestFollowingEndsWithParent(t *testing.T) {
	t.Run("Done then parent cancelled", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			parent, cancel := context.WithCancel(context.Background())
			var c Ctx
			c.Init(parent, true)
			done := c.Done()
			synctest.Wait()
			require.False(t, closed(done))
			require.NoError(t, c.Err())

			cancel()
			<-done
			require.ErrorIs(t, c.Err(), context.Canceled)
		})
	})

	t.Run("Err before Done", func(t *testing.T) {
		parent, cancel := context.WithCancel(context.Background())
		var c Ctx
		c.Init(parent, true)
		require.NoError(t, c.Err())

		cancel()
		require.ErrorIs(t, c.Err(), context.Canceled)
		require.True(t, closed(c.Done()), "Done after Err saw the cancellation is already closed")
		require.ErrorIs(t, c.Err(), context.Canceled)
	})

	t.Run("parent already cancelled at Done", func(t *testing.T) {
		parent, cancel := context.WithCancel(context.Background())
		cancel()
		var c Ctx
		c.Init(parent, true)
		<-c.Done()
		require.ErrorIs(t, c.Err(), context.Canceled)
	})

	t.Run("parent deadline", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			start := time.Now()
			parent, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			defer cancel()
			var c Ctx
			c.Init(parent, true)
			<-c.Done()
			require.Equal(t, 3*time.Second, time.Since(start))
			require.ErrorIs(t, c.Err(), context.DeadlineExceeded)
		})
	})

	t.Run("uncancellable parent", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			var c Ctx
			c.Init(context.Background(), true)
			done := c.Done()
			synctest.Wait()
			require.False(t, closed(done))
			c.Cancel(errOwner)
			require.True(t, closed(done))
			require.Equal(t, errOwner, c.Err())
		})
	})
}

func TestCancelIsIdempotent(t *testing.T) {
	errSecond := errors.New("second")
	for _, follow := range []bool{false, true} {
		for _, callDone := range []bool{false, true} {
			name := map[bool]string{false: "detached", true: "following"}[follow] +
				map[bool]string{false: "/without Done", true: "/with Done"}[callDone]
			t.Run(name, func(t *testing.T) {
				parent, cancel := context.WithTimeout(context.Background(), time.Hour)
				defer cancel()
				var c Ctx
				c.Init(parent, follow)
				if callDone {
					c.Done()
				}

				require.Equal(t, errOwner, c.Cancel(errOwner))
				require.Equal(t, errOwner, c.Cancel(errSecond), "a second Cancel returns the first error")
				require.Equal(t, errOwner, c.Cancel(context.Canceled))
				require.Equal(t, errOwner, c.Err())
				require.True(t, closed(c.Done()))
			})
		}
	}
}

func TestDoneAfterCancelIsClosed(t *testing.T) {
	for _, follow := range []bool{false, true} {
		t.Run(map[bool]string{false: "detached", true: "following"}[follow], func(t *testing.T) {
			parent, cancel := context.WithCancel(context.Background())
			defer cancel()
			var c Ctx
			c.Init(parent, follow)
			c.Cancel(errOwner)

			done := c.Done()
			require.True(t, closed(done))
			require.Equal(t, done, c.Done(), "Done returns the same channel every time")
			require.Equal(t, errOwner, c.Err())
		})
	}
}

func TestCancelReleasesParent(t *testing.T) {
	t.Run("following: a later parent cancellation changes nothing", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			parent, cancel := context.WithCancel(context.Background())
			var c Ctx
			c.Init(parent, true)
			c.Done()
			c.mu.Lock()
			stop := c.stop
			c.mu.Unlock()
			require.NotNil(t, stop, "Done must register on the parent")

			c.Cancel(errOwner)
			c.mu.Lock()
			require.Nil(t, c.stop)
			c.mu.Unlock()
			require.False(t, stop(), "Cancel must have removed the registration on the parent already")

			cancel()
			synctest.Wait()
			require.Equal(t, errOwner, c.Err())
		})
	})

	t.Run("detached: the deadline timer is stopped", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			parent, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			var c Ctx
			c.Init(parent, false)
			c.Done()
			c.mu.Lock()
			timer := c.timer
			c.mu.Unlock()
			require.NotNil(t, timer, "Done must arm the deadline timer")

			c.Cancel(errOwner)
			require.False(t, timer.Stop(), "Cancel must have stopped the timer already")

			time.Sleep(2 * time.Second)
			synctest.Wait()
			require.Equal(t, errOwner, c.Err())
		})
	})
}

func TestDerivedContextFollowsCtx(t *testing.T) {
	derive := []struct {
		name   string
		derive func(context.Context) (context.Context, context.CancelFunc)
	}{
		{name: "WithCancel", derive: context.WithCancel},
		{name: "WithTimeout", derive: func(ctx context.Context) (context.Context, context.CancelFunc) {
			return context.WithTimeout(ctx, time.Minute)
		}},
		{name: "WithCancelCause", derive: func(ctx context.Context) (context.Context, context.CancelFunc) {
			ctx, cancel := context.WithCancelCause(ctx)
			return ctx, func() { cancel(nil) }
		}},
	}
	for _, follow := range []bool{false, true} {
		for _, d := range derive {
			t.Run(map[bool]string{false: "detached/", true: "following/"}[follow]+d.name, func(t *testing.T) {
				synctest.Test(t, func(t *testing.T) {
					parent, cancel := context.WithTimeout(context.Background(), time.Hour)
					defer cancel()
					var c Ctx
					c.Init(parent, follow)

					child, cancelChild := d.derive(&c)
					defer cancelChild()
					c.mu.Lock()
					require.Len(t, c.afters, 1, "deriving must register through Ctx.AfterFunc, not start a goroutine")
					c.mu.Unlock()
					synctest.Wait()
					require.False(t, closed(child.Done()))

					c.Cancel(context.Canceled)
					<-child.Done()
					require.ErrorIs(t, child.Err(), context.Canceled)
					c.mu.Lock()
					require.Empty(t, c.afters, "Cancel hands every registration over")
					c.mu.Unlock()
				})
			})
		}
	}

	t.Run("cancelling the child releases the registration", func(t *testing.T) {
		var c Ctx
		c.Init(context.Background(), false)
		_, cancel1 := context.WithCancel(&c)
		_, cancel2 := context.WithTimeout(&c, time.Minute)
		c.mu.Lock()
		require.Len(t, c.afters, 2)
		c.mu.Unlock()

		cancel1()
		c.mu.Lock()
		require.Len(t, c.afters, 1)
		c.mu.Unlock()
		cancel2()
		c.mu.Lock()
		require.Empty(t, c.afters)
		c.mu.Unlock()
		require.NoError(t, c.Err(), "cancelling a child must not end the Ctx")
	})

	t.Run("deriving from an ended Ctx gives an ended child", func(t *testing.T) {
		var c Ctx
		c.Init(context.Background(), false)
		c.Cancel(errOwner)
		child, cancel := context.WithCancel(&c)
		defer cancel()
		require.True(t, closed(child.Done()))
		require.Error(t, child.Err())
	})
}

func TestAfterFunc(t *testing.T) {
	t.Run("stop before cancel", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			var c Ctx
			c.Init(context.Background(), false)
			var ran atomic.Bool
			stop := c.AfterFunc(func() { ran.Store(true) })

			require.True(t, stop(), "stop before Cancel stops f")
			require.False(t, stop(), "a second stop has nothing to stop")
			c.Cancel(errOwner)
			synctest.Wait()
			require.False(t, ran.Load(), "a stopped f must never run")
		})
	})

	t.Run("stop after cancel", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			var c Ctx
			c.Init(context.Background(), false)
			var ran atomic.Int32
			stop := c.AfterFunc(func() { ran.Add(1) })

			c.Cancel(errOwner)
			require.False(t, stop(), "stop after Cancel is too late")
			synctest.Wait()
			require.Equal(t, int32(1), ran.Load())
		})
	})

	t.Run("stop one of several", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			var c Ctx
			c.Init(context.Background(), false)
			var a, b, d atomic.Int32
			c.AfterFunc(func() { a.Add(1) })
			stopB := c.AfterFunc(func() { b.Add(1) })
			c.AfterFunc(func() { d.Add(1) })

			require.True(t, stopB())
			c.Cancel(errOwner)
			c.Cancel(errOwner)
			synctest.Wait()
			require.Equal(t, int32(1), a.Load(), "each f runs exactly once")
			require.Equal(t, int32(0), b.Load())
			require.Equal(t, int32(1), d.Load())
		})
	})

	t.Run("on an ended Ctx runs f", func(t *testing.T) {
		var c Ctx
		c.Init(context.Background(), true)
		c.Cancel(errOwner)
		ran := make(chan struct{})
		stop := c.AfterFunc(func() { close(ran) })
		<-ran
		require.False(t, stop())
	})

	t.Run("runs at the parent's deadline when detached", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			start := time.Now()
			parent, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			var c Ctx
			c.Init(parent, false)
			c.Done()
			ran := make(chan time.Duration, 1)
			c.AfterFunc(func() { ran <- time.Since(start) })
			require.Equal(t, 5*time.Second, <-ran)
		})
	})

	t.Run("context.AfterFunc uses it", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			var c Ctx
			c.Init(context.Background(), false)
			ran := make(chan struct{})
			context.AfterFunc(&c, func() { close(ran) })
			c.mu.Lock()
			require.Len(t, c.afters, 1)
			c.mu.Unlock()
			synctest.Wait()
			require.False(t, closed(ran))
			c.Cancel(errOwner)
			<-ran
		})
	})
}

func TestConcurrentCancelAndDone(t *testing.T) {
	for _, follow := range []bool{false, true} {
		t.Run(map[bool]string{false: "detached", true: "following"}[follow], func(t *testing.T) {
			for range 100 {
				parent, cancel := context.WithCancel(context.Background())
				var c Ctx
				c.Init(parent, follow)
				errs := make(chan error, 4)
				start := make(chan struct{})
				for _, f := range []func() error{
					func() error { <-start; c.Done(); return nil },
					func() error { <-start; return c.Cancel(errOwner) },
					func() error { <-start; cancel(); return nil },
					func() error { <-start; _ = c.Err(); return nil },
				} {
					go func() { errs <- f() }()
				}
				close(start)
				for range 4 {
					<-errs
				}
				<-c.Done()
				err := c.Err()
				require.Error(t, err)
				if !follow {
					require.Equal(t, errOwner, err, "only the owner can end a detached Ctx without a deadline")
				}
				require.Equal(t, err, c.Cancel(errors.New("late")))
			}
		})
	}
}

// context.Cause of a Ctx, and of contexts derived from it, reports the Ctx's
// own ending, not the parent's cause.
func TestCauseIsOwn(t *testing.T) {
	require.NotNil(t, cancelCtxKey, "the context package's key was learnt")
	parent, cancel := context.WithCancelCause(context.Background())
	errX := errors.New("parent cause")
	var c Ctx
	c.Init(parent, false)
	derived, stop := context.WithCancel(&c)
	defer stop()
	cancel(errX)
	c.Cancel(context.Canceled)
	<-derived.Done()
	require.Equal(t, context.Canceled, context.Cause(&c))
	require.Equal(t, context.Canceled, context.Cause(derived))
}

// Cancel(nil) ends the Ctx with context.Canceled, and may be repeated.
func TestCancelNil(t *testing.T) {
	var c Ctx
	c.Init(context.Background(), false)
	require.Equal(t, context.Canceled, c.Cancel(nil))
	require.Equal(t, context.Canceled, c.Err())
	require.NotPanics(t, func() { c.Cancel(nil) })
}
