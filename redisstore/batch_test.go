package redisstore_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/tiercache/tiercache"
	"github.com/tiercache/tiercache/redisstore"
	"github.com/tiercache/tiercache/redisstore/internal/redistest"
)

// batchClient is a client the batch tests run against.
type batchClient struct {
	name   string
	client redis.UniversalClient
}

// batchClients returns a client of the shared single node with go-redis's
// default options and one with ContextTimeoutEnabled (the direct path for
// a ctx that cannot end), a Ring of two shards on that node (GetMany sends
// one GET per key in a pipeline, which the Ring splits by shard), and a
// client of the shared three-node cluster (always guarded).
func batchClients(t *testing.T) []batchClient {
	t.Helper()
	addr := redistest.Addr(t)
	direct := redis.NewClient(&redis.Options{Addr: addr, ContextTimeoutEnabled: true})
	t.Cleanup(func() { direct.Close() })
	ring := redis.NewRing(&redis.RingOptions{Addrs: map[string]string{"a": addr, "b": addr}, ContextTimeoutEnabled: true})
	t.Cleanup(func() { ring.Close() })
	return []batchClient{
		{"single/guarded", newClient(t)},
		{"single/direct", direct},
		{"ring", ring},
		{"cluster", newClusterClient(t)},
	}
}

// newBatchStore is newStore, which also deletes the keys of a Ring's store
// when t ends (newPrefix knows single nodes and clusters only).
func newBatchStore(t *testing.T, c batchClient, opts redisstore.Options[string]) (*redisstore.Store[string], string) {
	t.Helper()
	s, prefix := newStore(t, c.client, opts)
	if _, ok := c.client.(*redis.Ring); ok {
		t.Cleanup(func() { deletePrefix(t, newClient(t), prefix) })
	}
	return s, prefix
}

// batchCtx returns a ctx with a deadline, as a Cache gives its L2: the
// guarded path runs when the client is not trusted.
func batchCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func keysN(prefix string, n int) []string {
	keys := make([]string, n)
	for i := range keys {
		keys[i] = prefix + strconv.Itoa(i)
	}
	return keys
}

// requireGetMany calls GetMany, requires no error and a slice of
// len(keys), and returns the Data of each entry, "<miss>" for nil.
func requireGetMany(t *testing.T, s *redisstore.Store[string], keys ...string) []string {
	t.Helper()
	values, err := s.GetMany(batchCtx(t), keys)
	require.NoError(t, err)
	require.NotNil(t, values)
	require.Len(t, values, len(keys))
	return datas(values)
}

func datas(values []*tiercache.CacheValue[string]) []string {
	got := make([]string, len(values))
	for i, v := range values {
		if v == nil {
			got[i] = "<miss>"
			continue
		}
		got[i] = v.Data
	}
	return got
}

func val(data string) tiercache.CacheValue[string] { return tiercache.CacheValue[string]{Data: data} }

