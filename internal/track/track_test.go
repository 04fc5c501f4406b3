package track

import (
	"context"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestCloseWaitsForWork(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var g Group
		require.True(t, g.Add())
		go func() {
			time.Sleep(time.Second)
			require.True(t, g.Add(), "work under way may add follow-up work while Close waits")
			g.Done()
			time.Sleep(time.Second)
			g.Done()
		}()
		start := time.Now()
		require.NoError(t, g.Close(context.Background()))
		require.Equal(t, 2*time.Second, time.Since(start))
		require.False(t, g.Add(), "no work after Close returned")
		require.NoError(t, g.Close(context.Background()), "idempotent")
	})
}

func TestCloseDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var g Group
		require.True(t, g.Add())
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		require.ErrorIs(t, g.Close(ctx), context.DeadlineExceeded)
		require.Equal(t, 1, g.Running())
		require.False(t, g.Add())
		g.Done()
		require.Zero(t, g.Running())
	})
}

func TestCloseIdle(t *testing.T) {
	var g Group
	require.NoError(t, g.Close(context.Background()))
	require.False(t, g.Add())
}

// Work added right after the count reached zero, before a waiting Close
// has seen it, is still waited for.
func TestCloseWaitsForWorkAddedAsCountReachesZero(t *testing.T) {
	for range 100 {
		synctest.Test(t, func(t *testing.T) {
			var g Group
			require.True(t, g.Add())
			closed := make(chan error, 1)
			go func() { closed <- g.Close(context.Background()) }()
			synctest.Wait() // Close waits
			g.Done()
			if !g.Add() { // Close has returned already: nothing to check
				return
			}
			synctest.Wait()
			select {
			case err := <-closed:
				t.Fatalf("Close returned (%v) with work under way", err)
			default:
			}
			g.Done()
			require.NoError(t, <-closed)
		})
	}
}
