package redisstore_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/tiercache/tiercache"
	"github.com/tiercache/tiercache/redisstore"
)

// user is a struct value of about 200 bytes in JSON.
type user struct {
	ID      int64    `json:"id"`
	Name    string   `json:"name"`
	Email   string   `json:"email"`
	Roles   []string `json:"roles"`
	Active  bool     `json:"active"`
	Balance float64  `json:"balance"`
	Bio     string   `json:"bio"`
}

var ada = user{
	ID: 42, Name: "Ada Lovelace", Email: "ada@example.com", Roles: []string{"admin", "analyst"},
	Active: true, Balance: 1815.12, Bio: "Wrote the first algorithm intended for a machine; saw that it could do more than arithmetic.",
}

func TestNew(t *testing.T) {
	client := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"}) // never dialled: New sends nothing
	defer client.Close()

	t.Run("nil client", func(t *testing.T) {
		_, err := redisstore.New[string](nil, nil)
		require.Error(t, err)
		assert.True(t, strings.HasPrefix(err.Error(), "redisstore:"), err)
	})
	for name, nilClient := range map[string]redis.UniversalClient{
		"nil *redis.Client":        (*redis.Client)(nil),
		"nil *redis.ClusterClient": (*redis.ClusterClient)(nil),
		"nil *redis.Ring":          (*redis.Ring)(nil),
	} {
		t.Run(name, func(t *testing.T) {
			_, err := redisstore.New[string](nilClient, nil)
			require.ErrorContains(t, err, "redisstore: New: nil client")
		})
	}
	t.Run("nil options", func(t *testing.T) {
		s, err := redisstore.New[string](client, nil)
		require.NoError(t, err)
		require.NotNil(t, s)
	})
	for _, c := range []struct {
		name string
		max  int
		ok   bool
	}{
		{"MaxValueBytes zero", 0, true},
		{"MaxValueBytes small", 64, true},
		{"MaxValueBytes 512 MiB", 512 << 20, true},
		{"MaxValueBytes negative", -1, false},
		{"MaxValueBytes above 512 MiB", 512<<20 + 1, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := redisstore.New(client, &redisstore.Options[string]{MaxValueBytes: c.max})
			if c.ok {
				require.NoError(t, err)
				return
			}
			require.Error(t, err)
			assert.True(t, strings.HasPrefix(err.Error(), "redisstore: Options.MaxValueBytes"), err)
		})
	}
	for _, c := range []struct {
		name     string
		coalesce int
		ok       bool
	}{
		{"CoalesceGets zero", 0, true},
		{"CoalesceGets off", redisstore.CoalesceOff, true},
		{"CoalesceGets below -1", -2, false},
		{"CoalesceGets 1024", 1024, true},
		{"CoalesceGets above 1024", 1025, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := redisstore.New(client, &redisstore.Options[string]{CoalesceGets: c.coalesce})
			if c.ok {
				require.NoError(t, err)
				return
			}
			require.Error(t, err)
			assert.True(t, strings.HasPrefix(err.Error(), "redisstore: Options.CoalesceGets"), err)
		})
		t.Run(strings.Replace(c.name, "Gets", "Writes", 1), func(t *testing.T) {
			_, err := redisstore.New(client, &redisstore.Options[string]{CoalesceWrites: c.coalesce})
			if c.ok {
				require.NoError(t, err)
				return
			}
			require.Error(t, err)
			assert.True(t, strings.HasPrefix(err.Error(), "redisstore: Options.CoalesceWrites"), err)
		})
	}
	t.Run("options not modified", func(t *testing.T) {
		opts := &redisstore.Options[string]{KeyPrefix: "p:"}
		before := *opts
		_, err := redisstore.New(client, opts)
		require.NoError(t, err)
		assert.Equal(t, before, *opts)
		assert.Nil(t, opts.Codec)
		assert.Zero(t, opts.MaxValueBytes)
	})
}

