package redisstore

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/tiercache/tiercache"
)

// Store is a tiercache.Backend kept in Redis: one Redis string per key,
// holding an entry (a small header and the Codec's payload, see the package
// documentation) that Redis itself drops at the value's Expire. It is safe
// for concurrent use. Create it with New.
//
// Every operation sends one command: Set a SET (with PXAT when the value
// expires) or a DEL, Delete a DEL, and Get a GET. Under load, coalescing
// (Options.CoalesceGets and CoalesceWrites, on by default over a
// *redis.Client) shares round trips instead: a Get that finds other Gets
// in flight sends its key in one MGET with the keys of the others queued,
// and a write its command in one pipeline with theirs. Every operation
// returns by its ctx's deadline or cancellation, whatever the client's
// options (see the package documentation for how and what it costs). The Store does not own
// the client: closing the client is the caller's business.
type Store[T any] struct {
	client redis.UniversalClient
	prefix string
	codec  tiercache.Codec[T]
	max    int
	// direct: the client bounds its socket I/O by each command's ctx's
	// deadline, so a command whose ctx ends only at its deadline (a
	// deadlineOnly) runs on the calling goroutine; see runsDirect.
	direct  bool
	closed  atomic.Bool
	pending pending    // commands run by guarded, and the coalescers' dispatchers; waited for by Close
	gets    *coalescer // nil: Gets are not coalesced
	writes  *coalescer // nil: Sets and Deletes are not coalesced
}

var _ tiercache.Backend[string] = (*Store[string])(nil)

// New returns a Store over client configured by opts; nil opts means the
// defaults. client may be any redis.UniversalClient: a *redis.Client (single
// node, or Sentinel through redis.NewFailoverClient), a *redis.ClusterClient
// or a *redis.Ring. New validates opts, returning an error prefixed
// "redisstore:", never modifies *opts, sends no command and starts no
// goroutine.
func New[T any](client redis.UniversalClient, opts *Options[T]) (*Store[T], error) {
	if isNilClient(client) {
		return nil, errNilClient
	}
	var o Options[T]
	if opts != nil {
		o = *opts
	}
	if err := o.validate(); err != nil {
		return nil, err
	}
	s := &Store[T]{client: client, prefix: o.KeyPrefix, codec: o.Codec, max: o.MaxValueBytes, direct: boundsIOByContext(client)}
	if s.codec == nil {
		s.codec = JSONCodec[T]{}
	}
	if s.max == 0 {
		s.max = DefaultMaxValueBytes
	}
	if n := coalescers(o.CoalesceGets, client); n > 0 {
		s.gets = newCoalescer(n, s.readRaw, &s.pending)
	}
	if n := coalescers(o.CoalesceWrites, client); n > 0 {
		s.writes = newWriteCoalescer(n, s.processPipeline, &s.pending)
	}
	return s, nil
}

// Get returns the value of key, or (nil, nil) when Redis has none or the
// value's Expire has passed. Bytes that are not an entry this package reads
// (foreign, truncated, from a newer format version, or a payload the Codec
// cannot decode) and entries above MaxValueBytes make Get fail with an error
// that names the key and wraps ErrInvalidEntry or ErrValueTooLarge.
//
// With coalesced Gets (Options.CoalesceGets), a Get that finds other Gets
// of the Store in flight queues its key for the next MGET and waits for its
// answer or for ctx to end, whichever comes first; it decodes its own
// entry, so a bad entry fails this Get only, with the errors above. On such a Store a key that holds something other than a
// string reads as a miss, as MGET answers for it, whichever way its Get
// went; with coalescing off, Get fails with Redis's WRONGTYPE error.
//
// The bytes given to Codec.Unmarshal share memory with the string go-redis
// read: the Codec may keep them but must not modify them.
func (s *Store[T]) Get(ctx context.Context, key string) (*tiercache.CacheValue[T], error) {
	rkey := s.prefix + key
	if s.gets != nil {
		queue := s.gets.enter()
		defer s.gets.exit()
		if queue {
			return s.getCoalesced(ctx, rkey)
		}
	}
	cmd := redis.NewStringCmd(ctx, "get", rkey)
	if err := s.process(ctx, cmd); err != nil {
		if err == redis.Nil || s.gets != nil && isWrongType(err) {
			return nil, nil
		}
		return nil, &opError{"get", rkey, err}
	}
	return s.decoded(rkey, cmd.Val())
}

// getCoalesced is Get through the Store's coalescer.
func (s *Store[T]) getCoalesced(ctx context.Context, rkey string) (*tiercache.CacheValue[T], error) {
	if err := s.ready(ctx); err != nil {
		return nil, &opError{"get", rkey, err}
	}
	r, err := s.gets.get(ctx, rkey)
	if err != nil {
		if isWrongType(err) { // a GET of its own in the batch (a Ring's): a miss, as MGET answers
			return nil, nil
		}
		return nil, &opError{"get", rkey, err}
	}
	if !r.found {
		return nil, nil
	}
	return s.decoded(rkey, r.val)
}

