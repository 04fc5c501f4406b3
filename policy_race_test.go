package tiercache_test

import (
	"context"
	"errors"
	"runtime"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tiercache/tiercache"
)

// raceCases are the race layouts: the offloading one (with a pool) and the
// cancelling ones.
func raceCases() []policyCase {
	var cases []policyCase
	for _, pc := range allPolicies() {
		if _, ok := pc.policy.(tiercache.RaceReadPolicy[string]); ok {
			cases = append(cases, pc)
		}
	}
	return cases
}

func eachRace(t *testing.T, f func(t *testing.T, pc policyCase)) {
	for _, pc := range raceCases() {
		t.Run(pc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) { f(t, pc) })
		})
	}
}

// Rule 5: the first hit wins at once; the loser is reported abandoned.
func TestRaceFirstHitWins(t *testing.T) {
	eachRace(t, func(t *testing.T, pc policyCase) {
		hedge := pc.policy.(tiercache.RaceReadPolicy[string]).HedgeAfter
		l1 := &fakeLayer{val: hitIn("slow-l1", time.Hour), delay: time.Second}
		l2 := &fakeLayer{val: hitIn("fast-l2", time.Hour), delay: 10 * time.Millisecond}
		start := time.Now()
		res, err := pc.read(t, context.Background(), l1, l2)
		require.NoError(t, err)
		require.Equal(t, hedge+10*time.Millisecond, time.Since(start), "L2 answers as soon as it hits")
		require.Equal(t, tiercache.L2, res.Source)
		require.Equal(t, "fast-l2", res.Value.Data)
		require.Equal(t, tiercache.StatusAbandoned, res.L1.Status)
		require.Equal(t, tiercache.StatusHit, res.L2.Status)
	})
}

// Rule 5: a miss or a failure waits for the other layer.
func TestRaceMissOrFailureWaits(t *testing.T) {
	firsts := []func() *fakeLayer{
		func() *fakeLayer { return &fakeLayer{} },
		func() *fakeLayer { return &fakeLayer{err: errors.New("l1 down")} },
		func() *fakeLayer { return &fakeLayer{panicWith: "l1 bug"} },
	}
	for _, first := range firsts {
		eachRace(t, func(t *testing.T, pc policyCase) {
			l1 := first()
			l2 := &fakeLayer{val: hitIn("late", time.Hour), delay: 40 * time.Millisecond}
			start := time.Now()
			res, err := pc.read(t, context.Background(), l1, l2)
			require.NoError(t, err)
			require.Equal(t, 40*time.Millisecond, time.Since(start), "an L1 miss or failure starts a hedged L2 at once")
			require.Equal(t, tiercache.L2, res.Source)
			require.NotEqual(t, tiercache.StatusAbandoned, res.L1.Status)
			require.NotEqual(t, tiercache.StatusHit, res.L1.Status)
		})
	}
	eachRace(t, func(t *testing.T, pc policyCase) {
		l1 := &fakeLayer{val: hitIn("late", time.Hour), delay: 40 * time.Millisecond}
		l2 := &fakeLayer{err: errors.New("l2 down")}
		res, err := pc.read(t, context.Background(), l1, l2)
		require.NoError(t, err)
		require.Equal(t, tiercache.L1, res.Source)
		require.Equal(t, tiercache.StatusHit, res.L1.Status)
		require.Equal(t, tiercache.StatusFailed, res.L2.Status, "L2 failed before L1 hit: not a loser")
	})
}

