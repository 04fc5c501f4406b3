package redisstore

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"github.com/redis/go-redis/v9"
	"github.com/tiercache/tiercache"
)

var _ tiercache.BatchBackend[string] = (*Store[string])(nil)

// GetMany returns the values of keys in a slice of len(keys), in the same
// order: the value of keys[i] at index i, or nil where Redis has none or
// the value's Expire has passed (as for Get, this process's clock decides).
// A key may appear more than once.
//
// It costs one round trip per Redis node the keys live on (see Batches in
// the package documentation): one MGET on a single node, one pipeline of
// one MGET per hash slot on a Cluster, sent to every node at once.
//
// The error says which entries are failures rather than misses:
//
//   - A nil slice: the call failed as a whole and nothing is known of any
//     key: ctx ended first (errors.Is(err, ctx.Err()) holds), the Store is
//     closed (ErrClosed), or the single MGET failed.
//   - A full slice and a *BatchError: the keys the BatchError names failed,
//     and only those; their entries are nil, and every other nil entry is
//     a miss. A key fails when its entry is not one this package reads
//     (ErrInvalidEntry, as for Get) or is larger than MaxValueBytes
//     (ErrValueTooLarge), or when the command that read it failed (a
//     Cluster node that is down fails the keys it holds). errors.Is and
//     errors.As see each key's error through the BatchError.
//
// A caller that treats every nil entry of a call that returned an error as
// failed, as tiercache.BatchBackend allows, errs on the safe side.
//
// Unlike Get, GetMany reads a key that holds something other than a string
// as a miss on a single node and on a Cluster: MGET answers nil for it.
//
// As for Get, the bytes given to Codec.Unmarshal share memory with the
// strings go-redis read: the Codec may keep them but must not modify them.
func (s *Store[T]) GetMany(ctx context.Context, keys []string) ([]*tiercache.CacheValue[T], error) {
	if len(keys) == 0 {
		if err := s.ready(ctx); err != nil {
			return nil, &manyError{"get", nil, err}
		}
		return []*tiercache.CacheValue[T]{}, nil
	}
	rkeys := s.redisKeys(keys)
	raws, err := s.readRaw(ctx, rkeys)
	if err != nil {
		return nil, &manyError{"get", rkeys, err}
	}

	now := time.Now().UnixMilli()
	hits := 0
	for _, r := range raws {
		if r.found {
			hits++
		}
	}
	values := make([]*tiercache.CacheValue[T], len(keys))
	decoded := make([]tiercache.CacheValue[T], 0, hits) // one allocation for every hit
	var failed failures
	for i, r := range raws {
		if r.err != nil {
			failed.add(i, &opError{"get", rkeys[i], r.err})
			continue
		}
		if !r.found {
			continue
		}
		v, ok, err := s.decode(r.val, now)
		switch {
		case err != nil:
			failed.add(i, &opError{"get", rkeys[i], err})
		case ok:
			decoded = append(decoded, v)
			values[i] = &decoded[len(decoded)-1]
		}
	}
	if err := failed.batchError("get", keys); err != nil {
		return values, err
	}
	return values, nil
}

