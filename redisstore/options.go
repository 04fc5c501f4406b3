package redisstore

import (
	"fmt"

	"github.com/redis/go-redis/v9"
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

// SuggestedCoalesceGets is the number of dispatchers that Options.CoalesceGets
// and CoalesceWrites give a Store over a *redis.Client by default, and a
// good first value on other clients: at most this many MGETs of coalesced
// Gets are in flight at once. Four keep a batch's wait short (a Get waits for a free dispatcher
// at most one round trip) and leave most of go-redis's pool (10
// connections per CPU) to Set, Delete and GetMany; Redis runs one command
// at a time, so more MGETs in flight mostly make each batch smaller. In the
// L2-heavy workload of the comparison benchmark (64 callers, Redis on
// loopback, 2 CPUs) four cost 5-10% less CPU per call than eight, at the
// same throughput on a Redis 2 ms away.
const SuggestedCoalesceGets = 4

// CoalesceOff, as Options.CoalesceGets or CoalesceWrites, turns coalescing
// off: every operation sends its own command.
const CoalesceOff = -1

// maxCoalesceGets bounds Options.CoalesceGets and CoalesceWrites: each
// dispatcher is a goroutine, and more batches in flight than a pool has
// connections only queue in go-redis.
const maxCoalesceGets = 1024

// Options configures a Store. The zero value (and a nil *Options) is valid:
// no key prefix, JSON, entries up to DefaultMaxValueBytes, and on a
// *redis.Client Gets and writes coalesced under load (SuggestedCoalesceGets
// dispatchers each).
type Options[T any] struct {
	// KeyPrefix is prepended to every key: the Redis key of key k is
	// KeyPrefix+k. Default: none. With Redis Cluster, a prefix holding a
	// hash tag ("{users}:") puts every key in one slot, on one node.
	KeyPrefix string

	// Codec encodes Data into the payload of an entry and back. Default
	// (nil): JSONCodec[T], which writes what tiercache.JSONCodec writes and
	// reads it faster.
	Codec tiercache.Codec[T]

	// MaxValueBytes limits the size of an encoded entry, header and payload
	// together: a Set above it fails with ErrValueTooLarge (and deletes the
	// key, see Store.Set), and so does a Get that reads one. Zero means
	// DefaultMaxValueBytes (4 MiB); it must not be negative nor above 512
	// MiB, the largest string Redis stores by default.
	MaxValueBytes int

	// CoalesceGets is the number n of dispatcher goroutines that gather
	// concurrent Gets into one MGET each (see "Coalesced Gets" in the
	// package documentation): a Get that finds no other in flight sends
	// its own GET; one that finds others queues, and at most n MGETs of
	// queued Gets are in flight at once, each reading every key queued
	// while the others were.
	//
	// Zero (the default) means SuggestedCoalesceGets on a *redis.Client (a
	// single node, or Sentinel) and off on any other client: on a
	// *redis.ClusterClient or a *redis.Ring a batch spans nodes and waits
	// for the slowest, so a node that stalls would stall the coalesced Gets
	// of keys on the others; set it there to coalesce anyway. -1
	// (CoalesceOff): off, every Get sends its own GET. At most 1024. The dispatchers run only
	// while Gets are queued: an idle Store holds no goroutine.
	CoalesceGets int

	// CoalesceWrites is the number n of dispatcher goroutines that gather
	// concurrent Sets and Deletes into one pipeline each (see "Coalesced
	// writes" in the package documentation): a write that finds no other in
	// flight sends its own command; one that finds others queues, and at
	// most n pipelines of queued writes are in flight at once, each sending,
	// in the order they were queued, every write queued while the others
	// were. Zero (the default) and -1 mean what they mean for CoalesceGets.
	CoalesceWrites int
}

// validate reports the first invalid field, in an error prefixed
// "redisstore:".
func (o *Options[T]) validate() error {
	if o.MaxValueBytes < 0 || o.MaxValueBytes > maxRedisString {
		return fmt.Errorf("redisstore: Options.MaxValueBytes = %d: must be in [0, %d] (0: DefaultMaxValueBytes)", o.MaxValueBytes, maxRedisString)
	}
	if o.CoalesceGets < CoalesceOff || o.CoalesceGets > maxCoalesceGets {
		return fmt.Errorf("redisstore: Options.CoalesceGets = %d: must be -1 (off), 0 (the default) or in [1, %d]", o.CoalesceGets, maxCoalesceGets)
	}
	if o.CoalesceWrites < CoalesceOff || o.CoalesceWrites > maxCoalesceGets {
		return fmt.Errorf("redisstore: Options.CoalesceWrites = %d: must be -1 (off), 0 (the default) or in [1, %d]", o.CoalesceWrites, maxCoalesceGets)
	}
	return nil
}

// coalescers returns the number of dispatchers that Options.CoalesceGets
// or CoalesceWrites, set to n, gives a Store over client: n itself, or for
// the default (0) SuggestedCoalesceGets on a *redis.Client and none on
// other clients; 0 means no coalescing.
func coalescers(n int, client redis.UniversalClient) int {
	switch {
	case n == CoalesceOff:
		return 0
	case n > 0:
		return n
	}
	if _, ok := client.(*redis.Client); ok {
		return SuggestedCoalesceGets
	}
	return 0
}