// TestCoalescingDefaults checks what Options.CoalesceGets and
// CoalesceWrites give each kind of client: by default SuggestedCoalesceGets
// on a *redis.Client and nothing on a Cluster or Ring, where a batch would
// wait for the slowest node; -1 turns coalescing off; a number is taken as
// it is.
func TestCoalescingDefaults(t *testing.T) {
	single := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	cluster := redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{"127.0.0.1:1"}})
	ring := redis.NewRing(&redis.RingOptions{Addrs: map[string]string{"a": "127.0.0.1:1"}})
	t.Cleanup(func() { single.Close(); cluster.Close(); ring.Close() })
	n := redisstore.SuggestedCoalesceGets
	for _, c := range []struct {
		name               string
		client             redis.UniversalClient
		gets, writes       int
		wantGets, wantWrit int
	}{
		{"single node, defaults", single, 0, 0, n, n},
		{"single node, off", single, redisstore.CoalesceOff, redisstore.CoalesceOff, 0, 0},
		{"single node, Gets only", single, 2, redisstore.CoalesceOff, 2, 0},
		{"Cluster, defaults", cluster, 0, 0, 0, 0},
		{"Cluster, set", cluster, 3, 5, 3, 5},
		{"Ring, defaults", ring, 0, 0, 0, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			s, err := redisstore.New(c.client, &redisstore.Options[string]{CoalesceGets: c.gets, CoalesceWrites: c.writes})
			require.NoError(t, err)
			gets, writes := redisstore.Coalescers(s)
			assert.Equal(t, c.wantGets, gets, "dispatchers of Gets")
			assert.Equal(t, c.wantWrit, writes, "dispatchers of writes")
		})
	}
}

// getModes are the two kinds of Store the tests of Get run through: one
// GET per Get (coalescing off), and the default, which coalesces Gets under
// load (the tests in coalesce_test.go put it under load) and otherwise
// sends a Get alone; both must answer alike.
var getModes = []struct {
	name     string
	coalesce int // Options.CoalesceGets
}{
	{"plain", redisstore.CoalesceOff},
	{"coalescing", 0},
}

func TestRoundTrip(t *testing.T) {
	for _, m := range getModes {
		t.Run(m.name, func(t *testing.T) { testRoundTrip(t, m.coalesce) })
	}
}

func testRoundTrip(t *testing.T, coalesce int) {
	client := newClient(t)
	s, _ := newStore(t, client, redisstore.Options[user]{CoalesceGets: coalesce})
	ctx := context.Background()
	now := time.Now()
	for _, c := range []struct {
		name string
		v    tiercache.CacheValue[user]
	}{
		{"data only", tiercache.CacheValue[user]{Data: ada}},
		{"expire", tiercache.CacheValue[user]{Data: ada, Expire: now.Add(time.Hour)}},
		{"stale", tiercache.CacheValue[user]{Data: ada, Stale: now.Add(time.Minute)}},
		{"expire and stale", tiercache.CacheValue[user]{Data: ada, Expire: now.Add(time.Hour), Stale: now.Add(-time.Minute)}},
		{"negative", tiercache.CacheValue[user]{Negative: true}},
		{"negative expire and stale", tiercache.CacheValue[user]{Negative: true, Expire: now.Add(time.Hour), Stale: now.Add(time.Minute)}},
		{"zero data", tiercache.CacheValue[user]{}},
	} {
		t.Run(c.name, func(t *testing.T) {
			require.NoError(t, s.Set(ctx, c.name, c.v))
			got, err := s.Get(ctx, c.name)
			require.NoError(t, err)
			require.NotNil(t, got)
			want := c.v
			want.Expire, want.Stale = millis(want.Expire), millis(want.Stale)
			assertSameValue(t, want, *got)
		})
	}
	t.Run("negative drops Data", func(t *testing.T) {
		require.NoError(t, s.Set(ctx, "neg-data", tiercache.CacheValue[user]{Data: ada, Negative: true}))
		got, err := s.Get(ctx, "neg-data")
		require.NoError(t, err)
		require.NotNil(t, got)
		assert.True(t, got.Negative)
		assert.Zero(t, got.Data)
	})
}

// millis rounds t down to the millisecond, as an entry stores it.
func millis(t time.Time) time.Time {
	if t.IsZero() {
		return t
	}
	return time.UnixMilli(t.UnixMilli())
}

func assertSameValue[T any](t *testing.T, want, got tiercache.CacheValue[T]) {
	t.Helper()
	assert.Equal(t, want.Data, got.Data, "Data")
	assert.True(t, want.Expire.Equal(got.Expire), "Expire: want %v, got %v", want.Expire, got.Expire)
	assert.True(t, want.Stale.Equal(got.Stale), "Stale: want %v, got %v", want.Stale, got.Stale)
	assert.Equal(t, want.Negative, got.Negative, "Negative")
}

