//go:build faults

package redisstore_test

import (
	"errors"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tiercache/tiercache/redisstore/internal/redistest"
)

// The fault suite's proxy does what its Faults say, and nothing else.
func TestFaultProxyItself(t *testing.T) {
	srv := redistest.Start(t)
	p := redistest.StartProxy(t, srv.Addr)
	do := func(args ...string) (string, error) { return redistest.Do(p.Addr, 2*time.Second, args...) }

	got, err := do("SET", "k", "some value")
	require.NoError(t, err)
	require.Equal(t, "OK", got)
	got, err = do("GET", "k")
	require.NoError(t, err)
	require.Equal(t, "some value", got)

	p.SetFaults(redistest.Faults{Latency: 200 * time.Millisecond})
	start := time.Now()
	got, err = do("GET", "k")
	require.NoError(t, err)
	require.Equal(t, "some value", got)
	require.GreaterOrEqual(t, time.Since(start), 200*time.Millisecond, "the reply is late")

	p.SetFaults(redistest.Faults{CutReplies: 1})
	_, err = do("GET", "k")
	require.Error(t, err, "the reply stops in the middle")

	p.SetFaults(redistest.Faults{ResetRequests: 1})
	_, err = do("GET", "k")
	require.Error(t, err)
	require.True(t, errors.Is(err, syscall.ECONNRESET), "a reset, not %v", err)

	p.Heal()
	got, err = do("GET", "k")
	require.NoError(t, err)
	require.Equal(t, "some value", got)

	s := p.Stats()
	require.EqualValues(t, 6, s.Accepted)
	require.EqualValues(t, 1, s.Cut)
	require.EqualValues(t, 1, s.Reset)
	require.NoError(t, p.Close())
	require.Zero(t, p.Stats().Open)
	_, err = redistest.Do(p.Addr, time.Second, "PING")
	require.Error(t, err, "a closed proxy accepts nothing")
	require.NoError(t, p.Close(), "Close again")
}