// TestBatch checks the contract of GetMany and SetMany on a single node,
// through both paths, and on a cluster.
func TestBatch(t *testing.T) {
	tests := []struct {
		name string
		run  func(t *testing.T, client redis.UniversalClient, s *redisstore.Store[string], prefix string)
	}{
		{"no keys", func(t *testing.T, _ redis.UniversalClient, s *redisstore.Store[string], _ string) {
			values, err := s.GetMany(batchCtx(t), nil)
			require.NoError(t, err)
			require.NotNil(t, values)
			require.Empty(t, values)
			require.NoError(t, s.SetMany(batchCtx(t), nil, nil))
		}},
		{"order, misses and repeated keys", func(t *testing.T, _ redis.UniversalClient, s *redisstore.Store[string], _ string) {
			require.NoError(t, s.SetMany(batchCtx(t), []string{"a", "b", "c"}, []tiercache.CacheValue[string]{val("A"), val("B"), val("C")}))
			require.Equal(t, []string{"C", "<miss>", "A", "A", "B", "<miss>"}, requireGetMany(t, s, "c", "x", "a", "a", "b", ""))
		}},
		{"every field round-trips", func(t *testing.T, _ redis.UniversalClient, s *redisstore.Store[string], _ string) {
			now := time.Now()
			keys := []string{"expire and stale", "negative", "forever", "zero"}
			want := []tiercache.CacheValue[string]{
				{Data: "v", Expire: now.Add(time.Hour), Stale: now.Add(time.Minute)},
				{Negative: true, Expire: now.Add(time.Hour), Stale: now.Add(-time.Minute)},
				{Data: "forever"},
				{},
			}
			require.NoError(t, s.SetMany(batchCtx(t), keys, want))
			got, err := s.GetMany(batchCtx(t), keys)
			require.NoError(t, err)
			for i := range want {
				w := want[i]
				w.Expire, w.Stale = millis(w.Expire), millis(w.Stale)
				require.NotNil(t, got[i], keys[i])
				assertSameValue(t, w, *got[i])
			}
		}},
		{"Set and SetMany, Get and GetMany, are interchangeable", func(t *testing.T, _ redis.UniversalClient, s *redisstore.Store[string], _ string) {
			ctx := batchCtx(t)
			require.NoError(t, s.Set(ctx, "one", val("by Set")))
			require.NoError(t, s.SetMany(ctx, []string{"two"}, []tiercache.CacheValue[string]{val("by SetMany")}))
			require.Equal(t, []string{"by Set", "by SetMany"}, requireGetMany(t, s, "one", "two"))
			v, err := s.Get(ctx, "two")
			require.NoError(t, err)
			require.Equal(t, "by SetMany", v.Data)
		}},
		{"500 keys across hash slots", func(t *testing.T, _ redis.UniversalClient, s *redisstore.Store[string], _ string) {
			keys := keysN("k", 500)
			values := make([]tiercache.CacheValue[string], len(keys))
			for i, k := range keys {
				values[i] = tiercache.CacheValue[string]{Data: "v-" + k, Expire: time.Now().Add(time.Hour)}
			}
			require.NoError(t, s.SetMany(batchCtx(t), keys, values))
			reversed := make([]string, 0, len(keys)+1)
			for i := len(keys) - 1; i >= 0; i-- {
				reversed = append(reversed, keys[i])
			}
			reversed = append(reversed, "absent")
			got := requireGetMany(t, s, reversed...)
			for i, k := range reversed[:len(keys)] {
				require.Equal(t, "v-"+k, got[i])
			}
			require.Equal(t, "<miss>", got[len(keys)])
		}},
		{"the last value of a repeated key wins", func(t *testing.T, _ redis.UniversalClient, s *redisstore.Store[string], _ string) {
			ctx := batchCtx(t)
			require.NoError(t, s.SetMany(ctx, []string{"k", "j", "k"}, []tiercache.CacheValue[string]{val("first"), val("j"), val("last")}))
			require.Equal(t, []string{"last", "j"}, requireGetMany(t, s, "k", "j"))
			require.NoError(t, s.SetMany(ctx, []string{"k", "k"}, []tiercache.CacheValue[string]{val("live"), {Data: "dead", Expire: time.Now().Add(-time.Second)}}))
			require.Equal(t, []string{"<miss>"}, requireGetMany(t, s, "k"))
		}},
		{"an expired value deletes the key", func(t *testing.T, client redis.UniversalClient, s *redisstore.Store[string], prefix string) {
			ctx := batchCtx(t)
			require.NoError(t, s.SetMany(ctx, []string{"dead", "epoch", "live"}, []tiercache.CacheValue[string]{val("old"), val("old"), val("old")}))
			require.NoError(t, s.SetMany(ctx, []string{"dead", "epoch", "live"}, []tiercache.CacheValue[string]{
				{Data: "new", Expire: time.Now().Add(-time.Millisecond)},
				{Data: "new", Expire: time.Unix(0, 0)},
				{Data: "new", Expire: time.Now().Add(time.Hour)},
			}))
			n, err := client.Exists(ctx, prefix+"dead").Result()
			require.NoError(t, err)
			require.Zero(t, n)
			n, err = client.Exists(ctx, prefix+"epoch").Result()
			require.NoError(t, err)
			require.Zero(t, n)
			require.Equal(t, []string{"<miss>", "<miss>", "new"}, requireGetMany(t, s, "dead", "epoch", "live"))
		}},
		{"Expire is PXAT, and a value without Expire has no TTL", func(t *testing.T, client redis.UniversalClient, s *redisstore.Store[string], prefix string) {
			ctx := batchCtx(t)
			expire := time.Now().Add(time.Hour + 123456789*time.Nanosecond)
			require.NoError(t, s.SetMany(ctx, []string{"ttl", "forever"}, []tiercache.CacheValue[string]{{Data: "v", Expire: expire}, {Data: "v"}}))
			at, err := client.PExpireTime(ctx, prefix+"ttl").Result()
			require.NoError(t, err)
			require.Equal(t, expire.UnixMilli(), at.Milliseconds())
			at, err = client.PExpireTime(ctx, prefix+"forever").Result()
			require.NoError(t, err)
			require.Equal(t, time.Duration(-1), at)
			require.NoError(t, s.SetMany(ctx, []string{"ttl"}, []tiercache.CacheValue[string]{val("forever now")}))
			at, err = client.PExpireTime(ctx, prefix+"ttl").Result()
			require.NoError(t, err)
			require.Equal(t, time.Duration(-1), at, "a SET without PXAT clears the TTL")
		}},
		{"an entry past its Expire that Redis keeps is a miss", func(t *testing.T, client redis.UniversalClient, s *redisstore.Store[string], prefix string) {
			ctx := batchCtx(t)
			require.NoError(t, client.Set(ctx, prefix+"old", entry(0x02, time.Now().Add(-time.Second).UnixMilli(), `"old"`), 0).Err())
			require.NoError(t, s.SetMany(ctx, []string{"new"}, []tiercache.CacheValue[string]{val("new")}))
			require.Equal(t, []string{"<miss>", "new"}, requireGetMany(t, s, "old", "new"))
		}},
		{"a key that holds no string", func(t *testing.T, client redis.UniversalClient, s *redisstore.Store[string], prefix string) {
			ctx := batchCtx(t)
			require.NoError(t, client.LPush(ctx, prefix+"list", "x").Err())
			require.NoError(t, s.SetMany(ctx, []string{"k"}, []tiercache.CacheValue[string]{val("v")}))
			got, err := s.GetMany(ctx, []string{"list", "k"})
			require.Equal(t, []string{"<miss>", "v"}, datas(got))
			if _, ok := client.(*redis.Ring); ok { // a GET per key: Redis's WRONGTYPE, as for Get
				be := requireBatchError(t, err, "get", 2, "list")
				require.Contains(t, be.Errs[0].Error(), "WRONGTYPE")
				return
			}
			require.NoError(t, err, "MGET answers nil: a miss")
		}},
		{"keys and values of different lengths write nothing", func(t *testing.T, _ redis.UniversalClient, s *redisstore.Store[string], _ string) {
			ctx := batchCtx(t)
			require.NoError(t, s.SetMany(ctx, []string{"a"}, []tiercache.CacheValue[string]{val("old")}))
			err := s.SetMany(ctx, []string{"a", "b"}, []tiercache.CacheValue[string]{val("new")})
			require.Error(t, err)
			require.True(t, strings.HasPrefix(err.Error(), "redisstore: set many: 2 keys but 1 values"), err)
			err = s.SetMany(ctx, nil, []tiercache.CacheValue[string]{val("new")})
			require.Error(t, err)
			require.Equal(t, []string{"old", "<miss>"}, requireGetMany(t, s, "a", "b"))
		}},
		{"an ended ctx fails the whole call", func(t *testing.T, client redis.UniversalClient, s *redisstore.Store[string], prefix string) {
			require.NoError(t, s.SetMany(batchCtx(t), []string{"k"}, []tiercache.CacheValue[string]{val("before")}))
			ctx, cancel := context.WithCancelCause(context.Background())
			cause := errors.New("the request went away")
			cancel(cause)
			values, err := s.GetMany(ctx, []string{"k", "j"})
			require.Nil(t, values)
			require.ErrorIs(t, err, context.Canceled)
			require.ErrorIs(t, err, cause)
			require.Contains(t, err.Error(), prefix+"k")
			var be *redisstore.BatchError
			require.False(t, errors.As(err, &be), "a whole failure is not a BatchError")

			err = s.SetMany(ctx, []string{"k", "j"}, []tiercache.CacheValue[string]{val("after"), val("after")})
			require.ErrorIs(t, err, context.Canceled)
			require.True(t, strings.HasPrefix(err.Error(), `redisstore: set 2 keys ("`+prefix+`k", "`+prefix+`j"): context canceled`), err)
			require.Equal(t, []string{"before", "<miss>"}, requireGetMany(t, s, "k", "j"), "nothing was written")

			_, err = s.GetMany(ctx, nil)
			require.ErrorIs(t, err, context.Canceled)
			require.ErrorIs(t, s.SetMany(ctx, nil, nil), context.Canceled)
		}},
		{"a closed Store refuses", func(t *testing.T, client redis.UniversalClient, s *redisstore.Store[string], _ string) {
			require.NoError(t, s.Close(context.Background()))
			for _, ctx := range []context.Context{context.Background(), batchCtx(t)} {
				values, err := s.GetMany(ctx, []string{"k"})
				require.Nil(t, values)
				require.ErrorIs(t, err, redisstore.ErrClosed)
				require.ErrorIs(t, s.SetMany(ctx, []string{"k"}, []tiercache.CacheValue[string]{val("v")}), redisstore.ErrClosed)
				_, err = s.GetMany(ctx, nil)
				require.ErrorIs(t, err, redisstore.ErrClosed)
			}
		}},
	}
	for _, c := range batchClients(t) {
		t.Run(c.name, func(t *testing.T) {
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					s, prefix := newBatchStore(t, c, redisstore.Options[string]{})
					tt.run(t, c.client, s, prefix)
				})
			}
		})
	}
}