// SetMany stores values[i] under keys[i] for every i, as Set does: SET key
// entry PXAT Expire (no TTL without Expire), or DEL for a value whose
// Expire has already passed. Every command goes in one pipeline: one round
// trip per Redis node the keys live on. When a key appears more than once,
// the commands reach Redis in the order of the call, so the last value
// wins.
//
// A value that cannot be stored (the Codec fails or panics, an instant is
// out of range, or the entry is above MaxValueBytes) fails its key, and the
// key is deleted instead, in the same pipeline, as Set does. When keys and
// values differ in length, SetMany fails and sends nothing.
//
// A *BatchError names the keys that failed, and only those: the other keys
// were written. Any other error means the call failed as a whole (ctx
// ended first, with errors.Is(err, ctx.Err()); the Store is closed): no key
// can be assumed written, nor unwritten, since commands abandoned at ctx's
// deadline may still reach Redis.
func (s *Store[T]) SetMany(ctx context.Context, keys []string, values []tiercache.CacheValue[T]) error {
	if len(keys) != len(values) {
		return fmt.Errorf("redisstore: set many: %d keys but %d values; nothing written", len(keys), len(values))
	}
	if len(keys) == 0 {
		if err := s.ready(ctx); err != nil {
			return &manyError{"set", nil, err}
		}
		return nil
	}
	rkeys := s.redisKeys(keys)
	cmds := make([]redis.Cmder, len(keys))
	var refused []error // per key: why its value was not stored; nil until a value is refused
	now := time.Now().UnixMilli()
	for i := range keys {
		cmd, cause := s.setCmd(ctx, rkeys[i], &values[i], now)
		cmds[i] = cmd
		if cause != nil {
			if refused == nil {
				refused = make([]error, len(keys))
			}
			refused[i] = cause
		}
	}
	if err := s.processPipeline(ctx, cmds); err != nil {
		return &manyError{"set", rkeys, err}
	}
	var failed failures
	for i, cmd := range cmds {
		var cause error
		if refused != nil {
			cause = refused[i]
		}
		switch err := cmd.Err(); {
		case err == nil && cause == nil:
			continue
		case err == nil:
		case cause != nil:
			cause = errors.Join(cause, fmt.Errorf("delete of the previous value: %w", err))
		case cmd.Name() == "del":
			cause = fmt.Errorf("delete of a value already expired: %w", err)
		default:
			cause = err
		}
		failed.add(i, &opError{"set", rkeys[i], cause})
	}
	if err := failed.batchError("set", keys); err != nil {
		return err
	}
	return nil
}

// setCmd returns the command that stores v under rkey, as Set sends it: a
// SET, or a DEL when v has expired by now (unix ms). When v cannot be
// stored, it returns a DEL and the reason.
func (s *Store[T]) setCmd(ctx context.Context, rkey string, v *tiercache.CacheValue[T], now int64) (redis.Cmder, error) {
	h, err := headerOf(v)
	if err != nil {
		return redis.NewIntCmd(ctx, "del", rkey), err
	}
	if h.hasExpire && h.expire <= now {
		return redis.NewIntCmd(ctx, "del", rkey), nil
	}
	b, err := encodeEntry(s.codec, h, v)
	if err != nil {
		return redis.NewIntCmd(ctx, "del", rkey), err
	}
	if len(b) > s.max {
		return redis.NewIntCmd(ctx, "del", rkey), fmt.Errorf("%w: the entry is %d bytes, above MaxValueBytes (%d)", ErrValueTooLarge, len(b), s.max)
	}
	if h.hasExpire {
		return redis.NewStatusCmd(ctx, "set", rkey, b, "pxat", h.expire), nil
	}
	return redis.NewStatusCmd(ctx, "set", rkey, b), nil
}

// redisKeys returns the Redis key of each key.
func (s *Store[T]) redisKeys(keys []string) []string {
	rkeys := make([]string, len(keys))
	for i, key := range keys {
		rkeys[i] = s.prefix + key
	}
	return rkeys
}

// decode turns the value of a key into a CacheValue, as Get does: ok is
// false when the value's Expire is not after now (unix ms).
func (s *Store[T]) decode(val string, now int64) (v tiercache.CacheValue[T], ok bool, err error) {
	if len(val) > s.max {
		return v, false, fmt.Errorf("%w: %d bytes, above MaxValueBytes (%d)", ErrValueTooLarge, len(val), s.max)
	}
	// go-redis made val for this reply alone; the Codec must not modify it.
	h, payload, err := parseHeader(unsafe.Slice(unsafe.StringData(val), len(val)))
	if err != nil {
		return v, false, err
	}
	if h.hasExpire && h.expire <= now {
		return v, false, nil
	}
	v, err = decodePayload(s.codec, h, payload)
	return v, err == nil, err
}

// raw is what Redis answered for one key of a GetMany.
type raw struct {
	val   string
	found bool
	err   error // the command that read the key failed
}

