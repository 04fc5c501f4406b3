package tiercache_test

import (
	"math"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tiercache/tiercache"
)

func TestNewNilBackend(t *testing.T) {
	tests := []struct {
		name   string
		l1, l2 tiercache.Backend[string]
	}{
		{name: "nil L1", l2: newFakeBackend()},
		{name: "nil L2", l1: newFakeBackend()},
		{name: "both nil"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := tiercache.New(tt.l1, tt.l2, nil)
			require.Error(t, err)
			require.Nil(t, c)
			require.True(t, strings.HasPrefix(err.Error(), "tiercache:"), "%q lacks the package prefix", err)
		})
	}
}

func TestNewRejectsInvalidOptions(t *testing.T) {
	tests := []struct {
		name  string
		opts  tiercache.Options[string]
		field string
	}{
		{name: "negative DefaultTTL", opts: tiercache.Options[string]{DefaultTTL: -time.Second}, field: "DefaultTTL"},
		{name: "negative StaleAfter", opts: tiercache.Options[string]{StaleAfter: -time.Second}, field: "StaleAfter"},
		{name: "negative L1MaxTTL", opts: tiercache.Options[string]{L1MaxTTL: -time.Second}, field: "L1MaxTTL"},
		{name: "negative NegativeTTL", opts: tiercache.Options[string]{NegativeTTL: -time.Second}, field: "NegativeTTL"},
		{name: "negative L1Timeout", opts: tiercache.Options[string]{L1Timeout: -1}, field: "L1Timeout"},
		{name: "negative L2Timeout", opts: tiercache.Options[string]{L2Timeout: -1}, field: "L2Timeout"},
		{name: "negative TTLJitter", opts: tiercache.Options[string]{TTLJitter: -0.1}, field: "TTLJitter"},
		{name: "TTLJitter 1", opts: tiercache.Options[string]{TTLJitter: 1}, field: "TTLJitter"},
		{name: "TTLJitter above 1", opts: tiercache.Options[string]{TTLJitter: 1.5}, field: "TTLJitter"},
		{name: "TTLJitter NaN", opts: tiercache.Options[string]{TTLJitter: math.NaN()}, field: "TTLJitter"},
		{name: "TTLJitter +Inf", opts: tiercache.Options[string]{TTLJitter: math.Inf(1)}, field: "TTLJitter"},
		{name: "unknown Refill", opts: tiercache.Options[string]{Refill: tiercache.RefillInline + 1}, field: "Refill"},
		{name: "race with unknown Loser", opts: tiercache.Options[string]{ReadPolicy: tiercache.RaceReadPolicy[string]{Loser: tiercache.LoserCancel + 1}}, field: "ReadPolicy: RaceReadPolicy.Loser"},
		{name: "race with negative HedgeAfter", opts: tiercache.Options[string]{ReadPolicy: tiercache.RaceReadPolicy[string]{HedgeAfter: -time.Millisecond}}, field: "ReadPolicy: RaceReadPolicy.HedgeAfter"},
		{name: "race by pointer with negative HedgeAfter", opts: tiercache.Options[string]{ReadPolicy: &tiercache.RaceReadPolicy[string]{HedgeAfter: -time.Millisecond}}, field: "ReadPolicy: RaceReadPolicy.HedgeAfter"},
		{name: "nil *RaceReadPolicy", opts: tiercache.Options[string]{ReadPolicy: (*tiercache.RaceReadPolicy[string])(nil)}, field: "ReadPolicy: nil *RaceReadPolicy"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := tt.opts
			c, err := tiercache.New[string](newFakeBackend(), newFakeBackend(), &opts)
			require.Error(t, err)
			require.Nil(t, c)
			require.True(t, strings.HasPrefix(err.Error(), "tiercache:"), "%q lacks the package prefix", err)
			require.ErrorContains(t, err, tt.field)
		})
	}
}

func TestNewAcceptsEdgeOptions(t *testing.T) {
	tests := []struct {
		name string
		opts tiercache.Options[string]
	}{
		{name: "zero value"},
		{name: "TTLJitter just under 1", opts: tiercache.Options[string]{TTLJitter: math.Nextafter(1, 0)}},
		{name: "RefillNever", opts: tiercache.Options[string]{Refill: tiercache.RefillNever}},
		{name: "RefillInline", opts: tiercache.Options[string]{Refill: tiercache.RefillInline}},
		{name: "every duration set", opts: tiercache.Options[string]{
			DefaultTTL:  time.Hour,
			StaleAfter:  time.Minute,
			L1MaxTTL:    time.Minute,
			NegativeTTL: time.Second,
			L1Timeout:   time.Millisecond,
			L2Timeout:   time.Second,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := tt.opts
			c, err := tiercache.New[string](newFakeBackend(), newFakeBackend(), &opts)
			require.NoError(t, err)
			require.NoError(t, c.Close(t.Context()))
		})
	}
}

func TestNewDoesNotModifyOptions(t *testing.T) {
	pool := tiercache.NewOffloadPool(tiercache.OffloadOptions{})
	defer closePool(t, pool)
	tests := []struct {
		name string
		opts tiercache.Options[string]
	}{
		{name: "every field set", opts: tiercache.Options[string]{
			ReadPolicy:  tiercache.RaceReadPolicy[string]{HedgeAfter: time.Millisecond},
			WritePolicy: tiercache.ParallelWritePolicy{},
			Refill:      tiercache.RefillNever,
			Offload:     pool,
			DefaultTTL:  time.Hour,
			StaleAfter:  time.Minute,
			L1MaxTTL:    time.Minute,
			NegativeTTL: time.Second,
			TTLJitter:   0.1,
			L1Timeout:   time.Millisecond,
			L2Timeout:   time.Second,
		}},
		{name: "nil policies and Offload stay nil", opts: tiercache.Options[string]{DefaultTTL: time.Minute}},
		{name: "zero value"},
		{name: "invalid", opts: tiercache.Options[string]{DefaultTTL: -time.Second}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := tt.opts
			before := opts
			c, err := tiercache.New[string](newFakeBackend(), newFakeBackend(), &opts)
			if err == nil {
				require.NoError(t, c.Close(t.Context()))
			}
			require.Equal(t, before, opts)
			if before.ReadPolicy == nil {
				require.Nil(t, opts.ReadPolicy)
			}
			if before.WritePolicy == nil {
				require.Nil(t, opts.WritePolicy)
			}
			if before.Offload == nil {
				require.Nil(t, opts.Offload)
			}
		})
	}
}

func TestNewNilOptions(t *testing.T) {
	l1, l2 := newFakeBackend(), newFakeBackend()
	c, err := tiercache.New[string](l1, l2, nil)
	require.NoError(t, err)

	require.NoError(t, c.Set(t.Context(), "k", "v", 0))
	got, ok, err := c.Get(t.Context(), "k")
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, "v", got)
	requireHolds(t, l1, "k", tiercache.CacheValue[string]{Data: "v"})
	requireHolds(t, l2, "k", tiercache.CacheValue[string]{Data: "v"})
	require.NoError(t, c.Close(t.Context()))
}