// poisonCodec is JSON, except that it fails to encode "poison" and to
// decode the payload `"antidote"`.
type poisonCodec struct{ tiercache.JSONCodec[string] }

var errPoison = errors.New("poisoned")

func (c poisonCodec) Marshal(v string) ([]byte, error) {
	if v == "poison" {
		return nil, errPoison
	}
	return c.JSONCodec.Marshal(v)
}

func (c poisonCodec) Unmarshal(b []byte) (string, error) {
	if string(b) == `"antidote"` {
		return "", errPoison
	}
	return c.JSONCodec.Unmarshal(b)
}

// requireBatchError requires err to be a *BatchError of op naming exactly
// keys, and returns it.
func requireBatchError(t *testing.T, err error, op string, of int, keys ...string) *redisstore.BatchError {
	t.Helper()
	var be *redisstore.BatchError
	require.ErrorAs(t, err, &be)
	require.Equal(t, op, be.Op)
	require.Equal(t, keys, be.Keys)
	require.Len(t, be.Errs, len(keys))
	require.True(t, strings.HasPrefix(err.Error(), fmt.Sprintf("redisstore: %s: %d of %d keys failed: ", op, len(keys), of)), err)
	var failed interface{ FailedKeys() []string }
	require.ErrorAs(t, err, &failed, "found without naming the type")
	require.Equal(t, keys, failed.FailedKeys())
	return be
}