// Rule 5: HedgeAfter starts L2 only if L1 has not hit within the delay.
func TestRaceHedgeAfter(t *testing.T) {
	for _, loser := range []tiercache.LoserPolicy{tiercache.LoserOffload, tiercache.LoserCancel} {
		pc := policyCase{name: loser.String(), policy: tiercache.RaceReadPolicy[string]{Loser: loser, HedgeAfter: 5 * time.Millisecond}, pool: loser == tiercache.LoserOffload}
		t.Run(pc.name+"/L1 hits before the delay: L2 never read", func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				l1 := &fakeLayer{val: hitIn("one", time.Hour), delay: 4 * time.Millisecond}
				l2 := &fakeLayer{val: hitIn("two", time.Hour)}
				res, err := pc.read(t, context.Background(), l1, l2)
				require.NoError(t, err)
				require.Equal(t, tiercache.L1, res.Source)
				require.Equal(t, tiercache.StatusNotRun, res.L2.Status)
				time.Sleep(time.Second) // well past the hedge delay
				require.Zero(t, l2.stats().calls)
			})
		})
		t.Run(pc.name+"/L1 slow: L2 starts after the delay", func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				l1 := &fakeLayer{val: hitIn("one", time.Hour), delay: time.Second}
				l2 := &fakeLayer{val: hitIn("two", time.Hour), delay: time.Millisecond}
				start := time.Now()
				res, err := pc.read(t, context.Background(), l1, l2)
				require.NoError(t, err)
				require.Equal(t, tiercache.L2, res.Source)
				require.Equal(t, 6*time.Millisecond, time.Since(start))
				require.Equal(t, 5*time.Millisecond, l2.started.Sub(start))
			})
		})
		t.Run(pc.name+"/L1 miss before the delay starts L2 at once", func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				l1 := &fakeLayer{delay: time.Millisecond}
				l2 := &fakeLayer{val: hitIn("two", time.Hour), delay: time.Millisecond}
				start := time.Now()
				res, err := pc.read(t, context.Background(), l1, l2)
				require.NoError(t, err)
				require.Equal(t, tiercache.L2, res.Source)
				require.Equal(t, time.Millisecond, l2.started.Sub(start))
				require.Equal(t, 2*time.Millisecond, time.Since(start))
			})
		})
	}
}

// Rule 5, LoserOffload: the losing read is not cancelled, neither when Read
// returns nor when the caller's ctx is cancelled afterwards; it finishes as
// an Offload task.
func TestRaceLoserOffloadFinishes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		pool := tiercache.NewOffloadPool(tiercache.OffloadOptions{})
		l1 := &fakeLayer{val: hitIn("one", time.Hour)}
		l2 := &fakeLayer{val: hitIn("two", time.Hour), delay: 100 * time.Millisecond}
		ctx, cancel := context.WithCancel(context.Background())
		res, err := tiercache.RaceReadPolicy[string]{}.Read(ctx, "k", l1.read, l2.read, pool)
		require.NoError(t, err)
		require.Equal(t, tiercache.L1, res.Source)
		require.Equal(t, tiercache.StatusAbandoned, res.L2.Status)
		cancel() // the caller goes away
		synctest.Wait()
		require.Equal(t, 1, pool.Stats().Running, "the loser is owned by an Offload task")
		time.Sleep(200 * time.Millisecond)
		require.Equal(t, fakeStats{calls: 1, finished: 1, cancelled: 0}, l2.stats(), "the loser ran to completion")
		require.NoError(t, pool.Close(context.Background()))
		require.Equal(t, uint64(1), pool.Stats().Completed)
		require.Equal(t, uint64(1), pool.Stats().Accepted)
	})
}

// Rule 5, LoserOffload: the policy enforces the caller's deadline on the
// detached readers.
func TestRaceLoserOffloadKeepsCallerDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		pool := tiercache.NewOffloadPool(tiercache.OffloadOptions{})
		defer pool.Close(context.Background())
		l1 := &fakeLayer{val: hitIn("one", time.Hour)}
		l2 := &fakeLayer{delay: time.Hour}
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		start := time.Now()
		_, err := tiercache.RaceReadPolicy[string]{}.Read(ctx, "k", l1.read, l2.read, pool)
		require.NoError(t, err)
		synctest.Wait()
		dl, ok := l2.readCtx().Deadline()
		require.True(t, ok)
		require.Equal(t, start.Add(50*time.Millisecond), dl)
		time.Sleep(time.Second)
		require.Equal(t, 1, l2.stats().cancelled, "the loser ended at the caller's deadline")
		require.ErrorIs(t, l2.lastErr, context.DeadlineExceeded)
		require.Equal(t, 0, pool.Stats().Running)
	})
}