func TestMiss(t *testing.T) {
	client := newClient(t)
	s, _ := newStore(t, client, redisstore.Options[string]{})
	got, err := s.Get(context.Background(), "never-set")
	assert.NoError(t, err)
	assert.Nil(t, got)
	assert.NoError(t, s.Delete(context.Background(), "never-set"))
}

func TestKeyPrefix(t *testing.T) {
	client := newClient(t)
	ctx := context.Background()
	a, prefixA := newStore(t, client, redisstore.Options[string]{})
	b, prefixB := newStore(t, client, redisstore.Options[string]{})

	require.NoError(t, a.Set(ctx, "k", tiercache.CacheValue[string]{Data: "in a"}))
	n, err := client.Exists(ctx, prefixA+"k").Result()
	require.NoError(t, err)
	assert.Equal(t, int64(1), n, "the Redis key is KeyPrefix+key")
	n, err = client.Exists(ctx, "k", prefixB+"k").Result()
	require.NoError(t, err)
	assert.Zero(t, n, "no key outside the prefix")

	got, err := b.Get(ctx, "k")
	require.NoError(t, err)
	assert.Nil(t, got, "a store with another prefix sees nothing")

	require.NoError(t, b.Delete(ctx, "k"))
	got, err = a.Get(ctx, "k")
	require.NoError(t, err)
	require.NotNil(t, got, "a Delete under another prefix leaves the key")

	require.NoError(t, a.Delete(ctx, "k"))
	n, err = client.Exists(ctx, prefixA+"k").Result()
	require.NoError(t, err)
	assert.Zero(t, n, "Delete removes KeyPrefix+key")
}

func TestExpireIsPXAT(t *testing.T) {
	client := newClient(t)
	s, prefix := newStore(t, client, redisstore.Options[string]{})
	ctx := context.Background()
	expire := time.Now().Add(time.Hour + 123456789*time.Nanosecond)
	require.NoError(t, s.Set(ctx, "k", tiercache.CacheValue[string]{Data: "v", Expire: expire, Stale: time.Now().Add(time.Minute)}))

	at, err := client.PExpireTime(ctx, prefix+"k").Result()
	require.NoError(t, err)
	assert.Equal(t, expire.UnixMilli(), at.Milliseconds(), "PEXPIRETIME is Expire in unix ms")
	ttl, err := client.PTTL(ctx, prefix+"k").Result()
	require.NoError(t, err)
	assert.True(t, ttl > 59*time.Minute && ttl <= time.Hour+time.Second, "PTTL %v", ttl)

	// Overwriting with a value that never expires removes the TTL.
	require.NoError(t, s.Set(ctx, "k", tiercache.CacheValue[string]{Data: "forever", Stale: time.Now().Add(time.Minute)}))
	at, err = client.PExpireTime(ctx, prefix+"k").Result()
	require.NoError(t, err)
	assert.Equal(t, time.Duration(-1), at, "PEXPIRETIME of a key without TTL")
	ttl, err = client.PTTL(ctx, prefix+"k").Result()
	require.NoError(t, err)
	assert.Equal(t, time.Duration(-1), ttl, "PTTL of a key without TTL")
}

func TestRedisDropsAtExpire(t *testing.T) {
	client := newClient(t)
	s, prefix := newStore(t, client, redisstore.Options[string]{})
	ctx := context.Background()
	expire := time.Now().Add(150 * time.Millisecond)
	require.NoError(t, s.Set(ctx, "k", tiercache.CacheValue[string]{Data: "v", Expire: expire}))
	time.Sleep(time.Until(expire) + 50*time.Millisecond)
	n, err := client.Exists(ctx, prefix+"k").Result()
	require.NoError(t, err)
	assert.Zero(t, n, "Redis dropped the key at Expire")
}

