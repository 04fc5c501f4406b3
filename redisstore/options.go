package redisstore

import (
	"fmt"

	"github.com/tiercache/tiercache"
)

// DefaultMaxValueBytes is the limit on an encoded entry (header and payload)
// when Options.MaxValueBytes is zero: 4 MiB, room for a 1 MiB value many
// times over while keeping a runaway value from filling Redis or the
// memory of every reader.
const DefaultMaxValueBytes = 4 << 20

// maxRedisString is the largest string Redis stores by default
// (proto-max-bulk-len, 512 MB).
const maxRedisString = 512 << 20

// SuggestedCoalesceGets is a good first value of Options.CoalesceGets on a
// single node: at most this many MGETs of coalesced Gets are in flight at
// once. Four keep a batch's wait short (a Get waits for a free dispatcher
// at most one round trip) and leave most of go-redis's pool (10
// connections per CPU) to Set, Delete and GetMany; Redis runs one command
// at a time, so more MGETs in flight mostly make each batch smaller. In the
// L2-heavy workload of the comparison benchmark (64 callers, Redis on
// loopback, 2 CPUs) four cost 5-10% less CPU per call than eight, at the
// same throughput on a Redis 2 ms away.
const SuggestedCoalesceGets = 4

// maxCoalesceGets bounds Options.CoalesceGets and CoalesceWrites: each
// dispatcher is a goroutine, and more batches in flight than a pool has
// connections only queue in go-redis.
const maxCoalesceGets = 1024

// Options configures a Store. The zero value (and a nil *Options) is valid:
// no key prefix, JSON, entries up to DefaultMaxValueBytes, one GET per Get.
type Options[T any] struct {
	// KeyPrefix is prepended to every key: the Redis key of key k is
	// KeyPrefix+k. Default: none. With Redis Cluster, a prefix holding a
	// hash tag ("{users}:") puts every key in one slot, on one node.
	KeyPrefix string

	// Codec encodes Data into the payload of an entry and back. Default
	// (nil): tiercache.JSONCodec[T].
	Codec tiercache.Codec[T]

	// MaxValueBytes limits the size of an encoded entry, header and payload
	// together: a Set above it fails with ErrValueTooLarge (and deletes the
	// key, see Store.Set), and so does a Get that reads one. Zero means
	// DefaultMaxValueBytes (4 MiB); it must not be negative nor above 512
	// MiB, the largest string Redis stores by default.
	MaxValueBytes int

	// CoalesceGets is the number of dispatcher goroutines that gather
	// concurrent Gets into one MGET each (see "Coalesced Gets" in the
	// package documentation): at most this many MGETs of coalesced Gets are
	// in flight at once, each reading every key queued while the others
	// were. Zero (the default): off, every Get sends its own GET.
	// SuggestedCoalesceGets (4) is a good start on a *redis.Client (a single
	// node, or Sentinel) serving many concurrent Gets, above all when Redis
	// is far or slow. On a *redis.ClusterClient or a *redis.Ring a batch
	// spans nodes and waits for the slowest, so a node that stalls stalls
	// the coalesced Gets of keys on the others. At most 1024. The
	// dispatchers start with the first Get and end with Close: a Store that
	// coalesces Gets must be closed.
	CoalesceGets int

	// CoalesceWrites is the number of dispatcher goroutines that gather
	// concurrent Sets and Deletes into one pipeline each (see "Coalesced
	// writes" in the package documentation): at most this many pipelines of
	// coalesced writes are in flight at once, each sending, in the order
	// they were queued, every write queued while the others were. Zero (the
	// default): off, every write sends its own command.
	// SuggestedCoalesceGets is a good start for it too. At most 1024. The
	// dispatchers start with the first write and end with Close: a Store
	// that coalesces writes must be closed.
	CoalesceWrites int
}

// validate reports the first invalid field, in an error prefixed
// "redisstore:".
func (o *Options[T]) validate() error {
	if o.MaxValueBytes < 0 || o.MaxValueBytes > maxRedisString {
		return fmt.Errorf("redisstore: Options.MaxValueBytes = %d: must be in [0, %d] (0: DefaultMaxValueBytes)", o.MaxValueBytes, maxRedisString)
	}
	if o.CoalesceGets < 0 || o.CoalesceGets > maxCoalesceGets {
		return fmt.Errorf("redisstore: Options.CoalesceGets = %d: must be in [0, %d] (0: off)", o.CoalesceGets, maxCoalesceGets)
	}
	if o.CoalesceWrites < 0 || o.CoalesceWrites > maxCoalesceGets {
		return fmt.Errorf("redisstore: Options.CoalesceWrites = %d: must be in [0, %d] (0: off)", o.CoalesceWrites, maxCoalesceGets)
	}
	return nil
}
