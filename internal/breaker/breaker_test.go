package breaker

import (
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func allowDone(t *testing.T, b *Breaker, failed bool) {
	t.Helper()
	p, ok := b.Allow()
	require.True(t, ok)
	p.Done(failed)
}

func TestOpensAfterConsecutiveFailures(t *testing.T) {
	c := &clock{t: time.Unix(0, 0)}
	var changes []string
	b := New(3, time.Second, 1, c.now, func(from, to State) { changes = append(changes, from.String()+">"+to.String()) })
	allowDone(t, b, true)
	allowDone(t, b, true)
	allowDone(t, b, false) // a success resets the run
	allowDone(t, b, true)
	allowDone(t, b, true)
	require.Equal(t, Closed, b.State())
	allowDone(t, b, true)
	require.Equal(t, Open, b.State())
	require.Equal(t, uint64(1), b.Opens())
	_, ok := b.Allow()
	require.False(t, ok, "refused while cooling down")
	require.Equal(t, uint64(1), b.Rejected())
	require.Equal(t, []string{"closed>open"}, changes)
}

func TestProbesCloseOrReopen(t *testing.T) {
	c := &clock{t: time.Unix(0, 0)}
	b := New(1, time.Second, 2, c.now, nil)
	allowDone(t, b, true)
	require.Equal(t, Open, b.State())
	c.t = c.t.Add(time.Second)
	p1, ok := b.Allow()
	require.True(t, ok)
	require.Equal(t, HalfOpen, b.State())
	p2, ok := b.Allow()
	require.True(t, ok)
	_, ok = b.Allow()
	require.False(t, ok, "at most two probes at once")
	p1.Done(true)
	require.Equal(t, Open, b.State(), "a failed probe reopens")
	p2.Done(false)
	require.Equal(t, Open, b.State(), "a probe of the last half-open period no longer decides")
	c.t = c.t.Add(999 * time.Millisecond)
	_, ok = b.Allow()
	require.False(t, ok, "a new cool-down started at the failed probe")
	c.t = c.t.Add(time.Millisecond)
	p3, ok := b.Allow()
	require.True(t, ok)
	p3.Done(false)
	require.Equal(t, Closed, b.State())
	require.Equal(t, uint64(2), b.Opens())
}

func TestStaleFailureDoesNotReopen(t *testing.T) {
	c := &clock{t: time.Unix(0, 0)}
	b := New(1, time.Second, 1, c.now, nil)
	early, ok := b.Allow()
	require.True(t, ok)
	allowDone(t, b, true) // opens
	c.t = c.t.Add(time.Second)
	allowDone(t, b, false) // probe closes
	early.Done(true)       // allowed before the breaker opened
	require.Equal(t, Closed, b.State())
}

func TestConcurrent(t *testing.T) {
	b := New(5, time.Millisecond, 2, nil, nil)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for j := range 2000 {
				if p, ok := b.Allow(); ok {
					p.Done((i+j)%3 == 0)
				}
			}
		})
	}
	wg.Wait()
	require.Contains(t, []State{Closed, Open, HalfOpen}, b.State())
}
