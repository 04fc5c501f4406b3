package redisstore_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tiercache/tiercache"
	"github.com/tiercache/tiercache/redisstore"
)

// upper is a value with its own JSON methods: it is stored upper-case and
// read back lower-case.
type upper string

func (u upper) MarshalJSON() ([]byte, error) { return json.Marshal(strings.ToUpper(string(u))) }

func (u *upper) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	*u = upper(strings.ToLower(s))
	return nil
}

// level is a value with text methods, which JSON uses for map keys and
// strings.
type level int

func (l level) MarshalText() ([]byte, error) { return fmt.Appendf(nil, "L%d", int(l)), nil }

func (l *level) UnmarshalText(b []byte) error {
	_, err := fmt.Sscanf(string(b), "L%d", (*int)(l))
	return err
}

type inner struct {
	Note string `json:"note,omitempty"`
}

// kitchen holds what encoding/json's rules cover: tags, omitempty, "-",
// string options, embedded structs, pointers, maps, raw messages, times,
// bytes (base64), numbers at their limits, and the methods above.
type kitchen struct {
	inner
	ID       int64             `json:"id"`
	Name     string            `json:"name"`
	Skip     string            `json:"-"`
	Quoted   int               `json:"quoted,string"`
	Ptr      *float64          `json:"ptr"`
	Nil      *inner            `json:"nil"`
	Tags     []string          `json:"tags"`
	Attrs    map[string]any    `json:"attrs"`
	Levels   map[level]upper   `json:"levels"`
	Raw      json.RawMessage   `json:"raw"`
	At       time.Time         `json:"at"`
	Bytes    []byte            `json:"bytes"`
	Max      uint64            `json:"max"`
	Min      int64             `json:"min"`
	Float    float64           `json:"float"`
	Unicode  string            `json:"unicode"`
	Level    level             `json:"level"`
	Shout    upper             `json:"shout"`
	Any      any               `json:"any"`
	Nested   map[string][]int8 `json:"nested"`
	Untagged bool
}

func kitchenValue() kitchen {
	f := 2.5
	return kitchen{
		inner: inner{Note: "embedded"}, ID: 7, Name: "a \"quoted\" <html> & name", Skip: "not stored", Quoted: 12,
		Ptr: &f, Tags: []string{"a", "", "ü"}, Attrs: map[string]any{"n": 1.5, "s": "x", "l": []any{true, nil}},
		Levels: map[level]upper{1: "one", 2: "two"}, Raw: json.RawMessage(`{"k":[1,2]}`),
		At: time.Date(2026, 11, 27, 12, 0, 0, 123456789, time.FixedZone("x", 3600)), Bytes: []byte{0, 1, 254, 255},
		Max: math.MaxUint64, Min: math.MinInt64, Float: 1e-7, Unicode: "日本語 \u2028 \t tab", Level: 3, Shout: "hey",
		Any: map[string]any{"deep": []any{1.0, "two"}}, Nested: map[string][]int8{"n": {-128, 127}}, Untagged: true,
	}
}

// TestJSONCodec checks that redisstore's JSONCodec and tiercache's read each
// other's bytes, to the same value, and read what encoding/json reads:
// every rule of encoding/json that kitchen exercises, and names matched
// without regard to case.
func TestJSONCodec(t *testing.T) {
	ours, theirs := redisstore.JSONCodec[kitchen]{}, tiercache.JSONCodec[kitchen]{}
	want := kitchenValue()
	want.Skip = ""
	want.Shout = "hey"

	b, err := ours.Marshal(kitchenValue())
	require.NoError(t, err)
	std, err := json.Marshal(kitchenValue())
	require.NoError(t, err)
	assert.Equal(t, string(std), string(b), "the bytes encoding/json writes")

	for _, c := range []struct {
		name string
		dec  tiercache.Codec[kitchen]
	}{{"redisstore reads its own", ours}, {"tiercache reads redisstore's", theirs}} {
		t.Run(c.name, func(t *testing.T) {
			got, err := c.dec.Unmarshal(b)
			require.NoError(t, err)
			assertSameKitchen(t, want, got)
		})
	}
	t.Run("redisstore reads tiercache's", func(t *testing.T) {
		tb, err := theirs.Marshal(kitchenValue())
		require.NoError(t, err)
		got, err := ours.Unmarshal(tb)
		require.NoError(t, err)
		assertSameKitchen(t, want, got)
	})
	t.Run("names in any case", func(t *testing.T) {
		got, err := redisstore.JSONCodec[kitchen]{}.Unmarshal([]byte(`{"ID":3,"NAME":"n","untagged":true,"NOTE":"e"}`))
		require.NoError(t, err)
		assert.Equal(t, kitchen{ID: 3, Name: "n", Untagged: true, inner: inner{Note: "e"}}, got)
	})
}

