package otterstore_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tiercache/tiercache"
	"github.com/tiercache/tiercache/otterstore"
)

func weighData(_ string, v tiercache.CacheValue[string]) uint32 { return uint32(len(v.Data)) }

func TestNewRejectsInvalidOptions(t *testing.T) {
	tests := []struct {
		name  string
		opts  otterstore.Options[string]
		field string
	}{
		{name: "negative MaximumSize", opts: otterstore.Options[string]{MaximumSize: -1}, field: "MaximumSize"},
		{name: "MaximumSize and MaximumWeight", opts: otterstore.Options[string]{MaximumSize: 10, MaximumWeight: 10, Weigher: weighData}, field: "MaximumWeight"},
		{name: "MaximumSize and MaximumWeight without Weigher", opts: otterstore.Options[string]{MaximumSize: 10, MaximumWeight: 10}, field: "MaximumWeight"},
		{name: "MaximumSize and Weigher", opts: otterstore.Options[string]{MaximumSize: 10, Weigher: weighData}, field: "Weigher"},
		{name: "MaximumWeight without Weigher", opts: otterstore.Options[string]{MaximumWeight: 10}, field: "Weigher"},
		{name: "Weigher without MaximumWeight", opts: otterstore.Options[string]{Weigher: weighData}, field: "MaximumWeight"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := tt.opts
			s, err := otterstore.New(&opts)
			require.Error(t, err)
			require.Nil(t, s)
			require.True(t, strings.HasPrefix(err.Error(), "otterstore:"), "%q lacks the package prefix", err)
			require.ErrorContains(t, err, tt.field)
		})
	}
}

func TestNewBounds(t *testing.T) {
	tests := []struct {
		name        string
		opts        *otterstore.Options[string]
		wantMaximum uint64
	}{
		{name: "nil options", opts: nil, wantMaximum: otterstore.DefaultMaximumSize},
		{name: "zero options", opts: &otterstore.Options[string]{}, wantMaximum: otterstore.DefaultMaximumSize},
		{name: "MaximumSize 1", opts: &otterstore.Options[string]{MaximumSize: 1}, wantMaximum: 1},
		{name: "MaximumSize", opts: &otterstore.Options[string]{MaximumSize: 500}, wantMaximum: 500},
		{name: "MaximumWeight", opts: &otterstore.Options[string]{MaximumWeight: 1 << 20, Weigher: weighData}, wantMaximum: 1 << 20},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := otterstore.New(tt.opts)
			require.NoError(t, err)
			t.Cleanup(func() { require.NoError(t, s.Close()) })
			require.Equal(t, tt.wantMaximum, s.Maximum())
			require.Zero(t, s.Len())
		})
	}
}

func TestNewDoesNotModifyOptions(t *testing.T) {
	tests := []struct {
		name string
		opts otterstore.Options[string]
	}{
		{name: "zero"},
		{name: "MaximumSize", opts: otterstore.Options[string]{MaximumSize: 7}},
		{name: "MaximumWeight", opts: otterstore.Options[string]{MaximumWeight: 7, Weigher: weighData}},
		{name: "invalid", opts: otterstore.Options[string]{MaximumSize: -7}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := tt.opts
			s, err := otterstore.New(&opts)
			if err == nil {
				require.NoError(t, s.Close())
			}
			require.Equal(t, tt.opts.MaximumSize, opts.MaximumSize)
			require.Equal(t, tt.opts.MaximumWeight, opts.MaximumWeight)
			require.Equal(t, tt.opts.Weigher == nil, opts.Weigher == nil)
		})
	}
}