func TestSetExpiredDeletes(t *testing.T) {
	client := newClient(t)
	s, prefix := newStore(t, client, redisstore.Options[string]{})
	ctx := context.Background()
	require.NoError(t, s.Set(ctx, "k", tiercache.CacheValue[string]{Data: "live"}))
	for _, expire := range []time.Time{time.Now().Add(-time.Millisecond), time.Now().Add(-24 * time.Hour), time.Unix(-1, 0), time.Unix(0, 0)} {
		require.NoError(t, s.Set(ctx, "k", tiercache.CacheValue[string]{Data: "dead", Expire: expire}))
		n, err := client.Exists(ctx, prefix+"k").Result()
		require.NoError(t, err)
		assert.Zero(t, n, "Set of a value expired at %v deletes the key", expire)
	}
}

func TestGetNeverReturnsExpired(t *testing.T) {
	for _, m := range getModes {
		t.Run(m.name, func(t *testing.T) {
			client := newClient(t)
			s, prefix := newStore(t, client, redisstore.Options[string]{CoalesceGets: m.coalesce})
			ctx := context.Background()
			// An entry whose Expire has passed but that Redis keeps (no TTL: a
			// clock ahead of Redis's, or a writer that forgot PXAT).
			require.NoError(t, client.Set(ctx, prefix+"k", entry(0x02, time.Now().Add(-time.Second).UnixMilli(), `"old"`), 0).Err())
			got, err := s.Get(ctx, "k")
			assert.NoError(t, err)
			assert.Nil(t, got)
		})
	}
}

// entry returns the bytes of an entry with the given flags, Expire/Stale
// (each taken in order when its flag is set) and payload.
func entry(flags byte, rest ...any) []byte {
	b := []byte{0xC1, 0x54, 1, flags}
	for _, r := range rest {
		switch r := r.(type) {
		case int64:
			for i := 7; i >= 0; i-- {
				b = append(b, byte(r>>(8*i)))
			}
		case string:
			b = append(b, r...)
		}
	}
	return b
}

func TestMaxValueBytes(t *testing.T) {
	client := newClient(t)
	ctx := context.Background()

	t.Run("Set refuses and deletes", func(t *testing.T) {
		s, prefix := newStore(t, client, redisstore.Options[string]{MaxValueBytes: 100})
		require.NoError(t, s.Set(ctx, "k", tiercache.CacheValue[string]{Data: "small"}))
		// header 4 bytes + payload `"` + 94 + `"`: 100 bytes, at the limit.
		require.NoError(t, s.Set(ctx, "k", tiercache.CacheValue[string]{Data: strings.Repeat("x", 94)}))
		err := s.Set(ctx, "k", tiercache.CacheValue[string]{Data: strings.Repeat("x", 95)})
		require.Error(t, err)
		assert.ErrorIs(t, err, redisstore.ErrValueTooLarge)
		assert.Contains(t, err.Error(), prefix+"k")
		assert.True(t, strings.HasPrefix(err.Error(), "redisstore: set "), err)
		n, err := client.Exists(ctx, prefix+"k").Result()
		require.NoError(t, err)
		assert.Zero(t, n, "the refused Set deleted the value it was to replace")
		// The header counts: 12 more bytes with Expire.
		err = s.Set(ctx, "k", tiercache.CacheValue[string]{Data: strings.Repeat("x", 90), Expire: time.Now().Add(time.Hour)})
		assert.ErrorIs(t, err, redisstore.ErrValueTooLarge)
	})
	for _, m := range getModes {
		t.Run("Get refuses/"+m.name, func(t *testing.T) {
			s, prefix := newStore(t, client, redisstore.Options[string]{MaxValueBytes: 100, CoalesceGets: m.coalesce})
			require.NoError(t, client.Set(ctx, prefix+"big", entry(0, `"`+strings.Repeat("x", 95)+`"`), 0).Err())
			got, err := s.Get(ctx, "big")
			assert.Nil(t, got)
			require.Error(t, err)
			assert.ErrorIs(t, err, redisstore.ErrValueTooLarge)
			assert.ErrorIs(t, err, tiercache.ErrBadEntry)
			assert.Contains(t, err.Error(), prefix+"big")
			assert.True(t, strings.HasPrefix(err.Error(), "redisstore: get "), err)
		})
	}
	t.Run("default allows 1 MiB", func(t *testing.T) {
		s, _ := newStore(t, client, redisstore.Options[string]{})
		v := tiercache.CacheValue[string]{Data: strings.Repeat("0123456789abcdef", 1<<16), Expire: time.Now().Add(time.Hour), Stale: time.Now().Add(time.Minute)}
		require.NoError(t, s.Set(ctx, "1mib", v))
		got, err := s.Get(ctx, "1mib")
		require.NoError(t, err)
		require.NotNil(t, got)
		assert.Equal(t, v.Data, got.Data)
	})
	t.Run("default refuses above 4 MiB", func(t *testing.T) {
		s, _ := newStore(t, client, redisstore.Options[[]byte]{Codec: rawCodec{}})
		require.NoError(t, s.Set(ctx, "at", tiercache.CacheValue[[]byte]{Data: make([]byte, redisstore.DefaultMaxValueBytes-4)}))
		err := s.Set(ctx, "above", tiercache.CacheValue[[]byte]{Data: make([]byte, redisstore.DefaultMaxValueBytes-3)})
		assert.ErrorIs(t, err, redisstore.ErrValueTooLarge)
	})
}