// assertSameKitchen compares two kitchens, times by their instant.
func assertSameKitchen(t *testing.T, want, got kitchen) {
	t.Helper()
	assert.True(t, want.At.Equal(got.At), "At: %v, want %v", got.At, want.At)
	want.At, got.At = time.Time{}, time.Time{}
	assert.Equal(t, want, got)
}

// TestJSONCodecErrors checks that the codec fails where encoding/json
// fails, with an error prefixed "redisstore:" that wraps encoding/json's
// kind of error, and returns the zero value.
func TestJSONCodecErrors(t *testing.T) {
	codec := redisstore.JSONCodec[kitchen]{}
	for _, c := range []struct {
		name, data string
		want       any // a pointer to the error type errors.As finds
	}{
		{"empty", ``, new(*json.SyntaxError)},
		{"truncated", `{"id":1,`, new(*json.SyntaxError)},
		{"trailing data", `{"id":1} x`, new(*json.SyntaxError)},
		{"not JSON", `not json`, new(*json.SyntaxError)},
		{"wrong type", `{"id":"one"}`, new(*json.UnmarshalTypeError)},
		{"overflow", `{"min":-9223372036854775809}`, new(*json.UnmarshalTypeError)},
	} {
		t.Run(c.name, func(t *testing.T) {
			var std kitchen
			stdErr := json.Unmarshal([]byte(c.data), &std)
			require.Error(t, stdErr, "encoding/json fails too")

			got, err := codec.Unmarshal([]byte(c.data))
			require.Error(t, err)
			assert.True(t, strings.HasPrefix(err.Error(), "redisstore: json codec: unmarshal: "), err)
			assert.True(t, errors.As(err, c.want), "%T wraps %T", err, c.want)
			assert.Zero(t, got)
		})
	}
	_, err := redisstore.JSONCodec[func()]{}.Marshal(func() {})
	require.Error(t, err)
	assert.True(t, strings.HasPrefix(err.Error(), "redisstore: json codec: marshal: "), err)
	var ute *json.UnsupportedTypeError
	assert.ErrorAs(t, err, &ute)
}

// FuzzJSONCodec checks that the codec reads any bytes as encoding/json
// does: both fail, or both succeed with the same value, into an any, a
// string and a struct.
//
//	go test -run '^$' -fuzz FuzzJSONCodec -fuzztime 60s
func FuzzJSONCodec(f *testing.F) {
	for _, seed := range []string{
		`{"id":1,"name":"x","tags":["a"],"attrs":{"k":[1,2.5e3,null,true]}}`, `"s\u00e9\ud83d\ude00"`, `[1,"2",{"3":4}]`,
		`{"ID":1,"Id":2}`, `"\xff\xfe"`, `1e400`, `-0`, `{"quoted":"12"}`, `null`, ` {"name" : "spaced" } `,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		same[any](t, data)
		same[string](t, data)
		same[kitchen](t, data)
	})
}

// same fails t unless redisstore's JSONCodec and encoding/json read data
// alike into a T.
func same[T any](t *testing.T, data []byte) {
	t.Helper()
	var want T
	stdErr := json.Unmarshal(data, &want)
	got, err := redisstore.JSONCodec[T]{}.Unmarshal(data)
	if (stdErr == nil) != (err == nil) {
		t.Fatalf("%T from %q: encoding/json says %v, the codec %v", want, data, stdErr, err)
	}
	if err == nil && !reflect.DeepEqual(want, got) {
		t.Fatalf("%T from %q: encoding/json reads %#v, the codec %#v", want, data, want, got)
	}
}