// Rule 5: with a nil Offload, or one that refuses the task, or LoserCancel,
// the loser is cancelled at once.
func TestRaceLoserCancelled(t *testing.T) {
	refusing := tiercache.OffloadFunc(func(string, func(context.Context)) bool { return false })
	tests := []struct {
		name   string
		policy tiercache.RaceReadPolicy[string]
		off    tiercache.Offload
	}{
		{name: "offload, nil Offload", policy: tiercache.RaceReadPolicy[string]{}},
		{name: "offload, refused", policy: tiercache.RaceReadPolicy[string]{}, off: refusing},
		{name: "cancel", policy: tiercache.RaceReadPolicy[string]{Loser: tiercache.LoserCancel}, off: refusing},
	}
	for _, tt := range tests {
		for _, winner := range []tiercache.Layer{tiercache.L1, tiercache.L2} {
			t.Run(tt.name+"/winner "+winner.String(), func(t *testing.T) {
				synctest.Test(t, func(t *testing.T) {
					fast := &fakeLayer{val: hitIn("fast", time.Hour), delay: time.Millisecond}
					slow := &fakeLayer{val: hitIn("slow", time.Hour), delay: time.Hour}
					l1, l2 := fast, slow
					if winner == tiercache.L2 {
						l1, l2 = slow, fast
					}
					start := time.Now()
					res, err := tt.policy.Read(context.Background(), "k", l1.read, l2.read, tt.off)
					require.NoError(t, err)
					require.Equal(t, winner, res.Source)
					require.Equal(t, time.Millisecond, time.Since(start))
					synctest.Wait()
					require.Equal(t, fakeStats{calls: 1, finished: 1, cancelled: 1}, slow.stats())
					loser := res.L2
					if winner == tiercache.L2 {
						loser = res.L1
					}
					require.Equal(t, tiercache.StatusAbandoned, loser.Status)
				})
			})
		}
	}
}

// The goroutines a race costs: LoserCancel reads L1 on the caller's
// goroutine and L2 on one other; LoserOffload reads each on its own.
func TestRaceGoroutines(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		me := goroutineID()
		l1, l2 := &fakeLayer{}, &fakeLayer{}
		_, err := tiercache.RaceReadPolicy[string]{Loser: tiercache.LoserCancel}.Read(context.Background(), "k", l1.read, l2.read, nil)
		require.NoError(t, err)
		require.Equal(t, me, l1.goroutine)
		require.NotEqual(t, me, l2.goroutine)

		pool := tiercache.NewOffloadPool(tiercache.OffloadOptions{})
		defer pool.Close(context.Background())
		l1, l2 = &fakeLayer{}, &fakeLayer{}
		_, err = tiercache.RaceReadPolicy[string]{}.Read(context.Background(), "k", l1.read, l2.read, pool)
		require.NoError(t, err)
		require.NotEqual(t, me, l1.goroutine)
		require.NotEqual(t, me, l2.goroutine)
		require.NotEqual(t, l1.goroutine, l2.goroutine)
	})
}

// A reader that ignores its ctx cannot hold up a LoserOffload race: the
// caller returns on the first hit, and the loser's goroutine ends when its
// reader returns.
func TestRaceOffloadIgnoresStubbornLoser(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		pool := tiercache.NewOffloadPool(tiercache.OffloadOptions{})
		l1 := &fakeLayer{delay: time.Second, ignoreCtx: true}
		l2 := &fakeLayer{val: hitIn("two", time.Hour), delay: time.Millisecond}
		start := time.Now()
		res, err := tiercache.RaceReadPolicy[string]{}.Read(context.Background(), "k", l1.read, l2.read, pool)
		require.NoError(t, err)
		require.Equal(t, tiercache.L2, res.Source)
		require.Equal(t, time.Millisecond, time.Since(start))
		require.NoError(t, pool.Close(context.Background()))
		require.Equal(t, time.Second, time.Since(start), "Close waited for the offloaded loser")
		require.Equal(t, 1, l1.stats().finished)
	})
}