// readRaw reads rkeys in one round trip per node, as GetMany and
// coalesced Gets do: one MGET on a *redis.Client, one MGET per hash slot in
// one pipeline on a *redis.ClusterClient, one GET per key in one pipeline
// on any other client. It returns a raw per key, or an error when the read
// failed as a whole.
func (s *Store[T]) readRaw(ctx context.Context, rkeys []string) ([]raw, error) {
	switch s.client.(type) {
	case *redis.Client:
		return s.mget(ctx, rkeys)
	case *redis.ClusterClient:
		return s.mgetBySlot(ctx, rkeys)
	default:
		return s.pipelinedGets(ctx, rkeys)
	}
}

// mget reads rkeys with one MGET: a single node holds every key.
func (s *Store[T]) mget(ctx context.Context, rkeys []string) ([]raw, error) {
	cmd := mgetCmd(ctx, rkeys, nil)
	if err := s.process(ctx, cmd); err != nil {
		return nil, err
	}
	raws := make([]raw, len(rkeys))
	if err := readMGet(cmd, raws, nil); err != nil {
		return nil, err
	}
	return raws, nil
}

// mgetBySlot reads rkeys from a Cluster with one MGET per hash slot (a
// Cluster refuses an MGET across slots), all in one pipeline, which
// go-redis splits by node and sends to every node at once.
func (s *Store[T]) mgetBySlot(ctx context.Context, rkeys []string) ([]raw, error) {
	slots := make([]uint16, len(rkeys))
	order := make([]int, len(rkeys)) // indices of rkeys, grouped by slot
	for i, rkey := range rkeys {
		slots[i] = keySlot(rkey)
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int { return int(slots[a]) - int(slots[b]) })
	var cmds []redis.Cmder
	var groups [][]int // groups[g]: the indices cmds[g] reads
	for start := 0; start < len(order); {
		end := start + 1
		for end < len(order) && slots[order[end]] == slots[order[start]] {
			end++
		}
		group := order[start:end]
		cmds = append(cmds, mgetCmd(ctx, rkeys, group))
		groups = append(groups, group)
		start = end
	}
	if err := s.processPipeline(ctx, cmds); err != nil {
		return nil, err
	}
	raws := make([]raw, len(rkeys))
	for g, cmd := range cmds {
		if err := readMGet(cmd.(*redis.SliceCmd), raws, groups[g]); err != nil {
			for _, i := range groups[g] {
				raws[i].err = err
			}
		}
	}
	return raws, nil
}

// pipelinedGets reads rkeys with one GET each, in one pipeline: a client
// of another kind (a Ring, which spreads keys by a hash of its own, or a
// wrapper) routes each GET itself; go-redis's Ring sends one pipeline per
// shard, at once.
func (s *Store[T]) pipelinedGets(ctx context.Context, rkeys []string) ([]raw, error) {
	cmds := make([]redis.Cmder, len(rkeys))
	for i, rkey := range rkeys {
		cmds[i] = redis.NewStringCmd(ctx, "get", rkey)
	}
	if err := s.processPipeline(ctx, cmds); err != nil {
		return nil, err
	}
	raws := make([]raw, len(rkeys))
	for i, cmd := range cmds {
		val, err := cmd.(*redis.StringCmd).Result()
		switch {
		case err == redis.Nil:
		case err != nil:
			raws[i].err = err
		default:
			raws[i] = raw{val: val, found: true}
		}
	}
	return raws, nil
}

// mgetCmd returns an MGET of the keys of rkeys at the indices group, or
// of every key when group is nil.
func mgetCmd(ctx context.Context, rkeys []string, group []int) *redis.SliceCmd {
	if group == nil {
		args := make([]any, 1+len(rkeys))
		args[0] = "mget"
		for i, rkey := range rkeys {
			args[1+i] = rkey
		}
		return redis.NewSliceCmd(ctx, args...)
	}
	args := make([]any, 1+len(group))
	args[0] = "mget"
	for j, i := range group {
		args[1+j] = rkeys[i]
	}
	return redis.NewSliceCmd(ctx, args...)
}

