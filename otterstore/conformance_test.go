package otterstore_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tiercache/tiercache"
	"github.com/tiercache/tiercache/backendtest"
	"github.com/tiercache/tiercache/otterstore"
)

func TestConformance(t *testing.T) {
	configs := []struct {
		name string
		opts *otterstore.Options[string]
	}{
		{"defaults", nil},
		{"bounded by weight", &otterstore.Options[string]{
			MaximumWeight: 64 << 20,
			Weigher: func(key string, v tiercache.CacheValue[string]) uint32 {
				return uint32(len(key) + len(v.Data))
			},
		}},
	}
	for _, c := range configs {
		t.Run(c.name, func(t *testing.T) {
			backendtest.Run(t, func(t *testing.T) tiercache.Backend[string] {
				s, err := otterstore.New(c.opts)
				require.NoError(t, err)
				t.Cleanup(func() { require.NoError(t, s.Close()) })
				return s
			})
		})
	}
}