// rawCodec stores []byte as is.
type rawCodec struct{}

func (rawCodec) Marshal(v []byte) ([]byte, error)   { return v, nil }
func (rawCodec) Unmarshal(b []byte) ([]byte, error) { return append([]byte(nil), b...), nil }

func TestHostileEntries(t *testing.T) {
	for _, m := range getModes {
		t.Run(m.name, func(t *testing.T) { testHostileEntries(t, m.coalesce) })
	}
}

func testHostileEntries(t *testing.T, coalesce int) {
	client := newClient(t)
	s, prefix := newStore(t, client, redisstore.Options[user]{CoalesceGets: coalesce})
	ctx := context.Background()
	future := time.Now().Add(time.Hour).UnixMilli()
	for _, c := range []struct {
		name  string
		value []byte
		want  string
	}{
		{"empty", nil, "no magic bytes"},
		{"one byte", []byte{0xC1}, "no magic bytes"},
		{"magic only", []byte{0xC1, 0x54}, "truncated header"},
		{"no flags", []byte{0xC1, 0x54, 1}, "truncated header"},
		{"expire cut short", entry(0x02, "\x00\x00\x01"), "truncated header"},
		{"stale missing", entry(0x06, future), "truncated header"},
		{"random bytes", []byte("\x8f\x13\x00\xfe\x9c\x11\xa0\x07"), "no magic bytes"},
		{"foreign JSON", []byte(`{"id":42,"name":"Ada"}`), "no magic bytes"},
		{"foreign text", []byte("hello"), "no magic bytes"},
		{"future version", []byte{0xC1, 0x54, 2, 0}, "format version 2 is newer"},
		{"version 0", []byte{0xC1, 0x54, 0, 0}, "unknown format version 0"},
		{"version 255", append([]byte{0xC1, 0x54, 255, 0}, `{}`...), "format version 255 is newer"},
		{"unknown flag", entry(0x08, `{}`), "unknown flags"},
		{"negative with payload", entry(0x01, `{}`), "negative entry with a 2-byte payload"},
		{"wrong codec payload", entry(0x02, future, "\x00not json"), "codec cannot decode"},
		{"wrong JSON type", entry(0, `["a","b"]`), "codec cannot decode"},
		{"empty payload", entry(0), "codec cannot decode"},
	} {
		t.Run(c.name, func(t *testing.T) {
			require.NoError(t, client.Set(ctx, prefix+c.name, c.value, 0).Err())
			got, err := s.Get(ctx, c.name)
			assert.Nil(t, got)
			require.Error(t, err)
			assert.ErrorIs(t, err, redisstore.ErrInvalidEntry)
			assert.ErrorIs(t, err, tiercache.ErrBadEntry)
			assert.True(t, strings.HasPrefix(err.Error(), "redisstore: get "), err)
			assert.Contains(t, err.Error(), prefix+c.name, "the error names the key")
			assert.Contains(t, err.Error(), "invalid entry: "+c.want)
		})
	}
	t.Run("not a string", func(t *testing.T) {
		require.NoError(t, client.LPush(ctx, prefix+"list", "x").Err())
		got, err := s.Get(ctx, "list")
		assert.Nil(t, got)
		if coalesce != redisstore.CoalesceOff { // a miss, as MGET answers when the Get is queued
			assert.NoError(t, err)
			return
		}
		require.Error(t, err)
		assert.Contains(t, err.Error(), prefix+"list")
		assert.Contains(t, err.Error(), "WRONGTYPE")
	})
}

