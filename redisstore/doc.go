// Package redisstore is a [tiercache.Backend] kept in Redis, through
// go-redis v9: the shared L2 of a [tiercache.Cache].
//
// # Usage
//
// [New] takes any [redis.UniversalClient]: a single node, Sentinel or
// Cluster. Build the client with ContextTimeoutEnabled, so that a command
// on a single node (or a Ring) costs no more than go-redis itself (see
// Deadlines below):
//
//	client := redis.NewClient(&redis.Options{
//		Addr:                  "localhost:6379",
//		ContextTimeoutEnabled: true, // socket I/O bounded by each ctx's deadline
//	})
//	defer client.Close()
//	// Cluster: redis.NewClusterClient(&redis.ClusterOptions{Addrs: ...});
//	// Sentinel: redis.NewFailoverClient(&redis.FailoverOptions{...});
//	// either: redis.NewUniversalClient(&redis.UniversalOptions{...}).
//
//	l2, err := redisstore.New(client, &redisstore.Options[User]{
//		KeyPrefix: "users:", // the Redis key of "42" is "users:42"
//	})
//	if err != nil {
//		return err
//	}
//	defer l2.Close(ctx) // waits for abandoned commands; the client stays open
//	cache, err := tiercache.New(l1, l2, &tiercache.Options[User]{
//		DefaultTTL: 10 * time.Minute,
//		L2Timeout:  100 * time.Millisecond, // each L2 operation's deadline
//	})
//
// The Store does not own the client: the caller closes it, after
// [Store.Close] when the Store was used with ctx deadlines.
//
// # Commands
//
// Each operation sends one command. [Store.Get] is a GET. [Store.Set] is
// SET key entry PXAT Expire (in unix milliseconds), so that Redis itself
// drops the value at its Expire; a value without Expire is written without
// TTL (a SET without PXAT also clears the TTL of a previous value). A value
// whose Expire has already passed is not written: Set sends a DEL instead.
// [Store.Delete] is a DEL; a missing key is not an error.
//
// Get also compares Expire with this process's clock after decoding, so it
// never returns an expired value even when the Redis server's clock is
// behind. Keys are [Options.KeyPrefix] followed by the caller's key. With
// Redis Cluster each key lives in its own slot, unless the prefix holds a
// hash tag such as "{users}:", which puts every key on one node.
//
// # Entry format
//
// The value of a key is an entry: a header of 4 to 20 bytes, then the
// [Options.Codec]'s payload (JSON by default).
//
//	offset   size  field
//	0        2     magic 0xC1 0x54. 0xC1 never occurs in UTF-8 and is unused
//	               in MessagePack, so values written by anything else (text,
//	               JSON, msgpack) are recognised as foreign.
//	2        1     format version, 1
//	3        1     flags: 0x01 negative, 0x02 has Expire, 0x04 has Stale; the
//	               other bits are reserved and must be zero
//	4        8     Expire in unix milliseconds, big-endian int64; only with 0x02
//	4 or 12  8     Stale in unix milliseconds, big-endian int64; only with 0x04
//	4 to 20  rest  the Codec's payload; empty for a negative entry
//
// Data, Expire, Stale and Negative round-trip exactly, the instants to the
// millisecond (rounded down); a zero instant is absent from the header and
// comes back zero. A negative entry has no payload and comes back with the
// zero Data. A reader refuses a version it does not know, so a format
// change that older readers would misread comes with a new version number.
//
// # Bad entries and limits
//
// An entry larger than [Options.MaxValueBytes] ([DefaultMaxValueBytes], 4
// MiB, by default: room for a 1 MiB value and its header many times over)
// is refused: Set fails with [ErrValueTooLarge] and deletes the key, so
// that readers do not keep the value it was meant to replace; a Get that
// reads one (written by someone else) fails with it too. go-redis has read
// the whole value by then: the limit protects the decoder and the callers,
// not the socket.
//
// A Get that reads bytes that are not an entry (foreign, truncated, corrupt,
// of a newer format version, or a payload the Codec cannot decode) fails
// with an error wrapping [ErrInvalidEntry]. Every error starts with
// "redisstore:" and names the Redis key; a Cache counts a failed L2 read as
// a failure of that layer and carries on as on a miss. A Codec that panics
// fails the operation with a [*tiercache.PanicError] instead of crashing
// the process.
//
// # Deadlines
//
// Every operation returns by its ctx's deadline (or cancellation), with an
// error for which errors.Is(err, context.DeadlineExceeded) (or
// context.Canceled) holds, whatever the client's options.
//
// go-redis applies a ctx's deadline to socket reads and writes only when
// the client was built with ContextTimeoutEnabled; with its default options
// a command against a server that stopped answering returns after the
// client's ReadTimeout (5 s) whatever the ctx says. So New looks at the
// client:
//
//   - Direct path: a *redis.Client (single node, or Sentinel) or a
//     *redis.Ring with ContextTimeoutEnabled (and socket deadlines not
//     disabled with a ReadTimeout or WriteTimeout of -2; for a Ring, no
//     RingOptions.NewClient either). The command runs
//     on the caller's goroutine, as a plain go-redis call does.
//   - Guarded path: any other client, including every *redis.ClusterClient
//     (with ContextTimeoutEnabled too: its first commands fetch COMMAND info
//     from a node under a timeout of go-redis's own, which ignores ctx; a Get
//     with a 100 ms deadline was measured to take 5 s against a frozen
//     cluster). The command runs on a goroutine of its own and the caller
//     returns when the command ends or ctx ends, whichever is first. An
//     abandoned command goes on until go-redis ends it: at the latest at the
//     client's ReadTimeout, at once if it was still waiting for a pooled
//     connection. So the abandoned goroutines are at most the client's pool
//     size (per node, with a cluster); [Store.Close] waits for them. A ctx that can never end
//     (context.Background) takes the direct path.
//
// What the guarded path costs, measured on a 2-core virtual machine (Go
// 1.26, a ~200-byte JSON value, ctx with a deadline, medians of 10 runs):
//
//   - BenchmarkGetOverhead, a client answering from memory, so that only
//     redisstore's own work counts: a Get, decoding included, takes 6.6 µs
//     on the direct path and 10.1 µs on the guarded one, which adds one
//     goroutine, 3 allocations and 208 bytes per call.
//   - BenchmarkGetParallel, 8 callers against a redis-server on the same
//     machine: 22.2 µs per Get direct, 23.3 µs guarded, a difference within
//     the noise.
//   - BenchmarkGet, one caller: a round trip there is dominated by the
//     virtual CPUs waking up (from 15 to over 100 µs a call, depending on
//     what else the machine does), and the two paths showed no steady
//     difference.
//
// Build clients with ContextTimeoutEnabled where those microseconds matter;
// a ClusterClient pays them in any case.
package redisstore