// readMGet stores the answer of cmd, an MGET of the keys at the indices
// group (every key when group is nil), into raws.
func readMGet(cmd *redis.SliceCmd, raws []raw, group []int) error {
	vals, err := cmd.Result()
	if err != nil {
		return err
	}
	want := len(raws)
	if group != nil {
		want = len(group)
	}
	if len(vals) != want {
		return fmt.Errorf("MGET of %d keys answered %d values", want, len(vals))
	}
	for j, val := range vals {
		i := j
		if group != nil {
			i = group[j]
		}
		switch val := val.(type) {
		case nil:
		case string:
			raws[i] = raw{val: val, found: true}
		default:
			raws[i].err = fmt.Errorf("MGET answered a %T", val)
		}
	}
	return nil
}

// keySlot returns the Redis Cluster hash slot of key: the CRC16 (XMODEM)
// of the key, or of its hash tag (what lies between the first '{' and the
// first '}' after it, when that is not empty), modulo 16384.
func keySlot(key string) uint16 {
	if open := strings.IndexByte(key, '{'); open >= 0 {
		if n := strings.IndexByte(key[open+1:], '}'); n > 0 {
			key = key[open+1 : open+1+n]
		}
	}
	var crc uint16
	for i := 0; i < len(key); i++ {
		crc ^= uint16(key[i]) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return crc & 16383
}

// ready refuses an operation after Close or once ctx has ended, as process
// does, for a batch that sends nothing.
func (s *Store[T]) ready(ctx context.Context) error {
	if s.closed.Load() {
		return ErrClosed
	}
	if ctx.Err() != nil {
		return contextError(ctx, nil)
	}
	return nil
}

// processPipeline sends cmds in one pipeline so that it returns by ctx's
// end, as process does for one command: on the calling goroutine when
// runsDirect says so, otherwise through guardedPipeline.
//
// A nil error means the pipeline ran: each command holds its own answer or
// error. An error means it failed as a whole, and cmds must not be read:
// after Close (ErrClosed), when ctx ended first, or when ctx ended during
// the pipeline and a command failed (errors.Is(err, ctx.Err()) holds).
func (s *Store[T]) processPipeline(ctx context.Context, cmds []redis.Cmder) error {
	if err := s.ready(ctx); err != nil {
		return err
	}
	if s.runsDirect(ctx) {
		s.execPipeline(ctx, cmds)
	} else if err := s.guardedPipeline(ctx, cmds); err != nil {
		return err
	}
	if ctx.Err() != nil {
		for _, cmd := range cmds {
			if err := cmd.Err(); err != nil && err != redis.Nil {
				return contextError(ctx, err)
			}
		}
	}
	return nil
}

// execPipeline sends cmds in one pipeline; each command keeps its own
// answer or error.
func (s *Store[T]) execPipeline(ctx context.Context, cmds []redis.Cmder) {
	pipe := s.client.Pipeline()
	for _, cmd := range cmds {
		_ = pipe.Process(ctx, cmd) // queues it
	}
	_, _ = pipe.Exec(ctx)
}

// pipelineCall is one pipeline that guardedPipeline runs on its own
// goroutine.
type pipelineCall struct {
	cmds []redis.Cmder
	err  error         // a panic in the client; written before done is closed
	done chan struct{} // closed when the pipeline has ended
}

// guardedPipeline is guarded (see deadline.go) for a pipeline: it runs cmds
// on a new goroutine, counted in s.pending so that Close waits for it, and
// returns when the pipeline ends or when ctx ends, whichever comes first.
// Once it has returned ctx's error, the goroutine may still read cmds, and
// write their answers: the caller must not reuse the slice.
func (s *Store[T]) guardedPipeline(ctx context.Context, cmds []redis.Cmder) error {
	if !s.pending.add() {
		return ErrClosed
	}
	c := &pipelineCall{cmds: cmds, done: make(chan struct{})}
	go s.runPipeline(ctx, c)
	select {
	case <-c.done:
		return c.err
	case <-ctx.Done():
		select {
		case <-c.done: // ended at the same time: its answers are as good
			return c.err
		default:
			return contextError(ctx, nil)
		}
	}
}

// runPipeline is the goroutine of one guarded pipeline. A panic in the
// client becomes the pipeline's error, as in run.
func (s *Store[T]) runPipeline(ctx context.Context, c *pipelineCall) {
	defer s.pending.done()
	defer close(c.done)
	defer func() {
		if r := recover(); r != nil {
			c.err = &tiercache.PanicError{Value: r, Stack: debug.Stack()}
		}
	}()
	s.execPipeline(ctx, c.cmds)
}

// BatchError is the error of a GetMany or SetMany that failed for some of
// its keys only. It names exactly the keys that failed: the other keys of
// the call succeeded (a GetMany's other nil entries are misses; a
// SetMany's other keys were written).
//
// errors.Is and errors.As see each key's error through it, so
// errors.Is(err, ErrInvalidEntry) holds when an entry could not be decoded.
type BatchError struct {
	// Op is the operation: "get" (GetMany) or "set" (SetMany).
	Op string
	// Keys are the keys that failed as the caller gave them (without
	// KeyPrefix), each once, in the order of their first place in the call.
	Keys []string
	// Errs holds the error of each of Keys, in the same order. Each names
	// the operation and the Redis key, as the errors of Get and Set do.
	Errs []error

	of int // the number of keys in the call
}

// batchErrorListed is how many of its keys' errors BatchError.Error spells
// out.
const batchErrorListed = 5

// Error names the operation, how many keys failed, and the first few of
// them with their errors.
func (e *BatchError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "redisstore: %s: %d of %d keys failed", e.Op, len(e.Keys), e.of)
	for i, err := range e.Errs[:min(len(e.Errs), batchErrorListed)] {
		if i == 0 {
			b.WriteString(": ")
		} else {
			b.WriteString("; ")
		}
		var oe *opError
		if errors.As(err, &oe) {
			b.WriteString(strconv.Quote(oe.key) + ": " + strings.TrimPrefix(oe.err.Error(), "redisstore: "))
		} else {
			b.WriteString(err.Error())
		}
	}
	if more := len(e.Errs) - batchErrorListed; more > 0 {
		fmt.Fprintf(&b, "; and %d more", more)
	}
	return b.String()
}