// An OffloadPool holding a losing read treats it as a running task: a full
// pool refuses it (the loser is cancelled), TaskTimeout and Close's deadline
// cancel it.
func TestRaceLoserInOffloadPool(t *testing.T) {
	slowL2 := func() *fakeLayer { return &fakeLayer{val: hitIn("two", time.Hour), delay: time.Hour} }
	l1Hit := func() *fakeLayer { return &fakeLayer{val: hitIn("one", time.Hour)} }
	read := func(t *testing.T, pool *tiercache.OffloadPool, l2 *fakeLayer) {
		t.Helper()
		res, err := tiercache.RaceReadPolicy[string]{}.Read(context.Background(), "k", l1Hit().read, l2.read, pool)
		require.NoError(t, err)
		require.Equal(t, tiercache.L1, res.Source)
		synctest.Wait()
	}
	t.Run("full pool refuses: loser cancelled", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			pool := tiercache.NewOffloadPool(tiercache.OffloadOptions{MaxConcurrent: 1})
			defer pool.Close(context.Background())
			block := make(chan struct{})
			require.True(t, pool.Go("block", func(context.Context) { <-block }))
			l2 := slowL2()
			read(t, pool, l2)
			require.Equal(t, 1, l2.stats().cancelled)
			require.Equal(t, uint64(1), pool.Stats().Rejected)
			close(block)
		})
	})
	t.Run("counted as a running task until it ends", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			pool := tiercache.NewOffloadPool(tiercache.OffloadOptions{MaxConcurrent: 1, MaxQueued: 1})
			l2 := &fakeLayer{val: hitIn("two", time.Hour), delay: time.Second}
			read(t, pool, l2)
			s := pool.Stats()
			require.Equal(t, 1, s.Running)
			require.Equal(t, uint64(1), s.Accepted)
			ran := false
			require.True(t, pool.Go("queued", func(context.Context) { ran = true }), "queued behind the loser")
			require.Equal(t, 1, pool.Stats().Queued)
			require.NoError(t, pool.Close(context.Background()))
			require.True(t, ran, "the queued task ran once the loser's slot was free")
			require.Equal(t, fakeStats{calls: 1, finished: 1}, l2.stats())
			require.Equal(t, uint64(2), pool.Stats().Completed)
		})
	})
	t.Run("TaskTimeout cancels it", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			pool := tiercache.NewOffloadPool(tiercache.OffloadOptions{TaskTimeout: 30 * time.Millisecond})
			defer pool.Close(context.Background())
			l2 := slowL2()
			start := time.Now()
			read(t, pool, l2)
			require.NoError(t, pool.Wait(context.Background()))
			require.Equal(t, 30*time.Millisecond, time.Since(start))
			require.Equal(t, 1, l2.stats().cancelled)
		})
	})
	t.Run("Close deadline cancels it", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			pool := tiercache.NewOffloadPool(tiercache.OffloadOptions{})
			l2 := slowL2()
			read(t, pool, l2)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
			defer cancel()
			require.ErrorIs(t, pool.Close(ctx), context.DeadlineExceeded)
			synctest.Wait()
			require.Equal(t, 1, l2.stats().cancelled)
			require.Equal(t, 0, pool.Stats().Running)
		})
	})
	t.Run("Close deadline cancels every loser still held, and only those", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			pool := tiercache.NewOffloadPool(tiercache.OffloadOptions{})
			// Held in this order; the second ends by itself, leaving the
			// pool from between the other two.
			delays := []time.Duration{time.Hour, time.Second, time.Hour, time.Hour}
			l2s := make([]*fakeLayer, len(delays))
			for i, d := range delays {
				l2s[i] = &fakeLayer{val: hitIn("two", time.Hour), delay: d}
				read(t, pool, l2s[i])
			}
			require.Equal(t, len(delays), pool.Stats().Running)
			time.Sleep(2 * time.Second)
			synctest.Wait()
			require.Equal(t, fakeStats{calls: 1, finished: 1}, l2s[1].stats())
			require.Equal(t, len(delays)-1, pool.Stats().Running)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
			defer cancel()
			require.ErrorIs(t, pool.Close(ctx), context.DeadlineExceeded)
			synctest.Wait()
			for i, l2 := range l2s {
				if i == 1 {
					continue
				}
				require.Equal(t, 1, l2.stats().cancelled, "loser %d", i)
			}
			s := pool.Stats()
			require.Equal(t, 0, s.Running)
			require.Equal(t, uint64(len(delays)), s.Completed)
		})
	})
	// Nobody sees a loser's report: the pool holding it counts and reports
	// a panic or a Goexit in its reader as it would a task's.
	for _, tc := range []struct {
		name      string
		reader    func(ctx context.Context, key string) (*tiercache.CacheValue[string], error)
		recovered func(t *testing.T, v any)
	}{
		{"a reader that panics is a task that panicked", func(context.Context, string) (*tiercache.CacheValue[string], error) {
			time.Sleep(time.Second)
			panic("loser boom")
		}, func(t *testing.T, v any) { require.Equal(t, "loser boom", v) }},
		{"a reader that calls Goexit is a task that panicked", func(context.Context, string) (*tiercache.CacheValue[string], error) {
			time.Sleep(time.Second)
			runtime.Goexit()
			return nil, nil
		}, func(t *testing.T, v any) { require.ErrorContains(t, v.(error), "Goexit") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				type report struct {
					kind      string
					recovered any
					stack     string
				}
				var reports []report
				pool := tiercache.NewOffloadPool(tiercache.OffloadOptions{OnPanic: func(kind string, recovered any, stack []byte) {
					reports = append(reports, report{kind, recovered, string(stack)})
				}})
				defer pool.Close(context.Background())
				res, err := tiercache.RaceReadPolicy[string]{}.Read(context.Background(), "k", l1Hit().read, tc.reader, pool)
				require.NoError(t, err)
				require.Equal(t, tiercache.L1, res.Source)
				require.Equal(t, tiercache.StatusAbandoned, res.L2.Status)
				require.NoError(t, pool.Wait(context.Background()))
				s := pool.Stats()
				require.Equal(t, uint64(1), s.Panicked)
				require.Zero(t, s.Completed)
				require.Len(t, reports, 1)
				require.Equal(t, tiercache.OffloadKindRaceLoser, reports[0].kind)
				tc.recovered(t, reports[0].recovered)
				require.Contains(t, reports[0].stack, "policy_race_test.go", "the stack shows the reader")
			})
		})
	}
}