// panicCodec panics in both directions.
type panicCodec struct{}

func (panicCodec) Marshal(string) ([]byte, error)   { panic("marshal exploded") }
func (panicCodec) Unmarshal([]byte) (string, error) { panic(errors.New("unmarshal exploded")) }

// failCodec fails in both directions.
type failCodec struct{}

var errCodec = errors.New("codec says no")

func (failCodec) Marshal(string) ([]byte, error)   { return nil, errCodec }
func (failCodec) Unmarshal([]byte) (string, error) { return "", errCodec }

func TestCodecFailures(t *testing.T) {
	client := newClient(t)
	for _, c := range []struct {
		name  string
		codec tiercache.Codec[string]
		check func(t *testing.T, err error)
	}{
		{"panics", panicCodec{}, func(t *testing.T, err error) {
			var pe *tiercache.PanicError
			require.ErrorAs(t, err, &pe)
			assert.NotEmpty(t, pe.Stack)
		}},
		{"fails", failCodec{}, func(t *testing.T, err error) { assert.ErrorIs(t, err, errCodec) }},
	} {
		for _, m := range getModes {
			t.Run(c.name+"/"+m.name, func(t *testing.T) {
				ctx := context.Background()
				s, prefix := newStore(t, client, redisstore.Options[string]{Codec: c.codec, CoalesceGets: m.coalesce})
				require.NoError(t, client.Set(ctx, prefix+"k", entry(0, `"old"`), 0).Err())

				got, err := s.Get(ctx, "k")
				assert.Nil(t, got)
				require.Error(t, err)
				assert.ErrorIs(t, err, redisstore.ErrInvalidEntry)
				assert.Contains(t, err.Error(), prefix+"k")
				c.check(t, err)

				err = s.Set(ctx, "k", tiercache.CacheValue[string]{Data: "new"})
				require.Error(t, err)
				assert.True(t, strings.HasPrefix(err.Error(), "redisstore: set "), err)
				assert.Contains(t, err.Error(), prefix+"k")
				c.check(t, err)
				n, err := client.Exists(ctx, prefix+"k").Result()
				require.NoError(t, err)
				assert.Zero(t, n, "the failed Set deleted the value it was to replace")

				// A negative value needs no codec.
				require.NoError(t, s.Set(ctx, "neg", tiercache.CacheValue[string]{Negative: true}))
				v, err := s.Get(ctx, "neg")
				require.NoError(t, err)
				require.NotNil(t, v)
				assert.True(t, v.Negative)
			})
		}
	}
}

// TestCodecErrorsPrefixedOnce checks that a JSONCodec error, which
// starts with "redisstore:" when the codec is used alone, does not repeat
// the prefix inside a Store's error, and that errors.As still finds the
// encoding error.
func TestCodecErrorsPrefixedOnce(t *testing.T) {
	client := newClient(t)
	ctx := context.Background()
	once := func(t *testing.T, err error) {
		t.Helper()
		require.Error(t, err)
		assert.Equal(t, 1, strings.Count(err.Error(), "redisstore:"), err)
		assert.Contains(t, err.Error(), "json codec: ")
	}

	s, prefix := newStore(t, client, redisstore.Options[string]{})
	require.NoError(t, client.Set(ctx, prefix+"k", entry(0, `not json`), 0).Err())
	_, err := s.Get(ctx, "k")
	once(t, err)
	assert.ErrorIs(t, err, redisstore.ErrInvalidEntry)
	var se *json.SyntaxError
	assert.ErrorAs(t, err, &se)
	assert.Contains(t, err.Error(), prefix+"k")
	_, err = s.GetMany(ctx, []string{"k"})
	once(t, err)

	fs, _ := newStore(t, client, redisstore.Options[func()]{})
	err = fs.Set(ctx, "k", tiercache.CacheValue[func()]{Data: func() {}})
	once(t, err)
	assert.True(t, strings.HasPrefix(err.Error(), "redisstore: set "), err)
	var ute *json.UnsupportedTypeError
	assert.ErrorAs(t, err, &ute)
	err = fs.SetMany(ctx, []string{"k"}, []tiercache.CacheValue[func()]{{Data: func() {}}})
	once(t, err)
	assert.ErrorAs(t, err, &ute)
}