// TestGetManyPartialFailure checks that the entries GetMany cannot decode
// fail their keys only, named by a BatchError, on a single node and on a
// cluster.
func TestGetManyPartialFailure(t *testing.T) {
	for _, c := range batchClients(t) {
		t.Run(c.name, func(t *testing.T) {
			ctx := batchCtx(t)
			s, prefix := newBatchStore(t, c, redisstore.Options[string]{Codec: poisonCodec{}, MaxValueBytes: 100})
			good := keysN("good", 20)
			values := make([]tiercache.CacheValue[string], len(good))
			for i, k := range good {
				values[i] = val("v-" + k)
			}
			require.NoError(t, s.SetMany(ctx, good, values))
			raw := map[string][]byte{
				"foreign":  []byte(`{"id":42}`),
				"future":   {0xC1, 0x54, 2, 0},
				"big":      entry(0, `"`+strings.Repeat("x", 95)+`"`),
				"antidote": entry(0, `"antidote"`),
			}
			for k, b := range raw {
				require.NoError(t, c.client.Set(ctx, prefix+k, b, 0).Err())
			}
			keys := []string{good[0], "foreign", "missing", good[1], "big", "future", "foreign", "antidote"}
			keys = append(keys, good[2:]...)

			got, err := s.GetMany(ctx, keys)
			require.Len(t, got, len(keys), "a full slice with the error")
			be := requireBatchError(t, err, "get", len(keys), "foreign", "big", "future", "antidote")
			for i, k := range keys {
				switch k {
				case "foreign", "missing", "big", "future", "antidote":
					assert.Nil(t, got[i], k)
				default:
					if assert.NotNil(t, got[i], k) {
						assert.Equal(t, "v-"+k, got[i].Data)
					}
				}
			}
			assert.ErrorIs(t, err, redisstore.ErrInvalidEntry)
			assert.ErrorIs(t, err, redisstore.ErrValueTooLarge)
			assert.ErrorIs(t, err, errPoison)
			assert.ErrorIs(t, be.Errs[0], redisstore.ErrInvalidEntry)
			assert.ErrorIs(t, be.Errs[1], redisstore.ErrValueTooLarge)
			assert.NotErrorIs(t, be.Errs[1], redisstore.ErrInvalidEntry)
			assert.Contains(t, be.Errs[2].Error(), "format version 2 is newer")
			for i, k := range be.Keys {
				assert.True(t, strings.HasPrefix(be.Errs[i].Error(), `redisstore: get "`+prefix+k+`": `), be.Errs[i])
				assert.Contains(t, err.Error(), strconv.Quote(prefix+k))
			}
		})
	}
}

// TestSetManyPartialFailure checks that the values SetMany cannot store
// fail their keys only, which are deleted as Set deletes them, named by a
// BatchError.
func TestSetManyPartialFailure(t *testing.T) {
	for _, c := range batchClients(t) {
		t.Run(c.name, func(t *testing.T) {
			ctx := batchCtx(t)
			s, prefix := newBatchStore(t, c, redisstore.Options[string]{Codec: poisonCodec{}, MaxValueBytes: 100})
			keys := []string{"ok1", "poison", "big", "ok2", "expired", "far", "poison"}
			old := make([]tiercache.CacheValue[string], len(keys))
			for i := range old {
				old[i] = val("old")
			}
			require.NoError(t, s.SetMany(ctx, keys, old))

			err := s.SetMany(ctx, keys, []tiercache.CacheValue[string]{
				val("new1"),
				val("poison"),
				val(strings.Repeat("x", 95)),
				val("new2"),
				{Data: "dead", Expire: time.Now().Add(-time.Minute)},
				{Data: "v", Expire: time.Unix(1<<62, 0)},
				val("poison"),
			})
			be := requireBatchError(t, err, "set", len(keys), "poison", "big", "far")
			assert.ErrorIs(t, be.Errs[0], errPoison)
			assert.ErrorIs(t, be.Errs[1], redisstore.ErrValueTooLarge)
			assert.Contains(t, be.Errs[2].Error(), "expire: ")
			for i, k := range be.Keys {
				assert.True(t, strings.HasPrefix(be.Errs[i].Error(), `redisstore: set "`+prefix+k+`": `), be.Errs[i])
			}
			for _, k := range []string{"poison", "big", "far", "expired"} {
				n, err := c.client.Exists(ctx, prefix+k).Result()
				require.NoError(t, err)
				assert.Zero(t, n, "%s: the value it was to replace is deleted", k)
			}
			assert.Equal(t, []string{"new1", "new2"}, requireGetMany(t, s, "ok1", "ok2"))
		})
	}
}

