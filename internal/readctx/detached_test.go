package readctx

import (
	"context"
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestDetached(t *testing.T) {
	type key struct{}
	values, cancelValues := context.WithCancel(context.WithValue(context.Background(), key{}, "trace"))
	life, cancelLife := context.WithTimeout(context.Background(), time.Hour)
	d := Detached(values, life)

	require.Equal(t, "trace", d.Value(key{}))
	dl, ok := d.Deadline()
	wantDL, _ := life.Deadline()
	require.True(t, ok)
	require.Equal(t, wantDL, dl)

	cancelValues()
	require.NoError(t, d.Err(), "the values' cancellation does not reach it")

	before := runtime.NumGoroutine()
	derived, stop := context.WithCancel(d)
	defer stop()
	require.Equal(t, before, runtime.NumGoroutine(), "deriving hooks onto life without a goroutine")

	cancelLife()
	<-d.Done()
	<-derived.Done()
	require.ErrorIs(t, d.Err(), context.Canceled)
	require.ErrorIs(t, derived.Err(), context.Canceled)
}

func TestPairSet(t *testing.T) {
	type key struct{}
	values := context.WithValue(context.Background(), key{}, "trace")
	life, cancel := context.WithCancel(context.Background())
	var holder struct{ ctx Pair }
	holder.ctx.Set(values, life)
	var d context.Context = &holder.ctx

	require.Equal(t, "trace", d.Value(key{}))
	require.NoError(t, d.Err())
	cancel()
	<-d.Done()
	require.ErrorIs(t, d.Err(), context.Canceled)
}
