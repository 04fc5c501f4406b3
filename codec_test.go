package tiercache_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tiercache/tiercache"
)

func TestJSONCodec(t *testing.T) {
	type product struct {
		ID    int      `json:"id"`
		Name  string   `json:"name"`
		Tags  []string `json:"tags"`
		Price float64  `json:"price"`
	}
	var c tiercache.Codec[product] = tiercache.JSONCodec[product]{}
	in := product{ID: 7, Name: "lamp", Tags: []string{"home"}, Price: 19.5}
	b, err := c.Marshal(in)
	require.NoError(t, err)
	out, err := c.Unmarshal(b)
	require.NoError(t, err)
	require.Equal(t, in, out)

	_, err = c.Unmarshal([]byte("{not json"))
	require.ErrorContains(t, err, "tiercache: json codec")
	_, err = tiercache.JSONCodec[func()]{}.Marshal(func() {})
	require.ErrorContains(t, err, "tiercache: json codec: marshal")

	s, err := tiercache.JSONCodec[string]{}.Unmarshal([]byte(`"` + strings.Repeat("x", 10) + `"`))
	require.NoError(t, err)
	require.Equal(t, strings.Repeat("x", 10), s)
}