// TestBatchUnderHashTag checks that a batch of keys under a hash tag, which
// puts them all in one slot of the cluster, round-trips.
func TestBatchUnderHashTag(t *testing.T) {
	client := newClusterClient(t)
	ctx := batchCtx(t)
	tagged := "{" + newPrefix(t, client) + "}"
	t.Cleanup(func() { deletePrefix(t, client, tagged) })
	s, err := redisstore.New(client, &redisstore.Options[string]{KeyPrefix: tagged})
	require.NoError(t, err)
	keys := keysN("tagged", 50)
	values := make([]tiercache.CacheValue[string], len(keys))
	for i := range values {
		values[i] = val(keys[i])
	}
	require.NoError(t, s.SetMany(ctx, keys, values))
	require.Equal(t, keys, requireGetMany(t, s, keys...))
	require.NoError(t, s.Close(ctx))
}

// trips is a go-redis hook, per client or per cluster node, that counts
// what is sent: commands alone, by name, and pipelines with the commands
// in them. A pipeline is one round trip to its node. The commands go-redis
// sends to set up a new connection (HELLO, CLIENT SETINFO) are left out.
// With a barrier, each pipeline waits before it is sent until that many
// are in flight at once (or waitFor has passed).
type trips struct {
	mu      sync.Mutex
	barrier int           // 0: none
	arrived int           // pipelines at the barrier
	met     chan struct{} // closed once barrier pipelines have arrived
	nodes   map[string]*nodeTrips
}

type nodeTrips struct {
	alone     map[string]int // commands sent alone, by name
	pipelines int
	piped     map[string]int // commands sent in pipelines, by name
	mgetKeys  int            // keys of the MGETs sent, alone or piped
}

func newTrips() *trips { return &trips{nodes: map[string]*nodeTrips{}} }

// reset clears the counts and sets the barrier (0: none).
func (tr *trips) reset(barrier int) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	tr.nodes = map[string]*nodeTrips{}
	tr.barrier, tr.arrived, tr.met = barrier, 0, make(chan struct{})
}

// barrierMet reports whether the barrier's pipelines were all in flight at
// once.
func (tr *trips) barrierMet() bool {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return isClosed(tr.met)
}

// snapshot returns the counts by node.
func (tr *trips) snapshot() map[string]nodeTrips {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	out := map[string]nodeTrips{}
	for addr, n := range tr.nodes {
		out[addr] = *n
	}
	return out
}

// record counts cmds, sent to node, and returns the channel a pipeline
// waits on at the barrier (nil: none).
func (tr *trips) record(node string, pipeline bool, cmds []redis.Cmder) <-chan struct{} {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	n := tr.nodes[node]
	if n == nil {
		n = &nodeTrips{alone: map[string]int{}, piped: map[string]int{}}
		tr.nodes[node] = n
	}
	counted := false
	for _, cmd := range cmds {
		name := strings.ToLower(cmd.Name())
		if name == "hello" || name == "client" {
			continue // the set-up of a new connection
		}
		counted = true
		if pipeline {
			n.piped[name]++
		} else {
			n.alone[name]++
		}
		if name == "mget" {
			n.mgetKeys += len(cmd.Args()) - 1
		}
	}
	if !pipeline || !counted {
		return nil
	}
	n.pipelines++
	if tr.barrier == 0 {
		return nil
	}
	if tr.arrived++; tr.arrived == tr.barrier {
		close(tr.met)
	}
	return tr.met
}

// hook returns the hook that records what is sent to node.
func (tr *trips) hook(node string) redis.Hook { return tripHook{tr, node} }

type tripHook struct {
	tr   *trips
	node string
}

func (h tripHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h tripHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.tr.record(h.node, false, []redis.Cmder{cmd})
		return next(ctx, cmd)
	}
}

func (h tripHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if met := h.tr.record(h.node, true, cmds); met != nil {
			select {
			case <-met:
			case <-time.After(waitFor): // sent one after another: fails barrierMet
			}
		}
		return next(ctx, cmds)
	}
}

// commandStats returns the calls of each command INFO commandstats reports
// on the server at addr, by lowercase name.
func commandStats(t *testing.T, addr string) map[string]int {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: addr})
	defer c.Close()
	info, err := c.Info(context.Background(), "commandstats").Result()
	require.NoError(t, err)
	stats := map[string]int{}
	for line := range strings.SplitSeq(info, "\n") {
		name, rest, ok := strings.Cut(strings.TrimSpace(line), ":calls=")
		if !ok {
			continue
		}
		calls, _, _ := strings.Cut(rest, ",")
		n, err := strconv.Atoi(calls)
		require.NoError(t, err, line)
		stats[strings.TrimPrefix(name, "cmdstat_")] = n
	}
	return stats
}

