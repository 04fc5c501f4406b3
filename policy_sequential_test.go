package tiercache_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tiercache/tiercache"
)

// Rule 4: Sequential reads L1; a hit returns without touching L2; a miss or
// a failure reads L2.
func TestSequentialReadPolicy(t *testing.T) {
	tests := []struct {
		name       string
		l1, l2     *fakeLayer
		wantSource tiercache.Layer
		wantData   string
		wantL1     tiercache.ReadStatus
		wantL2     tiercache.ReadStatus
		wantL2Read int
	}{
		{
			name: "L1 hit skips L2",
			l1:   &fakeLayer{val: hitIn("one", time.Minute)}, l2: &fakeLayer{val: hitIn("two", time.Hour)},
			wantSource: tiercache.L1, wantData: "one",
			wantL1: tiercache.StatusHit, wantL2: tiercache.StatusNotRun, wantL2Read: 0,
		},
		{
			name: "L1 miss reads L2",
			l1:   &fakeLayer{}, l2: &fakeLayer{val: hitIn("two", time.Hour)},
			wantSource: tiercache.L2, wantData: "two",
			wantL1: tiercache.StatusMiss, wantL2: tiercache.StatusHit, wantL2Read: 1,
		},
		{
			name: "L1 failure reads L2",
			l1:   &fakeLayer{err: errors.New("l1 down")}, l2: &fakeLayer{val: hitIn("two", time.Hour)},
			wantSource: tiercache.L2, wantData: "two",
			wantL1: tiercache.StatusFailed, wantL2: tiercache.StatusHit, wantL2Read: 1,
		},
		{
			name: "L1 panic reads L2",
			l1:   &fakeLayer{panicWith: "bad"}, l2: &fakeLayer{val: hitIn("two", time.Hour)},
			wantSource: tiercache.L2, wantData: "two",
			wantL1: tiercache.StatusFailed, wantL2: tiercache.StatusHit, wantL2Read: 1,
		},
		{
			name: "L1 expired reads L2",
			l1:   &fakeLayer{val: hitIn("old", -time.Second)}, l2: &fakeLayer{val: hitIn("two", time.Hour)},
			wantSource: tiercache.L2, wantData: "two",
			wantL1: tiercache.StatusMiss, wantL2: tiercache.StatusHit, wantL2Read: 1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := tiercache.SequentialReadPolicy[string]{}.Read(context.Background(), "k", tt.l1.read, tt.l2.read, nil)
			require.NoError(t, err)
			require.Equal(t, tt.wantSource, res.Source)
			require.Equal(t, tt.wantData, res.Value.Data)
			require.Equal(t, tt.wantL1, res.L1.Status)
			require.Equal(t, tt.wantL2, res.L2.Status)
			require.Equal(t, 1, tt.l1.stats().calls)
			require.Equal(t, tt.wantL2Read, tt.l2.stats().calls)
		})
	}
}

// Sequential starts no goroutine: both readers run on the caller's.
func TestSequentialRunsOnCallerGoroutine(t *testing.T) {
	l1, l2 := &fakeLayer{}, &fakeLayer{}
	_, err := tiercache.SequentialReadPolicy[string]{}.Read(context.Background(), "k", l1.read, l2.read, nil)
	require.NoError(t, err)
	me := goroutineID()
	require.Equal(t, me, l1.goroutine)
	require.Equal(t, me, l2.goroutine)
}
