package redisstore

import (
	"errors"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"
	"github.com/tiercache/tiercache"
)

// ErrInvalidEntry is wrapped by the error of a Get that read bytes it cannot
// turn into a value: a foreign or corrupt value, a truncated header, an
// entry of a newer format version, or a payload the Codec cannot decode. A
// tiercache Cache counts such a read as an L2 failure and carries on as on a
// miss. It wraps tiercache.ErrBadEntry: Redis itself is healthy, and the
// cache's circuit breaker does not count the failure.
var ErrInvalidEntry error = &badEntry{"redisstore: invalid entry"}

// ErrValueTooLarge is wrapped by the error of a Set whose entry (header and
// payload) is larger than Options.MaxValueBytes, and of a Get that reads one.
// It wraps tiercache.ErrBadEntry.
var ErrValueTooLarge error = &badEntry{"redisstore: value too large"}

// badEntry is a sentinel error that wraps tiercache.ErrBadEntry without
// spelling it out, so that the message of a failed Get reads "redisstore:
// get "k": invalid entry: no magic bytes ...".
type badEntry struct{ msg string }

func (e *badEntry) Error() string { return e.msg }
func (e *badEntry) Unwrap() error { return tiercache.ErrBadEntry }

// ErrClosed is returned by every operation on a Store after Close. It is
// also tiercache.ErrClosed to errors.Is, as a closed otterstore's error is,
// so that code checking a Backend's error needs only the latter.
var ErrClosed error = closedError{}

// closedError is ErrClosed.
type closedError struct{}

func (closedError) Error() string { return "redisstore: store closed" }

// Is makes errors.Is(ErrClosed, tiercache.ErrClosed) hold.
func (closedError) Is(target error) bool { return target == tiercache.ErrClosed }

// errNilClient is returned by New for a nil client.
var errNilClient = errors.New("redisstore: New: nil client")

// isNilClient reports whether client is nil, or a nil pointer of one of
// go-redis's client types, which would panic at its first use (in an
// Invalidator, on a goroutine of its own).
func isNilClient(client redis.UniversalClient) bool {
	switch c := client.(type) {
	case nil:
		return true
	case *redis.Client:
		return c == nil
	case *redis.ClusterClient:
		return c == nil
	case *redis.Ring:
		return c == nil
	}
	return false
}

// opError is the error of one operation on one key: it names the operation
// and the Redis key and wraps the cause.
type opError struct {
	op  string // "get", "set" or "delete"
	key string // the Redis key: Options.KeyPrefix + the caller's key
	err error
}

func (e *opError) Error() string {
	// The cause's own "redisstore: " (a sentinel's) would repeat ours.
	return "redisstore: " + e.op + " " + strconv.Quote(e.key) + ": " + strings.TrimPrefix(e.err.Error(), "redisstore: ")
}

func (e *opError) Unwrap() error { return e.err }