func TestInstantOutOfRange(t *testing.T) {
	client := newClient(t)
	s, prefix := newStore(t, client, redisstore.Options[string]{})
	ctx := context.Background()
	far := time.Unix(1<<62, 0)
	require.NoError(t, s.Set(ctx, "k", tiercache.CacheValue[string]{Data: "old"}))
	err := s.Set(ctx, "k", tiercache.CacheValue[string]{Data: "v", Expire: far})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "expire: ")
	assert.Contains(t, err.Error(), prefix+"k")
	err = s.Set(ctx, "k", tiercache.CacheValue[string]{Data: "v", Stale: far})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "stale: ")
	n, err := client.Exists(ctx, prefix+"k").Result()
	require.NoError(t, err)
	assert.Zero(t, n)
}

func TestClose(t *testing.T) {
	for _, m := range getModes {
		t.Run(m.name, func(t *testing.T) { testClose(t, m.coalesce) })
	}
}

func testClose(t *testing.T, coalesce int) {
	client := newClient(t)
	s, err := redisstore.New(client, &redisstore.Options[string]{CoalesceGets: coalesce})
	require.NoError(t, err)
	ctx := context.Background()
	_, err = s.Get(ctx, "k")
	require.NoError(t, err)
	require.NoError(t, s.Close(ctx))
	require.NoError(t, s.Close(ctx), "Close is idempotent")
	_, err = s.Get(ctx, "k")
	assert.ErrorIs(t, err, redisstore.ErrClosed)
	assert.ErrorIs(t, s.Set(ctx, "k", tiercache.CacheValue[string]{Data: "v"}), redisstore.ErrClosed)
	assert.ErrorIs(t, s.Delete(ctx, "k"), redisstore.ErrClosed)
	// And through the guarded path, taken by a client with default options
	// and a ctx that can end.
	dctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	_, err = s.Get(dctx, "k")
	assert.ErrorIs(t, err, redisstore.ErrClosed)
}

// TestClosedErrorsPrefixedOnce checks that a Set refused after Close, on
// any of its paths, says "redisstore:" once and wraps ErrClosed.
func TestClosedErrorsPrefixedOnce(t *testing.T) {
	s, err := redisstore.New(newClient(t), &redisstore.Options[string]{})
	require.NoError(t, err)
	ctx := context.Background()
	require.NoError(t, s.Close(ctx))
	for name, v := range map[string]tiercache.CacheValue[string]{
		"stored":  {Data: "v"},
		"expired": {Data: "v", Expire: time.Now().Add(-time.Second)},
		"refused": {Data: "v", Expire: time.Unix(1<<62, 0)},
	} {
		err := s.Set(ctx, "k", v)
		assert.ErrorIs(t, err, redisstore.ErrClosed, name)
		assert.ErrorIs(t, err, tiercache.ErrClosed, name)
		assert.Equal(t, `redisstore: set "k": store closed`, err.Error(), name)
	}
	_, err = s.Get(ctx, "k")
	assert.ErrorIs(t, err, tiercache.ErrClosed, "Get")
	assert.ErrorIs(t, s.Delete(ctx, "k"), tiercache.ErrClosed, "Delete")
}

func TestCancelledContext(t *testing.T) {
	for _, m := range getModes {
		t.Run(m.name, func(t *testing.T) { testCancelledContext(t, m.coalesce) })
	}
}

func testCancelledContext(t *testing.T, coalesce int) {
	client := newClient(t)
	s, prefix := newStore(t, client, redisstore.Options[string]{CoalesceGets: coalesce})
	ctx, cancel := context.WithCancelCause(context.Background())
	cause := errors.New("the request went away")
	cancel(cause)
	_, err := s.Get(ctx, "k")
	assert.ErrorIs(t, err, context.Canceled)
	assert.ErrorIs(t, err, cause)
	assert.Contains(t, err.Error(), prefix+"k")
	assert.ErrorIs(t, s.Set(ctx, "k", tiercache.CacheValue[string]{Data: "v"}), context.Canceled)
	assert.ErrorIs(t, s.Delete(ctx, "k"), context.Canceled)
}