func writeKeys(t *testing.T, s *redisstore.Store[string], keys []string) {
	t.Helper()
	values := make([]tiercache.CacheValue[string], len(keys))
	for i, k := range keys {
		values[i] = tiercache.CacheValue[string]{Data: "v-" + k, Expire: time.Now().Add(time.Hour)}
	}
	require.NoError(t, s.SetMany(batchCtx(t), keys, values))
}

// TestRoundTripsSingleNode checks that on a single node GetMany of 100 keys
// is one MGET, and SetMany of 100 keys one pipeline: as the client's hook
// counts them, and as the server itself counts commands (INFO
// commandstats, on a server of the test's own).
func TestRoundTripsSingleNode(t *testing.T) {
	srv := redistest.Start(t)
	for _, cte := range []bool{false, true} {
		t.Run(fmt.Sprintf("ContextTimeoutEnabled=%v", cte), func(t *testing.T) {
			client := redis.NewClient(&redis.Options{Addr: srv.Addr, ContextTimeoutEnabled: cte})
			t.Cleanup(func() { client.Close() })
			tr := newTrips()
			client.AddHook(tr.hook(srv.Addr))
			s, _ := newStore(t, client, redisstore.Options[string]{})
			keys := keysN("k", 100)
			_, err := srv.Do("CONFIG", "RESETSTAT")
			require.NoError(t, err)

			writeKeys(t, s, keys)
			require.Equal(t, map[string]nodeTrips{srv.Addr: {
				alone: map[string]int{}, pipelines: 1, piped: map[string]int{"set": 100},
			}}, tr.snapshot(), "SetMany: one pipeline of 100 SETs")
			assert.Equal(t, 100, commandStats(t, srv.Addr)["set"])

			tr.reset(0)
			_, err = srv.Do("CONFIG", "RESETSTAT")
			require.NoError(t, err)
			values, err := s.GetMany(batchCtx(t), append(keys, "absent"))
			require.NoError(t, err)
			require.NotNil(t, values[99])
			require.Nil(t, values[100])
			require.Equal(t, map[string]nodeTrips{srv.Addr: {
				alone: map[string]int{"mget": 1}, piped: map[string]int{}, mgetKeys: 101,
			}}, tr.snapshot(), "GetMany: one MGET of 101 keys")
			stats := commandStats(t, srv.Addr)
			assert.Equal(t, 1, stats["mget"], "%v", stats)
			assert.Zero(t, stats["get"], "%v", stats)
		})
	}
}

// TestRoundTripsCluster checks on the three-node cluster that GetMany and
// SetMany of 100 keys spread over every node cost one pipeline (one round
// trip) per node, sent to the nodes at once: every pipeline is held by the
// hook until all three are in flight together, which pipelines sent one
// after another never are.
func TestRoundTripsCluster(t *testing.T) {
	tr := newTrips()
	client := redis.NewClusterClient(&redis.ClusterOptions{
		Addrs: redistest.ClusterAddrs(t),
		NewClient: func(o *redis.Options) *redis.Client {
			c := redis.NewClient(o)
			c.AddHook(tr.hook(o.Addr))
			return c
		},
	})
	t.Cleanup(func() { client.Close() })
	whole := newTrips() // the ClusterClient's own hook: the batch as the caller sends it
	client.AddHook(whole.hook("cluster"))

	s, prefix := newStore(t, client, redisstore.Options[string]{})
	keys := keysN("k", 100)
	writeKeys(t, s, keys) // also loads the slots and COMMAND info
	slots := map[int64]bool{}
	for _, k := range keys {
		slot, err := client.ClusterKeySlot(batchCtx(t), prefix+k).Result()
		require.NoError(t, err)
		slots[slot] = true
	}

	check := func(t *testing.T, wantCmd string, wantCmds, wantMGetKeys int) {
		t.Helper()
		require.Equal(t, map[string]nodeTrips{"cluster": {
			alone: map[string]int{}, pipelines: 1, piped: map[string]int{wantCmd: wantCmds}, mgetKeys: wantMGetKeys,
		}}, whole.snapshot(), "the caller sends one pipeline")
		nodes := tr.snapshot()
		require.Len(t, nodes, 3, "every node holds some of the keys: %v", nodes)
		cmds, mgetKeys := 0, 0
		for addr, n := range nodes {
			assert.Equal(t, 1, n.pipelines, "%s: one round trip", addr)
			assert.Zero(t, n.alone["get"]+n.alone["mget"]+n.alone["set"], "%s: nothing sent outside the pipeline: %v", addr, n.alone)
			cmds += n.piped[wantCmd]
			mgetKeys += n.mgetKeys
		}
		assert.Equal(t, wantCmds, cmds)
		assert.Equal(t, wantMGetKeys, mgetKeys, "every key read once")
	}

	t.Run("GetMany: one MGET per slot, one pipeline per node", func(t *testing.T) {
		tr.reset(0)
		whole.reset(0)
		got, err := s.GetMany(batchCtx(t), keys)
		require.NoError(t, err)
		for i, k := range keys {
			require.Equal(t, "v-"+k, got[i].Data)
		}
		check(t, "mget", len(slots), 100)
	})
	t.Run("SetMany: one pipeline per node", func(t *testing.T) {
		tr.reset(0)
		whole.reset(0)
		writeKeys(t, s, keys)
		check(t, "set", 100, 0)
	})
	t.Run("the nodes are sent their pipelines at once", func(t *testing.T) {
		tr.reset(3)
		whole.reset(0)
		got, err := s.GetMany(batchCtx(t), keys)
		require.NoError(t, err)
		require.NotNil(t, got[0])
		check(t, "mget", len(slots), 100)
		assert.True(t, tr.barrierMet(), "the three pipelines were in flight at once: %v", tr.snapshot())
	})
	t.Run("keys under one hash tag: one MGET", func(t *testing.T) {
		tagged, err := redisstore.New(client, &redisstore.Options[string]{KeyPrefix: "{" + prefix + "}"})
		require.NoError(t, err)
		t.Cleanup(func() {
			require.NoError(t, tagged.Close(context.Background()))
			deletePrefix(t, client, "{"+prefix+"}")
		})
		writeKeys(t, tagged, keys)
		tr.reset(0)
		got, err := tagged.GetMany(batchCtx(t), keys)
		require.NoError(t, err)
		require.NotNil(t, got[99])
		nodes := tr.snapshot()
		require.Len(t, nodes, 1, "%v", nodes)
		for _, n := range nodes {
			assert.Equal(t, nodeTrips{alone: map[string]int{}, pipelines: 1, piped: map[string]int{"mget": 1}, mgetKeys: 100}, n)
		}
	})
}