// Rule 5: at the caller's deadline the readers' ctx ends with
// DeadlineExceeded, as a ctx derived from the caller's would, under either
// loser policy: a reader can tell a timeout from a cancellation.
func TestRaceReadersSeeCallersDeadline(t *testing.T) {
	eachRace(t, func(t *testing.T, pc policyCase) {
		var off tiercache.Offload
		if pc.pool {
			pool := tiercache.NewOffloadPool(tiercache.OffloadOptions{})
			defer pool.Close(context.Background())
			off = pool
		}
		l1, l2 := &fakeLayer{delay: time.Hour}, &fakeLayer{delay: time.Hour}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
		defer cancel()
		_, err := pc.policy.Read(ctx, "k", l1.read, l2.read, off)
		require.ErrorIs(t, err, context.DeadlineExceeded)
		synctest.Wait()
		for name, l := range map[string]*fakeLayer{"L1": l1, "L2": l2} {
			require.Equal(t, 1, l.stats().cancelled, name)
			require.ErrorIs(t, l.lastErr, context.DeadlineExceeded, name)
		}
	})
}

// A nil *OffloadPool is an Offload that refuses every task: the loser is
// cancelled, as with a nil Offload, and nothing panics.
func TestRaceNilOffloadPool(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var pool *tiercache.OffloadPool
		require.False(t, pool.Go("k", func(context.Context) {}))
		l2 := &fakeLayer{val: hitIn("two", time.Hour), delay: time.Hour}
		res, err := tiercache.RaceReadPolicy[string]{}.Read(context.Background(), "k", (&fakeLayer{val: hitIn("one", time.Hour)}).read, l2.read, pool)
		require.NoError(t, err)
		require.Equal(t, tiercache.L1, res.Source)
		synctest.Wait()
		require.Equal(t, 1, l2.stats().cancelled)
	})
}

// Any Offload, not only OffloadPool, can own the loser: it gets a task that
// waits for the read, and cancels it when the task's ctx ends.
func TestRaceLoserInOtherOffload(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var tasks []string
		taskCtx, endTask := context.WithCancel(context.Background())
		off := tiercache.OffloadFunc(func(kind string, task func(context.Context)) bool {
			tasks = append(tasks, kind)
			go task(taskCtx)
			return true
		})
		l2 := &fakeLayer{val: hitIn("two", time.Hour), delay: time.Hour}
		res, err := tiercache.RaceReadPolicy[string]{}.Read(context.Background(), "k", (&fakeLayer{val: hitIn("one", time.Hour)}).read, l2.read, off)
		require.NoError(t, err)
		require.Equal(t, tiercache.L1, res.Source)
		require.Equal(t, []string{tiercache.OffloadKindRaceLoser}, tasks)
		time.Sleep(time.Minute)
		require.Zero(t, l2.stats().cancelled, "not cancelled while the task runs")
		endTask()
		synctest.Wait()
		require.Equal(t, 1, l2.stats().cancelled)
	})
}

// A race with settings it does not know reads nothing and says which.
func TestRaceRejectsInvalidSettings(t *testing.T) {
	for _, tt := range []struct {
		name   string
		policy tiercache.RaceReadPolicy[string]
		field  string
	}{
		{"unknown Loser", tiercache.RaceReadPolicy[string]{Loser: tiercache.LoserCancel + 1}, "RaceReadPolicy.Loser"},
		{"negative HedgeAfter", tiercache.RaceReadPolicy[string]{HedgeAfter: -time.Millisecond}, "RaceReadPolicy.HedgeAfter"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			l1, l2 := &fakeLayer{val: hitIn("l1", time.Hour)}, &fakeLayer{val: hitIn("l2", time.Hour)}
			res, err := tt.policy.Read(context.Background(), "k", l1.read, l2.read, nil)
			require.ErrorContains(t, err, "tiercache: "+tt.field)
			require.Nil(t, res.Value)
			require.Zero(t, l1.stats().calls+l2.stats().calls, "nothing read")
		})
	}
}