// Unwrap returns the error of each key that failed.
func (e *BatchError) Unwrap() []error { return e.Errs }

// FailedKeys returns Keys. It lets code that does not import redisstore
// find the keys that failed with errors.As and an
// interface{ FailedKeys() []string }.
func (e *BatchError) FailedKeys() []string { return e.Keys }

// failures collects the keys of a batch that failed, by index. The zero
// value is ready to use.
type failures struct {
	index []int
	errs  []error
}

func (f *failures) add(i int, err error) {
	f.index = append(f.index, i)
	f.errs = append(f.errs, err)
}

// batchError returns nil when no key failed, and otherwise a *BatchError
// naming each failed key of keys once.
func (f *failures) batchError(op string, keys []string) error {
	if len(f.index) == 0 {
		return nil
	}
	e := &BatchError{Op: op, of: len(keys)}
	seen := make(map[string]bool, len(f.index))
	for j, i := range f.index {
		if seen[keys[i]] {
			continue
		}
		seen[keys[i]] = true
		e.Keys = append(e.Keys, keys[i])
		e.Errs = append(e.Errs, f.errs[j])
	}
	return e
}

// manyError is the error of a GetMany or SetMany that failed as a whole.
// It names the operation and a few of its Redis keys.
type manyError struct {
	op    string   // "get" or "set"
	rkeys []string // the Redis keys of the call
	err   error
}

func (e *manyError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "redisstore: %s %d keys", e.op, len(e.rkeys))
	const listed = 3
	for i, rkey := range e.rkeys[:min(len(e.rkeys), listed)] {
		if i == 0 {
			b.WriteString(" (")
		} else {
			b.WriteString(", ")
		}
		b.WriteString(strconv.Quote(rkey))
	}
	if more := len(e.rkeys) - listed; more > 0 {
		fmt.Fprintf(&b, " and %d more", more)
	}
	if len(e.rkeys) > 0 {
		b.WriteString(")")
	}
	b.WriteString(": " + strings.TrimPrefix(e.err.Error(), "redisstore: "))
	return b.String()
}

func (e *manyError) Unwrap() error { return e.err }
