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

// Options configures a Store. The zero value (and a nil *Options) is valid:
// no key prefix, JSON, entries up to DefaultMaxValueBytes.
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
}

// validate reports the first invalid field, in an error prefixed
// "redisstore:".
func (o *Options[T]) validate() error {
	if o.MaxValueBytes < 0 || o.MaxValueBytes > maxRedisString {
		return fmt.Errorf("redisstore: Options.MaxValueBytes = %d: must be in [0, %d] (0: DefaultMaxValueBytes)", o.MaxValueBytes, maxRedisString)
	}
	return nil
}