// TestGetManyClusterNodeDown stops one node of a cluster of the test's
// own: GetMany returns the keys of the other nodes and a BatchError naming
// exactly the keys of the stopped one; SetMany writes the others and names
// those. (The cluster declares itself down after cluster-node-timeout, 5
// s: the test runs before.)
func TestGetManyClusterNodeDown(t *testing.T) {
	cluster := redistest.StartCluster(t)
	client := redis.NewClusterClient(&redis.ClusterOptions{
		Addrs:         cluster.Addrs(),
		MaxRedirects:  -1, // no retry: the stopped node fails at once
		DialerRetries: 1,
	})
	t.Cleanup(func() { client.Close() })
	s, err := redisstore.New[string](client, &redisstore.Options[string]{KeyPrefix: "down:"})
	require.NoError(t, err)
	t.Cleanup(func() { s.Close(context.Background()) })
	keys := keysN("k", 100)
	writeKeys(t, s, keys)

	victim := cluster.Nodes[1]
	var lost []string
	for _, k := range keys {
		node, err := client.MasterForKey(batchCtx(t), "down:"+k)
		require.NoError(t, err)
		if node.Options().Addr == victim.Addr {
			lost = append(lost, k)
		}
	}
	require.NotEmpty(t, lost)
	require.Less(t, len(lost), len(keys))
	require.NoError(t, victim.Stop())

	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Second)
	defer cancel()
	got, err := s.GetMany(ctx, keys)
	require.Len(t, got, len(keys))
	requireBatchError(t, err, "get", len(keys), lost...)
	for i, k := range keys {
		if contains(lost, k) {
			assert.Nil(t, got[i], k)
			continue
		}
		if assert.NotNil(t, got[i], k) {
			assert.Equal(t, "v-"+k, got[i].Data)
		}
	}
	assert.Contains(t, err.Error(), victim.Addr[strings.LastIndexByte(victim.Addr, ':')+1:], "the client's error names the node")

	values := make([]tiercache.CacheValue[string], len(keys))
	for i := range values {
		values[i] = val("new")
	}
	err = s.SetMany(ctx, keys, values)
	requireBatchError(t, err, "set", len(keys), lost...)
	got, err = s.GetMany(ctx, keys)
	requireBatchError(t, err, "get", len(keys), lost...)
	for i, k := range keys {
		if !contains(lost, k) {
			assert.Equal(t, "new", got[i].Data, k)
		}
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// checkBatchReturnsByDeadline runs GetMany and SetMany of 100 keys on s,
// each with an opDeadline deadline, and checks that each returns by then
// (give or take lateBy, after the deadline as timeOp sees it), failing as
// a whole with an error wrapping context.DeadlineExceeded that names a
// Redis key.
func checkBatchReturnsByDeadline(t *testing.T, s *redisstore.Store[string], prefix string) {
	t.Helper()
	keys := keysN("k", 100)
	values := make([]tiercache.CacheValue[string], len(keys))
	for i := range values {
		values[i] = tiercache.CacheValue[string]{Data: "v", Expire: time.Now().Add(time.Hour)}
	}
	ops := []struct {
		name string
		run  func(ctx context.Context) error
	}{
		{"GetMany", func(ctx context.Context) error {
			got, err := s.GetMany(ctx, keys)
			assert.Nil(t, got, "a whole failure")
			return err
		}},
		{"SetMany", func(ctx context.Context) error { return s.SetMany(ctx, keys, values) }},
	}
	for _, op := range ops {
		ctx, cancel := context.WithTimeout(context.Background(), opDeadline)
		took, ended, err := timeOp(ctx, cancel, op.run)
		t.Logf("%s returned after %v, its ctx seen ended after %v", op.name, took, ended)
		assert.LessOrEqual(t, took, max(ended, opDeadline)+lateBy, "%s took %v, its ctx seen ended after %v", op.name, took, ended)
		if assert.Error(t, err, op.name) {
			assert.ErrorIs(t, err, context.DeadlineExceeded, op.name)
			assert.Contains(t, err.Error(), prefix+"k0", op.name)
		}
	}
}

// TestBatchDeadlineFrozenServer freezes a redis-server: GetMany and
// SetMany return by their deadline through both paths, on a cold client
// and on a warm one.
func TestBatchDeadlineFrozenServer(t *testing.T) {
	for _, c := range []struct {
		name string
		cte  bool
	}{
		{"default options", false},
		{"ContextTimeoutEnabled", true},
	} {
		t.Run(c.name, func(t *testing.T) {
			srv := redistest.Start(t)
			client := redis.NewClient(&redis.Options{Addr: srv.Addr, ContextTimeoutEnabled: c.cte, ReadTimeout: frozenReadTimeout})
			defer client.Close()
			for _, warm := range []bool{false, true} {
				name := "cold"
				if warm {
					name = "warm"
				}
				t.Run(name, func(t *testing.T) {
					prefix := fmt.Sprintf("frozen:%s:", name)
					s, err := redisstore.New[string](client, &redisstore.Options[string]{KeyPrefix: prefix})
					require.NoError(t, err)
					if warm {
						writeKeys(t, s, keysN("k", 100))
						_, err := s.GetMany(context.Background(), []string{"k0"})
						require.NoError(t, err)
					}
					require.NoError(t, srv.Freeze())
					thawed := false
					defer func() {
						if !thawed {
							_ = srv.Thaw()
						}
					}()

					checkBatchReturnsByDeadline(t, s, prefix)

					require.NoError(t, srv.Thaw())
					thawed = true
					ctx, cancel := context.WithTimeout(context.Background(), 2*frozenReadTimeout)
					defer cancel()
					require.NoError(t, s.Close(ctx), "the abandoned batches end once the server answers")
				})
			}
		})
	}
}

// TestBatchDeadlineFrozenCluster freezes one node of a cluster, then
// every node, as TestDeadlineFrozenCluster does: the batches return by
// their deadline.
func TestBatchDeadlineFrozenCluster(t *testing.T) {
	cluster := redistest.StartCluster(t)
	client := redis.NewClusterClient(&redis.ClusterOptions{
		Addrs:                 cluster.Addrs(),
		ContextTimeoutEnabled: true,
		ReadTimeout:           frozenReadTimeout,
	})
	defer client.Close()
	s, err := redisstore.New[string](client, &redisstore.Options[string]{KeyPrefix: "frozen-cluster:"})
	require.NoError(t, err)
	writeKeys(t, s, keysN("k", 100)) // a warm client: slots and COMMAND info loaded

	thaw := func() {
		for _, n := range cluster.Nodes {
			_ = n.Thaw()
		}
	}
	defer thaw()
	require.NoError(t, cluster.Nodes[0].Freeze())
	t.Run("one node frozen", func(t *testing.T) { checkBatchReturnsByDeadline(t, s, "frozen-cluster:") })
	for _, n := range cluster.Nodes[1:] {
		require.NoError(t, n.Freeze())
	}
	t.Run("every node frozen", func(t *testing.T) { checkBatchReturnsByDeadline(t, s, "frozen-cluster:") })
	thaw()
	ctx, cancel := context.WithTimeout(context.Background(), 4*frozenReadTimeout)
	defer cancel()
	require.NoError(t, s.Close(ctx))
}

// TestBatchErrorMessage checks the message of a BatchError with many
// failed keys: the first five are spelled out.
func TestBatchErrorMessage(t *testing.T) {
	client := newClient(t)
	ctx := batchCtx(t)
	s, prefix := newStore(t, client, redisstore.Options[string]{})
	keys := keysN("bad", 8)
	for _, k := range keys {
		require.NoError(t, client.Set(ctx, prefix+k, "foreign", 0).Err())
	}
	_, err := s.GetMany(ctx, append([]string{"missing"}, keys...))
	requireBatchError(t, err, "get", 9, keys...)
	want := fmt.Sprintf(`redisstore: get: 8 of 9 keys failed: "%sbad0": invalid entry: no magic bytes (foreign or corrupt value of 7 bytes); `, prefix)
	assert.True(t, strings.HasPrefix(err.Error(), want), err)
	assert.True(t, strings.HasSuffix(err.Error(), `; and 3 more`), err)
	assert.Equal(t, 5, strings.Count(err.Error(), "invalid entry"), err)
}