// decoded returns Get's answer for val, the string Redis holds at rkey.
func (s *Store[T]) decoded(rkey, val string) (*tiercache.CacheValue[T], error) {
	// Redis drops the key at Expire by its own clock; this one decides.
	v, ok, err := s.decode(val, time.Now().UnixMilli())
	if err != nil {
		return nil, &opError{"get", rkey, err}
	}
	if !ok {
		return nil, nil
	}
	return &v, nil
}

// Set stores v for key with one command. A value that expires is written
// with SET key entry PXAT Expire, so that Redis drops it at Expire (to the
// millisecond, rounded down); one that never expires, with no TTL. A value
// whose Expire has already passed is not stored: Set deletes the key
// instead.
//
// Set fails without storing v, with an error naming the key, when v cannot
// be encoded: the Codec fails or panics, an instant is out of range, or the
// entry is above MaxValueBytes (ErrValueTooLarge). It then deletes the key
// instead (still one command), so that readers do not go on seeing the
// value v was meant to replace; a failure of that delete is joined to the
// error. A negative v is stored without its Data.
//
// With coalesced writes (Options.CoalesceWrites), Set queues its command for
// the next pipeline and waits for its answer or for ctx to end, whichever
// comes first, as a coalesced Get does; its error is its own command's.
func (s *Store[T]) Set(ctx context.Context, key string, v tiercache.CacheValue[T]) error {
	rkey := s.prefix + key
	h, err := headerOf(&v)
	if err != nil {
		return s.refuse(ctx, rkey, err)
	}
	if h.hasExpire && h.expire <= time.Now().UnixMilli() {
		if err := s.processWrite(ctx, redis.NewIntCmd(ctx, "del", rkey)); err != nil {
			if errors.Is(err, ErrClosed) { // as refuse says it
				return &opError{"set", rkey, err}
			}
			return &opError{"set", rkey, fmt.Errorf("delete of a value already expired: %w", err)}
		}
		return nil
	}
	b, err := encodeEntry(s.codec, h, &v)
	if err != nil {
		return s.refuse(ctx, rkey, err)
	}
	if len(b) > s.max {
		return s.refuse(ctx, rkey, fmt.Errorf("%w: the entry is %d bytes, above MaxValueBytes (%d)", ErrValueTooLarge, len(b), s.max))
	}
	var cmd *redis.StatusCmd
	if h.hasExpire {
		cmd = redis.NewStatusCmd(ctx, "set", rkey, b, "pxat", h.expire)
	} else {
		cmd = redis.NewStatusCmd(ctx, "set", rkey, b)
	}
	if err := s.processWrite(ctx, cmd); err != nil {
		return &opError{"set", rkey, err}
	}
	return nil
}

// processWrite sends cmd, a SET or a DEL, through the coalescer of writes
// when the Store has one (Options.CoalesceWrites), otherwise as process
// does; the errors are the same.
func (s *Store[T]) processWrite(ctx context.Context, cmd redis.Cmder) error {
	if s.writes == nil {
		return s.process(ctx, cmd)
	}
	queue := s.writes.enter()
	defer s.writes.exit()
	if !queue {
		return s.process(ctx, cmd)
	}
	if err := s.ready(ctx); err != nil {
		return err
	}
	return s.writes.exec(ctx, cmd)
}

// refuse ends a Set that cannot store its value: it deletes the key and
// returns cause, joined with the delete's failure if any.
func (s *Store[T]) refuse(ctx context.Context, rkey string, cause error) error {
	if err := s.processWrite(ctx, redis.NewIntCmd(ctx, "del", rkey)); err != nil {
		if errors.Is(err, ErrClosed) {
			return &opError{"set", rkey, err}
		}
		cause = errors.Join(cause, fmt.Errorf("delete of the previous value: %w", err))
	}
	return &opError{"set", rkey, cause}
}

// Delete removes key with one DEL, coalesced as Set's command is. A missing
// key is not an error.
func (s *Store[T]) Delete(ctx context.Context, key string) error {
	rkey := s.prefix + key
	if err := s.processWrite(ctx, redis.NewIntCmd(ctx, "del", rkey)); err != nil {
		return &opError{"delete", rkey, err}
	}
	return nil
}

// Close stops the Store: every later operation returns ErrClosed, and so
// do coalesced Gets and writes still queued. It then waits until the
// dispatchers of coalesced Gets and writes have answered their batches in
// flight and exited, and until the commands that callers abandoned when
// their ctx ended (see the package documentation) have ended, or until ctx
// ends, when it returns ctx's error. Close does not close the client, which
// the caller owns; calling it is needed only to make sure no goroutine of
// the Store is left (a dispatcher ends with the last batch it finds queued,
// an abandoned command when Redis answers it or the client gives up),
// before closing the client or at the end of a test. It is idempotent.
func (s *Store[T]) Close(ctx context.Context) error {
	s.closed.Store(true)
	if s.gets != nil {
		s.gets.close()
	}
	if s.writes != nil {
		s.writes.close()
	}
	if err := s.pending.closeAndWait(ctx); err != nil {
		return fmt.Errorf("redisstore: close: %w", err)
	}
	return nil
}

// isWrongType reports whether err is Redis's answer to a command on a key
// holding the wrong kind of value.
func isWrongType(err error) bool {
	var re redis.Error
	return errors.As(err, &re) && strings.HasPrefix(re.Error(), "WRONGTYPE")
}
